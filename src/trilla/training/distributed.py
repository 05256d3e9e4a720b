"""What a run needs from its processes before Lightning's Trainer exists: one run directory for all of them.

Under torchrun (also the way to launch on SLURM, see README) every process starts `trilla train` at once.
Lightning would join them into a process group only inside `fit`, after each had created its own run
directory and packed the store. So trilla opens the group itself from torchrun's environment (Lightning
then finds it open and uses it): process 0 packs the store while the others wait, creates the run
directory and hands its path to the others.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import torch
import torch.distributed as dist

_HANDOFF = "TRILLA_RUN_DIR"


def launched() -> bool:
    """Whether torchrun (or another launcher with its environment) started this process as one of several."""
    return int(os.environ.get("WORLD_SIZE", "1")) > 1 and "RANK" in os.environ and "MASTER_ADDR" in os.environ


def rank() -> int:
    return dist.get_rank() if dist.is_available() and dist.is_initialized() else 0


def join(accelerator: str) -> None:
    """Open the process group of a torchrun launch (NCCL on GPUs, gloo otherwise); alone, do nothing."""
    if not launched() or dist.is_initialized():
        return
    gpu = accelerator in ("auto", "gpu", "cuda") and torch.cuda.is_available()
    if gpu:
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group("nccl" if gpu else "gloo")


@contextmanager
def first_alone() -> Iterator[None]:
    """Process 0 runs the block first (packing the store, say) and the others after it, reusing its work."""
    grouped = dist.is_available() and dist.is_initialized()
    if grouped and rank() != 0:
        dist.barrier()
    yield
    if grouped and rank() == 0:
        dist.barrier()


def shared(make: Callable[[], Path], handoff: bool) -> Path:
    """`make()` on process 0, its result on every process.

    Without torchrun, Lightning's ddp starts the other processes of a machine inside `fit`, by running the
    same command again with LOCAL_RANK set; with `handoff`, process 0 leaves the path in the environment
    they inherit."""
    if dist.is_available() and dist.is_initialized():
        box = [str(make()) if rank() == 0 else None]
        dist.broadcast_object_list(box, src=0)
        return Path(box[0])
    if os.environ.get("LOCAL_RANK", "0") != "0" and _HANDOFF in os.environ:
        return Path(os.environ[_HANDOFF])
    path = make()
    if handoff:
        os.environ[_HANDOFF] = str(path)
    return path
