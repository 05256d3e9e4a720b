"""Reading checkpoints without running anything they carry.

A checkpoint is a pickle, and a pickle can name any callable to run while it loads. Every checkpoint
trilla opens (to predict, to resume, to hand a backbone to another run) is read with torch's
`weights_only` unpickler, which builds tensors and plain containers only; a file that asks for anything
else is refused before any of it runs. trilla's own checkpoints hold nothing else (the RNG state, for
one, is kept as plain lists for this reason).
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trilla.errors import TrillaError


@contextmanager
def refusing_code(path: str | Path) -> Iterator[None]:
    """Turn the unpickler's refusal inside the block into an error naming the file."""
    try:
        yield
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()
        detail = next((line for line in reason if "GLOBAL" in line or "Unsupported" in line), reason[0] if reason else "")
        raise TrillaError(
            f"refused to load {path}: it holds objects other than tensors and plain data ({detail.strip()}), and loading "
            "it could run code. trilla's own checkpoints never do; load only checkpoints you trust."
        ) from None


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents (tensors, numbers, strings, lists and dicts), on the CPU."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise TrillaError(f"checkpoint {path} does not exist")
    with refusing_code(path):
        return torch.load(path, map_location="cpu", weights_only=True)
