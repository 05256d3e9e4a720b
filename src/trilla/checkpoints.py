"""Reading checkpoints without running anything they carry, and saying which file is damaged.

A checkpoint is a pickle, and a pickle can name any callable to run while it loads. Every checkpoint
trilla opens (to predict, to resume, to hand a backbone to another run) is read with torch's
`weights_only` unpickler, which builds tensors and plain containers only; a file that asks for anything
else is refused before any of it runs. trilla's own checkpoints hold nothing else (the RNG state, for
one, is kept as plain lists for this reason). A file cut short (a full disk, a kill during a save by
an older release) is named as damaged rather than left to torch's zip-reader traceback.
"""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from trilla.errors import TrillaError

_DAMAGED = ("PytorchStreamReader", "zip archive", "central directory", "Ran out of input", "invalid load key", "EOF")


@contextmanager
def reading_checkpoint(path: str | Path) -> Iterator[None]:
    """Turn the unpickler's refusal, or a damaged file, inside the block into an error naming the file."""
    try:
        yield
    except pickle.UnpicklingError as err:
        reason = str(err).strip().splitlines()
        if any(sign in str(err) for sign in _DAMAGED):
            raise _damaged(path, err) from None
        detail = next((line for line in reason if "GLOBAL" in line or "Unsupported" in line), reason[0] if reason else "")
        raise TrillaError(
            f"refused to load {path}: it holds objects other than tensors and plain data ({detail.strip()}), and loading "
            "it could run code. trilla's own checkpoints never do; load only checkpoints you trust."
        ) from None
    except KeyError as err:  # Lightning's loader looks up its own keys in what torch read
        raise TrillaError(f"{path} is not a checkpoint trilla (or Lightning) wrote: it has no {err}. A plain torch.save file (a "
                          "state dict) is no run's checkpoint: give a run directory, or its checkpoints/best.ckpt") from None
    except (RuntimeError, EOFError) as err:
        if isinstance(err, EOFError) or any(sign in str(err) for sign in _DAMAGED):
            raise _damaged(path, err) from None
        raise


def _damaged(path: str | Path, err: Exception) -> TrillaError:
    first = (str(err).strip().splitlines() or [type(err).__name__])[0].split(". ")[0]
    return TrillaError(
        f"checkpoint {path} is damaged or not a torch checkpoint ({first}); was its save cut short (a full disk, a kill)? "
        "Retrain the run, or resume it if its other checkpoint is intact"
    )


def load_checkpoint(path: str | Path) -> dict:
    """A checkpoint's contents (tensors, numbers, strings, lists and dicts), on the CPU."""
    import torch

    path = Path(path)
    if not path.is_file():
        raise TrillaError(f"checkpoint {path} does not exist")
    with reading_checkpoint(path):
        return torch.load(path, map_location="cpu", weights_only=True)
