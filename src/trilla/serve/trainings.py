"""Trainings started over HTTP: each one a `trilla train` subprocess, so the server keeps answering and
a cancelled or crashed training takes nothing else down.

A training starts from a served run's config with the client's overrides. The client never names a
path on the server: data comes from a path relative to the operator's `--data-root` (refused when the
server has none), checked to stay inside it, and an override that would change any other path of the
config (data.path itself, run.dir, a weights file, a class list) is refused, whatever form it takes.
`guarded` is that check, for trilla serve's route and the DEEPaaS plugin alike. The new run goes beside the served one,
named `<model>-<uuid>`; once it has finished it is served as a model of its own.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import tempfile
import uuid
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from trilla import runs
from trilla.config import MAX_EPOCHS, Config, load_config
from trilla.errors import Refused, TrillaError
from trilla.runs import Run


@dataclass
class Training:
    uuid: str
    model: str
    date: str
    args: dict[str, Any]
    run_name: str
    runs_root: Path
    process: subprocess.Popen
    log: Path
    cancelled: bool = False
    served_as: str | None = None
    run_path: Path | None = field(default=None)
    ended: datetime | None = None  # when the child was first seen to have ended

    def run(self) -> Run | None:
        """The run folder the child created, once it is a run (`runs.is_run`): a status request while the
        child is still writing its config must not read half a run."""
        if self.run_path is None:
            found = sorted(p for p in self.runs_root.glob(f"*-{self.run_name}") if runs.is_run(p))
            self.run_path = found[-1] if found else None
        return None if self.run_path is None else Run(self.run_path)

    @property
    def status(self) -> str:
        code = self.process.poll()
        if code is None:
            return "running"
        self.ended = self.ended or datetime.now()
        if self.cancelled:
            return "cancelled"
        return "done" if code == 0 else "error"

    def describe(self) -> dict[str, Any]:
        """The DEEPaaS training answer (uuid, date, status, args, message), with trilla's progress."""
        answer: dict[str, Any] = {"uuid": self.uuid, "date": self.date, "status": self.status, "args": self.args}
        run = self.run()
        progress: dict[str, Any] = {"epoch": 0, "epochs": None, "metrics": {}}
        if run is not None:
            answer["run"] = run.id
            history = run.history
            progress["epochs"] = run.config.train.epochs
            if len(history):
                last = history.iloc[-1]
                progress["epoch"] = int(last.get("epoch", len(history)))
                progress["metrics"] = {k: float(v) for k, v in last.items() if k != "epoch" and isinstance(v, (int, float)) and v == v}
        answer["progress"] = progress
        if answer["status"] == "error":
            answer["message"] = self.error()
        if answer["status"] == "done" and run is not None:  # DEEPaaS's result of a finished training
            started = datetime.fromisoformat(self.date)
            answer["result"] = {"output": {"run": run.id, "metrics": {k: v for k, v in run.metrics.items() if isinstance(v, (int, float))}},
                                "finish_date": str(self.ended), "duration": str(self.ended - started) if self.ended else None}
        if self.served_as:
            answer["model"] = self.served_as
        return answer

    def error(self) -> str:
        run = self.run()
        recorded = run.info.get("error") if run is not None else None
        if recorded:
            return str(recorded)
        text = self.log.read_text(errors="replace") if self.log.exists() else ""
        lines = [line.strip("│╭╮╰╯─ ") for line in text.splitlines() if any(c.isalpha() for c in line)]
        return lines[-1] if lines else f"trilla train ended with code {self.process.returncode}"


class Busy(Refused):
    """As many trainings as the server allows are running (answered with 429)."""


MAX_TEXT = 1000  # longest data path or override a request may give


def guarded(base: Run, data: str | None, epochs: int | None, overrides: list[str], data_root: Path | None,
            max_epochs: int = MAX_EPOCHS) -> tuple[Config, list[str]]:
    """The config a training over HTTP (trilla serve's route or the DEEPaaS plugin's) will run, and the
    command-line overrides that give it; Refused for anything that would leave the data root.

    The check is on the config the overrides resolve to, not on their spelling, so `data.path=...`,
    `data={path: ...}` and a path under another key all meet it: every path-valued key stays the base
    run's. New data comes only through `data`, inside `data_root`, and then with `data.allow_outside`
    off; epochs stay under `max_epochs`."""
    given = [str(item) for item in overrides]
    if len(given) > 100 or any(len(item) > MAX_TEXT or "\x00" in item for item in given):
        raise Refused(f"at most 100 overrides of at most {MAX_TEXT} characters each, with no NUL character")
    for item in given:
        key = item.partition("=")[0].strip()
        if key.split(".")[0] == "run":
            raise Refused(f"{key}: where runs go is the server's choice")
    if epochs is not None:
        given.append(f"train.epochs={epochs}")
    config = _load(base, given)
    before, after = _paths(base.config.model_dump()), _paths(config.model_dump())
    changed = sorted(key for key in set(before) | set(after) if before.get(key) != after.get(key))
    if changed:
        raise Refused(f"{', '.join(changed)}: a training over HTTP cannot change a path on the server"
                      + (" (give data=FOLDER inside the data root instead)" if "data.path" in changed else ""))
    if data is not None:
        given += [f"data.path={data_path(data, data_root)}", "data.allow_outside=false"]
        config = _load(base, given)
    if config.data.allow_outside and not base.config.data.allow_outside:
        raise Refused("data.allow_outside: a training over HTTP reads no file outside its data's folder")
    if config.train.epochs > max_epochs:
        raise Refused(f"train.epochs {config.train.epochs}: this server trains at most {max_epochs} epochs")
    if config.train.min_steps != base.config.train.min_steps:
        raise Refused("train.min_steps: it raises the epochs past what the request says; set train.epochs instead")
    return config, given


def _load(base: Run, given: list[str]) -> Config:
    try:
        return load_config(base.path / runs.CONFIG, given)
    except TrillaError as err:
        raise Refused(str(err)) from None
    except (OSError, ValueError) as err:  # a path the file system cannot even look up
        raise Refused(f"the overrides name a path the server cannot use: {err}") from None


def data_path(data: str, data_root: Path | None) -> Path:
    """`data`, a path relative to the data root, checked to stay inside it."""
    if data_root is None:
        raise Refused("this server takes no data paths (start it with --data-root FOLDER to allow data inside FOLDER)")
    if len(data) > MAX_TEXT or "\x00" in data:
        raise Refused(f"data: a path of at most {MAX_TEXT} characters with no NUL character")
    if Path(data).is_absolute():
        raise Refused(f"data {data!r}: give a path relative to the server's data root")
    root = Path(data_root).resolve()
    try:
        path = (root / data).resolve()
        exists = path.exists()
    except (OSError, ValueError) as err:
        raise Refused(f"data {data[:100]!r} is not a path the server can look up: {err}") from None
    if path != root and root not in path.parents:
        raise Refused(f"data {data!r} leads outside the server's data root")
    if not exists:
        raise Refused(f"data {data!r} does not exist in the server's data root")
    return path


class Trainings:
    def __init__(self, data_root: Path | None, max_running: int = 1, max_epochs: int = MAX_EPOCHS):
        self.data_root = None if data_root is None else Path(data_root).resolve()
        self.max_running = max_running
        self.max_epochs = max_epochs
        self.scratch = Path(tempfile.mkdtemp(prefix="trilla-trainings-"))  # the children's logs
        self.items: dict[str, Training] = {}

    def resolved(self, base: Run, data: str | None, epochs: int | None, overrides: list[str]) -> tuple[Config, list[str]]:
        return guarded(base, data, epochs, overrides, self.data_root, self.max_epochs)

    def start(self, model: str, base: Run, data: str | None, epochs: int | None, overrides: list[str]) -> Training:
        running = sum(1 for training in self.items.values() if training.status == "running")
        if running >= self.max_running:
            raise Busy(f"{running} training{'s' if running != 1 else ''} running, as many as this server allows (--max-trainings "
                       f"{self.max_running}): try again when one has finished")
        _, given = self.resolved(base, data, epochs, overrides)
        key = uuid.uuid4().hex
        run_name = f"{re.sub(r'[^A-Za-z0-9_.-]+', '-', model).strip('-.')[:80] or 'model'}-{key[:8]}"  # glob-safe
        runs_root = base.path.parent.resolve()
        log = self.scratch / f"{key}.log"
        command = [sys.executable, "-m", "trilla", "train", str(base.path / runs.CONFIG), "-q",
                   *(f"--set={item}" for item in [*given, f"run.dir={runs_root}", f"run.name={run_name}", "train.progress=false"])]
        with log.open("wb") as out:
            process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        args = {"data": data, "epochs": epochs, "overrides": list(overrides)}
        training = Training(key, model, datetime.now().strftime("%Y-%m-%d %H:%M:%S.%f"), args, run_name, runs_root, process, log)
        self.items[key] = training
        return training

    def cancel(self, training: Training, grace: float = 10.0) -> None:
        """End the subprocess (SIGTERM, then SIGKILL after `grace` seconds) and mark its run cancelled."""
        if training.process.poll() is None:
            training.cancelled = True
            os.killpg(training.process.pid, signal.SIGTERM)
            try:
                training.process.wait(grace)
            except subprocess.TimeoutExpired:
                os.killpg(training.process.pid, signal.SIGKILL)
                training.process.wait()
            run = training.run()
            if run is not None:
                run.set_status(runs.CANCELLED)

    def close(self) -> None:
        for training in self.items.values():
            self.cancel(training, grace=5.0)


def _paths(dumped: dict, prefix: str = "") -> dict[str, str]:
    """Every path-valued key of a dumped config, dotted."""
    found: dict[str, str] = {}
    for key, value in dumped.items():
        name = f"{prefix}{key}"
        if isinstance(value, dict):
            found.update(_paths(value, f"{name}."))
        elif isinstance(value, (list, tuple)):
            found.update(_paths({str(k): v for k, v in enumerate(value)}, f"{name}."))
        elif isinstance(value, Path):
            found[name] = str(value)
    return found
