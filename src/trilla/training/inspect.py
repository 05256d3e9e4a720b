"""Looking at a config before training on it: Lightning's learning-rate finder, and a batch of
training examples as the augmentation leaves them (fastai's `lr_find` and `show_batch`).

Both build what a training would (the data packed and split, the untrained model) and write their
plot into a folder of their own; no run directory is made.
"""

from __future__ import annotations

import warnings
from pathlib import Path

import lightning as L

from trilla.config import Config
from trilla.errors import TrillaError
from trilla.evaluation.show import example_grid
from trilla.figures import save_figure
from trilla.paths import free_path


def lr_find(config: Config, out: Path, min_lr: float = 1e-6, max_lr: float = 1.0, steps: int = 100) -> tuple[float | None, Path]:
    """Lightning's range test (Smith 2015): the learning rate grows exponentially over `steps` training
    batches while the loss is recorded; returns the suggested rate (steepest descent of the loss) and
    the plot. The weights are restored afterwards; nothing is saved."""
    from lightning.pytorch.tuner import Tuner

    from trilla.training.train import prepare_training, quiet_lightning

    config, datamodule, task, _ = prepare_training(config, progress=False)
    task.hparams.train["schedule"] = "constant"  # the finder drives the rate itself, and stops after `steps` batches
    with quiet_lightning():
        trainer = L.Trainer(
            max_epochs=10_000, accelerator=config.train.accelerator, devices=1, logger=False, enable_checkpointing=False,
            enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0, default_root_dir=str(out),
        )
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*does not have many workers.*")
            finder = Tuner(trainer).lr_find(task, datamodule=datamodule, min_lr=min_lr, max_lr=max_lr, num_training=steps,
                                            early_stop_threshold=None, update_attr=False)
    if finder is None:
        raise TrillaError("the learning-rate finder found nothing to record (no training batches?)")
    suggestion = finder.suggestion()
    out.mkdir(parents=True, exist_ok=True)
    figure = finder.plot(suggest=suggestion is not None, show=False)
    figure.axes[0].set_title(f"learning-rate range test: suggested {suggestion:.2g}" if suggestion else "learning-rate range test")
    path = free_path(out / "lr_find.png")
    save_figure(figure, path, dpi=110)
    return suggestion, path


def show_batch(config: Config, out: Path, count: int = 16, seed: int = 0) -> Path:
    """A grid of `count` training examples after the run's augmentation (pictures, or spectrograms of
    sound), each captioned with its label: what the model is shown, to judge the augmentation by."""
    from trilla.training.train import prepare_training

    config, datamodule, _, _ = prepare_training(config, progress=False)
    out.mkdir(parents=True, exist_ok=True)
    drawn = example_grid(config, datamodule, free_path(out / "show_batch.png"), count, seed)
    if drawn is None:
        raise TrillaError(f"show-batch shows pictures or spectrograms; input type {config.input.type} has nothing to look at")
    return drawn
