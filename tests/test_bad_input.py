"""Bad input and faults a user meets in training, predicting and relabelling, each through the real CLI:
a clear error and exit 2 (or the item skipped and listed), never a traceback, a silent result or a NaN."""

from __future__ import annotations

import json

import pytest

from conftest import make_image_folder, trilla
from trilla.runs import Run

TINY = ["--set", "data.image_size=16", "--set", "train.progress=false", "-q"]


@pytest.fixture
def pictures(tmp_path):
    return make_image_folder(tmp_path / "img", {"a": 12, "b": 12}, size=16)


def test_a_run_that_diverges_fails_naming_the_cause_and_is_not_used_unawares(pictures, tmp_path):
    runs = tmp_path / "runs"
    diverged = trilla("train", "--data", pictures, "--set", "train.lr=1e30", "--set", "train.epochs=3", "--set", f"run.dir={runs}", *TINY,
                      check=False)
    assert diverged.returncode == 2 and "Traceback" not in diverged.stderr
    assert "training diverged: the loss became NaN or infinite" in diverged.stderr and "train.lr=1e+30" in diverged.stderr
    assert "trilla lr-find" in diverged.stderr and "--resume" not in diverged.stderr  # a resume would diverge again
    run = Run(next(runs.iterdir()))
    assert run.status == "failed" and run.info["error"].startswith("training diverged")
    again = trilla("train", "--resume", run.path, check=False)
    assert again.returncode == 2 and "cannot be resumed, it would fail the same way: training diverged" in again.stderr
    for command in (["predict", run.path, pictures / "a" / "a_000.png"], ["evaluate", run.path, "-q"]):
        refused = trilla(*command, check=False)
        assert refused.returncode == 2 and f"run {run.path} is failed: training diverged" in refused.stderr, refused.stderr
        assert "--allow-unfinished" in refused.stderr and "Traceback" not in refused.stderr
    # its checkpoint, asked for all the same, answers no number: said per file, never NaN in the JSON
    assert run.has("checkpoints/best.ckpt")  # epoch 1 ended finite, its weights did not
    used = trilla("predict", run.path, pictures / "a", "--allow-unfinished", check=False)
    lines = [json.loads(line, parse_constant=lambda word: pytest.fail(f"{word} in the JSON")) for line in used.stdout.splitlines()]
    assert used.returncode == 1 and len(lines) == 12
    assert all("predictions" in line or "not finite" in line["error"] for line in lines)
