"""Checkpoints saved so that a failed save never costs the previous one.

Lightning's own save writes through an fsspec transaction whose temporary file lives in the system's
temporary folder; committing it copies across filesystems, so a full run folder ends with a truncated
`last.ckpt` and nothing to resume from. Here the checkpoint goes to a temporary file beside its target,
is fsynced and renamed over it (trilla.atomic), and a full disk is a clear error while the previous
checkpoint stays whole.
"""

from __future__ import annotations

import errno
import os
import shutil
from pathlib import Path
from typing import Any

import torch
from lightning.fabric.plugins.io.torch_io import TorchCheckpointIO

from trilla.atomic import replacing


class AtomicCheckpointIO(TorchCheckpointIO):
    def save_checkpoint(self, checkpoint: dict[str, Any], path, storage_options: Any | None = None) -> None:
        path = Path(path)
        path.parent.mkdir(parents=True, exist_ok=True)
        with replacing(path) as tmp:
            try:
                torch.save(checkpoint, tmp)
            except RuntimeError as err:  # torch's zip writer reports a full disk as a failed write or a bad position
                if not _full(path):
                    raise
                raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC)) from err


def _full(path: Path) -> bool:
    return shutil.disk_usage(path.parent).free < 1 << 20
