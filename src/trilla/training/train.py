"""`train(config) -> Run` and `resume(run) -> Run`: data, model, Lightning Trainer, then the run's record.

The Trainer owns the loop, checkpoints (written atomically by Lightning through an fsspec transaction),
early stopping and logging; this module only wires them to the run directory and writes what the run
contract promises once training ends.
"""

from __future__ import annotations

import logging
import os
import platform
import sys
import warnings
from contextlib import contextmanager
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.loggers import TensorBoardLogger

from trilla import runs
from trilla.checkpoints import load_checkpoint
from trilla.config import MAX_EPOCHS, Config, TrainConfig
from trilla.data.datamodule import StoreDataModule
from trilla.data.features import model_features
from trilla.errors import Diverged, TrillaError
from trilla.evaluation.evaluate import evaluate_split, predict_positions
from trilla.evaluation.plots import plot_class_counts, plot_curves
from trilla.evaluation.report import render_report
from trilla.evaluation.show import example_grid
from trilla.kinds import input_kind
from trilla.metrics import near_baseline, tune_thresholds
from trilla.predict import default_device
from trilla.runs import Run
from trilla.tasks import ClassificationTask, load_task
from trilla.training import distributed
from trilla.training.callbacks import EpochBar, FiniteLoss, History, Patience, RngState, WarmupEMA
from trilla.training.checkpoint_io import AtomicCheckpointIO
from trilla.version import __version__

log = logging.getLogger("trilla")


def train(config: Config, callbacks: list[L.Callback] | tuple = (), progress: bool | None = None) -> Run:
    """Train a model as `config` says and return its finished run."""
    config, datamodule, task, progress = prepare_training(config, progress)
    path = distributed.shared(lambda: _start_run(config, datamodule, task), handoff=config.train.strategy == "ddp")
    return _fit(Run(path), datamodule, task, list(callbacks), progress, ckpt_path=None)


def prepare_training(config: Config, progress: bool | None = None) -> tuple[Config, StoreDataModule, ClassificationTask, bool]:
    """What a training starts from: the config with its `auto` settings decided and paths made
    absolute, the data listed, packed and split, and the untrained task (also what lr-find and
    show-batch look at, without a run directory)."""
    config = config.model_copy(deep=True)
    if config.train.ema == "auto":
        config.train.ema = config.model.default_ema()
    if config.train.optimizer == "auto":
        config.train.optimizer = config.model.default_optimizer()
    progress = config.train.progress if progress is None else progress
    for key in ("path", "test_path", "store"):
        value = getattr(config.data, key)
        if value is not None:
            setattr(config.data, key, Path(value).expanduser().resolve())
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    distributed.join(config.train.accelerator)
    datamodule = StoreDataModule(config, progress, default_device(config.train.accelerator))
    with distributed.first_alone():
        datamodule.prepare()
    config.train.epochs = planned_epochs(config.train, len(datamodule.splits["train"]))
    data = datamodule.data
    mean, std = config.model.normalization(data.input_spec()) or datamodule.normalization()
    weights_from = config.model.run_weights()
    task = ClassificationTask(
        model=config.model.model_dump(mode="json"),
        input_spec=data.input_spec(),
        objective=config.objective,
        classes=data.classes,
        mean=mean,
        std=std,
        train=config.train.model_dump(mode="json"),
        class_weights=datamodule.class_weights() if config.train.imbalance == "class_weights" else None,
        metadata=data.vocab,
        initial_state=runs.checkpoint_state(weights_from) if weights_from else None,
    )
    return config, datamodule, task, progress


def planned_epochs(cfg: TrainConfig, train_size: int) -> int:
    """`cfg.epochs`, raised to reach `cfg.min_steps` optimizer steps on `train_size` training examples.

    A recipe tuned at one data size keeps its number of updates on less data (issue 23: 20 epochs are
    about 3840 steps at 900 clips per family but 440 at 100, too few for the recipe to fit)."""
    if cfg.min_steps is None:
        return cfg.epochs
    per_epoch = max(1, -(-train_size // cfg.batch_size))
    epochs = max(cfg.epochs, -(-cfg.min_steps // per_epoch))
    if epochs > MAX_EPOCHS:
        raise TrillaError(f"train.min_steps {cfg.min_steps} needs {epochs} epochs of {per_epoch} batch(es) on {train_size} training examples, "
                          f"more than {MAX_EPOCHS}: lower train.min_steps")
    if epochs != cfg.epochs:
        log.info("train.min_steps %d: %d epochs of %d batch(es) instead of %d (for a quick trial set train.epochs, which drops the budget)",
                 cfg.min_steps, epochs, per_epoch, cfg.epochs)
    return epochs


def _start_run(config: Config, datamodule: StoreDataModule, task: ClassificationTask) -> Path:
    """A new run directory with what it holds before training: the resolved config, classes, split counts
    and records, and run.json (versions, data fingerprint, model summary)."""
    data = datamodule.data
    run = Run.create(Path(config.run.dir), config.run.name or Path(config.data.path).stem, config)
    run.write_json(runs.CLASSES, data.classes)
    counts = datamodule.counts()
    run.write_csv(runs.COUNTS, counts, index=True)
    plot_class_counts(counts.drop(columns="total"), run.path / "class_counts.png")
    log.info("class counts per split:\n%s", counts.to_string() if len(counts) <= 20 else summarize_counts(counts))
    _write_data_records(run, datamodule)
    train_strata = data.strata[datamodule.splits["train"]]
    run.start({
        "command": " ".join(sys.argv),
        "versions": _versions(),
        "model_summary": config.model.summary(len(data.classes)),
        "parameters": sum(p.numel() for p in task.model.parameters()),
        "majority_class": int(np.bincount(train_strata, minlength=len(data.groups)).argmax()),
        "data": {
            "path": str(config.data.path),
            "test_path": str(config.data.test_path) if config.data.test_path else None,
            "fingerprint": data.fingerprint,
            "store": str(data.store.root) if data.store is not None else None,
            "store_reused": data.store.reused if data.store is not None else None,
            "samples": int(len(data.targets)),
            "input": data.input_spec(),
            **input_kind(data.kind).record(data),
            "skipped": len(data.problems) + (len(datamodule.test_data.problems) if datamodule.test_data else 0),
            "conflicts": int(data.conflicts["sha1"].nunique()),
            "duplicates_merged": len(data.merged) if data.merged is not None else 0,
            **({"groups_per_split": {name: len(set(data.split_groups[positions])) for name, positions in datamodule.splits.items()}}
               if data.split_groups is not None else {}),
        },
    })
    return run.path


@contextmanager
def quiet_lightning():
    """Lightning's info lines (accelerators available, a tip for its cloud logger, loader estimates) off
    while the block runs, in the CLI and the Python API alike; its warnings stay."""
    logger = logging.getLogger("lightning.pytorch.utilities.rank_zero")
    level = logger.level
    logger.setLevel(max(level, logging.WARNING))
    try:
        yield
    finally:
        logger.setLevel(level)


def summarize_counts(counts: pd.DataFrame) -> str:
    """A class-count table too long for a console, in one line per split (the whole is in counts.csv)."""
    lines = [f"{len(counts)} classes (all in counts.csv):"]
    for split in counts.columns:
        column = counts[split]
        lines.append(f"  {split}: {int(column.sum())} files, {int(column.min())} to {int(column.max())} per class"
                     + (f", {int((column == 0).sum())} classes with none" if (column == 0).any() else ""))
    return "\n".join(lines)


def resume(run_path: str | Path, callbacks: list[L.Callback] | tuple = (), progress: bool | None = None) -> Run:
    """Continue an interrupted run from its last checkpoint, in its own directory."""
    run = Run(run_path)
    if run.status == runs.FINISHED:
        raise TrillaError(f"run {run.path} already finished; start a new one with trilla train")
    if run.status == runs.RUNNING and run.info.get("pid") != os.getpid():  # this process: a training that raised
        raise TrillaError(f"run {run.path} is still running (process {run.info.get('pid')} on {run.info.get('host')}); stop it first")
    if run.status == runs.FAILED and not run.info.get("resumable", True):
        raise TrillaError(f"run {run.path} cannot be resumed, it would fail the same way: {run.info.get('error')}")
    last = run.checkpoint("last")
    saved = load_checkpoint(last)  # a damaged checkpoint is told before the data is prepared
    log.info("resuming %s after epoch %d of %d", run.id, int(saved.get("epoch", 0)) + 1, run.config.train.epochs)
    config = run.config
    task = load_task(last)
    _check_edits(run, config, task)
    progress = config.train.progress if progress is None else progress
    L.seed_everything(config.train.seed, workers=True, verbose=False)
    datamodule = StoreDataModule(config, progress, default_device(config.train.accelerator))
    datamodule.prepare()
    if datamodule.data.fingerprint != run.record["data"]["fingerprint"]:
        raise TrillaError(f"the data in {config.data.path} changed since run {run.id} started; it cannot be resumed")
    return _fit(run, datamodule, task, list(callbacks), progress, ckpt_path=last)


RESUMABLE_EDITS = ("train.epochs", "train.early_stopping", "train.progress")  # what a resume honours (the schedule re-planned)


def _check_edits(run: Run, config: Config, task: ClassificationTask) -> None:
    """Refuse a resume whose config.yaml was edited where the run cannot follow: a changed network or
    data would meet weights and a store of another shape, or be ignored. Compared with the config the
    run started from (run.json), or for runs written before it was kept there, with the checkpoint's
    model and training settings."""
    started = run.info.get("config") or {"model": task.hparams["model"], "train": task.hparams["train"]}
    now = config.model_dump(mode="json")
    changed = {key: (old, flat(now).get(key)) for key, old in flat(started).items() if flat(now).get(key) != old}
    changed |= {key: (None, new) for key, new in flat(now).items() if key.split(".")[0] in started and key not in flat(started)}
    refused = {key: change for key, change in changed.items() if key not in RESUMABLE_EDITS}
    if refused:
        edits = ", ".join(f"{key} ({old!r} -> {new!r})" for key, (old, new) in sorted(refused.items()))
        raise TrillaError(f"{run.path / runs.CONFIG} was edited since the run started: {edits}. A resume cannot change the network, "
                          f"the data or the optimizer (only {', '.join(RESUMABLE_EDITS)}): put those values back, or start a new run "
                          f"with the edited config: trilla train {run.path / runs.CONFIG}")
    for key, (old, new) in sorted(changed.items()):
        log.info("resuming with %s = %r (it was %r)", key, new, old)


def flat(tree: dict, prefix: str = "") -> dict:
    """A nested config as dotted keys: {'train.lr': 0.001, ...}."""
    out = {}
    for key, value in tree.items():
        if isinstance(value, dict) and value:
            out.update(flat(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def _fit(run: Run, datamodule: StoreDataModule, task: ClassificationTask, callbacks: list, progress: bool, ckpt_path) -> Run:
    cfg = run.config.train
    if cfg.feature_cache and run.config.augment is None and run.config.model.frozen_features():
        datamodule.features = model_features(datamodule.data.store, task, default_device(cfg.accelerator), progress)
        run.write_json(runs.INFO, {**run.info, "feature_cache": str(datamodule.features.filename)})
    mode = "min" if cfg.monitor.endswith("loss") else "max"
    history = History(run.path / runs.HISTORY)
    best = ModelCheckpoint(
        dirpath=run.path / runs.CHECKPOINTS, filename="best", monitor=cfg.monitor, mode=mode,
        save_top_k=1, auto_insert_metric_name=False, enable_version_counter=False,
    )
    # Not save_last: Lightning copies to last.ckpt only the epochs that become the best, so a resume
    # would go back to the best epoch and redo every one since.
    last = ModelCheckpoint(
        dirpath=run.path / runs.CHECKPOINTS, filename="last", monitor=None, save_top_k=1, enable_version_counter=False,
    )
    callbacks = [FiniteLoss(cfg.lr), history, RngState(), best, last, *([EpochBar()] if progress else []), *callbacks]
    if cfg.ema:
        callbacks.append(WarmupEMA(decay=cfg.ema))
    if cfg.early_stopping:
        callbacks.append(Patience(monitor=cfg.monitor, mode=mode, patience=cfg.early_stopping))
    with quiet_lightning():  # Lightning's accelerator banners and tips, at construction and at fit
        trainer = L.Trainer(
            max_epochs=cfg.epochs,
            accelerator=cfg.accelerator,
            devices=cfg.devices,
            strategy=cfg.strategy,
            num_nodes=cfg.num_nodes,
            use_distributed_sampler=False,  # EpochSampler shards training itself; every process validates all of val
            precision=cfg.precision,
            callbacks=callbacks,
            plugins=[AtomicCheckpointIO()],
            logger=TensorBoardLogger(run.path, name="tensorboard", version="", default_hp_metric=False),  # real metrics at the end
            default_root_dir=run.path,
            num_sanity_val_steps=0,
            enable_model_summary=False,
            enable_progress_bar=progress,
            log_every_n_steps=max(1, min(10, len(datamodule.splits["train"]) // cfg.batch_size)),
        )
        if trainer.is_global_zero:
            run.set_status(runs.RUNNING)
        try:
            with warnings.catch_warnings():
                warnings.filterwarnings("ignore", message=".*exists and is not empty.*")  # resuming into the run
                warnings.filterwarnings("ignore", message=".*LeafSpec.*")  # Lightning internals vs torch 2.14
                warnings.filterwarnings("ignore", message=".*does not have many workers.*")  # the store is fast
                warnings.filterwarnings("ignore", message=".*module\\(s\\) in eval mode.*")  # frozen batch norm, on purpose
                warnings.filterwarnings("ignore", message=".*IterableDataset.*has `__len__`.*")  # the HDF5 stream runs in-process
                trainer.fit(task, datamodule=datamodule, ckpt_path=ckpt_path, weights_only=True)
        except BaseException as err:
            failed = isinstance(err, Exception)  # an error, rather than Ctrl+C, a signal or an exit
            if trainer.is_global_zero:
                try:
                    run.set_status(runs.FAILED, error=_said(err), resumable=not isinstance(err, Diverged)) if failed else run.set_status(runs.INTERRUPTED)
                except (TrillaError, OSError) as status_err:  # the disk that failed the run may refuse run.json too
                    log.warning("could not record the run's status (%s); trilla runs shows it as interrupted", status_err)
            if not isinstance(err, Diverged):
                log.error("training %s (%s); continue it with: trilla train --resume %s", "failed" if failed else "stopped", type(err).__name__, run.path)
            raise
    if not trainer.is_global_zero:
        return run
    try:
        _finish(run, datamodule, history, trainer.logger)
    except Exception as err:
        run.set_status(runs.FAILED, error=_said(err))  # resumable: the epochs are done, a resume finishes again
        raise
    return run


def _said(err: Exception) -> str:
    """An error as run.json keeps it: trilla's own message as it is, others with their type."""
    return str(err) if isinstance(err, TrillaError) else f"{type(err).__name__}: {err}"


def _finish(run: Run, datamodule: StoreDataModule, history: History, logger=None) -> None:
    cfg = run.config.train
    frame = pd.DataFrame(history.rows)
    best = frame[cfg.monitor].idxmin() if cfg.monitor.endswith("loss") else frame[cfg.monitor].idxmax()
    metrics = {
        "best_epoch": int(frame.loc[best, "epoch"]),
        "epochs": int(frame["epoch"].iloc[-1]),
        "min_val_loss": float(frame["val/loss"].min()),
        **{key: float(frame.loc[best, key]) for key in ("val/accuracy", "val/balanced_accuracy", "val/mAP") if key in frame},
        "time_to_best_s": float(frame.loc[best, "elapsed_s"]),
        "train_time_s": float(history.elapsed_s),
        "train_samples_per_s": history.samples_per_s,
        "stopped_early": bool(int(frame["epoch"].iloc[-1]) < cfg.epochs),
    }
    tta = run.config.augment.tta if run.config.augment else 0
    predictor = run.predictor(default_device(cfg.accelerator), tta=tta)
    known = {}
    if predictor.objective.tunes_thresholds:
        known["val"] = _tune_thresholds(run, predictor, *datamodule.split_data("val"))
    splits = [("val", run.path / "val"), ("test", run.path)]
    if run.config.data.targets:  # the study plotted the training clips on the plane too
        splits.insert(0, ("train", run.path / "train"))
    for split, folder in splits:
        found = datamodule.split_data(split)
        if found:
            metrics.update(evaluate_split(
                predictor, *found, run.record["majority_class"], folder, prefix=split, data_cfg=run.config.data, outputs=known.get(split)
            ))
    run.write_json(runs.METRICS, metrics)
    acc, base = metrics.get("test/accuracy"), metrics.get("test/majority_baseline")
    if acc is not None and near_baseline(acc, base):  # said where the person looks, not only in the report
        log.warning("test accuracy %.2f%% is no better than the majority baseline %.2f%% (always answering the most frequent "
                    "class): the model has probably learned nothing. Look at curves.png (a flat loss?), try another learning "
                    "rate (trilla lr-find), and for sounds check input.seconds against the clips' length", 100 * acc, 100 * base)
    plot_curves(frame, run.path / "curves.png", best_epoch=metrics["best_epoch"])
    example_grid(run.config, datamodule, run.path / "examples.png")
    if logger is not None:
        _log_tensorboard(run, logger, metrics)
    run.set_status(runs.FINISHED)
    render_report(run)


def _log_tensorboard(run: Run, logger: TensorBoardLogger, metrics: dict) -> None:
    """What the TensorBoard of a run shows beyond the curves: the HParams tab with the run's settings
    and its real results (the best monitored value and every test metric, where Lightning would write a
    -1 placeholder), the test metrics as scalars, and the run's pictures (confusion matrix, worst
    predicted, training examples, class counts)."""
    from PIL import Image

    from trilla.evaluation.results import flatten

    monitor = run.config.train.monitor
    best = {f"hp/{monitor.replace('/', '_')}_best": metrics.get("min_val_loss") if monitor == "val/loss" else metrics.get(monitor)}
    results = {**best, **{f"hp/{key.replace('/', '_')}": value for key, value in metrics.items()
                          if key.startswith("test/") and isinstance(value, (int, float))}}
    settings = {key: value if isinstance(value, (int, float, str, bool)) else str(value)
                for key, value in flatten(run.config.model_dump(mode="json")).items() if value is not None}
    logger.log_hyperparams(settings, {key: float(value) for key, value in results.items() if value is not None})
    for name in ("confusion_matrix", "worst", "examples", "class_counts", "average_precision"):
        if run.has(f"{name}.png"):
            with Image.open(run.path / f"{name}.png") as picture:
                logger.experiment.add_image(name, np.asarray(picture.convert("RGB")), dataformats="HWC")
    logger.experiment.flush()


def _tune_thresholds(run: Run, predictor, data, positions: np.ndarray) -> np.ndarray:
    """thresholds.json: per class, the probability above which the label is predicted, chosen for the
    best F1 on the validation split (never on test); the predictor takes them at once. Returns the
    validation outputs, which the validation report then reuses."""
    outputs = predict_positions(predictor, data, positions)
    predictor.thresholds = tune_thresholds(data.targets[positions], outputs)
    run.write_json(runs.THRESHOLDS, dict(zip(data.classes, predictor.thresholds.tolist())))
    return outputs


def _write_data_records(run: Run, datamodule: StoreDataModule) -> None:
    """splits.csv (what each file was used for), skipped.csv and conflicts.csv, for people and tools."""
    data = datamodule.data
    frames = []
    for name in ("train", "val", "test"):
        found = datamodule.split_data(name)
        if found:
            source, positions = found
            labels = datamodule.objective.split_labels(source.targets[positions], source.strata[positions], source.groups, source.classes)
            frames.append(pd.DataFrame({"path": [source.paths[p] for p in positions], "label": labels, "split": name}))
    run.write_csv(runs.SPLITS, pd.concat(frames))
    problems = data.problems + (datamodule.test_data.problems if datamodule.test_data else [])
    run.write_csv(runs.SKIPPED, pd.DataFrame([vars(p) for p in problems], columns=["path", "reason"]))
    run.write_csv(runs.CONFLICTS, data.conflicts)
    run.write_csv(runs.DUPLICATES, data.merged if data.merged is not None else pd.DataFrame(columns=["path", "kept"]))
    run.write_csv(runs.NOTES, pd.DataFrame([vars(p) for p in data.notes or []], columns=["path", "reason"]).rename(columns={"reason": "note"}))


def _versions() -> dict[str, str]:
    import lightning
    import timm
    import torchvision

    return {
        "trilla": __version__,
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "lightning": lightning.__version__,
        "timm": timm.__version__,
        "numpy": np.__version__,
        "platform": platform.platform(),
    }
