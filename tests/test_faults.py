"""Faults from outside: a full disk (a real tmpfs of a few MB mounted by the test) and `kill -9`."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import lightning as L
import pytest

from conftest import make_image_folder
from trilla.checkpoints import load_checkpoint
from trilla.config import load_config
from trilla.data.store import open_or_build
from trilla.errors import TrillaError
from trilla.kinds.image.kind import ImageCodec
from trilla.runs import INTERRUPTED, Run, find_runs
from trilla.training.train import resume, train


@pytest.fixture
def small_disk(tmp_path):
    """A real filesystem of 12 MB (tmpfs), so that a full disk is the kernel's own ENOSPC."""
    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root (CI runs as root)")
    disk = tmp_path / "disk"
    disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=12m", "tmpfs", str(disk)], check=True)
    yield disk
    subprocess.run(["umount", "-l", str(disk)], check=True)


def fill(disk: Path) -> Path:
    filler = disk / "filler"
    with open(filler, "wb") as handle:
        try:
            while True:
                handle.write(b"\0" * (1 << 16))
                handle.flush()
        except OSError:
            pass
    return filler


def test_packing_more_than_the_disk_holds_is_a_clear_error_and_leaves_nothing(tmp_path, small_disk):
    data = make_image_folder(tmp_path / "photos", {"a": 60, "b": 60}, size=24)
    store = small_disk / "stores"
    with pytest.raises(TrillaError, match=r"packing 120 files needs 12\.7 MB in .*disk.* but only .* MB are free"):
        open_or_build(sorted(data.rglob("*.png")), ImageCodec(192, "rgb"), store, progress=False)
    assert list(store.iterdir()) == []  # no half-packed store keeps the disk full
    fill(small_disk)
    with pytest.raises(TrillaError, match="MB are free"):
        open_or_build(sorted(data.rglob("*.png")), ImageCodec(16, "rgb"), store, progress=False)
    assert list(store.iterdir()) == []


class FillDiskAfterEpoch(L.Callback):
    def on_train_epoch_end(self, trainer, module):
        if trainer.current_epoch == 1:
            fill(self.disk)


def test_a_full_run_folder_fails_clearly_keeps_the_last_checkpoint_and_resumes(tmp_path, small_disk):
    data = make_image_folder(tmp_path / "photos", {"a": 20, "b": 20}, size=16)
    config = load_config(None, ["data.image_size=16", "train.epochs=4", "train.progress=false", f"run.dir={small_disk / 'runs'}"], data)
    callback = FillDiskAfterEpoch()
    callback.disk = small_disk
    with pytest.raises(TrillaError, match="no space left on the disk of .*checkpoints"):
        train(config, callbacks=[callback])
    run = find_runs(small_disk / "runs")[0]
    assert not [p for p in run.path.rglob("*") if ".tmp-" in p.name]  # the failed save left no temporary file
    saved = load_checkpoint(run.checkpoint("last"))  # intact: the failed save did not touch it
    assert saved["epoch"] in (0, 1)  # the epoch before the disk filled
    (small_disk / "filler").unlink()
    resumed = resume(run.path)
    assert resumed.status == "finished" and resumed.metrics["epochs"] == 4


SLOW_PACKER = textwrap.dedent('''
    import sys, time
    from dataclasses import dataclass
    from pathlib import Path
    from trilla.kinds.image.kind import ImageCodec
    from trilla.data.store import open_or_build

    @dataclass(frozen=True)
    class SlowCodec(ImageCodec):
        def decode(self, data):
            time.sleep(0.05)
            return super().decode(data)

    paths = sorted(Path(sys.argv[1]).rglob("*.png"))
    open_or_build(paths, SlowCodec(16, "rgb"), Path(sys.argv[2]), progress=False)
''')


def children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry.name))
    return found


def alive(pid: int) -> bool:
    try:
        return (Path("/proc") / str(pid) / "stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False


@pytest.mark.skipif(not Path("/proc").is_dir(), reason="reads process parents from /proc (Linux)")
def test_kill_9_while_packing_leaves_no_worker_and_the_next_run_cleans_up(tmp_path):
    data = make_image_folder(tmp_path / "photos", {"a": 150, "b": 150}, size=16)
    script, store = tmp_path / "pack.py", tmp_path / "stores"
    script.write_text(SLOW_PACKER)
    env = {**os.environ, "TRILLA_PACK_WORKERS": "2"}
    packer = subprocess.Popen([sys.executable, str(script), str(data), str(store)], env=env)
    deadline, workers = time.monotonic() + 60, []
    while time.monotonic() < deadline and len(workers) < 2:  # a worker forked after the scan would go unwatched
        time.sleep(0.05)
        workers = children(packer.pid)
    assert len(workers) == 2, f"the packer started {len(workers)} of its 2 workers"
    time.sleep(0.5)
    os.kill(packer.pid, signal.SIGKILL)
    packer.wait()
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(alive(w) for w in workers):
        time.sleep(0.1)
    orphans = [w for w in workers if alive(w)]
    for orphan in orphans:  # a failing run of this test leaves nothing behind either
        os.kill(orphan, signal.SIGKILL)
    assert not orphans, "workers outlived their killed parent"
    assert [p.name for p in store.iterdir() if ".tmp-" in p.name]  # the killed packer's folder is still there...
    packed = open_or_build(sorted(data.rglob("*.png")), ImageCodec(16, "rgb"), store, progress=False)
    assert packed.index["ok"].all()
    assert not [p for p in store.iterdir() if ".tmp-" in p.name]  # ...until the next run removes it


def test_a_killed_training_is_listed_as_interrupted(tmp_path):
    data = make_image_folder(tmp_path / "photos", {"a": 20, "b": 20}, size=16)
    config = load_config(None, ["data.image_size=16", "train.epochs=1", "train.progress=false", f"run.dir={tmp_path / 'runs'}"], data)
    run = Run.create(tmp_path / "runs", "killed", config)  # as a training leaves it when killed before its first checkpoint
    dead = subprocess.Popen([sys.executable, "-c", "pass"])
    dead.wait()
    run.write_json("run.json", {**run.info, "pid": dead.pid})
    assert run.info["status"] == "running" and run.status == INTERRUPTED
    listed = find_runs(tmp_path / "runs")
    assert [r.id for r in listed] == [run.id]
