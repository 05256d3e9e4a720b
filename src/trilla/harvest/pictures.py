"""What the downloaded pictures become once the crawl ends: placeholders out, each picture once, pictures
found under two labels out, the rest in OUT/<label>/<name>.<ext>.

Pictures are grouped when they are the same file (SHA-1) or look the same (perceptual hashes from
`imagehash` within `duplicate_distance` bits: a resized copy, the same product in two categories). A
group is a placeholder when it looks like one of SITE.yaml's examples or stands for `min_products`
different products or more; a group seen under two labels is a conflict; otherwise its largest picture
is kept. A product's label is that of the deepest category listing it (`spider.owners`), and a product
no category can vouch for is left out. Names come from the product URL's last part (letters, digits, -
and _ only) and a hash of the image URL, so a re-run names every picture the same, and no text from the
site becomes a path.
provenance.csv names each picture in a `path` column (relative to OUT), so it is also a manifest that
`trilla train --data OUT/provenance.csv` reads, with the category path and URLs as columns.
"""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass, field
from pathlib import Path

import imagehash
import numpy as np
import pandas as pd

from trilla.atomic import write_bytes
from trilla.harvest.site import Site
from trilla.harvest.spider import Ledger, Picture, Tile, owners, slug
from trilla.kinds.image.decode import open_picture

PROVENANCE = "provenance.csv"
COLUMNS = ["path", "label", "image_url", "product_url", "listing_page", "category_path", "listed_in", "sha1", "phash", "width", "height",
           "bytes", "time"]


@dataclass
class Assembly:
    kept: pd.DataFrame
    placeholders: list[dict] = field(default_factory=list)  # image URL, products, why
    duplicates: list[dict] = field(default_factory=list)  # image URL left out, the file kept instead
    conflicts: list[dict] = field(default_factory=list)  # image URLs, labels, category paths
    removed: list[str] = field(default_factory=list)  # files an earlier run placed that no longer belong
    left_out: list[dict] = field(default_factory=list)  # product URL, why no category can say what it is


def _groups(pictures: list[Picture], distance: int) -> list[list[int]]:
    """Indices of pictures that are one picture: the same SHA-1 or pHashes within `distance` bits."""
    parent = list(range(len(pictures)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    hashes = np.array([int(p.phash, 16) for p in pictures], dtype=np.uint64)
    sha1s = np.array([p.sha1 for p in pictures])
    for i in range(len(pictures) - 1):
        close = (np.bitwise_count(hashes[i] ^ hashes[i + 1:]) <= distance) | (sha1s[i + 1:] == sha1s[i])
        for j in np.flatnonzero(close) + i + 1:
            parent[root(int(j))] = root(i)
    groups: dict[int, list[int]] = {}
    for i in range(len(pictures)):
        groups.setdefault(root(i), []).append(i)
    return list(groups.values())


def _example_hashes(site: Site, site_dir: Path) -> list[tuple[str, imagehash.ImageHash]]:
    out = []
    for example in site.placeholders.examples:
        with open_picture(site_dir / example) as img:
            out.append((example, imagehash.phash(img.convert("RGB"))))
    return out


def file_name(product_url: str, image_url: str, ext: str, digits: int = 8) -> str:
    """`<product>-<hash of the image URL>.<ext>`: stable across runs, safe on every file system."""
    stem = re.sub(r"[^A-Za-z0-9_-]+", "-", slug(product_url)).strip("-")[:60] or "product"
    return f"{stem}-{hashlib.sha1(image_url.encode()).hexdigest()[:digits]}.{ext}"


def assemble(ledger: Ledger, site: Site, site_dir: Path, out: Path) -> Assembly:
    listed: dict[str, set[str]] = {}  # product URL -> every category whose pages show it
    for tile in ledger.tiles:
        listed.setdefault(tile.product_url, set()).add("/".join(tile.path))
    seen: dict[str, list[Tile]] = {}
    owned, result_left = owners(ledger.nodes)
    for tile in ledger.tiles:
        if tile.path in owned.get(tile.product_url, ()):
            seen.setdefault(tile.image_url, []).append(tile)
    pictures = [p for url, p in ledger.pictures.items() if url in seen]
    examples = _example_hashes(site, site_dir)
    result = Assembly(kept=pd.DataFrame(columns=COLUMNS), left_out=[{"product_url": url, "why": why} for url, why in sorted(result_left.items())])
    rows, names = [], set()
    for members in _groups(pictures, site.duplicate_distance):
        group = [pictures[i] for i in members]
        tiles = [t for p in group for t in seen[p.url]]
        products = sorted({t.product_url for t in tiles})
        like = next((name for name, h in examples for p in group if h - imagehash.hex_to_hash(p.phash) <= site.placeholders.distance), None)
        if like is not None or len(products) >= site.placeholders.min_products:
            why = f"looks like {like}" if like is not None else f"the same picture on {len(products)} products"
            result.placeholders += [{"image_url": p.url, "products": len(products), "why": why} for p in group]
            continue
        labels = sorted({t.label for t in tiles})
        if len(labels) > 1:
            result.conflicts.append({"image_urls": [p.url for p in group], "labels": labels,
                                     "category_paths": sorted({"/".join(t.path) for t in tiles})})
            continue
        best = max(group, key=lambda p: (p.width * p.height, -group.index(p)))
        first = seen[best.url][0]
        name = file_name(first.product_url, best.url, best.ext)
        if name in names:  # two image URLs whose first 8 hex digits agree
            name = file_name(first.product_url, best.url, best.ext, digits=40)
        names.add(name)
        file = f"{first.label}/{name}"
        rows.append({"path": file, "label": first.label, "image_url": best.url, "product_url": first.product_url,
                     "listing_page": first.listing, "category_path": "/".join(first.path),
                     "listed_in": ";".join(sorted(set().union(*(listed[t.product_url] for t in tiles)))), "sha1": best.sha1, "phash": best.phash,
                     "width": best.width, "height": best.height, "bytes": best.bytes, "time": best.fetched})
        result.duplicates += [{"image_url": p.url, "kept": file} for p in group if p is not best]
        result.duplicates += [{"image_url": best.url, "kept": file} for _ in seen[best.url][1:]]  # the same URL on more tiles
    kept = pd.DataFrame(rows, columns=COLUMNS)
    if site.per_label_cap is not None:  # downloads still on their way when a label filled up: the first ones found stay
        first: dict[str, int] = {}
        for at, tile in enumerate(ledger.tiles):
            first.setdefault(tile.image_url, at)
        kept = kept.assign(found=kept["image_url"].map(first)).sort_values("found").groupby("label").head(site.per_label_cap)
        ledger.over_cap += len(rows) - len(kept)
    result.kept = kept[COLUMNS].sort_values("path", ignore_index=True)
    by_sha1 = {p.sha1: p for p in pictures}
    for row in result.kept.itertuples():
        target = out / row.path
        if not (target.is_file() and hashlib.sha1(target.read_bytes()).hexdigest() == row.sha1):
            target.parent.mkdir(parents=True, exist_ok=True)
            write_bytes(target, by_sha1[row.sha1].staged.read_bytes())
    result.removed = _remove_stale(out, set(result.kept["path"]))
    return result


def _remove_stale(out: Path, keep: set[str]) -> list[str]:
    """Files an earlier run of this harvest placed (its provenance.csv lists them with their SHA-1) that
    this run leaves out (a conflict found since, say); a file a person changed is left alone."""
    earlier = out / PROVENANCE
    if not earlier.is_file():
        return []
    removed, inside = [], out.resolve()
    for row in pd.read_csv(earlier, dtype=str, keep_default_na=False).itertuples():
        target = out / row.path
        if inside not in target.resolve().parents:  # an edited provenance.csv never points the removal elsewhere
            continue
        if row.path not in keep and target.is_file() and hashlib.sha1(target.read_bytes()).hexdigest() == row.sha1:
            target.unlink()
            removed.append(row.path)
    return removed
