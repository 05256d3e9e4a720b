"""`trilla sweep`: a table of experiments over one base config, kept in an Optuna study.

The study (SQLite in the sweep folder by default, any Optuna RDB URL otherwise) is the only shared state,
so workers in several processes or on several machines cooperate through it:

- A grid is enqueued once, by whichever process creates the study, as WAITING trials; a worker claims one
  by Optuna's atomic WAITING -> RUNNING update, so no point runs twice. (Optuna's GridSampler picks
  points at random and says it may repeat one when workers race; a queue cannot.)
- `random` and `optuna` draw their points with Optuna's RandomSampler and TPESampler; `optuna` also
  prunes with the MedianPruner on `train.monitor`, reported after every validation.
- A trial whose worker died is found stale (a dead process on this machine at once; on another machine
  by Optuna's heartbeat, after its grace period), failed and queued again with its parameters; the rerun
  resumes the trial's run directory from its last checkpoint. A trial that raises is recorded as failed
  with its error and the sweep goes on.

Each trial is an ordinary trilla run under `<sweep>/runs`, so `trilla runs` and `trilla compare` read a
sweep like any folder of runs. The claim loop, the pruning callback and the heartbeat thread are written
here because Optuna's `study.optimize` samples fresh points when a grid's queue runs dry, and
optuna-integration's Lightning callback raises out of `fit` instead of letting the run finish its report.
"""

from __future__ import annotations

import copy
import hashlib
import itertools
import logging
import multiprocessing
import os
import socket
import threading
import time
import warnings
from collections import Counter
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import optuna
import torch
import yaml
from filelock import FileLock
from optuna.exceptions import DuplicatedStudyError
from optuna.storages import RDBStorage, RetryHeartbeatStaleTrialCallback, fail_stale_trials
from optuna.trial import TrialState
from sqlalchemy import make_url, text
from sqlalchemy.exc import IntegrityError, SQLAlchemyError

from trilla import runs
from trilla.atomic import write_text
from trilla.config import Config, SweepConfig, SweepRange, set_dotted, take_epochs_as_given, validate_config
from trilla.errors import TrillaError
from trilla.runs import Run
from trilla.training import study_storage
from trilla.training.study_storage import quiet_experimental

log = logging.getLogger("trilla")

HEARTBEAT_S = 30
GRACE_S = 120
_READY = "queued"  # study attr: the grid is fully queued, workers may start
_CREATION_TRIES = 5


@dataclass
class Point:
    """One grid point: a label for its run and the dotted keys it sets."""

    label: str
    overrides: dict[str, Any]


@dataclass
class SweepResult:
    path: Path
    counts: dict[str, int]  # trials per state: complete, pruned, fail, ...
    failures: list[tuple[str, str]]  # (label, error) of the trials that raised


def grid_points(sweep: SweepConfig) -> list[Point]:
    """Every combination of `parameters`, for each entry of `trials` (or once, when there are none)."""
    bases = sweep.trials or [{}]
    keys = list(sweep.parameters)
    points = []
    for index, (base, values) in enumerate(itertools.product(bases, itertools.product(*(sweep.parameters[k] for k in keys)))):
        overrides = {k: v for k, v in base.items() if k != "name"}
        overrides.update(zip(keys, values))
        name = base.get("name")
        label = "-".join(filter(None, [str(name) if name else "", *(f"{k.split('.')[-1]}={v}" for k, v in zip(keys, values))]))
        points.append(Point(label or f"p{index + 1:03d}", overrides))
    return points


def trial_config(raw: dict[str, Any], overrides: dict[str, Any], runs_dir: Path, label: str) -> Config:
    """The base config with a trial's keys set, its run filed under the sweep."""
    trial = copy.deepcopy(raw)
    trial.pop("sweep", None)
    for key, value in overrides.items():
        set_dotted(trial, key, value)
    take_epochs_as_given(trial, list(overrides))
    set_dotted(trial, "run.dir", str(runs_dir))
    set_dotted(trial, "run.name", label)
    try:
        return validate_config(trial)
    except TrillaError as err:
        raise TrillaError(f"sweep point {label}: {err}") from None


def sweep_name(config: Config, config_path: Path | None) -> str:
    """The study's name (shared by every worker, wherever it runs): run.name, else the config file's stem."""
    return config.run.name or (config_path.stem if config_path else "sweep")


def run_sweep(raw: dict[str, Any], config_path: Path | None = None, folder: Path | None = None, workers: int = 1) -> SweepResult:
    """Create or join the sweep described by `raw` (a config with a `sweep:` section) and work on it
    with `workers` processes until its points or budgets run out."""
    config = validate_config(raw)
    if config.sweep is None:
        raise TrillaError("the config has no sweep: section; see README 'Sweeps' for grid, random and optuna")
    if workers < 1:
        raise TrillaError("--workers must be at least 1")
    name = sweep_name(config, config_path)
    folder = Path(folder) if folder is not None else Path(config.run.dir) / name
    folder.mkdir(parents=True, exist_ok=True)
    url = config.sweep.storage or f"sqlite:///{(folder / 'sweep.db').resolve()}"
    if config.sweep.method == "grid":  # every point checked before any trains
        for point in grid_points(config.sweep):
            trial_config(raw, point.overrides, folder / "runs", point.label)
    else:
        trial_config(raw, {key: _first(space) for key, space in config.sweep.parameters.items()}, folder / "runs", "a draw")
    study = _open_study(name, url, raw, config)
    if not (folder / "sweep.yaml").exists():
        write_text(folder / "sweep.yaml", yaml.safe_dump(raw, sort_keys=False))
    if workers == 1:
        work(name, url, folder, 1)
    else:
        context = multiprocessing.get_context("spawn")
        level = logging.getLogger("trilla").getEffectiveLevel()
        processes = [context.Process(target=_worker_process, args=(name, url, folder, workers, level)) for _ in range(workers)]
        for process in processes:
            process.start()
        for process in processes:
            process.join()
        crashed = [p.exitcode for p in processes if p.exitcode]
        if crashed:
            raise TrillaError(f"{len(crashed)} of {workers} workers stopped with exit codes {crashed}; "
                              "their trials are kept, and the same command resumes the sweep")
    trials = study.get_trials(deepcopy=False)
    failures = [(t.user_attrs.get("label", str(t.number)), t.user_attrs["error"]) for t in trials if "error" in t.user_attrs]
    return SweepResult(folder, _counts(study), failures)


def _storage(url: str) -> RDBStorage:
    """The study's database; a URL that cannot be opened is a named error, not SQLAlchemy's traceback.

    Workers started at the same moment on an empty database all create its tables (Optuna does, through
    Alembic, with no lock across processes): the losers see "already exists" or a unique-key violation,
    and then find the tables there when they open it again."""
    engine = {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
    for attempt in itertools.count(1):
        try:
            with quiet_experimental():
                return RDBStorage(
                    url, engine_kwargs=engine, heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                    heartbeat_stale_trial_callback=RetryHeartbeatStaleTrialCallback(),
                )
        except ImportError:
            raise TrillaError(f"sweep.storage {_shown(url)}: its database driver is not installed (PostgreSQL: pip install 'trilla[postgres]')") from None
        except (SQLAlchemyError, ValueError) as err:
            if attempt < _CREATION_TRIES and _lost_creation_race(err):
                time.sleep(0.2 * attempt)
                continue
            raise TrillaError(f"sweep.storage {_shown(url)} cannot be opened: {str(err).splitlines()[0]}") from None


def _lost_creation_race(err: Exception) -> bool:
    return isinstance(err, IntegrityError) or "already exists" in str(err)


def _shown(url: str) -> str:
    """The URL with its password masked, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except (SQLAlchemyError, ValueError):
        return url


def _direction(config: Config) -> str:
    return "minimize" if config.train.monitor.endswith("loss") else "maximize"


def _sampler(sweep: SweepConfig) -> optuna.samplers.BaseSampler:
    if sweep.method == "optuna":
        return optuna.samplers.TPESampler(seed=sweep.seed)
    return optuna.samplers.RandomSampler(seed=sweep.seed)


def _pruner(sweep: SweepConfig) -> optuna.pruners.BasePruner:
    return optuna.pruners.MedianPruner() if sweep.method == "optuna" and sweep.prune else optuna.pruners.NopPruner()


def _open_study(name: str, url: str, raw: dict[str, Any], config: Config) -> optuna.Study:
    """Create the study and queue its grid, or join it after checking it was started from the same config."""
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(url)
    sweep = config.sweep
    try:
        study = optuna.create_study(
            storage=storage, study_name=name, direction=_direction(config), sampler=_sampler(sweep), pruner=_pruner(sweep)
        )
    except DuplicatedStudyError:
        study = optuna.load_study(study_name=name, storage=storage, sampler=_sampler(sweep), pruner=_pruner(sweep))
        _wait_for(study, "config", f"sweep {name!r} was created but its config was never stored")
        if study.user_attrs["config"] != raw:
            raise TrillaError(
                f"sweep {name!r} in {url} was started from another config; keep that config to resume it, "
                "or give this one its own run.name or --dir"
            ) from None
        return study
    study.set_user_attr("config", raw)
    if sweep.method == "grid":
        for number, point in enumerate(grid_points(sweep)):
            study.enqueue_trial({}, user_attrs={"point": number, "label": point.label, "overrides": point.overrides})
    study.set_user_attr(_READY, True)
    return study


def _wait_for(study: optuna.Study, attr: str, failure: str, seconds: float = 600) -> None:
    """Until the process that created the study has stored `attr` (a worker joining at the same moment
    finds the study before its config and its grid are in)."""
    waited = time.monotonic()
    while not study.user_attrs.get(attr):
        if time.monotonic() - waited > seconds:
            raise TrillaError(failure)
        time.sleep(0.5)


def _worker_process(name: str, url: str, folder: Path, workers: int, level: int) -> None:
    """A spawned worker starts with bare logging: its lines get its process id, and Lightning's banners go."""
    handler = logging.StreamHandler()
    handler.setFormatter(logging.Formatter(f"%(levelname)s [worker {os.getpid()}] %(message)s"))
    logging.getLogger("trilla").addHandler(handler)
    logging.getLogger("trilla").setLevel(level)
    logging.getLogger("lightning.pytorch").setLevel(logging.WARNING)
    work(name, url, folder, workers)


class _Once(logging.Filter):
    """Lets each warning's text through once per worker: every trial loads the same data, and its
    skipped files and conflicts would otherwise be listed again for every trial."""

    def __init__(self):
        super().__init__()
        self.seen: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        if record.levelno != logging.WARNING or record.getMessage().startswith("trial "):
            return True
        text = record.getMessage()
        if text in self.seen:
            return False
        self.seen.add(text)
        return True


def work(name: str, url: str, folder: Path, workers: int) -> None:
    """One worker: claim trials and train them until the queue or a budget runs out."""
    once = _Once()
    logging.getLogger("trilla").addFilter(once)
    try:
        _work(name, url, folder, workers)
    finally:
        logging.getLogger("trilla").removeFilter(once)


def _work(name: str, url: str, folder: Path, workers: int) -> None:
    torch.set_num_threads(max(1, (os.cpu_count() or 1) // workers))
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = _storage(url)
    study = optuna.load_study(study_name=name, storage=storage)
    _wait_for(study, _READY, f"sweep {name!r} was created but its grid was never queued completely")
    raw = study.user_attrs["config"]
    config = validate_config(raw)
    sweep = config.sweep
    study.sampler, study.pruner = _sampler(sweep), _pruner(sweep)
    started = time.monotonic()
    while sweep.max_minutes is None or time.monotonic() - started < 60 * sweep.max_minutes:
        with _one_worker_at_a_time(storage, name):
            _reclaim_stale(study)
            if sweep.max_trials is not None and _used(study) >= sweep.max_trials:
                break
            trial = _claim(study, sweep)
        if trial is None:
            break
        _run_trial(study, trial, raw, config, folder, quiet=workers > 1)


def _used(study: optuna.Study) -> int:
    """Trials started so far; a stale trial and its reruns count once."""
    return len({t.system_attrs.get("failed_trial", t.number) for t in study.get_trials(deepcopy=False) if t.state != TrialState.WAITING})


def _one_worker_at_a_time(storage: RDBStorage, name: str) -> AbstractContextManager:
    """Counting the trials against max_trials and claiming or drawing the next one must be one step, or
    two workers both pass the count (a random sweep then overshoots) or both take one trial (Python's
    SQLite driver reads and writes a claim in separate steps). On SQLite, whose workers share one
    machine, a lock file next to the database; on PostgreSQL, whose workers may be on several, an
    advisory lock on the server, which it releases itself if the worker dies. Other databases get no lock:
    a grid is still claimed row by row, but a draw can overshoot max_trials by a trial per extra worker."""
    dialect = storage.engine.url.get_backend_name()
    if dialect == "postgresql":
        return _advisory_lock(storage, name)
    database = storage.engine.url.database if dialect == "sqlite" else None
    if not database or database == ":memory:":
        return nullcontext()
    return FileLock(f"{database}.lock")


@contextmanager
def _advisory_lock(storage: RDBStorage, name: str) -> Iterator[None]:
    key = int.from_bytes(hashlib.sha1(f"trilla sweep {name}".encode()).digest()[:8], "big", signed=True)
    with storage.engine.connect() as connection:
        connection.execute(text("SELECT pg_advisory_lock(:key)"), {"key": key})
        try:
            yield
        finally:
            connection.execute(text("SELECT pg_advisory_unlock(:key)"), {"key": key})


def _claim(study: optuna.Study, sweep: SweepConfig) -> optuna.Trial | None:
    """A queued trial (a grid point or a rerun), taken atomically; otherwise, except for a grid, a new draw."""
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.WAITING,)):
        claimed = study_storage.claim(study, frozen)
        if claimed is not None:
            return claimed
    if sweep.method == "grid":
        return None
    with warnings.catch_warnings():
        warnings.filterwarnings("ignore", message="Heartbeat of storage")  # trilla beats for its trials itself (_Heartbeat)
        return study.ask()


def _reclaim_stale(study: optuna.Study) -> None:
    """Fail and requeue RUNNING trials whose worker is gone: on this machine, a dead process id; elsewhere,
    a heartbeat older than the grace period (Optuna's own check)."""
    host = socket.gethostname()
    for frozen in study.get_trials(deepcopy=False, states=(TrialState.RUNNING,)):
        attrs = frozen.user_attrs
        if attrs.get("host") != host or _alive(attrs.get("pid")):
            continue
        if not study_storage.fail(study, frozen):
            continue  # another worker got there first
        log.warning("trial %s (%s) was left running by a dead worker; it is queued again", frozen.number, attrs.get("label"))
        study_storage.requeue(study, frozen)
    with quiet_experimental():
        fail_stale_trials(study)


def _alive(pid: Any) -> bool:
    if not isinstance(pid, int):
        return True  # not claimed by a trilla worker: leave it to the heartbeat
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process holds the number: alive
        return True
    return True


def _suggest(trial: optuna.Trial, key: str, space: list[Any] | SweepRange) -> Any:
    if isinstance(space, list):
        if all(v is None or isinstance(v, (bool, int, float, str)) for v in space):
            return trial.suggest_categorical(key, space)
        return space[trial.suggest_categorical(key, list(range(len(space))))]  # lists and mappings: drawn by index
    if space.integer:
        return trial.suggest_int(key, int(space.low), int(space.high), step=int(space.step or 1), log=space.log)
    return trial.suggest_float(key, space.low, space.high, log=space.log, step=space.step)


def _first(space: list[Any] | SweepRange) -> Any:
    """A value of the space, to check its key before any trial trains."""
    if isinstance(space, list):
        return space[0]
    return int(space.low) if space.integer else space.low


def _run_trial(study: optuna.Study, trial: optuna.Trial, raw: dict[str, Any], config: Config, folder: Path, quiet: bool) -> None:
    from trilla.training import train as training

    attrs = study_storage.user_attrs(study, trial)
    if "overrides" in attrs:
        overrides, label = attrs["overrides"], attrs["label"]
    else:
        overrides = {key: _suggest(trial, key, space) for key, space in config.sweep.parameters.items()}
        label = f"t{trial.number:03d}"
        trial.set_user_attr("overrides", overrides)
        trial.set_user_attr("label", label)
    trial.set_user_attr("host", socket.gethostname())
    trial.set_user_attr("pid", os.getpid())
    reporter = TrialReporter(trial, config.train.monitor)
    log.info("trial %s: %s", label, ", ".join(f"{k}={v}" for k, v in overrides.items()) or "the base config")
    with _Heartbeat(study, trial):
        try:
            previous = attrs.get("run_dir")
            if previous and runs.resumable(previous):
                run = training.resume(previous, callbacks=[reporter], progress=False if quiet else None)
            else:
                if previous and Path(previous).is_dir():  # killed before its first checkpoint: kept, marked, retrained
                    Run(previous).set_status(runs.ABANDONED)
                run = training.train(trial_config(raw, overrides, folder / "runs", label), callbacks=[reporter],
                                     progress=False if quiet else None)
        except Exception as err:  # noqa: BLE001  (recorded in the study; the sweep goes on)
            error = f"{type(err).__name__}: {err}"
            log.error("trial %s failed: %s", label, error)
            trial.set_user_attr("error", error)
            started = study_storage.user_attrs(study, trial).get("run_dir")
            if started:
                Run(started).set_status(runs.FAILED, error=error)
            study.tell(trial, state=TrialState.FAIL)
            return
    trial.set_user_attr("run_dir", str(run.path))
    if reporter.pruned:
        run.set_status(runs.PRUNED)
        study.tell(trial, state=TrialState.PRUNED)
        return
    metrics = run.metrics
    monitor = config.train.monitor
    value = metrics["min_val_loss"] if monitor == "val/loss" else metrics[monitor]
    study.tell(trial, value)
    tested = next((f", {key} {metrics[key]:.4f}" for key in ("test/accuracy", "test/mAP") if key in metrics), "")
    log.warning("trial %s finished: %s %.4f%s (%s)", label, monitor, value, tested, run.path)  # one line per trial, even with -q


class TrialReporter(L.Callback):
    """Files the run directory with its trial, reports the monitored metric after every validation and
    stops the Trainer (so the run still writes its report) when the pruner gives up on it."""

    def __init__(self, trial: optuna.Trial, monitor: str):
        self.trial, self.monitor, self.pruned = trial, monitor, False

    def on_fit_start(self, trainer, pl_module) -> None:
        self.trial.set_user_attr("run_dir", str(trainer.default_root_dir))

    def on_validation_end(self, trainer, pl_module) -> None:
        value = trainer.callback_metrics.get(self.monitor)
        if trainer.sanity_checking or value is None:
            return
        self.trial.report(float(value), trainer.current_epoch)
        if self.trial.should_prune():
            self.pruned = trainer.should_stop = True


class _Heartbeat:
    """Records the trial's heartbeat in the storage while it trains, so workers elsewhere see it alive."""

    def __init__(self, study: optuna.Study, trial: optuna.Trial):
        self.study, self.trial = study, trial
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._beat, daemon=True)

    def _beat(self) -> None:
        while True:
            study_storage.beat(self.study, self.trial)
            if self.stop.wait(HEARTBEAT_S):
                return

    def __enter__(self) -> _Heartbeat:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


def _counts(study: optuna.Study) -> dict[str, int]:
    return dict(Counter(trial.state.name.lower() for trial in study.get_trials(deepcopy=False)))
