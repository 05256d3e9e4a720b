"""The run directory contract: create runs that never overwrite, and load them back to predict or evaluate.

A run holds everything needed to predict (the checkpoint carries classes, preprocessing and weights),
so a run directory copied to another machine predicts the same.
"""

from __future__ import annotations

import json
import re
from datetime import datetime
from functools import cached_property
from pathlib import Path

import pandas as pd
import yaml

from trilla.config import Config, validate_config
from trilla.errors import TrillaError


def new_run_dir(root: Path, name: str) -> Path:
    """A fresh folder `<root>/<timestamp>-<name>`; an existing one is never reused."""
    base = f"{datetime.now():%Y%m%d-%H%M%S}-{re.sub(r'[^A-Za-z0-9_.-]+', '-', name).strip('-') or 'run'}"
    root.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, 1000):
        candidate = root / (base if attempt == 1 else f"{base}-{attempt}")
        try:
            candidate.mkdir()
            return candidate
        except FileExistsError:
            continue
    raise TrillaError(f"could not create a new run folder in {root}")


def free_path(path: Path) -> Path:
    """`path`, or `name-2.png`, `name-3.png`... when it exists: nothing already there is overwritten."""
    candidate, n = path, 1
    while candidate.exists():
        n += 1
        candidate = path.with_name(f"{path.stem}-{n}{path.suffix}")
    return candidate


class Run:
    def __init__(self, path: str | Path):
        self.path = Path(path)
        if not (self.path / "config.yaml").is_file():
            raise TrillaError(f"{self.path} is not a trilla run: it has no config.yaml")

    @property
    def id(self) -> str:
        return self.path.name

    @cached_property
    def config(self) -> Config:
        return validate_config(yaml.safe_load((self.path / "config.yaml").read_text()))

    @cached_property
    def classes(self) -> list[str]:
        return json.loads((self.path / "classes.json").read_text())

    @property
    def info(self) -> dict:
        return _read_json(self.path / "run.json")

    @property
    def metrics(self) -> dict:
        return _read_json(self.path / "metrics.json")

    @property
    def history(self) -> pd.DataFrame:
        path = self.path / "history.csv"
        return pd.read_csv(path) if path.is_file() else pd.DataFrame()

    @property
    def report(self) -> Path:
        return self.path / "report.md"

    def checkpoint(self, which: str = "best") -> Path:
        path = self.path / "checkpoints" / f"{which}.ckpt"
        if not path.is_file():
            raise TrillaError(f"run {self.path} has no {which} checkpoint ({path}); was it trained?")
        return path

    def predictor(self, device: str = "cpu", tta: int = 0):
        """The best checkpoint, reading metadata and augmenting (tta views) as this run's config says, and
        (multi-label) predicting each label above the threshold tuned on validation."""
        from trilla.predict import Predictor

        config = self.config
        thresholds = _read_json(self.path / "thresholds.json")
        return Predictor(
            self.checkpoint("best"), device, config.data.metadata, config.augment, tta, config.input,
            thresholds=[thresholds[c] for c in self.classes] if thresholds else None,
        )

    def predict(
        self, files: list[str | Path], top_k: int = 5, metadata: dict[str, str] | None = None,
        metadata_table: str | Path | None = None, tta: int = 0,
    ) -> list[dict]:
        """Top-k labels per file; metadata given for all files and/or per file in a CSV (file, field...)."""
        from trilla.predict import expand, metadata_per_file

        paths = expand([Path(f) for f in files])
        predictor = self.predictor(tta=tta)
        given = metadata_per_file(paths, metadata or {}, metadata_table, list(predictor.vocab))
        return predictor.predict_files(paths, top_k=top_k, metadata=given)

    def evaluate(
        self, data: str | Path | None = None, out: str | Path | None = None, progress: bool = True, tta: int = 0,
        others: list[Run] | None = None,
    ) -> tuple[dict, Path]:
        """With `others`, the ensemble of this run and those (the results land in this run's evaluations)."""
        from trilla.evaluation import evaluate_run

        return evaluate_run(self, data, out, progress, tta, others)


def _read_json(path: Path) -> dict:
    return json.loads(path.read_text()) if path.is_file() else {}


def find_runs(root: Path) -> list[Run]:
    """Every run below `root` (a run folder itself, a folder of runs, or a tree of them)."""
    root = Path(root)
    if (root / "config.yaml").is_file() and (root / "run.json").is_file():
        return [Run(root)]
    return [Run(p.parent) for p in sorted(root.rglob("run.json")) if (p.parent / "config.yaml").is_file()]
