"""THE run-directory contract: a run's paths, its atomic writes, its status, and its readers.

Nobody else opens a run's files: training writes through `Run`, and the report, the leaderboard, the
review loop, sweeps and the backbone hand-over read through it. A run holds everything needed to
predict (the checkpoint carries classes, preprocessing and weights; run.json what the store held), so
a run directory copied to another machine predicts the same.

run.json carries `format`: a run written by a newer trilla whose layout this one cannot read is refused
with the release that wrote it, rather than misread.
"""

from __future__ import annotations

import json
import os
import re
import socket
from datetime import datetime
from functools import cached_property
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from trilla.atomic import write_csv, write_json, write_text
from trilla.checkpoints import load_checkpoint, reading_checkpoint
from trilla.config import Config, validate_config
from trilla.errors import TrillaError
from trilla.schema import load_yaml
from trilla.version import __version__

FORMAT = 1  # the layout of a run directory this release writes and reads

CONFIG, CLASSES, INFO, METRICS, HISTORY = "config.yaml", "classes.json", "run.json", "metrics.json", "history.csv"
THRESHOLDS, SPLITS, SKIPPED, CONFLICTS, COUNTS = "thresholds.json", "splits.csv", "skipped.csv", "conflicts.csv", "counts.csv"
REPORT, CHECKPOINTS, EVALUATIONS = "report.md", "checkpoints", "evaluations"
DUPLICATES, NOTES = "duplicates.csv", "notes.csv"  # copies merged into one sample; files used with a warning

RUNNING, FINISHED, FAILED, INTERRUPTED = "running", "finished", "failed", "interrupted"
ABANDONED, PRUNED = "abandoned", "pruned"  # a sweep's: a trial rerun from scratch, a trial stopped by its pruner
CANCELLED = "cancelled"  # a training over HTTP that its client cancelled
STATUSES = (RUNNING, FINISHED, FAILED, INTERRUPTED, ABANDONED, PRUNED, CANCELLED)


def new_run_dir(root: Path, name: str) -> Path:
    """A fresh folder `<root>/<timestamp>-<name>`; an existing one is never reused."""
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "-", name).strip("-.")[:120]  # a file name has at most 255 bytes
    base = f"{datetime.now():%Y%m%d-%H%M%S}-{safe or 'run'}"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise TrillaError(f"could not create a new run folder in {root}")


class Run:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / CONFIG).is_file():
            raise TrillaError(f"{self.path} is not a trilla run: it has no {CONFIG}")
        written = self.info.get("format", 1)
        if not isinstance(written, int) or written > FORMAT:
            release = self.info.get("versions", {}).get("trilla", "a newer release")
            raise TrillaError(f"run {self.path} was written by trilla {release} (run format {written}); "
                              f"trilla {__version__} reads format {FORMAT}: open it with trilla {release} or later")
        self._predictors: dict[tuple[str, int], Any] = {}

    @classmethod
    def create(cls, root: Path, name: str, config: Config) -> Run:
        """A new run directory holding the resolved config."""
        path = new_run_dir(Path(root), name)
        write_text(path / CONFIG, config.to_yaml())
        run = cls(path)
        run.write_json(INFO, {"id": run.id, "format": FORMAT, "created": datetime.now().isoformat(timespec="seconds"),
                              "config": config.model_dump(mode="json")})  # what config.yaml said at the start: a resume sees edits
        run.set_status(RUNNING)  # from the first moment, so a run killed while it prepares is listed too
        return run

    @property
    def id(self) -> str:
        return self.path.name

    # --- readers ---------------------------------------------------------------------------------

    @cached_property
    def config(self) -> Config:
        return validate_config(self.raw_config)

    @property
    def raw_config(self) -> dict:
        """config.yaml as written (safe loader only: no tag can build an object)."""
        try:
            raw = load_yaml((self.path / CONFIG).read_text())
        except yaml.YAMLError as err:
            raise TrillaError(f"{self.path / CONFIG} is not valid YAML: {err}") from None
        if not isinstance(raw, dict):
            raise TrillaError(f"{self.path / CONFIG} must hold a mapping of sections")
        return raw

    @cached_property
    def classes(self) -> list[str]:
        return _read_json(self.path / CLASSES, required="it is written when training starts")

    @property
    def objective(self):
        """What the run predicts (a `trilla.objectives.Objective`), as its config says."""
        from trilla.objectives import objective_for

        return objective_for(self.config)

    @property
    def info(self) -> dict:
        """run.json; empty when there is none (the leaderboard still lists the run)."""
        return _read_json(self.path / INFO)

    @property
    def record(self) -> dict:
        """run.json, which predicting, evaluating and resuming need (what the data and the store held)."""
        return _read_json(self.path / INFO, required="it records what the run trained on; retrain the run")

    @property
    def status(self) -> str | None:
        """The status run.json gives, except that a "running" run whose process is gone (killed, the
        machine rebooted) is "interrupted": it can only be resumed."""
        info = self.info
        status = info.get("status")
        here = info.get("host") in (None, socket.gethostname())  # no host: written by a release that recorded no owner
        if status == RUNNING and here and not _alive(info.get("pid")):
            return INTERRUPTED
        return status

    @property
    def metrics(self) -> dict:
        return _read_json(self.path / METRICS)

    @property
    def thresholds(self) -> dict[str, float]:
        return _read_json(self.path / THRESHOLDS)

    @property
    def history(self) -> pd.DataFrame:
        return self.table(HISTORY)

    def table(self, name: str, folder: str | Path = "", **kwargs) -> pd.DataFrame:
        """One of the run's CSV files (`counts.csv`, `splits.csv`, an evaluation's `per_class.csv`...),
        empty when the run has none."""
        path = self.path / folder / name
        return pd.read_csv(path, encoding_errors="surrogateescape", **kwargs) if path.is_file() else pd.DataFrame()

    def has(self, name: str | Path) -> bool:
        return (self.path / name).is_file()

    def label_columns(self) -> list[str]:
        """The manifest columns a person corrects for this run: the label, or the affect coordinates its
        classes come from."""
        cfg = self.config.data
        return list(cfg.targets.values()) if cfg.targets else [cfg.label_column]

    def trained_on(self) -> set[str]:
        """The paths of the files this run trained on (its splits.csv's train rows)."""
        splits = self.table(SPLITS)
        return set(splits.loc[splits["split"] == "train", "path"]) if len(splits) else set()

    @property
    def report(self) -> Path:
        return self.path / REPORT

    def checkpoint(self, which: str = "best") -> Path:
        path = self.path / CHECKPOINTS / f"{which}.ckpt"
        if not path.is_file():
            raise TrillaError(f"run {self.path} has no {which} checkpoint ({path}); was it trained?")
        return path

    def codec(self):
        """How this run packs new data into the store, exactly as its own (None for kinds not packed)."""
        from trilla.kinds import input_kind
        from trilla.kinds.protocols import Packs

        kind = input_kind(self.config.input.type)
        return kind.codec(self.config, self.record["data"]["input"]) if isinstance(kind, Packs) else None

    # --- writers ---------------------------------------------------------------------------------

    def write_json(self, name: str | Path, payload: Any) -> Path:
        return write_json(self.path / name, payload)

    def write_text(self, name: str | Path, text: str) -> Path:
        return write_text(self.path / name, text)

    def write_csv(self, name: str | Path, frame: pd.DataFrame, **kwargs) -> Path:
        return write_csv(self.path / name, frame, **kwargs)

    def start(self, record: dict) -> None:
        """run.json for a run about to train: `record` (versions, data, model) with its status."""
        kept = {key: self.info[key] for key in ("created", "config") if key in self.info}
        self.write_json(INFO, {"id": self.id, "format": FORMAT, "created": datetime.now().isoformat(timespec="seconds"), **kept, **record})
        self.set_status(RUNNING)

    def set_status(self, status: str, **extra) -> None:
        """running (with this process, so a reader can tell a live run from one that died), finished,
        failed (an error; `error` says which), interrupted (stopped; it can be resumed), a sweep's
        abandoned or pruned, or cancelled (over HTTP)."""
        if status not in STATUSES:
            raise ValueError(f"unknown run status {status!r}")
        owner = {"pid": os.getpid(), "host": socket.gethostname()} if status == RUNNING else {}
        info = {key: value for key, value in self.info.items() if key not in ("pid", "host", "error", "resumable")}
        self.write_json(INFO, {**info, "status": status, **owner, **extra})

    def new_evaluation_dir(self, name: str) -> Path:
        """A fresh folder under `<run>/evaluations/` for one evaluation's files."""
        return new_run_dir(self.path / EVALUATIONS, name)

    # --- using the trained model -----------------------------------------------------------------

    def predictor(self, device: str = "cpu", tta: int = 0):
        """The best checkpoint, reading metadata and augmenting (tta views) as this run's config says, and
        (multi-label) predicting each label above the threshold tuned on validation. Loaded once per
        device and tta, and kept."""
        key = (device, tta)
        if key not in self._predictors:
            from trilla.predict import Predictor

            checkpoint, thresholds = self.checkpoint("best"), self.thresholds
            predictor = Predictor(checkpoint, self.config, self.record.get("data", {}), device, tta,
                                  thresholds=[thresholds.get(c, 0.5) for c in self.classes] if thresholds else None)
            if predictor.classes != self.classes:  # what the answers and the metadata name must be what the model learnt
                raise TrillaError(f"{self.path / CLASSES} lists {self.classes}, but the checkpoint {checkpoint} was trained on "
                                  f"{predictor.classes}: put the checkpoint's classes back into {CLASSES} (or retrain the run)")
            self._predictors[key] = predictor
        return self._predictors[key]

    def forget_predictors(self) -> None:
        """Drop the loaded predictors (the best checkpoint changed, or thresholds were tuned)."""
        self._predictors.clear()

    def require_finished(self, allow_unfinished: bool = False) -> None:
        """Refuse a run that did not finish (failed, stopped, still training): its best checkpoint is a
        model halfway, which a person must choose to use. A run.json without a status (an older release)
        passes."""
        status = self.status
        if status in (None, FINISHED) or allow_unfinished:
            return
        why = f": {self.info['error']}" if status == FAILED and self.info.get("error") else ""
        resumable = status == INTERRUPTED or (status == FAILED and self.info.get("resumable", True))
        then = f"continue it with `trilla train --resume {self.path}`, or " if resumable else ""
        raise TrillaError(f"run {self.path} is {status}{why}. Its best checkpoint is not a finished model: {then}"
                          "pass --allow-unfinished to use it all the same")

    def predict(
        self, items: list, top_k: int = 5, metadata: dict[str, str] | None = None,
        metadata_table: str | Path | None = None, tta: int = 0, hop: float | None = None, windows: bool = False,
        allow_unfinished: bool = False,
    ) -> list[dict]:
        """Top-k labels per item (paths, folders of files, bytes, file objects, arrays); metadata given
        for all items and/or per file in a CSV (file, field...); sounds longer than the run's clips are
        read in windows every `hop` seconds (see `Predictor.predict`)."""
        from trilla.predict import expand, metadata_per_file

        self.require_finished(allow_unfinished)
        items = expand(items)
        predictor = self.predictor(tta=tta)
        given = metadata_per_file(items, metadata or {}, None if metadata_table is None else Path(metadata_table), list(predictor.vocab))
        return predictor.predict(items, top_k=top_k, metadata=given, hop=hop, windows=windows)

    def evaluate(
        self, data: str | Path | None = None, out: str | Path | None = None, progress: bool = True, tta: int = 0,
        others: list[Run] | None = None, allow_unfinished: bool = False,
    ) -> tuple[dict, Path]:
        """With `others`, the ensemble of this run and those (the results land in this run's evaluations)."""
        from trilla.evaluation.evaluate import evaluate_run

        for run in [self, *(others or [])]:
            run.require_finished(allow_unfinished)
        return evaluate_run(self, data, out, progress, tta, others)


def _read_json(path: Path, required: str | None = None) -> Any:
    """A run's JSON file; {} when missing, unless `required` (then the error says why it is needed)."""
    if not path.is_file():
        if required is None:
            return {}
        raise TrillaError(f"{path} is missing: {required}")
    try:
        return json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError) as err:
        raise TrillaError(f"{path} is not valid JSON ({err}); the run directory is damaged") from None


def _alive(pid: Any) -> bool:
    """Whether process `pid` of this machine still runs (signal 0 asks without sending anything)."""
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # another user's process
    return True


def checkpoint_state(source: str | Path) -> dict:
    """The state dict of a trilla run (its best checkpoint) or of one of its `.ckpt` files, read safely."""
    path = Path(source).expanduser()
    if path.is_dir():
        path = Run(path).checkpoint("best")
    with reading_checkpoint(path):
        return load_checkpoint(path)["state_dict"]


def resumable(path: str | Path) -> bool:
    """Whether `path` is a run that saved a last checkpoint to resume from."""
    return (Path(path) / CONFIG).is_file() and (Path(path) / CHECKPOINTS / "last.ckpt").is_file()


def is_run(folder: Path) -> bool:
    """Whether `folder` holds a run that can be read: a run's folder exists a moment before its config and
    run.json are written (atomically), and a reader in between must not take it for one."""
    return (folder / CONFIG).is_file() and ((folder / INFO).is_file() or (folder / CHECKPOINTS).is_dir())


def find_runs(root: Path) -> list[Run]:
    """Every run below `root` (a run folder itself, a folder of runs, or a tree of them)."""
    root = Path(root)
    if is_run(root):
        return [Run(root)]
    return [Run(p.parent) for p in sorted(root.rglob(CONFIG)) if is_run(p.parent)]
