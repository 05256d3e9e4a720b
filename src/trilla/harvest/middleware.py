"""What Scrapy leaves out of a polite, resumable crawl, added as small subclasses and extensions:

- `BackoffRetry`: Scrapy's RetryMiddleware retries 429 and 5xx at once; this waits before each retry,
  `politeness.backoff` seconds doubled per attempt, or the server's Retry-After when that is longer.
- `AtomicCacheStorage`: Scrapy's filesystem HTTP cache writes an entry file by file, so a crawl killed
  mid-write leaves an entry that reads back truncated; this writes it into a temporary folder and renames
  that into place. The cache is what makes `--resume` fetch nothing twice after even a `kill -9`.
- `CrawlDelay`: Scrapy obeys robots.txt's Allow/Disallow (through Protego) but not its Crawl-delay;
  this keeps each domain's download delay at least that long, and `PoliteThrottle` is AutoThrottle
  never going below it.
"""

from __future__ import annotations

import asyncio
import os
import pickle
import shutil
from email.utils import parsedate_to_datetime
from pathlib import Path
from time import time

from scrapy import signals
from scrapy.downloadermiddlewares.retry import RetryMiddleware
from scrapy.extensions.httpcache import FilesystemCacheStorage
from scrapy.extensions.throttle import AutoThrottle
from scrapy.http import Request
from scrapy.utils.python import to_bytes
from w3lib.http import headers_dict_to_raw

BACKOFF = "trilla_backoff"


class BackoffRetry(RetryMiddleware):
    def __init__(self, settings):
        super().__init__(settings)
        self.backoff = settings.getfloat("TRILLA_BACKOFF", 2.0)

    async def process_request(self, request: Request, spider=None) -> None:
        wait = request.meta.pop(BACKOFF, 0)
        if wait:
            await asyncio.sleep(wait)

    def process_response(self, request, response, spider=None):
        result = super().process_response(request, response)
        if isinstance(result, Request):
            result.meta[BACKOFF] = max(self._doubling(result), _retry_after(response.headers.get(b"Retry-After")))
        return result

    def process_exception(self, request, exception, spider=None):
        result = super().process_exception(request, exception)
        if isinstance(result, Request):
            result.meta[BACKOFF] = self._doubling(result)
        return result

    def _doubling(self, request: Request) -> float:
        return self.backoff * 2 ** (request.meta.get("retry_times", 1) - 1)


def _retry_after(value: bytes | None) -> float:
    """Seconds a Retry-After header asks for (a number, or an HTTP date), capped at five minutes."""
    if not value:
        return 0.0
    text = value.decode("latin-1").strip()
    try:
        seconds = float(text)
    except ValueError:
        try:
            seconds = parsedate_to_datetime(text).timestamp() - time()
        except (TypeError, ValueError):
            return 0.0
    return min(max(seconds, 0.0), 300.0)


class AtomicCacheStorage(FilesystemCacheStorage):
    def store_response(self, spider, request, response) -> None:
        target = Path(self._get_request_path(spider, request))
        target.parent.mkdir(parents=True, exist_ok=True)
        staging = target.with_name(f"{target.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir()
        metadata = {"url": request.url, "method": request.method, "status": response.status, "response_url": response.url, "timestamp": time()}
        (staging / "meta").write_bytes(to_bytes(repr(metadata)))
        (staging / "response_headers").write_bytes(headers_dict_to_raw(response.headers))
        (staging / "response_body").write_bytes(response.body)
        extra = {key: value for key, value in response.to_dict().items() if key not in {"url", "status", "headers", "body"}}
        with open(staging / "response_data", "wb") as f:  # the response's class and the rest Scrapy keeps
            pickle.dump(extra, f, protocol=4)
        (staging / "request_headers").write_bytes(headers_dict_to_raw(request.headers))
        (staging / "request_body").write_bytes(request.body)
        with open(staging / "pickled_meta", "wb") as f:  # last: its presence is what marks an entry as cached
            pickle.dump(metadata, f, protocol=4)
        if target.exists():
            shutil.rmtree(target)
        os.replace(staging, target)


class PoliteThrottle(AutoThrottle):
    def _adjust_delay(self, slot, latency, response) -> None:
        super()._adjust_delay(slot, latency, response)
        floors = next((e.floors for e in self.crawler.extensions.middlewares if isinstance(e, CrawlDelay)), {})
        key = next((k for k, s in self.crawler.engine.downloader.slots.items() if s is slot), None)
        slot.delay = max(slot.delay, floors.get(key, 0.0))


class CrawlDelay:
    """Per domain, the Crawl-delay its robots.txt asks of our user agent, as the least delay of its
    download slot."""

    def __init__(self, crawler):
        self.crawler = crawler
        self.floors: dict[str, float] = {}
        self.user_agent = crawler.settings["USER_AGENT"]
        crawler.signals.connect(self.robots_parsed, signal=signals.robots_parsed)
        crawler.signals.connect(self.reached, signal=signals.request_reached_downloader)

    @classmethod
    def from_crawler(cls, crawler):
        return cls(crawler)

    def robots_parsed(self, robotparser, request) -> None:
        delay = robotparser.crawl_delay(self.user_agent)
        if delay:
            self.floors[self.crawler.engine.downloader.get_slot_key(request)] = float(delay)

    def reached(self, request, spider) -> None:
        key = request.meta.get("download_slot")
        floor = self.floors.get(key)
        if floor is None:
            return
        slot = self.crawler.engine.downloader.slots.get(key)
        if slot is not None:
            slot.delay = max(slot.delay, floor)
            slot.jitter = 0.0  # a random delay could fall below the one asked for
