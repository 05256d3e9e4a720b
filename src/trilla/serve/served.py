"""One run as the server holds it: its predictor loaded once, its metadata read once, its batcher.

A request's bytes are decoded and preprocessed on the shared thread pool (off the event loop), its
windows go through the model's batcher with other requests', and the answer is the run's own
(`Predictor.answer`), so a served prediction equals `trilla predict` on the same bytes.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from concurrent.futures import Executor
from typing import Any

from trilla.errors import Unreadable
from trilla.predict import single_windows
from trilla.runs import Run
from trilla.serve.batching import Batcher


def describe(run: Run) -> dict[str, Any]:
    """What the metadata routes say of a run, besides its name and links."""
    config = run.config
    return {
        "description": f"{run.record.get('model_summary', config.model.name)} trained on {config.data.path}",
        "classes": run.classes, "input": config.input.type,
        "metrics": {k: float(v) for k, v in run.metrics.items() if k.startswith("test/") and isinstance(v, (int, float))},
    }


class ServedModel:
    def __init__(self, name: str, run: Run, decode_pool: Executor, max_batch: int, max_wait_ms: float,
                 observe_batch: Callable[[int], None] | None = None):
        self.name, self.run, self.decode_pool = name, run, decode_pool
        self.predictor = run.predictor()
        self.predictor.preprocessor  # noqa: B018  (a lazy property, built now, before threads share it)
        self.codes = self.predictor.encode_metadata([None], [{}])  # an upload has no path to read fields from
        self.meta = describe(run)
        self.warm(max_batch)
        self.batcher = Batcher(self.predictor, name, max_batch, max_wait_ms, observe_batch)

    def warm(self, max_batch: int) -> None:
        """Run every batch size the batcher can form once, on a blank item: the CPU kernels (oneDNN) are
        built per input shape, and a request should not wait for a shape's first build (measured: a p99
        of 360 ms instead of 90 ms in the batcher at 32 concurrent requests, benchmarks/serve_speed.py)."""
        [window], _ = single_windows(self.predictor.prepare(self.predictor.preprocessor.blank()))
        codes = None if self.codes is None else self.codes.repeat(max_batch, axis=0)
        sizes = sorted({*range(1, min(max_batch, 64) + 1), *(2**k for k in range(6, max_batch.bit_length())), max_batch})
        for size in sizes:
            self.predictor.forward([window] * size, None if codes is None else codes[:size], batch_size=size)

    async def predict(self, item: Any, top_k: int = 5) -> dict:
        """The record `Predictor.predict` gives for this item: its answer, or `error` with the reason."""
        loop = asyncio.get_running_loop()
        try:
            prepared = await loop.run_in_executor(self.decode_pool, self.predictor.prepare, item)
        except Unreadable as err:
            return {"error": str(err)}
        windows, spans = single_windows(prepared)
        codes = None if self.codes is None else self.codes.repeat(len(windows), axis=0)
        outputs = await self.batcher.outputs(windows, codes)
        record = self.predictor.answer(self.predictor.combine(outputs), top_k)
        if spans is not None:
            record["windows_read"] = len(outputs)
        return record

    async def explain(self, item: Any) -> bytes:
        """The item with its Grad-CAM heat laid over it, as a PNG; Unreadable for an unreadable item,
        TrillaError for a run with nothing to lay heat over (or no feature map)."""
        prepared = await asyncio.get_running_loop().run_in_executor(self.decode_pool, self.predictor.prepare, item)
        return await self.batcher.alone(lambda: self.predictor.gradcam_png(prepared, self.codes))

    def close(self) -> None:
        self.batcher.close()
