"""Loader speed (issue 5, item 2): batches streamed from a packed AudioSet HDF5 file with trilla's
HDF5Stream, against the same batches cut from an in-memory array (the fastest a loader can be, and the
reference in the same process). The goal is >= 50,000 clips/s from HDF5 on 2 cores, with memory
bounded by the shuffle buffer, not the file.

    .venv/bin/python benchmarks/embedding_stream.py [--clips 200000] [--rounds 3]

Writes benchmarks/results/embedding_stream.md.
"""

from __future__ import annotations

import argparse
import os
import platform
import resource
import tempfile
import time
from pathlib import Path

import h5py
import numpy as np
import torch

from trilla.kinds.embeddings.stream import HDF5Stream

RESULTS = Path(__file__).parent / "results" / "embedding_stream.md"


def in_memory(x: np.ndarray, y: np.ndarray, batch: int, rng: np.random.Generator):
    order = rng.permutation(len(x))
    for b in range(0, len(order), batch):
        idx = np.sort(order[b : b + batch])
        yield torch.from_numpy((x[idx].astype(np.float32) - 128) / 128), torch.from_numpy(y[idx].astype(np.float32))


def rate(batches) -> float:
    began, count = time.perf_counter(), 0
    for batch in batches:
        count += len(batch["target"] if isinstance(batch, dict) else batch[1])
    return count / (time.perf_counter() - began)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--clips", type=int, default=200000)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    rng = np.random.default_rng(0)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "unbal_train.h5"
        x = rng.integers(0, 256, (args.clips, 10, 128), dtype=np.uint8)
        y = rng.random((args.clips, 527)) < 0.005
        with h5py.File(path, "w") as f:
            f["x"], f["y"] = x, y
            f["video_id_list"] = np.asarray([f"{i:011d}".encode() for i in range(args.clips)])
        rss_before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
        stream, balanced = HDF5Stream(path, batch_size=128), HDF5Stream(path, batch_size=128, balanced=True)
        rates: dict[str, list[float]] = {"in-memory array (reference)": [], "HDF5Stream, shuffled": [], "HDF5Stream, balanced": []}
        for _ in range(args.rounds):
            rates["in-memory array (reference)"].append(rate(in_memory(x, y, 128, rng)))
            rates["HDF5Stream, shuffled"].append(rate(stream))
            rates["HDF5Stream, balanced"].append(rate(balanced))
        grown_mb = (resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - rss_before) / 1024
    reference = float(np.median(rates["in-memory array (reference)"]))
    lines = [
        "# Embedding loader speed: HDF5Stream vs an in-memory array",
        "",
        f"Command: `.venv/bin/python benchmarks/embedding_stream.py --clips {args.clips} --rounds {args.rounds}`. "
        f"{args.clips} clips of 10 x 128 uint8 with 527 labels in one HDF5 file; batches of 128; medians of {args.rounds} rounds.",
        "",
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__}, h5py {h5py.__version__}.",
        "",
        "| loader | clips/s (median) | rounds | vs reference |",
        "|---|---|---|---|",
        *[f"| {name} | {np.median(r):,.0f} | {', '.join(f'{v:,.0f}' for v in r)} | {np.median(r) / reference:.2f}x |" for name, r in rates.items()],
        "",
        f"Peak resident memory grew by {grown_mb:.0f} MB while streaming (the file holds {args.clips * 1280 / 1e6:.0f} MB "
        "of embeddings, and the in-memory reference already holds them all before this is measured).",
        "",
        "Goal (issue 5): >= 50,000 clips/s from HDF5 on 2 cores.",
        "",
    ]
    RESULTS.write_text("\n".join(lines))
    print(RESULTS.read_text())


if __name__ == "__main__":
    main()
