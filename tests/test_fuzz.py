"""A fuzzer for the next crash class: Hypothesis generates what users hand trilla (CSV manifests in every
encoding, delimiter and quoting, with odd and hostile paths; `--set` values; YAML configs; Label Studio
exports; site files) and runs the real command line on each, in this process, bounded in examples and
time. The contract: exit 0, 1 (some items unreadable, listed) or 2 (a clear error), never a traceback;
nothing written outside the command's own output folders; no input file changed."""

from __future__ import annotations

import csv
import hashlib
import io
import json
import os
import sys
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from conftest import make_image_folder

# The suite's run: 20 examples a property, the same ones every time. TRILLA_FUZZ=N draws N fresh ones, to hunt.
HUNT = int(os.environ.get("TRILLA_FUZZ", 0))
BOUNDED = settings(max_examples=HUNT or 20, deadline=None, derandomize=not HUNT, suppress_health_check=[HealthCheck.function_scoped_fixture])
HOSTILE_PATHS = ["../../etc/passwd", "/etc/passwd", "", " ", "a\x00b.png", "x" * 5000, "img/../img/a/a_000.png", "ünïcødé/⚡.png",
                 "img/a", "C:\\Windows\\win.ini", "img/a/a_000.png\n", "'=HYPERLINK(\"x\")", "file:///etc/passwd", "~/secret.png"]
TEXT = st.text(alphabet=st.characters(codec="utf-8", exclude_categories=["Cs"]), max_size=30)


@pytest.fixture(scope="module")
def world(tmp_path_factory):
    root = tmp_path_factory.mktemp("fuzz")
    make_image_folder(root / "img", {"a": 10, "b": 10}, size=16)
    return root


def snapshot(root: Path) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha1(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*")) if p.is_file()}


def run_cli(monkeypatch, capsys, root: Path, *args, outputs: tuple[str, ...] = ()) -> int:
    """The command line's own entry point on `args`, in this process; checks the contract and returns the exit status."""
    from trilla.cli import main

    before = snapshot(root)
    monkeypatch.setattr(sys, "argv", ["trilla", *map(str, args)])
    monkeypatch.chdir(root)
    code = 0
    try:
        main()
    except SystemExit as done:
        code = done.code if isinstance(done.code, int) else 1
    said = capsys.readouterr()
    assert code in (0, 1, 2), (args, code, said.err[-2000:])
    assert "Traceback" not in said.err, (args, said.err[-3000:])
    after = snapshot(root)
    changed = [name for name, digest in before.items() if after.get(name) != digest]
    assert not changed, f"input files changed or removed: {changed[:5]}"
    stray = [name for name in after if name not in before and not name.startswith(outputs)]
    assert not stray, f"written outside the output folders: {stray[:5]}"
    return code


@st.composite
def manifests(draw) -> bytes:
    delimiter = draw(st.sampled_from([",", ";", "\t", "|"]))
    quoting = draw(st.sampled_from([csv.QUOTE_MINIMAL, csv.QUOTE_ALL, csv.QUOTE_NONNUMERIC]))
    encoding = draw(st.sampled_from(["utf-8", "utf-8-sig", "cp1252", "utf-16"]))
    good = [f"img/{c}/{c}_{i:03d}.png" for c in "ab" for i in range(10)]
    rows = draw(st.lists(st.tuples(st.one_of(st.sampled_from(good), st.sampled_from(HOSTILE_PATHS), TEXT),
                                   st.one_of(st.sampled_from(["a", "b"]), TEXT)), max_size=40))
    header = draw(st.sampled_from([["path", "label"], ["label", "path"], ["path"], ["Path", "Label"], ["path", "label", "path"]]))
    text = io.StringIO()
    writer = csv.writer(text, delimiter=delimiter, quoting=quoting)
    writer.writerow(header)
    for path, label in rows:
        writer.writerow([path if name.lower() == "path" else label for name in header])
    return text.getvalue().encode(encoding, errors="replace")


@BOUNDED
@given(content=manifests())
def test_any_csv_manifest(world, monkeypatch, capsys, content):
    (world / "fuzz.csv").write_bytes(content)
    try:
        assert run_cli(monkeypatch, capsys, world, "show-batch", "--data", "fuzz.csv", "--set", "data.image_size=16", "--out", "shown", "--count", "4",
                "-q", outputs=("shown", "fuzz.csv")) in (0, 1, 2)
    finally:
        (world / "fuzz.csv").unlink()


KEYS = ["train.lr", "train.epochs", "train.seed", "train.batch_size", "data.image_size", "data.split.val", "data.split.group_column",
        "model.hidden", "model.name", "input.type", "augment.rotate", "train.optimizer", "data.label_column", "model.conv.0.maps", "task",
        "nosuch.key", "train", "data.metadata.region.level"]
VALUES = st.one_of(st.integers(-10**40, 10**40), st.floats(allow_nan=True, allow_infinity=True), st.booleans(), TEXT,
                   st.lists(st.integers(-5, 5), max_size=5), st.sampled_from(["[", "{a: ", "!!python/object:os.system", "~", "null", "''"]))


@BOUNDED
@given(pairs=st.lists(st.tuples(st.sampled_from(KEYS), VALUES), min_size=1, max_size=4))
def test_any_set_values(world, monkeypatch, capsys, pairs):
    overrides = [f"--set={key}={value if isinstance(value, str) else json.dumps(value)}" for key, value in pairs]
    assert run_cli(monkeypatch, capsys, world, "show-batch", "--data", "img", "--set", "data.image_size=16", *overrides, "--out", "shown",
            "--count", "4", "-q", outputs=("shown",)) in (0, 1, 2)


YAML_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-10**6, 10**6), st.floats(allow_nan=False), TEXT),
                           lambda inner: st.one_of(st.lists(inner, max_size=3), st.dictionaries(st.sampled_from(["lr", "epochs", "name", "path",
                                                                                                                 "type", "val", "seed", "x"]),
                                                                                                inner, max_size=3)), max_leaves=8)


@BOUNDED
@given(config=st.one_of(st.dictionaries(st.sampled_from(["data", "model", "train", "input", "augment", "run", "task", "sweep", "zzz"]),
                                        YAML_VALUES, max_size=4).map(yaml.safe_dump),
                        TEXT, st.sampled_from(["a: 1\na: 2\n", "train: {lr: 1}\ntrain: {lr: 2}\n", "- 1\n- 2\n", "!!binary AAAA", ": :"])))
def test_any_yaml_config(world, monkeypatch, capsys, config):
    (world / "fuzz.yaml").write_text(config)
    try:
        assert run_cli(monkeypatch, capsys, world, "show-batch", "fuzz.yaml", "--data", "img", "--set", "data.image_size=16", "--out", "shown",
                "--count", "4", "-q", outputs=("shown", "fuzz.yaml")) in (0, 1, 2)
    finally:
        (world / "fuzz.yaml").unlink()


TASK_VALUES = st.recursive(st.one_of(st.none(), st.booleans(), st.integers(-3, 10**12), TEXT,
                                     st.sampled_from(["/data/local-files/?d=img/a/a_000.png", "/data/upload/1/abc-a_001.png", "a", "b"])),
                           lambda inner: st.one_of(st.lists(inner, max_size=3),
                                                   st.dictionaries(st.sampled_from(["id", "data", "image", "annotations", "result", "value",
                                                                                    "choices", "completed_by", "trilla_item", "was_cancelled",
                                                                                    "from_name", "type", "x", "y"]), inner, max_size=4)),
                           max_leaves=12)


@pytest.fixture(scope="module")
def project(world, tmp_path_factory):
    """A labelling project in a folder of its own: its database is the import's output, and SQLite may
    still touch its -wal file after a command returns."""
    from conftest import trilla

    folder = tmp_path_factory.mktemp("labelling")
    trilla("label", "new", folder / "proj", "--data", world / "img", "--classes", "a,b", "-q")
    return folder / "proj"


@BOUNDED
@given(export=st.one_of(st.lists(TASK_VALUES, max_size=5), TASK_VALUES).map(json.dumps), raw=st.booleans())
def test_any_label_studio_export(project, monkeypatch, capsys, export, raw):
    (project.parent / "export.json").write_text(export if not raw else export[: len(export) // 2])
    try:
        assert run_cli(monkeypatch, capsys, project.parent, "label", "import", "proj", "export.json", "-q", outputs=("proj", "export.json")) in (0, 1, 2)
    finally:
        (project.parent / "export.json").unlink()


SITE_VALUES = st.one_of(st.none(), st.booleans(), st.integers(-5, 10**9), TEXT, st.lists(TEXT, max_size=3),
                        st.sampled_from(["http://127.0.0.1:9/c/", "127.0.0.1", "127.0.0.1:9", "a::attr(href)", "xpath://a/@href",
                                         "guitar -> guitar", "x -> skip", "re:( -> a", "nav a"]))


@BOUNDED
@given(site=st.dictionaries(st.sampled_from(["start_urls", "allowed_domains", "selectors", "labels", "image_rewrite", "listing_query",
                                             "keep_query", "tree", "politeness", "limits", "placeholders", "nosuch"]),
                            st.one_of(SITE_VALUES, st.dictionaries(st.sampled_from(["categories", "products", "product_link", "image",
                                                                                    "next_page", "timeout", "retries", "delay", "examples"]),
                                                                   SITE_VALUES, max_size=3)), max_size=6))
def test_any_site_file(world, monkeypatch, capsys, site):
    site.setdefault("politeness", {"timeout": 2, "retries": 0}) if isinstance(site.get("politeness"), dict) or "politeness" not in site else None
    (world / "site.yaml").write_text(yaml.safe_dump(site))
    try:
        assert run_cli(monkeypatch, capsys, world, "harvest", "crawl", "site.yaml", "crawled", "--dry-run", "--cache", "httpcache", "-q",
                outputs=("site.yaml", "crawled", "httpcache")) in (0, 1, 2)
    finally:
        (world / "site.yaml").unlink()
