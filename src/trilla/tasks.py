"""LightningModules holding only the step logic; the Trainer owns the loop.

The task receives uint8 images or decibel spectrograms and normalizes them itself with the statistics
the model expects (the training set's per channel or frequency bin, or a pretrained backbone's), which
are saved with its hyperparameters together with the metadata vocabularies, so a checkpoint alone is
enough to predict exactly as in training.

A batch is a dict: `image` (uint8 NCHW), `spectrogram` (float N, frames, bins, with `lengths` in
frames when clips keep their own length) or `features` (pooled backbone features from the feature
cache), `metadata` (int64 codes, one column per field) when the run fuses metadata, and `target`.
What is predicted (one class, several labels, values on the plane) is the run's objective
(trilla.objectives), named in the hyperparameters: the task asks it for the loss, the outputs and the
validation metrics. `embeddings` batches (AudioSet's per-second vectors) come with `lengths` in seconds.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from torchmetrics.classification import MulticlassAccuracy

from trilla.checkpoints import reading_checkpoint
from trilla.errors import TrillaError
from trilla.kinds import input_kind
from trilla.models import InputSpec, build, params_class
from trilla.objectives import objective as objective_named

# Fused kernels (one pass over all parameters) where torch has them: with fused Adam the AudioSet MLP
# trains 11% faster on 2 CPU cores (benchmarks/results/embedding_train_speed.md).
OPTIMIZERS = {
    "sgd": lambda params, cfg, fused: torch.optim.SGD(params, lr=cfg["lr"], momentum=cfg["momentum"], weight_decay=cfg["weight_decay"], fused=fused),
    "adam": lambda params, cfg, fused: torch.optim.Adam(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=fused),
    "adamw": lambda params, cfg, fused: torch.optim.AdamW(params, lr=cfg["lr"], weight_decay=cfg["weight_decay"], fused=fused),
    # Keras' RMSprop (rho 0.9, epsilon 1e-7, no momentum), the music study's optimizer; torch has no fused one.
    "rmsprop": lambda params, cfg, fused: torch.optim.RMSprop(
        params, lr=cfg["lr"], alpha=0.9, eps=1e-7, weight_decay=cfg["weight_decay"], foreach=fused or None
    ),
}


class ClassificationTask(L.LightningModule):
    def __init__(
        self,
        model: dict[str, Any],
        input_spec: dict[str, int],
        classes: list[str],
        mean: list[float],
        std: list[float],
        train: dict[str, Any],
        class_weights: list[float] | None = None,
        metadata: dict[str, list[str]] | None = None,
        objective: str = "classification",
        load_weights: bool = True,
        initial_state: dict | None = None,
    ):
        """`initial_state`: the state dict of the run that `model.pretrained` names, read by the caller."""
        super().__init__()
        self.save_hyperparameters(ignore=["load_weights", "initial_state"])
        fields = tuple(len(v) + 1 for v in (metadata or {}).values())
        spec = InputSpec(**input_spec, metadata=fields)
        self.model = build(params_class(model["name"]).model_validate(model), spec, len(classes), load_weights, initial_state)
        kind = input_kind(spec.kind)
        self.input_key = kind.key
        shape, scale = kind.norm_layout(len(mean))
        self.register_buffer("mean", torch.tensor(mean).view(shape) * scale, persistent=False)
        self.register_buffer("std", torch.tensor(std).view(shape) * scale, persistent=False)
        self.objective = objective_named(objective)
        self.val_outputs: list[torch.Tensor] = []  # what an objective scoring the whole split keeps (see validation_end)
        self.val_targets: list[torch.Tensor] = []
        self.loss, self.val_loss = self.objective.losses(class_weights, train["label_smoothing"])
        self.val_accuracy = MulticlassAccuracy(max(2, len(classes)), average="micro")
        self.val_balanced = MulticlassAccuracy(max(2, len(classes)), average="macro")

    def normalize(self, inputs: torch.Tensor) -> torch.Tensor:
        return (inputs.float() - self.mean) / self.std

    def forward(self, inputs: torch.Tensor, metadata: torch.Tensor | None = None, lengths: torch.Tensor | None = None) -> torch.Tensor:
        if lengths is None:
            return self.model(self.normalize(inputs), metadata)
        return self.model(self.normalize(inputs), metadata, lengths)

    def logits(self, batch: dict[str, torch.Tensor]) -> torch.Tensor:
        if "features" in batch:
            return self.model.forward_head(batch["features"], batch.get("metadata"))
        return self(batch[self.input_key], batch.get("metadata"), batch.get("lengths"))

    def outputs(self, logits: torch.Tensor) -> torch.Tensor:
        """What a prediction is, as the objective says: class probabilities, scores per label, or values."""
        return self.objective.outputs(logits)

    def on_train_epoch_start(self) -> None:
        thaw = getattr(self.model, "thaw", None)
        if thaw is not None:
            thaw(self.current_epoch)

    def training_step(self, batch, batch_idx):
        targets = self.objective.batch_targets(batch["target"])
        alpha = self.hparams.train.get("mixup", 0.0)
        if alpha:
            share = float(torch.distributions.Beta(alpha, alpha).sample())
            order = torch.randperm(len(targets), device=targets.device)
            logits = self.logits(_mix(batch, order, share, ("features", self.input_key)))
            loss = self.objective.mixed_loss(self.loss, logits, targets, order, share)
        else:
            logits = self.logits(batch)
            loss = self.loss(logits, targets)
        if self._logged_step():
            self.log("train/loss", loss, prog_bar=True, batch_size=len(targets))
        return {"loss": loss, "correct": self.objective.hits(logits, targets).sum().detach(), "count": len(targets)}

    def _logged_step(self) -> bool:
        """Whether the logger writes this step. Only those steps log the training loss: every self.log costs
        Lightning about a millisecond (it deep-copies its metadata), some 5% of the AudioSet MLP's 18-ms step
        on 2 cores, and History keeps the exact epoch mean anyway."""
        trainer = self._trainer
        return trainer is not None and trainer.log_every_n_steps > 0 and (trainer.global_step + 1) % trainer.log_every_n_steps == 0

    def validation_step(self, batch, batch_idx):
        targets = self.objective.batch_targets(batch["target"])
        logits = self.logits(batch)
        self.log("val/loss", self.val_loss(logits, targets), prog_bar=True, on_epoch=True, batch_size=len(targets), sync_dist=True)
        self.objective.validate(self, logits, targets)

    def on_validation_epoch_end(self) -> None:
        self.objective.validation_end(self)

    def on_train_start(self) -> None:
        """A resumed run's schedule, re-planned for its steps: the scheduler restored from the checkpoint
        counts the steps the run had when it started, and a resume with more epochs would step past its end."""
        total = int(self.trainer.estimated_stepping_batches)
        for config in self.trainer.lr_scheduler_configs:
            scheduler = config.scheduler
            if isinstance(scheduler, torch.optim.lr_scheduler.OneCycleLR) and scheduler.total_steps != total:
                warmup = (scheduler._schedule_phases[0]["end_step"] + 1) / scheduler.total_steps  # pct_start, which it does not keep
                scheduler.total_steps = total
                scheduler._schedule_phases[0]["end_step"] = float(warmup * total) - 1
                scheduler._schedule_phases[-1]["end_step"] = total - 1
            elif isinstance(scheduler, torch.optim.lr_scheduler.CosineAnnealingLR):
                scheduler.T_max = total

    def configure_optimizers(self):
        cfg = self.hparams.train
        groups = getattr(self.model, "param_groups", lambda: [{"params": list(self.parameters()), "lr_scale": 1.0}])()
        groups = [{"params": g["params"], "lr": cfg["lr"] * g["lr_scale"]} for g in groups]
        params = [p for g in groups for p in g["params"]]
        fused = all(p.is_floating_point() and p.device.type in ("cpu", "cuda") for p in params) or None
        optimizer = OPTIMIZERS[cfg["optimizer"]](groups, cfg, fused)
        total = int(self.trainer.estimated_stepping_batches)
        if cfg["schedule"] == "cosine":
            scheduler = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total)
        elif cfg["schedule"] == "onecycle":
            scheduler = torch.optim.lr_scheduler.OneCycleLR(
                optimizer, max_lr=[g["lr"] for g in groups], total_steps=total, cycle_momentum=False
            )
        else:
            return optimizer
        return {"optimizer": optimizer, "lr_scheduler": {"scheduler": scheduler, "interval": "step"}}


def load_task(checkpoint: Path, device: str = "cpu") -> ClassificationTask:
    """A trained task from its checkpoint, read with the weights-only unpickler (see checkpoints.py);
    pretrained weights are not fetched again, the checkpoint has them."""
    if not Path(checkpoint).is_file():
        raise TrillaError(f"checkpoint {checkpoint} does not exist")
    with reading_checkpoint(checkpoint):
        return ClassificationTask.load_from_checkpoint(checkpoint, map_location=device, load_weights=False, weights_only=True)


def _mix(batch: dict[str, torch.Tensor], order: torch.Tensor, share: float, keys: tuple[str, ...]) -> dict[str, torch.Tensor]:
    """The batch blended with itself in `order`: the inputs at `keys` weighted `share` and 1 - `share`
    (before normalization, which is affine), each clip as long as the longer of its two."""
    mixed = dict(batch)
    for key in keys:
        if key in batch:
            mixed[key] = share * batch[key].float() + (1 - share) * batch[key][order].float()
    if "lengths" in batch:
        mixed["lengths"] = torch.maximum(batch["lengths"], batch["lengths"][order])
    return mixed

