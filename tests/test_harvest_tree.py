"""`trilla harvest crawl` against a shop built unlike the first (tests/department_store.py): nesting URLs,
a menu of the whole catalogue on every page, parents listing their descendants' products, a disallowed
branch whose products the parent lists, hashed thumbnails. The tree, the labels and the folder must come
out right from the site file a newcomer writes first."""

from __future__ import annotations

import hashlib

import pandas as pd
import pytest

from conftest import trilla
from department_store import DISALLOWED, EXPECTED, LARGE, SITE_YAML, serve_store


@pytest.fixture
def store(tmp_path):
    log, base, stop = serve_store()
    (tmp_path / "site.yaml").write_text(SITE_YAML.format(base=base))
    yield log, base
    stop()


def test_the_tree_follows_the_url_paths_not_the_menu_on_every_page(store, tmp_path):
    log, base = store
    shown = trilla("harvest", "crawl", tmp_path / "site.yaml", tmp_path / "out", "--dry-run", "--cache", tmp_path / "cache", "-q")
    assert shown.stdout.splitlines() == [
        f"{base}/catalogue/guitars-and-basses/  [-> guitar (rule 'guitar'); 3 listing pages, 8 products]",
        "├── basses  [-> bass (rule 'bass'); 1 listing pages, 3 products]",
        "│   ├── 5-string  [-> bass (rule 'bass'); 1 listing pages, 1 products]",
        "│   └── fretless  [skipped: robots.txt disallows it]",
        "└── guitars  [-> guitar (rule 'guitar'); 1 listing pages, 5 products]",
        "    ├── acoustic  [-> guitar (rule 'guitar'); 1 listing pages, 1 products]",
        "    └── electric  [-> guitar (rule 'guitar'); 3 listing pages, 4 products (page 2 shows fewer tiles than page 1, 2, "
        "though pages follow: it skips products)]",
        "2 products only a parent category lists are left out: a branch below it was not walked, and they may be from there",
        "1 categories the pages link outside the start URL's path were not walked (tree by URL path; tree: links walks every "
        f"linked category): {base}/catalogue/keyboards/",
        "7 categories, 1 skipped; 8 distinct products in labelled listings, 0 in listings without a label",
    ]
    requested = [path for path in log if path != "/robots.txt"]
    assert len(requested) == len(set(requested)) and not [p for p in requested if "facets" in p or "sort=" in p or "keyboards" in p]
    # as the menu shows it, every category is a child of the start page: the keyboards and the 5-string basses become guitars
    (tmp_path / "links.yaml").write_text((tmp_path / "site.yaml").read_text() + "tree: links\n")
    flat = trilla("harvest", "crawl", tmp_path / "links.yaml", tmp_path / "out", "--dry-run", "--cache", tmp_path / "cache", "-q").stdout
    assert "├── 5-string  [-> guitar (rule 'guitar')" in flat and "└── keyboards  [-> guitar (rule 'guitar')" in flat


def test_labels_come_from_the_deepest_category_and_a_product_a_skipped_branch_may_own_is_left_out(store, tmp_path):
    log, base = store
    out = tmp_path / "out"
    trilla("harvest", "crawl", tmp_path / "site.yaml", out, "--cache", tmp_path / "cache", "-q")
    files = sorted(str(p.relative_to(out)) for p in out.glob("*/*.png") if not p.parent.name.startswith("."))
    assert files == sorted(f"{label}/{pid}-{hashlib.sha1(f'{base}/media/images/{pid}.png'.encode()).hexdigest()[:8]}.png"
                           for label, pids in EXPECTED.items() for pid in pids)
    provenance = pd.read_csv(out / "provenance.csv", keep_default_na=False).set_index("product_url")
    assert set(provenance["width"]) == {LARGE}  # the gallery's picture, though thumbnails are named by a hash
    e1 = provenance.loc[f"{base}/products/e1/"]
    assert e1["category_path"] == "guitars-and-basses/guitars/electric"
    assert e1["listed_in"] == "guitars-and-basses;guitars-and-basses/guitars;guitars-and-basses/guitars/electric"
    assert provenance.loc[f"{base}/products/f1/", "label"] == "bass"  # the root's rule 'guitar' does not reach it
    report = (out / ".harvest" / "report.md").read_text()
    assert "2 products left out that no category can vouch for." in report
    for pid in ("d1", "n1"):  # the basses list both: d1 is the disallowed fretless branch's, n1 their own; no telling which
        assert (f"| {base}/products/{pid}/ | only guitars-and-basses/basses lists it, and guitars-and-basses/basses/fretless below it "
                "was not walked: it may be from there |") in report
    assert not [p for p in log if p.startswith(DISALLOWED) or "keyboards" in p or p.startswith("/media/cache/")]


def test_a_product_whose_deepest_listing_has_no_label_takes_no_label_from_its_parent():
    from trilla.harvest.spider import Node, owners

    nodes = {("shop", "guitars"): Node(("shop", "guitars"), "u1", label="guitar", product_urls={"p1", "p2"}),
             ("shop", "guitars", "gift-cards"): Node(("shop", "guitars", "gift-cards"), "u2", product_urls={"p2"}),
             ("shop", "guitars", "sets"): Node(("shop", "guitars", "sets"), "u3", skipped="skip rule 'set'")}
    owned, left = owners(nodes)
    assert owned == {} and left["p2"] == "its deepest category shop/guitars/gift-cards has no label"
    assert left["p1"].startswith("only shop/guitars lists it, and shop/guitars/sets below it was not walked")
    del nodes[("shop", "guitars", "sets")]  # every branch walked: what only the parent lists is its own
    assert owners(nodes) == ({"p1": {("shop", "guitars")}}, {"p2": "its deepest category shop/guitars/gift-cards has no label"})
