"""The feature cache: a frozen backbone's pooled features, computed once and kept beside the store.

With the backbone frozen (batch norm included) and no augmentation, every epoch would push the same
pixels through the same function; computing the features once turns fine-tuning the head into a few
matrix products per epoch. The cache file is keyed by a hash of the backbone's weights and of the input
normalization, and it lives inside the store's folder, whose key already covers the files and the
preprocessing. Written by hand: the libraries that cache activations (e.g. fastai's) do so in memory.
"""

from __future__ import annotations

import hashlib
import json
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING

import numpy as np
import torch
from tqdm.auto import tqdm

from trilla.atomic import replacing

if TYPE_CHECKING:
    from trilla.data.store import Store

log = logging.getLogger("trilla")


def weights_key(module: torch.nn.Module, skip: str = "head.", **extra) -> str:
    """A hash of the module's tensors outside the head (whatever `embed` uses) and of `extra`."""
    digest = hashlib.sha256(json.dumps(extra, sort_keys=True).encode())
    for name, tensor in module.state_dict().items():
        if name.startswith(skip):
            continue
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return digest.hexdigest()[:20]


def cached_features(
    store: Store, extract: Callable[[torch.Tensor], torch.Tensor], key: str, device: str = "cpu",
    batch_size: int = 64, progress: bool = True,
) -> np.ndarray:
    """(store rows, features) float32, memory-mapped; computed now unless this key was cached before."""
    path = store.root / "features" / f"{key}.npy"
    if path.is_file():
        log.info("reusing cached features %s", path)
        return np.load(path, mmap_mode="r")
    chunks = []
    with torch.inference_mode():
        for start in tqdm(range(0, len(store.array), batch_size), desc="caching features", unit="batch",
                          disable=None if progress else True):
            x = torch.from_numpy(np.array(store.array[start : start + batch_size])).permute(0, 3, 1, 2)
            chunks.append(extract(x.to(device)).float().cpu().numpy())
    path.parent.mkdir(exist_ok=True)
    with replacing(path) as tmp:
        np.save(tmp, np.concatenate(chunks))
    return np.load(path, mmap_mode="r")


def model_features(store: Store, task, device: str, progress: bool = True) -> np.ndarray:
    """The cache for this task's model: its `embed` on normalized images, the backbone in eval mode."""
    model = task.model
    key = weights_key(model, mean=task.hparams.mean, std=task.hparams.std, spec=task.hparams.input_spec)
    was_training = model.training
    model.eval().to(device)
    task.to(device)
    try:
        return cached_features(store, lambda x: model.embed(task.normalize(x)), key, device, progress=progress)
    finally:
        model.train(was_training)
        task.cpu()
