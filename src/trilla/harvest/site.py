"""SITE.yaml: what `trilla harvest crawl` walks and how it names what it finds.

A catalogue is a tree of category pages from the start URLs; a category page links to sub-categories
and may be a listing of product tiles (each a product link and a thumbnail), spread over pages; with
`selectors.product_page` the picture is taken from each product's own page instead. Label
rules are `pattern -> label` lines matched against the names on a category's way (the last part of each
category's URL, and the breadcrumb's items): whole words by default (`matches`), a regular expression
when the pattern is one. A branch any `skip` rule matches is not walked; otherwise the deepest name a
rule matches gives the label, and a branch no rule matches is walked for sub-categories that do match,
its own products left out. `tree` says where a category sits (spider.py).

Unknown keys get the training config's did-you-mean errors; a selector that does not parse, a rule
that is no `pattern -> label` or a pattern that is no regular expression fails before anything is
fetched.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit

import yaml
from parsel import Selector
from pydantic import Field, ValidationError, field_validator, model_validator

from trilla.errors import TrillaError
from trilla.schema import Section, explain, load_yaml

SKIP = "skip"
WALK = "walk"  # a rule label: walk the branch, but its name labels nothing (a root like guitars-and-basses)
LABEL_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 ._-]{0,63}$")  # a folder name on every system


def select(node, selector: str) -> list[str]:
    """What a selector picks out of a page or a tile: CSS by default, XPath after `xpath:`."""
    if selector.startswith("xpath:"):
        return node.xpath(selector[len("xpath:"):]).getall()
    return node.css(selector).getall()


def select_nodes(node, selector: str):
    return node.xpath(selector[len("xpath:"):]) if selector.startswith("xpath:") else node.css(selector)


class Selectors(Section):
    """Where things are on a page (CSS, or XPath after `xpath:`)."""

    categories: str | None = Field(None, description="links to sub-categories, e.g. 'nav.sub a::attr(href)'")
    products: str | None = Field(None, description="the product tiles of a listing, e.g. '.product-tile'")
    product_link: str = Field("a::attr(href)", description="inside a tile: the product's link")
    image: str = Field("img", description="inside a tile (or on the product page, with product_page): the picture's element")
    product_page: bool = Field(False, description="follow each product link and take the picture from the product page")
    image_attributes: list[str] = Field(["data-src", "src"], min_length=1, description="the first of these the image element has is its URL")
    next_page: str | None = Field(None, description="a listing's link to its next page, e.g. 'a[rel=next]::attr(href)'")
    page_count: str | None = Field(None, description="text holding a listing's number of pages (then pages are ?page_param=N)")
    page_param: str = Field("page", description="with page_count: the query parameter of the page number")
    breadcrumb: str | None = Field(None, description="the breadcrumb's text, matched by the label rules too")

    @field_validator("categories", "products", "product_link", "image", "next_page", "page_count", "breadcrumb")
    @classmethod
    def _parses(cls, value: str | None) -> str | None:
        if value is not None:
            try:
                select(Selector(text="<html><body></body></html>"), value)
            except Exception as err:  # noqa: BLE001 - cssselect and lxml raise their own kinds for a bad selector
                kind = "XPath" if value.startswith("xpath:") else "CSS"
                raise ValueError(f"bad {kind} selector {value!r}: {err}") from None
        return value

    @field_validator("categories", "product_link", "next_page")
    @classmethod
    def _links(cls, value: str | None) -> str | None:
        """A link selector must pick the link, not the element: the element's HTML is no URL."""
        if value is None:
            return value
        if value.startswith("xpath:"):
            if not re.search(r"/@[\w:-]+\s*$", value):
                raise ValueError(f"{value!r} picks elements, not their links: end it with /@href")
        elif not re.search(r"::attr\([\w:-]+\)\s*$", value):
            raise ValueError(f"{value!r} picks elements, not their links: end it with ::attr(href), as in {value.strip()}::attr(href)")
        return value


class Rewrite(Section):
    """A regular-expression substitution on image URLs: the thumbnail's URL to a larger picture's."""

    pattern: str
    replace: str

    @field_validator("pattern")
    @classmethod
    def _compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as err:
            raise ValueError(f"{value!r} is not a regular expression: {err}") from None
        return value


class Placeholders(Section):
    """The shop's stand-in thumbnails ("no picture yet"), skipped and counted."""

    examples: list[str] = Field([], description="picture files of placeholders, relative to SITE.yaml")
    distance: int = Field(6, ge=0, le=32, description="perceptual-hash bits within which a picture is an example's")
    min_products: int = Field(5, ge=2, description="the same picture on this many products is a placeholder")


class Politeness(Section):
    delay: float = Field(1.0, ge=0, description="seconds between requests to one domain (robots.txt's Crawl-delay if larger)")
    concurrency: int = Field(2, ge=1, le=32, description="requests at once per domain")
    autothrottle: bool = Field(True, description="Scrapy's AutoThrottle: slow down when the site answers slowly")
    timeout: float = Field(30.0, gt=0, description="seconds to connect and read one answer")
    retries: int = Field(3, ge=0, le=10, description="retries after 429, 5xx and connection errors")
    backoff: float = Field(2.0, ge=0, description="seconds before the first retry, doubled for each next one (Retry-After if larger)")
    user_agent: str | None = Field(None, description="who is asking, best with a way to reach you; default: trilla-harvest/VERSION")
    cache_hours: float = Field(168.0, ge=0, description="pages and pictures fetched within this are read from the HTTP cache (0: forever)")


class Limits(Section):
    max_image_mb: float = Field(10.0, gt=0, description="larger pictures are not downloaded")
    max_pixels: int = Field(40_000_000, gt=0, description="pictures claiming more pixels are refused before decoding")
    min_side: int = Field(16, ge=1, description="smaller pictures are left out")


class Rule(Section):
    pattern: str
    label: str


class Site(Section):
    start_urls: list[str] = Field(min_length=1, description="the root categories")
    allowed_domains: list[str] = Field(min_length=1, description="host names whose pages and pictures may be fetched")
    selectors: Selectors
    labels: list[str] = Field(min_length=1, description="'pattern -> label' rules; label 'skip' drops the branch, 'walk' walks it "
                              "without its name labelling anything")
    image_rewrite: list[Rewrite] = []
    listing_query: str | None = Field(None, description="added to every listing URL, e.g. 'limit=100' for 100 products a page")
    keep_query: list[str] = Field([], description="query parameters that make a category link another category; the others (facets, "
                                  "sorting, page size, page) name the same listing")
    tree: Literal["auto", "links", "url"] = Field("auto", description="where a category sits: below the page that links it "
                                                 "('links'), below the category whose URL path holds its own ('url': a menu of the "
                                                 "whole catalogue on every page places nothing, and links outside the start URL's "
                                                 "path are not walked), or 'url' when the start page links categories below its "
                                                 "own path ('auto')")
    per_label_cap: int | None = Field(None, ge=1, description="at most this many pictures per label")
    duplicate_distance: int = Field(4, ge=0, le=32, description="perceptual-hash bits within which two pictures are one")
    placeholders: Placeholders = Placeholders()
    politeness: Politeness = Politeness()
    limits: Limits = Limits()

    @field_validator("start_urls")
    @classmethod
    def _http(cls, urls: list[str]) -> list[str]:
        for url in urls:
            if urlsplit(url).scheme not in ("http", "https") or not urlsplit(url).hostname:
                raise ValueError(f"{url!r} is not an http(s) URL")
        return urls

    @field_validator("allowed_domains")
    @classmethod
    def _hosts(cls, domains: list[str]) -> list[str]:
        """Host names alone, as Scrapy's offsite filter compares them: a port or a scheme never matches."""
        for domain in domains:
            host = urlsplit(domain if "//" in domain else f"//{domain}").hostname or ""
            if domain != host and domain.lower() != host:
                raise ValueError(f"{domain!r} is not a host name: write {host!r} (every port and both schemes of it are allowed)"
                                 if host else f"{domain!r} is not a host name")
        return domains

    @model_validator(mode="after")
    def _starts_allowed(self) -> Site:
        for url in self.start_urls:
            if not allowed(url, self.allowed_domains):
                host = urlsplit(url).hostname
                raise ValueError(f"the start URL {url} is on {host}, which allowed_domains {self.allowed_domains} does not include: "
                                 f"add {host!r} (localhost and 127.0.0.1 are different names)")
        return self

    @field_validator("labels")
    @classmethod
    def _rules(cls, lines: list[str]) -> list[str]:
        for line in lines:
            rule_of(line)
        return lines

    @property
    def rules(self) -> list[Rule]:
        return [rule_of(line) for line in self.labels]

    @property
    def label_names(self) -> list[str]:
        return list(dict.fromkeys(r.label for r in self.rules if r.label not in (SKIP, WALK)))


def rule_of(line: str) -> Rule:
    pattern, arrow, label = line.rpartition("->")
    pattern, label = pattern.strip(), label.strip()
    if not arrow or not pattern or not label:
        raise ValueError(f"{line!r} is not a rule: write 'pattern -> label' (label {SKIP!r} drops the branch, {WALK!r} walks it "
                         "without labelling by its name)")
    try:
        re.compile(pattern.removeprefix("re:"))
    except re.error as err:
        raise ValueError(f"{pattern!r} is not a regular expression: {err}") from None
    if not LABEL_NAME.match(label):
        raise ValueError(f"label {label!r} must be a plain folder name (letters, digits, space, . _ -)")
    return Rule(pattern=pattern, label=label)


REGEX = re.compile(r"[.^$*+?{}\[\]\\()]")  # a pattern with any of these is a regular expression
WORD = re.compile(r"\d+-[a-z]+|[a-z0-9]+")  # "4-string" is one word (a number and what it counts), as in "4-string basses"


def singular(word: str) -> str:
    """An English plural's singular, for the regular plurals category names use (basses, guitars, accessories)."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and re.search(r"(ss|x|z|ch|sh)es$", word):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def words(text: str) -> list[str]:
    """The words of a name, lower case and singular: what word rules compare."""
    return [singular(word) for word in WORD.findall(text.lower())]


def matches(pattern: str, name: str) -> bool:
    """Whether a rule's pattern matches a name. A pattern of plain words (alternatives joined by |) matches
    when one alternative's words stand as whole words in the name, singular or plural: `string` takes the
    "strings" branch, not "4-string-basses"; `guitar` takes "electric-guitars", not "guitarists-corner".
    A pattern with any other regular-expression character (or written `re:PATTERN`) is searched as a
    regular expression, case-insensitively."""
    if pattern.startswith("re:") or REGEX.search(pattern):
        return re.search(pattern.removeprefix("re:"), name, re.IGNORECASE) is not None
    have = words(name)
    for alternative in pattern.split("|"):
        wanted = words(alternative)
        if wanted and any(have[i:i + len(wanted)] == wanted for i in range(len(have) - len(wanted) + 1)):
            return True
    return False


def allowed(url: str, domains: list[str]) -> bool:
    """The URL's host is one of `domains` or below one (any port), as Scrapy's offsite filter decides."""
    host = (urlsplit(url).hostname or "").lower()
    return any(host == d.lower() or host.endswith("." + d.lower()) for d in domains)


def label_for(rules: list[Rule], names: list[str]) -> tuple[str | None, Rule | None]:
    """(the label, the rule that gave it) for a category, from the names on its way (its path, then its
    breadcrumb): SKIP when a skip rule matches any of them; else the label of the deepest name a rule
    matches (the first such rule), so `guitars-and-basses/basses` is a bass branch, passing over names a
    `walk` rule matches (so `guitars-and-basses -> walk` keeps the root's name from labelling what it
    lists); else (None, None)."""
    for rule in rules:
        if rule.label == SKIP and any(matches(rule.pattern, name) for name in names):
            return SKIP, rule
    for name in reversed(names):
        if any(rule.label == WALK and matches(rule.pattern, name) for rule in rules):
            continue
        for rule in rules:
            if rule.label not in (SKIP, WALK) and matches(rule.pattern, name):
                return rule.label, rule
    return None, None


def load_site(path: str | Path) -> Site:
    path = Path(path)
    if not path.is_file():
        raise TrillaError(f"site file {path} does not exist")
    try:
        raw = load_yaml(path.read_text())
    except (yaml.YAMLError, UnicodeDecodeError) as err:
        raise TrillaError(f"site file {path} is not valid YAML: {err}") from None
    if not isinstance(raw, dict):
        raise TrillaError(f"site file {path} must hold a mapping (start_urls, allowed_domains, selectors, labels, ...)")
    try:
        site = Site.model_validate(raw)
    except ValidationError as err:
        raise TrillaError(f"invalid site file {path}:\n" + "\n".join(explain(e, raw, Site) for e in err.errors())) from None
    missing = [example for example in site.placeholders.examples if not (path.parent / example).is_file()]
    if missing:
        raise TrillaError(f"placeholders.examples: {', '.join(missing)} not found beside {path}")
    if site.selectors.products is None and site.selectors.categories is None:
        raise TrillaError(f"{path}: selectors needs categories, products or both, or nothing is found")
    return site
