"""`trilla cache list|prune`: stores with size, age and source; pruning never touches a store that a
process uses or is still writing."""

import fcntl
import os
import subprocess
import sys
import time

import pytest
from typer.testing import CliRunner

from conftest import make_image_folder
from trilla.cli import app
from trilla.data import cache, store
from trilla.errors import TrillaError
from trilla.kinds.image.kind import ImageCodec

HOLD = """
import sys, time
from pathlib import Path
from trilla.data import store
from trilla.kinds.image.kind import ImageCodec
store.open_or_build(sorted(Path(sys.argv[1]).rglob('*.png')), ImageCodec(8, 'rgb'), Path(sys.argv[2]), progress=False)
print('held', flush=True)
time.sleep(60)
"""


def _age(root, days: float) -> None:
    then = time.time() - days * 86400
    os.utime(root / store.LOCK, (then, then))


def test_list_and_prune_keep_what_is_in_use_or_being_written(tmp_path):
    images = make_image_folder(tmp_path / "images", {"a": 3, "b": 3})
    cache_dir = tmp_path / "stores"
    paths = sorted(images.rglob("*.png"))
    here = store.open_or_build(paths, ImageCodec(16, "rgb"), cache_dir, progress=False, source=images)  # this process holds it
    holder = subprocess.Popen([sys.executable, "-c", HOLD, str(images), str(cache_dir)], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline().strip() == "held"
        idle = store.open_or_build(paths[:4], ImageCodec(12, "rgb"), cache_dir, progress=False, source=images)
        store._release(idle.root)  # as if the process that packed it had ended
        writing = cache_dir / "0123456789abcdef0123.tmp-999999"
        writing.mkdir()
        with open(writing / store.LOCK, "a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)  # as a packing process holds it
            other = [s for s in cache.list_stores(cache_dir) if s.root not in (here.root, idle.root, writing)][0]
            for root in (here.root, idle.root, other.root, writing):
                _age(root, 30)
            table = cache.stores_table(cache_dir)
            assert len(table) == 4 and set(table["state"]) == {"ready", "writing"}
            assert table.set_index("store").loc[idle.root.name, "source"] == str(images)
            assert table.set_index("store").loc[idle.root.name, "in_use"] == False  # noqa: E712 (numpy bool)
            removed, busy = cache.prune(cache_dir, older_than_days=7)
            assert [s.root for s in removed] == [idle.root]
            assert {s.root for s in busy} == {here.root, other.root, writing}
            assert here.root.is_dir() and other.root.is_dir() and writing.is_dir() and not idle.root.exists()
    finally:
        holder.kill()
        holder.wait()
    removed, _ = cache.prune(cache_dir, older_than_days=7)
    assert other.root in [s.root for s in removed], "once its process ended, the store is free to prune"
    again = store.open_or_build(paths[:4], ImageCodec(12, "rgb"), cache_dir, progress=False)
    assert not again.reused and again.array.shape == (4, 12, 12, 3), "a pruned store is packed again when needed"


def test_max_size_removes_the_least_recently_used_first(tmp_path):
    images = make_image_folder(tmp_path / "images", {"a": 3, "b": 3})
    cache_dir = tmp_path / "stores"
    paths = sorted(images.rglob("*.png"))
    roots = []
    for side, days in ((16, 3), (20, 2), (24, 1)):
        packed = store.open_or_build(paths, ImageCodec(side, "rgb"), cache_dir, progress=False)
        store._release(packed.root)
        _age(packed.root, days)
        roots.append(packed.root)
    sizes = {s.root: s.bytes for s in cache.list_stores(cache_dir)}
    budget_gb = (sizes[roots[2]] + 1) / 1e9
    removed, _ = cache.prune(cache_dir, max_size_gb=budget_gb, dry_run=True)
    assert [s.root for s in removed] == roots[:2] and all(r.exists() for r in roots), "a dry run removes nothing"
    result = CliRunner().invoke(app, ["cache", "prune", "--max-size", str(budget_gb), "--cache", str(cache_dir)])
    assert result.exit_code == 0 and "2 stores" in result.output
    assert [r.exists() for r in roots] == [False, False, True]
    listing = CliRunner().invoke(app, ["cache", "list", "--dir", str(cache_dir)])
    assert roots[2].name in listing.output and "1 stores" in listing.output
    with pytest.raises(TrillaError, match="say what to prune"):
        cache.prune(cache_dir)
