"""The Scrapy spider that walks a catalogue as SITE.yaml describes it, and the ledger it writes.

From each start URL it follows category links down the tree (a branch a skip rule matches is not
fetched), reads each listing's pages (next link or page count), and for each product tile notes the
product, its thumbnail (rewritten to the larger picture) and the label of the branch it was found in;
unless it is a dry run, it downloads each picture once, checks it (type, size, decompression bomb) and
keeps it under its SHA-1 until the crawl ends and pictures.py decides what goes where. Everything it
saw goes into the `Ledger`, which the report is made from.

Where a category sits in the tree: below the page that links it, unless the shop's category URLs nest
(`tree: url`, or `auto` when the start page links categories below its own URL path). Then a menu of the
whole catalogue on every page places nothing: a category is a child of the deepest category whose URL
path holds its own, and a link outside the start URL's path (another department) is not walked.
`owners` decides, once the listings are read, which category says what each product is.
"""

from __future__ import annotations

import hashlib
import io
import re
import time
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import parse_qsl, unquote, urlencode, urlsplit, urlunsplit

import imagehash
import scrapy
from scrapy.exceptions import IgnoreRequest
from scrapy.spidermiddlewares.httperror import HttpError

from trilla.atomic import write_bytes
from trilla.harvest.site import SKIP, Site, allowed, label_for, select, select_nodes
from trilla.kinds.image.decode import ImageError, open_picture

STAGING = ".harvest"  # OUT/.harvest: the pictures while the crawl runs, then the report and contact sheets (a hidden folder is no data)
REFUSED = "refused.tsv"  # pictures refused while downloading (too large): the one failure the HTTP cache cannot remember
TOO_LARGE = "larger than limits.max_image_mb"
FORMATS = {"JPEG": "jpg", "PNG": "png", "WEBP": "webp", "GIF": "gif", "BMP": "bmp", "TIFF": "tif"}


@dataclass
class Node:
    """One category of the tree: where it is, what label it got and why, and what its listing held."""

    path: tuple[str, ...]
    url: str
    label: str | None = None
    rule: str = ""
    skipped: str = ""  # why the branch was not walked (a skip rule, robots.txt, outside the domains, an error)
    page_tiles: dict[int, int] = field(default_factory=dict)  # listing page number -> the product tiles on it
    product_urls: set[str] = field(default_factory=set)  # the distinct products they show (a last page may repeat some)

    @property
    def pages(self) -> int:
        return len(self.page_tiles)

    @property
    def tiles(self) -> int:
        return sum(self.page_tiles.values())

    def short_pages(self) -> list[int]:
        """Pages between the first and the last with fewer tiles than the first: a listing that skips products."""
        if 1 not in self.page_tiles:
            return []
        last = max(self.page_tiles)
        return sorted(page for page, count in self.page_tiles.items() if 1 < page < last and count < self.page_tiles[1])


@dataclass
class Tile:
    product_url: str
    image_url: str
    listing: str
    path: tuple[str, ...]
    label: str


@dataclass
class Picture:
    url: str
    sha1: str
    phash: str
    width: int
    height: int
    bytes: int
    ext: str
    staged: Path
    fetched: str


@dataclass
class Ledger:
    nodes: dict[tuple[str, ...], Node] = field(default_factory=dict)
    tiles: list[Tile] = field(default_factory=list)
    pictures: dict[str, Picture] = field(default_factory=dict)  # by image URL
    errors: list[tuple[str, str]] = field(default_factory=list)  # (URL, reason)
    unlabelled: int = 0  # tiles in branches no rule labels
    over_cap: int = 0  # tiles not fetched because their label was full
    unmatched: dict[str, list[str]] = field(default_factory=dict)  # start page -> the selectors that found nothing on it
    by_url_path: dict[str, bool] = field(default_factory=dict)  # start page -> whether its tree is placed by URL path
    outside: dict[str, set[str]] = field(default_factory=dict)  # start page -> categories it links outside its URL path
    finish: str = ""  # Scrapy's reason the crawl ended


def slug(url: str) -> str:
    """A category's name in the path: the last part of its URL's path."""
    parts = [unquote(p) for p in urlsplit(url).path.split("/") if p]
    return parts[-1] if parts else urlsplit(url).hostname or "/"


def canonical(url: str, keep: list[str]) -> str:
    """A category link as the category it names: no fragment, and only the query parameters in `keep`
    (a facet, a sort order or a page size of a listing is that listing)."""
    parts = urlsplit(url)
    query = [(key, value) for key, value in parse_qsl(parts.query, keep_blank_values=True) if key in keep]
    return urlunsplit(parts._replace(query=urlencode(query), fragment=""))


def below(url: str, other: str) -> bool:
    """Whether `url`'s path lies strictly inside `other`'s on the same site (/a/b/c/ inside /a/b/)."""
    a, b = urlsplit(url), urlsplit(other)
    inner, outer = [p for p in a.path.split("/") if p], [p for p in b.path.split("/") if p]
    return a.netloc == b.netloc and len(inner) > len(outer) and inner[: len(outer)] == outer


def owners(nodes: dict[tuple[str, ...], Node]) -> tuple[dict[str, set[tuple[str, ...]]], dict[str, str]]:
    """(product URL -> the categories that say what it is, product URL -> why none can).

    Shops list a category's descendants' products on its own pages too, so a product belongs to the
    deepest walked categories that list it (an unlabelled one included: then it has no label). A product
    only a parent lists while a branch below that parent was not walked (a skip rule, robots.txt, an
    error) may be one of that branch's: it is left out, never given the parent's label."""
    walked = [n for n in nodes.values() if not n.skipped]
    unwalked = [n.path for n in nodes.values() if n.skipped]
    listing: dict[str, list[Node]] = {}
    for node in walked:
        for product in node.product_urls:
            listing.setdefault(product, []).append(node)
    inside = lambda path, parent: len(path) > len(parent) and path[: len(parent)] == parent  # noqa: E731
    owned: dict[str, set[tuple[str, ...]]] = {}
    left: dict[str, str] = {}
    for product, nodes_listing in listing.items():
        deepest = [n for n in nodes_listing if not any(inside(o.path, n.path) for o in nodes_listing)]
        for node in deepest:
            hidden = [path for path in unwalked if inside(path, node.path)]
            if hidden:
                left[product] = (f"only {'/'.join(node.path)} lists it, and {', '.join('/'.join(p) for p in hidden)} below it "
                                 "was not walked: it may be from there")
            elif node.label is None and len(nodes_listing) > 1:
                left[product] = f"its deepest category {'/'.join(node.path)} has no label"
            elif node.label is not None:
                owned.setdefault(product, set()).add(node.path)
    return owned, {product: why for product, why in left.items() if product not in owned}


def with_query(url: str, extra: str | None, **params) -> str:
    """`url` with the `extra` query (`limit=100`) and `params` set, other parameters kept."""
    parts = urlsplit(url)
    query = dict(parse_qsl(parts.query, keep_blank_values=True))
    if extra:
        query.update(parse_qsl(extra, keep_blank_values=True))
    query.update({k: str(v) for k, v in params.items()})
    return urlunsplit(parts._replace(query=urlencode(query)))


class CatalogueSpider(scrapy.Spider):
    name = "trilla-catalogue"

    def __init__(self, site: Site, ledger: Ledger, staging: Path, dry_run: bool = False, max_items: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.site, self.ledger, self.staging, self.dry_run = site, ledger, staging, dry_run
        self.allowed_domains = list(site.allowed_domains)
        self.max_items = max_items
        self.requested: set[str] = set()
        self.per_label: dict[str, int] = {}  # pictures downloaded per label, for per_label_cap
        self.labels_of: dict[str, set[str]] = {}  # image URL -> the labels of the tiles that showed it
        self.rules = site.rules
        self.category_urls: set[str] = {canonical(url, site.keep_query) for url in site.start_urls}
        self.paths: dict[str, tuple[str, ...]] = {canonical(url, site.keep_query): (slug(url),) for url in site.start_urls}  # category -> its node
        self.starts: dict[str, str] = {}  # a tree's root (its path's first name) -> its start URL
        self.read: set[str] = set()  # categories whose first page was read (their sub-categories placed)
        self.pending: dict[str, list[str]] = {}  # a category not read yet -> the sub-categories its URL path holds, seen elsewhere
        self.product_images: dict[str, str | None] = {}  # product page -> its picture's URL, once read
        self.waiting: dict[str, list[tuple[str, Node]]] = {}  # product page asked for -> the listings it was found in
        self.journal = staging.parent / REFUSED
        self.refused = dict(line.split("\t", 1) for line in self.journal.read_text().splitlines()) if self.journal.is_file() else {}

    async def start(self):
        for url in self.site.start_urls:
            yield self.category(url, (slug(url),))

    def category(self, url: str, path: tuple[str, ...], page: int = 1) -> scrapy.Request:
        if self.site.listing_query:
            url = with_query(url, self.site.listing_query)
        return scrapy.Request(url, callback=self.parse_category, errback=self.category_failed,
                              cb_kwargs={"path": path, "page": page})

    def node(self, path: tuple[str, ...], url: str) -> Node:
        if path not in self.ledger.nodes:
            self.ledger.nodes[path] = Node(path, url)
        return self.ledger.nodes[path]

    def parse_category(self, response, path: tuple[str, ...], page: int):
        node = self.node(path, response.url)
        self.category_urls.add(canonical(response.url, self.site.keep_query))  # where a redirect led: that page is this node too
        breadcrumb = [t.strip() for t in select(response, self.site.selectors.breadcrumb) if t.strip()] if self.site.selectors.breadcrumb else []
        label, rule = label_for(self.rules, [*path, *breadcrumb])
        if label == SKIP:  # known only from the breadcrumb, once the page is read
            node.skipped = f"skip rule {rule.pattern!r}"
            return
        node.label, node.rule = label, rule.pattern if rule else ""
        if page == 1 and len(path) == 1:  # the dry run names the selectors the start page does not answer
            chosen = self.site.selectors
            self.ledger.unmatched[response.url] = [key for key in ("categories", "products", "next_page", "page_count", "breadcrumb")
                                                   if getattr(chosen, key) and not select(response, getattr(chosen, key))]
        if page == 1:
            yield from self.children(response, node, path)
        tiles = select_nodes(response, self.site.selectors.products) if self.site.selectors.products else []
        if len(tiles):
            node.page_tiles[page] = len(tiles)
        for tile in tiles:
            yield from self.product(response, tile, node)
        yield from self.next_pages(response, path, page, bool(len(tiles)))

    def children(self, response, node: Node, path: tuple[str, ...]):
        """The sub-categories of the category just read: the links its page shows, or, when the tree is
        placed by URL path, those links and the ones seen before whose URL path this category holds."""
        keep = self.site.keep_query
        here = {canonical(node.url, keep), canonical(response.url, keep)}
        links = list(dict.fromkeys(canonical(response.urljoin(href), keep) for href in select(response, self.site.selectors.categories))) \
            if self.site.selectors.categories else []
        if len(path) == 1:
            self.starts[path[0]] = canonical(node.url, keep)
            self.ledger.by_url_path[self.starts[path[0]]] = self.site.tree == "url" or (
                self.site.tree == "auto" and any(below(link, self.starts[path[0]]) for link in links))
        start = self.starts[path[0]]
        self.read.update(here)
        for url in here:
            self.paths.setdefault(url, path)
            for link in self.pending.pop(url, []):
                yield from self.child(link, path)
        if not self.ledger.by_url_path[start]:
            for link in links:
                yield from self.child(link, path)
            return
        for link in links:
            if link in self.category_urls:
                continue
            if not below(link, start):
                self.ledger.outside.setdefault(start, set()).add(link)
                continue
            parent = max((url for url in [*self.paths, *links] if below(link, url) and (url == start or below(url, start))), key=lambda url: len(urlsplit(url).path))
            if parent in here:
                yield from self.child(link, path)
            elif parent in self.read:
                yield from self.child(link, self.paths[parent])
            elif link not in self.pending.setdefault(parent, []):
                self.pending[parent].append(link)

    def child(self, url: str, parent: tuple[str, ...]):
        path = (*parent, slug(url))
        if path in self.ledger.nodes or url in self.category_urls:  # one node per category, however often it is linked
            return
        self.category_urls.add(url)
        self.paths[url] = path
        node = self.node(path, url)
        if not allowed(url, self.allowed_domains):
            node.skipped = "outside allowed_domains"
            return
        label, rule = label_for(self.rules, list(path))
        if label == SKIP:
            node.skipped = f"skip rule {rule.pattern!r}"
            return
        yield self.category(url, path)

    def next_pages(self, response, path: tuple[str, ...], page: int, listing: bool):
        """The listing's next page by its link, or (on page 1, without one) every page the count names."""
        chosen = self.site.selectors
        following = select(response, chosen.next_page)[:1] if chosen.next_page else []
        for href in following:
            yield self.category(response.urljoin(href), path, page + 1)
        if not following and chosen.page_count and page == 1 and listing:
            text = " ".join(select(response, chosen.page_count))
            digits = [int(word) for word in text.replace("/", " ").split() if word.isdigit()]
            for number in range(2, (max(digits) if digits else 1) + 1):
                url = with_query(response.url, None, **{chosen.page_param: number})
                yield self.category(url, path, number)

    def image_url(self, response, node) -> str | None:
        """The picture's URL in a tile or on a product page (the first image attribute it has), rewritten."""
        chosen = self.site.selectors
        images = select_nodes(node, chosen.image)
        source = next((value for attribute in chosen.image_attributes for value in images.xpath(f"@{attribute}").getall() if value.strip()), None)
        if source is None:
            return None
        url = response.urljoin(source.strip())
        for rewrite in self.site.image_rewrite:
            url = re.sub(rewrite.pattern, rewrite.replace, url)
        return url

    def product(self, response, tile, node: Node):
        chosen = self.site.selectors
        links = select(tile, chosen.product_link)
        node.product_urls.update(response.urljoin(link) for link in links[:1])
        image_url = None if chosen.product_page else self.image_url(response, tile)
        if not links or (image_url is None and not chosen.product_page):
            self.ledger.errors.append((response.url, f"a product tile without {'a product link' if not links else 'an image'}"))
            return
        if node.label is None:
            self.ledger.unlabelled += 1
            return
        product_url = response.urljoin(links[0])
        if not chosen.product_page:
            yield from self.picture(Tile(product_url, image_url, response.url, node.path, node.label))
        elif product_url in self.product_images:  # a product seen in another listing: its page was read already
            if self.product_images[product_url] is not None:
                yield from self.picture(Tile(product_url, self.product_images[product_url], response.url, node.path, node.label))
        elif product_url in self.waiting:
            self.waiting[product_url].append((response.url, node))
        elif not self.dry_run and allowed(product_url, self.allowed_domains):
            self.waiting[product_url] = [(response.url, node)]
            yield scrapy.Request(product_url, callback=self.parse_product, errback=self.picture_failed, priority=5,
                                 cb_kwargs={"product_url": product_url})

    def parse_product(self, response, product_url: str):
        image_url = self.product_images[product_url] = self.image_url(response, response)
        if image_url is None:
            self.ledger.errors.append((product_url, "a product page without an image"))
        for listing, node in self.waiting.pop(product_url, []):
            if image_url is not None:
                yield from self.picture(Tile(product_url, image_url, listing, node.path, node.label))

    def picture(self, tile: Tile):
        """Note the tile; download its picture unless that was asked for already (or the label is full)."""
        self.ledger.tiles.append(tile)
        image_url, label = tile.image_url, tile.label
        self.labels_of.setdefault(image_url, set()).add(label)
        if self.dry_run or image_url in self.requested:
            return
        cap = self.site.per_label_cap
        if cap is not None and self.per_label.get(label, 0) >= cap:
            self.ledger.over_cap += 1
            return
        if self.max_items is not None and len(self.requested) >= self.max_items:
            return
        self.requested.add(image_url)
        if image_url in self.refused:  # refused by an earlier run of this harvest: not fetched again
            self.ledger.errors.append((image_url, self.refused[image_url]))
            return
        if not allowed(image_url, self.allowed_domains):
            self.ledger.errors.append((image_url, "outside allowed_domains"))
            return
        yield scrapy.Request(image_url, callback=self.parse_picture, errback=self.picture_failed, priority=10,
                             meta={"download_maxsize": int(self.site.limits.max_image_mb * 2**20)})

    def parse_picture(self, response):
        url = response.meta.get("redirect_urls", [response.url])[0]  # the URL the tile named, even when it redirected
        kind = response.headers.get(b"Content-Type", b"").decode("latin-1").split(";")[0].strip().lower()
        if not kind.startswith("image/"):
            self.ledger.errors.append((url, f"not a picture: Content-Type {kind or 'missing'}"))
            return
        body = response.body
        try:
            with open_picture(io.BytesIO(body), self.site.limits.max_pixels, "limits.max_pixels") as img:
                width, height = img.size
                fmt = img.format
                if min(width, height) < self.site.limits.min_side:
                    raise ImageError(f"{width}x{height} is smaller than limits.min_side {self.site.limits.min_side}")
                img.load()
                phash = str(imagehash.phash(img.convert("RGB")))
        except (OSError, ValueError) as err:  # an ImageError is a ValueError; imagehash raises both kinds
            self.ledger.errors.append((url, f"unreadable picture: {err}"))
            return
        sha1 = hashlib.sha1(body).hexdigest()
        ext = FORMATS.get(fmt or "", "img")
        staged = self.staging / f"{sha1}.{ext}"
        if not staged.exists():
            write_bytes(staged, body)
        for label in self.labels_of.get(url, ()):
            self.per_label[label] = self.per_label.get(label, 0) + 1
        self.ledger.pictures[url] = Picture(url, sha1, phash, width, height, len(body), ext, staged,
                                            time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(response.meta.get("cache_timestamp", time.time()))))

    def category_failed(self, failure):
        request = failure.request
        if request.cb_kwargs.get("page", 1) == 1:
            self.node(request.cb_kwargs.get("path", ()), request.url).skipped = self.reason(failure)
        else:  # a later page of a listing that was walked
            self.ledger.errors.append((request.url, self.reason(failure)))

    def picture_failed(self, failure):
        """A picture (or a product page) that could not be had: an error in the report."""
        reason = self.reason(failure)
        self.waiting.pop(failure.request.url, None)
        self.ledger.errors.append((failure.request.url, reason))
        if reason.startswith(TOO_LARGE):  # no answer was cached, so note it for --resume
            with self.journal.open("a") as journal:
                journal.write(f"{failure.request.url}\t{reason}\n")

    def reason(self, failure) -> str:
        error = failure.value
        if isinstance(error, HttpError):
            return f"HTTP {error.response.status}"
        if isinstance(error, IgnoreRequest):
            text = str(error)
            return "robots.txt disallows it" if "robots.txt" in text else ("outside allowed_domains" if "offsite" in text.lower() else text)
        text = str(error) or type(error).__name__
        if "max size" in text.lower() or "maxsize" in text.lower():
            return f"{TOO_LARGE} ({self.site.limits.max_image_mb:g} MB)"
        return f"{type(error).__name__}: {text}"[:300]
