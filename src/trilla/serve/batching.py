"""Dynamic batching: the windows of concurrent requests for one model go through one forward pass.

One inference thread per model takes what is queued, waits up to `max_wait_ms` for more while the batch
holds fewer than `max_batch` windows (1 ms by default: at 8 concurrent requests, 5 ms cost a quarter of
the requests per second, benchmarks/serve_speed.py), and runs them together; while it runs, the next requests queue up,
so under load batches fill without waiting and a lone request waits at most `max_wait_ms`. Each request
gets its own rows back. If a batch fails as a whole, each request in it is run alone, so one bad input
cannot spoil the answers of the others.

Written by hand: the serving libraries that batch (Ray Serve, TorchServe, Triton) are whole servers of
their own; this is a queue and a thread.
"""

from __future__ import annotations

import asyncio
import logging
import queue
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np

from trilla.predict import Predictor

log = logging.getLogger("trilla.serve")


@dataclass
class Pending:
    windows: list[dict[str, np.ndarray]]
    codes: np.ndarray | None
    loop: asyncio.AbstractEventLoop
    future: asyncio.Future
    call: Callable[[], Any] | None = None  # work run alone on the inference thread (Grad-CAM hooks the model)


class Batcher:
    def __init__(self, predictor: Predictor, name: str, max_batch: int, max_wait_ms: float,
                 observe: Callable[[int], None] | None = None):
        if max_batch < 1:
            raise ValueError(f"max_batch must be at least 1, not {max_batch}")
        self.predictor, self.max_batch, self.max_wait = predictor, max_batch, max_wait_ms / 1000
        self.observe = observe or (lambda size: None)
        self.queue: queue.Queue[Pending | None] = queue.Queue()
        self.thread = threading.Thread(target=self._serve, name=f"trilla-infer-{name}", daemon=True)
        self.thread.start()

    async def outputs(self, windows: list[dict[str, np.ndarray]], codes: np.ndarray | None = None) -> np.ndarray:
        """The outputs (W, classes) of one request's windows, computed with whatever else is queued."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.put(Pending(windows, codes, loop, future))
        return await future

    async def alone(self, call: Callable[[], Any]) -> Any:
        """`call()` on the inference thread between batches: nothing else uses the model meanwhile."""
        loop = asyncio.get_running_loop()
        future = loop.create_future()
        self.queue.put(Pending([], None, loop, future, call))
        return await future

    def close(self) -> None:
        self.queue.put(None)
        self.thread.join(timeout=10)

    def _gather(self, first: Pending) -> tuple[list[Pending], bool]:
        batch, size = [first], len(first.windows)
        deadline = time.monotonic() + self.max_wait
        while size < self.max_batch:
            left = deadline - time.monotonic()
            try:
                nxt = self.queue.get(timeout=left) if left > 0 else self.queue.get_nowait()
            except queue.Empty:
                break
            if nxt is None:
                return batch, True
            if nxt.call is not None:  # not part of a batch: after it
                self._run(batch)
                self._call(nxt, nxt.call)
                return [], False
            batch.append(nxt)
            size += len(nxt.windows)
        return batch, False

    def _serve(self) -> None:
        closing = False
        while not closing:
            first = self.queue.get()
            if first is None:
                return
            if first.call is not None:
                self._call(first, first.call)
                continue
            batch, closing = self._gather(first)
            self._run(batch)

    def _call(self, pending: Pending, call: Callable[[], Any]) -> None:
        try:
            result = call()
        except Exception as err:  # noqa: BLE001 - handed to the request that asked
            _settle(pending, error=err)
        else:
            _settle(pending, result=result)

    def _run(self, batch: list[Pending]) -> None:
        if not batch:
            return
        try:
            flat = self._forward(batch)
        except Exception:  # noqa: BLE001 - one request's input may break the batch: answer each alone
            if len(batch) == 1:
                log.exception("inference failed")
                _settle(batch[0], error=RuntimeError("inference failed on this input"))
                return
            for pending in batch:
                self._run([pending])
            return
        self.observe(len(flat))
        start = 0
        for pending in batch:
            _settle(pending, result=flat[start : start + len(pending.windows)])
            start += len(pending.windows)

    def _forward(self, batch: list[Pending]) -> np.ndarray:
        windows = [window for pending in batch for window in pending.windows]
        codes = None if batch[0].codes is None else np.concatenate([pending.codes for pending in batch])
        return self.predictor.forward(windows, codes, batch_size=self.max_batch)


def _settle(pending: Pending, result: np.ndarray | None = None, error: Exception | None = None) -> None:
    def settle() -> None:
        if pending.future.cancelled():
            return
        if error is not None:
            pending.future.set_exception(error)
        else:
            pending.future.set_result(result)

    pending.loop.call_soon_threadsafe(settle)
