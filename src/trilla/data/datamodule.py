"""The Lightning DataModule: owns the datasets, the split and the loaders.

Batches are read from the memory-mapped store (or its cached spectrograms) with one fancy-index per
batch (`__getitems__`); images stay uint8 until the model's first layer, which keeps loading cheaper
than the network it feeds.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

import lightning as L
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from trilla.data.dataset import LabelledData
from trilla.data.sources import SONG, Problem, header
from trilla.data.splits import joint_groups, split_indices
from trilla.errors import TrillaError
from trilla.kinds import input_kind
from trilla.kinds.protocols import Augments
from trilla.objectives import objective_for

if TYPE_CHECKING:
    from trilla.config import Config

log = logging.getLogger("trilla")


def load_data(path: Path, config: Config, **kwargs) -> LabelledData:
    """The labelled data at `path` as `config` reads it, through its input kind (files packed into the
    store, or precomputed embeddings). `kwargs` go to the loader (classes, codec, vocab, ...)."""
    return input_kind(config.input.type).load(Path(path), config, **kwargs)


def to_batch(inputs: dict[str, np.ndarray], kind: str, transform=None) -> dict[str, torch.Tensor]:
    """Arrays from `LabelledData.inputs` as the task reads them, augmented if asked."""
    return input_kind(kind).to_batch(inputs, transform)


def build_transform(config: Config, data: LabelledData):
    """The training-time augmentation for this input, or None."""
    kind = input_kind(data.kind)
    if config.augment is None or not isinstance(kind, Augments):
        return None
    return kind.augmentation(config.augment, config, data.input_spec())


class StoreDataset(Dataset):
    """Positions into a LabelledData; yields batches as the task reads them: `image` (uint8 NCHW),
    `spectrogram` (+ `lengths`), or `features` (rows of the feature cache), `metadata` codes when the
    data has fields, `target`."""

    def __init__(self, data: LabelledData, positions: np.ndarray, transform=None, features: np.ndarray | None = None):
        self.data, self.positions, self.transform, self.features = data, positions, transform, features

    def __len__(self) -> int:
        return len(self.positions)

    def __getitems__(self, indices: list[int]) -> dict[str, torch.Tensor]:
        chosen = self.positions[np.asarray(indices)]
        batch = {"target": torch.from_numpy(self.data.targets[chosen])}
        if self.features is not None:
            batch["features"] = torch.from_numpy(np.asarray(self.features[self.data.rows[chosen]]))
        else:
            batch.update(to_batch(self.data.inputs(chosen), self.data.kind, self.transform))
        if self.data.metadata.shape[1]:
            batch["metadata"] = torch.from_numpy(self.data.metadata[chosen])
        return batch

    def __getitem__(self, index: int) -> dict[str, torch.Tensor]:
        return {key: value[0] for key, value in self.__getitems__([index]).items()}


def _as_batch(batch):
    return batch


class EpochSampler(Sampler[int]):
    """Shuffles (or draws with class-balancing weights) from a generator seeded by (seed, epoch).

    Lightning calls `set_epoch`, so the order of any epoch is the same whether or not the run was
    interrupted and resumed before it; a sampler driven by the global RNG would not be.

    Under ddp, process `rank` of `replicas` takes every replicas-th example of that one order (the order
    padded from its start to a multiple of replicas), so the processes' batches of one step together are
    the batch one process would have drawn. Lightning's own distributed sampler would shuffle the order
    again, and a ddp run could then not reproduce a single-process one.
    """

    def __init__(self, size: int, seed: int, weights: np.ndarray | None = None, rank: int = 0, replicas: int = 1):
        self.size, self.seed, self.epoch, self.rank, self.replicas = size, seed, 0, rank, replicas
        self.weights = None if weights is None else torch.as_tensor(weights, dtype=torch.double)

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def __len__(self) -> int:
        return -(-self.size // self.replicas)

    def __iter__(self):
        generator = torch.Generator().manual_seed(self.seed * 100_003 + self.epoch)
        if self.weights is None:
            order = torch.randperm(self.size, generator=generator)
        else:
            order = torch.multinomial(self.weights, self.size, replacement=True, generator=generator)
        order = order.tolist()
        if self.replicas > 1:
            order = (order + order[: len(self) * self.replicas - self.size])[self.rank :: self.replicas]
        return iter(order)


class StoreDataModule(L.LightningDataModule):
    def __init__(self, config: Config, progress: bool = True, device: str = "cpu"):
        super().__init__()
        self.config, self.progress, self.device = config, progress, device
        self.objective = objective_for(config)
        self.data: LabelledData | None = None
        self.test_data: LabelledData | None = None
        self.splits: dict[str, np.ndarray] = {}
        self.features: np.ndarray | None = None

    def prepare(self) -> None:
        """List, pack, label and split; idempotent, and called before the model is built."""
        if self.data is not None:
            return
        cfg = self.config.data
        if cfg.path is None:
            raise TrillaError("no data: give a folder or CSV with --data, or set data.path in the config")
        if cfg.split.group_column == "auto":  # decided here, so the run's config.yaml says what was done
            cfg.split.group_column = SONG if SONG in header(Path(cfg.path)) else None
            if cfg.split.group_column:
                log.info("clips of one %s stay in one split (data.split.group_column: %s; null mixes them)", SONG, SONG)
        self.data = load_data(cfg.path, self.config, device=self.device, progress=self.progress, group_column=cfg.split.group_column)
        if self.objective.one_label and len(set(self.data.strata.tolist())) < 2:
            found = sorted({self.data.groups[i] for i in self.data.strata})
            raise TrillaError(
                f"{cfg.path} holds one class only ({', '.join(found)}, {len(self.data.targets)} files): a classifier needs at least two. "
                "A folder tree needs one folder per class (<class>/<file>); a CSV, a label column with two or more values"
            )
        if cfg.test_path:
            self.test_data = self.load_other(cfg.test_path)
        usable = self._not_in_test()
        split = cfg.split
        groups = joint_groups(self.data.content_groups, self.data.split_groups)
        groups = groups[usable] if groups is not None else None
        chosen = split_indices(
            self.data.strata[usable], split.val, 0.0 if cfg.test_path else split.test, split.seed, split.stratify, groups,
            names=self.data.groups,
        )
        self.splits = {name: usable[positions] for name, positions in chosen.items()}
        for name in ("train", "val"):
            if not len(self.splits.get(name, ())):
                raise TrillaError(
                    f"{len(self.data.targets)} usable files leave the {name} split empty; add files or change data.split"
                )

    def _not_in_test(self) -> np.ndarray:
        """Positions of the data to split: all, but for files identical to one of the fixed test set's
        (a copy trained on would inflate test accuracy); those are left out and listed."""
        everything = np.arange(len(self.data.targets))
        if self.test_data is None or not len(self.data.digests()):
            return everything
        test, digests = dict(zip(self.test_data.digests(), self.test_data.paths)), self.data.digests()
        copies = [i for i, digest in enumerate(digests) if digest in test]
        for i in copies:
            self.data.problems.append(Problem(self.data.paths[i], f"identical to the test file {test[digests[i]]}; left out of training"))
        if copies:
            log.warning("%d files identical to test files left out of training and validation", len(copies))
        return np.setdiff1d(everything, copies)

    def load_other(self, path: Path) -> LabelledData:
        """Another labelled set, preprocessed exactly as this one and labelled with its classes."""
        assert self.data is not None
        codec = self.data.store.codec if self.data.store is not None else None
        return load_data(
            path, self.config, codec=codec, classes=self.data.classes, vocab=self.data.vocab, device=self.device, progress=self.progress
        )

    def split_data(self, name: str) -> tuple[LabelledData, np.ndarray] | None:
        """The LabelledData and positions of a split, or None when the run has no such split."""
        assert self.data is not None
        if name == "test" and self.test_data is not None:
            return self.test_data, np.arange(len(self.test_data.targets))
        if name in self.splits and len(self.splits[name]):
            return self.data, self.splits[name]
        return None

    def counts(self):
        parts = {}
        for name in ("train", "val", "test"):
            found = self.split_data(name)
            if found:
                parts[name] = (found[0].targets[found[1]], found[0].strata[found[1]])
        return self.objective.counts(self.data.groups, self.data.classes, parts)

    def normalization(self, limit: int = 4096) -> tuple[list[float], list[float]]:
        """Mean and std of the training inputs from at most `limit` of them: per channel on the 0-1 scale
        for images, per frequency bin in decibels for spectrograms (padding frames left out).

        Summed in chunks of 64 samples, so a thousand 10-s spectrograms never sit in memory at once."""
        kind = input_kind(self.data.kind)
        positions = self.splits["train"]
        if len(positions) > limit:
            positions = np.random.default_rng(0).choice(positions, limit, replace=False)
        positions = np.sort(positions)
        total = squares = count = 0.0
        for start in range(0, len(positions), 64):
            values = kind.normalization_values(self.data.inputs(positions[start : start + 64]))
            if values is None:  # the kind's inputs are fed as they are
                dims = self.data.input_spec()["bins"]
                return [0.0] * dims, [1.0] * dims
            total, squares, count = total + values.sum(0), squares + np.square(values).sum(0), count + len(values)
        mean = total / count
        std = np.sqrt(np.maximum(squares / count - np.square(mean), 0.0))
        return mean.tolist(), np.maximum(std, 1e-3).tolist()

    def class_weights(self) -> list[float]:
        counts = np.bincount(self.data.strata[self.splits["train"]], minlength=len(self.data.groups))
        return (counts.sum() / (len(counts) * np.maximum(counts, 1))).tolist()

    def _loader(self, name: str, train: bool) -> DataLoader:
        data, positions = self.split_data(name)
        train_cfg = self.config.train
        rank, replicas = (self.trainer.global_rank, self.trainer.world_size) if self.trainer is not None else (0, 1)
        stream = data.source.train_stream(data.rows[positions], train_cfg, self.config.input) if train else None
        if stream is not None:
            if replicas > 1:
                raise TrillaError("streamed embeddings train in one process: set input.stream: false, or train.strategy: auto")
            return stream
        sampler = None
        if train:
            weights = None
            if train_cfg.imbalance == "balanced_sampler":
                weights = np.asarray(self.class_weights())[data.strata[positions]]
            sampler = EpochSampler(len(positions), train_cfg.seed, weights, rank, replicas)
        workers = self.config.data.num_workers
        transform = build_transform(self.config, data) if train else None
        features = self.features if data is self.data else None
        return DataLoader(
            StoreDataset(data, positions, transform, features), batch_size=train_cfg.batch_size, sampler=sampler,
            collate_fn=_as_batch, num_workers=workers, persistent_workers=workers > 0,
            generator=torch.Generator().manual_seed(train_cfg.seed),
        )

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)
