"""`trilla harvest crawl SITE.yaml OUT`: a labelled picture folder from a catalogue site.

Built on Scrapy, the maintained crawling framework, for what a polite crawler must get right and is
easy to get wrong by hand: robots.txt through Protego, per-domain concurrency and delays, AutoThrottle,
retries, redirects, offsite filtering, size limits while streaming, and an HTTP cache. middleware.py adds
what Scrapy lacks (Crawl-delay, backoff between retries, a cache entry written whole).

Resuming: every answer is kept in the HTTP cache ($TRILLA_CACHE/harvest/http) as soon as it arrives, so
a run that was stopped (Ctrl-C, or `kill -9`) and started again with `--resume` walks the same tree from
the cache and fetches only what it never received. Scrapy's JOBDIR would not do here: it saves its queue
only when the crawl closes cleanly. The same cache lets a dry run's pages serve the real run.
Pictures are kept under their SHA-1 in OUT/.harvest until the crawl ends; pictures.py then decides
what goes where, and report.py writes OUT/provenance.csv and, in OUT/.harvest, report.md and the
contact sheets.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from trilla.errors import TrillaError
from trilla.harvest.site import Site, load_site
from trilla.harvest.spider import STAGING, Ledger, Node, owners
from trilla.logs import StderrHandler
from trilla.paths import cache_root
from trilla.version import __version__

DONE = "finished"
TRANSIENT = [429, 500, 502, 503, 504, 522, 524, 408]  # answers retried, and never cached


@dataclass
class Crawled:
    ledger: Ledger
    report: Path | None = None  # none for a dry run or an interrupted crawl
    kept: int = 0


def settings_for(site: Site, ignore_robots: bool, cache: Path, verbose: bool) -> dict:
    polite = site.politeness
    return {
        "USER_AGENT": polite.user_agent or f"trilla-harvest/{__version__}",
        "ROBOTSTXT_OBEY": not ignore_robots,
        "CONCURRENT_REQUESTS_PER_DOMAIN": polite.concurrency,
        "CONCURRENT_REQUESTS": max(16, polite.concurrency),
        "DOWNLOAD_DELAY": polite.delay,
        "AUTOTHROTTLE_ENABLED": polite.autothrottle,
        "AUTOTHROTTLE_START_DELAY": max(polite.delay, 0.5),
        "AUTOTHROTTLE_TARGET_CONCURRENCY": float(polite.concurrency),
        "DOWNLOAD_TIMEOUT": polite.timeout,
        "DOWNLOAD_MAXSIZE": int(max(site.limits.max_image_mb, 10) * 2**20),
        "DOWNLOAD_WARNSIZE": 0,
        "RETRY_TIMES": polite.retries,
        "RETRY_HTTP_CODES": TRANSIENT,
        "TRILLA_BACKOFF": polite.backoff,
        "DOWNLOADER_MIDDLEWARES": {"scrapy.downloadermiddlewares.retry.RetryMiddleware": None,
                                   "trilla.harvest.middleware.BackoffRetry": 550},
        "EXTENSIONS": {"trilla.harvest.middleware.CrawlDelay": 0, "scrapy.extensions.throttle.AutoThrottle": None,
                       "trilla.harvest.middleware.PoliteThrottle": 0, "scrapy.extensions.remote_control.RemoteControl": None},
        "HTTPCACHE_ENABLED": True,
        "HTTPCACHE_DIR": str(cache),
        "HTTPCACHE_STORAGE": "trilla.harvest.middleware.AtomicCacheStorage",
        "HTTPCACHE_EXPIRATION_SECS": int(polite.cache_hours * 3600),
        "HTTPCACHE_IGNORE_HTTP_CODES": TRANSIENT,
        "REDIRECT_ENABLED": True,
        "DEPTH_PRIORITY": 0,
        "LOG_LEVEL": "INFO" if verbose else "WARNING",  # Scrapy's settings and statistics dumps only when asked
        "LOG_FORMAT": "%(levelname)s %(name)s: %(message)s",
        "TELNETCONSOLE_ENABLED": False,
    }


def crawl(site_file: Path, out: Path, dry_run: bool = False, max_items: int | None = None, resume: bool = False,
          ignore_robots: bool = False, cache: Path | None = None, verbose: bool = False) -> Crawled:
    """Walk the site; unless `dry_run`, download, sort and report its pictures into `out`."""
    from scrapy import signals
    from scrapy.crawler import CrawlerProcess

    from trilla.harvest.spider import CatalogueSpider

    site = load_site(site_file)
    out = Path(out)
    if not dry_run:
        if out.exists() and any(out.iterdir()) and not resume:
            raise TrillaError(f"{out} is not empty and is kept; continue an earlier harvest with --resume, or choose another folder")
        if resume and out.exists() and not (out / STAGING).is_dir() and any(out.iterdir()):
            raise TrillaError(f"{out} holds no harvest to resume (no {STAGING} folder); it is kept")
    staging = out / STAGING / "pictures"
    if not dry_run:
        staging.mkdir(parents=True, exist_ok=True)
    ledger = Ledger()
    cache = cache or cache_root() / "harvest" / "http"
    process = CrawlerProcess(settings_for(site, ignore_robots, cache, verbose), install_root_handler=False)
    crawler = process.create_crawler(CatalogueSpider)

    def closed(spider, reason):
        ledger.finish = reason

    crawler.signals.connect(closed, signal=signals.spider_closed)
    with _scrapy_log(verbose):
        process.crawl(crawler, site=site, ledger=ledger, staging=staging, dry_run=dry_run, max_items=max_items)
        process.start()
    roots = [node for node in ledger.nodes.values() if len(node.path) == 1]
    if ledger.finish == DONE and roots and all(node.skipped for node in roots):
        raise TrillaError("no start URL could be read: " + "; ".join(f"{node.url}: {node.skipped}" for node in roots))
    result = Crawled(ledger)
    if dry_run or ledger.finish != DONE:
        return result
    from trilla.harvest.pictures import assemble
    from trilla.harvest.report import write_report

    assembly = assemble(ledger, site, Path(site_file).parent, out)
    result.report, result.kept = write_report(out, site, ledger, assembly, ignore_robots), len(assembly.kept)
    shutil.rmtree(staging, ignore_errors=True)  # the pictures are in place; a later --resume restages them from the cache
    return result


def _from_parents(nodes: dict[tuple[str, ...], Node]) -> tuple[dict[str, int], int]:
    """(per rule, the products a labelled category with sub-categories vouches for that none of its
    descendants lists; the products left out because only a parent lists them and a branch below it was
    not walked): where shops list a whole department on a parent's pages, these are the ones to look at."""
    owned, left = owners(nodes)
    taken: dict[str, int] = {}
    for paths in owned.values():
        for path in paths:
            if any(len(other) > len(path) and other[: len(path)] == path for other in nodes):
                taken[nodes[path].rule] = taken.get(nodes[path].rule, 0) + 1
    return taken, sum(1 for why in left.values() if why.startswith("only "))


@contextmanager
def _scrapy_log(verbose: bool) -> Iterator[None]:
    """Scrapy's own messages on stderr while this crawl runs (everything with -v, else warnings and
    errors), through a handler taken away afterwards. Scrapy's default is a handler on the root logger that
    stays in the process: a second crawl doubles every message, and one on a stream since closed (a test's,
    a notebook cell's) turns every later message of any library into a logging error."""
    logger = logging.getLogger("scrapy")
    handler = StderrHandler()
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_without_traceback)
    level = logger.level
    logger.setLevel(logging.INFO if verbose else logging.WARNING)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(level)


def _without_traceback(record: logging.LogRecord) -> bool:
    """Scrapy logs a robots.txt it could not fetch with a full traceback; its message says enough."""
    if record.name == "scrapy.downloadermiddlewares.robotstxt":
        record.exc_info = record.exc_text = None
    return True


def tree(ledger: Ledger) -> str:
    """The category tree as a dry run prints it: each branch with its label (and the rule that gave it),
    the listing pages and products found, or why it was not walked."""
    nodes = sorted(ledger.nodes.values(), key=lambda n: n.path)
    children: dict[tuple[str, ...], list[Node]] = {}
    for node in nodes:
        if len(node.path) > 1:
            children.setdefault(node.path[:-1], []).append(node)
    lines: list[str] = []

    def describe(node: Node) -> str:
        if node.skipped:
            return f"skipped: {node.skipped}"
        label = f"-> {node.label} (rule {node.rule!r})" if node.label else "no label"
        repeated = node.tiles - len(node.product_urls)
        listing = f"; {node.pages} listing pages, {len(node.product_urls)} products" if node.pages else ""
        if node.pages and repeated:
            listing += f" ({node.tiles} tiles: its pages repeat {repeated}, and may skip as many: a stable sort order in listing_query avoids both)"
        if node.short_pages():
            listing += (f" (page {', '.join(map(str, node.short_pages()))} shows fewer tiles than page 1, {node.page_tiles[1]}, "
                        "though pages follow: it skips products)")
        return label + listing

    def walk(node: Node, prefix: str, last: bool, top: bool) -> None:
        name = node.url if top else node.path[-1]
        lines.append(f"{'' if top else prefix + ('└── ' if last else '├── ')}{name}  [{describe(node)}]")
        below = children.get(node.path, [])
        for i, child in enumerate(below):
            walk(child, "" if top else prefix + ("    " if last else "│   "), i == len(below) - 1, False)

    for root in [n for n in nodes if len(n.path) == 1]:
        walk(root, "", True, True)
    labelled = len(set().union(*(n.product_urls for n in nodes if n.label and not n.skipped)))  # a product on two listings is one
    skipped = sum(1 for n in nodes if n.skipped)
    taken, left = _from_parents(ledger.nodes)
    for rule, count in taken.items():
        lines.append(f"rule {rule!r} takes {count} products only a parent category's own pages show, though it has sub-categories "
                     "(check that they are not from an unread branch)")
    if left:
        lines.append(f"{left} products only a parent category lists are left out: a branch below it was not walked, and they may be from there")
    for outside in ledger.outside.values():
        lines.append(f"{len(outside)} categories the pages link outside the start URL's path were not walked (tree by URL path; "
                     f"tree: links walks every linked category): {', '.join(sorted(outside))}")
    for start, keys in ledger.unmatched.items():
        if keys:
            lines.append(f"on the start page {start} these selectors found nothing: {', '.join(f'selectors.{k}' for k in keys)}")
    lines.append(f"{len(nodes)} categories, {skipped} skipped; {labelled} distinct products in labelled listings, "
                 f"{ledger.unlabelled} in listings without a label")
    return "\n".join(lines)
