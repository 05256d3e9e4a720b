"""Training callbacks beyond what Lightning ships."""

from __future__ import annotations

import time
from pathlib import Path

import lightning as L
import numpy as np
import pandas as pd
import torch
from lightning.fabric.utilities.seed import _collect_rng_states, _set_rng_states
from lightning.pytorch.callbacks import EarlyStopping, RichProgressBar, WeightAveraging

from trilla.atomic import write_csv
from trilla.errors import Diverged


class FiniteLoss(L.Callback):
    """Stops a run whose training loss is no longer a number: every later step would train on NaN, and
    the run would end with metrics and answers that are NaN. Checked once an epoch (a check per batch
    would wait for the GPU at every step)."""

    def __init__(self, lr: float):
        self.lr = lr
        self._finite = True

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self._finite = torch.isfinite(outputs["loss"].detach()).logical_and(torch.as_tensor(self._finite, device=pl_module.device))

    def on_validation_start(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or bool(self._finite):
            return
        raise self.diverged(trainer)

    def on_validation_end(self, trainer, pl_module) -> None:
        """The validation loss too: a run of one batch an epoch ends its only step on weights that are NaN."""
        loss = trainer.callback_metrics.get("val/loss")
        if not trainer.sanity_checking and loss is not None and not torch.isfinite(loss):
            raise self.diverged(trainer)

    def diverged(self, trainer) -> Diverged:
        return Diverged(f"training diverged: the loss became NaN or infinite in epoch {trainer.current_epoch + 1}. train.lr={self.lr:g} "
                        "is likely too large (or the data holds non-finite values): `trilla lr-find` suggests a learning rate; start a "
                        "new run with it")


class Patience(EarlyStopping):
    """Early stopping whose patience is the config's, also after a resume (Lightning's own takes the one
    saved in the checkpoint, so an edited train.early_stopping would be ignored)."""

    def load_state_dict(self, state_dict: dict) -> None:
        super().load_state_dict({**state_dict, "patience": self.patience})


class History(L.Callback):
    """Writes history.csv after every validation: losses, accuracies (or macro mAP), learning rate and elapsed times.

    It records at validation end, before ModelCheckpoint saves, so a checkpoint carries the history up to
    and including its own epoch and a resumed run continues the same table and the same clock.
    """

    def __init__(self, path: Path):
        self.path = Path(path)
        self.rows: list[dict] = []
        self.train_time_s = 0.0
        self.elapsed_s = 0.0
        self.samples = 0
        self._epoch_start = self._train_start = 0.0
        self._loss_sum = self._correct = self._count = 0.0

    def state_dict(self) -> dict:
        return {"rows": self.rows, "train_time_s": self.train_time_s, "elapsed_s": self.elapsed_s, "samples": self.samples}

    def load_state_dict(self, state: dict) -> None:
        self.rows = list(state["rows"])
        self.train_time_s, self.elapsed_s, self.samples = state["train_time_s"], state["elapsed_s"], state["samples"]

    def on_train_epoch_start(self, trainer, pl_module) -> None:
        self._epoch_start = self._train_start = time.perf_counter()
        self._loss_sum = self._correct = self._count = 0.0

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        # Tensors accumulate on the device; converting every step would force a GPU sync per batch.
        count = outputs["count"]
        self._loss_sum = self._loss_sum + outputs["loss"].detach() * count
        self._correct = self._correct + outputs["correct"]
        self._count += count

    def on_validation_start(self, trainer, pl_module) -> None:
        if not trainer.sanity_checking and self._count:
            self.train_time_s += time.perf_counter() - self._train_start
            sums = torch.stack([torch.as_tensor(v, dtype=torch.float64, device=pl_module.device) for v in (self._loss_sum, self._correct, self._count)])
            self._loss_sum, self._correct, self._count = trainer.strategy.reduce(sums, reduce_op="sum").tolist()  # over all processes
            self.samples += int(self._count)

    def on_validation_end(self, trainer, pl_module) -> None:
        if trainer.sanity_checking or not self._count:
            return
        self.elapsed_s += time.perf_counter() - self._epoch_start
        metrics = trainer.callback_metrics
        row = {
            "epoch": trainer.current_epoch + 1,
            "train/loss": float(self._loss_sum) / self._count,
            "train/accuracy": float(self._correct) / self._count,
            **{key: float(metrics[key]) for key in ("val/loss", "val/accuracy", "val/balanced_accuracy", "val/mAP") if key in metrics},
            "lr": trainer.optimizers[0].param_groups[0]["lr"],
            "elapsed_s": self.elapsed_s,
        }
        self.rows.append(row)
        if trainer.is_global_zero:
            write_csv(self.path, pd.DataFrame(self.rows))
            if trainer.logger is not None:  # TensorBoard: the epoch's exact training loss and accuracy, and the rate
                trainer.logger.log_metrics(
                    {"train/epoch_loss": row["train/loss"], "train/accuracy": row["train/accuracy"], "lr": row["lr"]}, step=trainer.global_step
                )

    @property
    def samples_per_s(self) -> float:
        return self.samples / self.train_time_s if self.train_time_s else 0.0


class RngState(L.Callback):
    """Carries the global RNG states in every checkpoint, so dropout after a resume draws what it would
    have drawn without the interruption (Lightning seeds at start but does not checkpoint RNG states)."""

    def state_dict(self) -> dict:
        state = _collect_rng_states(include_cuda=False)
        name, keys, *rest = state["numpy"]
        state["numpy"] = (name, keys.tolist(), *rest)  # plain lists keep checkpoints loadable with weights_only
        return state

    def load_state_dict(self, state: dict) -> None:
        name, keys, *rest = state["numpy"]
        _set_rng_states({**state, "numpy": (name, np.asarray(keys, dtype=np.uint32), *rest)})


def warmup_ema(decay: float):
    """An AveragedModel `multi_avg_fn`: an EMA whose decay ramps up as min(decay, (1 + n) / (10 + n)).

    timm's ModelEmaV3 warms up the same way. Without it, a short run (a few hundred steps at 0.99) would
    validate and save weights that are still mostly the random initialization.
    """

    def update(averaged: list[torch.Tensor], current: list[torch.Tensor], num_averaged: torch.Tensor) -> None:
        if not averaged[0].is_floating_point():
            torch._foreach_copy_(averaged, current)
            return
        n = float(num_averaged)
        torch._foreach_lerp_(averaged, current, 1.0 - min(decay, (1.0 + n) / (10.0 + n)))

    return update


class WarmupEMA(WeightAveraging):
    """Lightning's weight averaging (validation and checkpoints use the average) with `warmup_ema`."""

    def __init__(self, decay: float):
        super().__init__(use_buffers=True, multi_avg_fn=warmup_ema(decay))


class EpochBar(RichProgressBar):
    """Lightning's progress bar, counting epochs from 1 to `max_epochs` as history.csv and the report do
    (Lightning's own shows 0 to max_epochs - 1), and from the second epoch on saying about how long the
    rest of the run takes: a step budget can plan hundreds of epochs on a small folder, and Lightning's bar
    times only the current one. Overrides the bar's description method, which is private in Lightning:
    its name is checked by a test."""

    def __init__(self, **kwargs) -> None:
        super().__init__(**kwargs)
        self._began: tuple[float, int] | None = None  # when and at which epoch this fit started (a resume starts late)

    def on_train_start(self, trainer: L.Trainer, pl_module: L.LightningModule) -> None:
        super().on_train_start(trainer, pl_module)
        self._began = (time.monotonic(), trainer.current_epoch)

    def _get_train_description(self, current_epoch: int) -> str:
        max_epochs = self.trainer.max_epochs
        description = f"Epoch {current_epoch + 1}" + (f"/{max_epochs}" if max_epochs is not None else "")
        if self._began is not None and max_epochs is not None and max_epochs > current_epoch > self._began[1]:
            seconds = (time.monotonic() - self._began[0]) / (current_epoch - self._began[1]) * (max_epochs - current_epoch)
            description += f", about {_minutes(seconds)} left"
        return f"{description:{len(self.validation_description)}}" if len(self.validation_description) > len(description) else description


def _minutes(seconds: float) -> str:
    minutes = round(seconds / 60)
    if minutes < 1:
        return "a minute or less"
    return f"{minutes} min" if minutes < 120 else f"{minutes // 60} h {minutes % 60:02d} min"
