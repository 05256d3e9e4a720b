"""Sweeps: a grid shared by worker processes through one SQLite study, resumed after a kill, failures
recorded; random and Optuna draws with budgets and pruning; the leaderboard and the comparison plots."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import traceback
from collections import Counter
from pathlib import Path

import optuna
import pandas as pd
import pytest
import yaml
from optuna.trial import TrialState

from conftest import make_image_folder
from trilla.config import load_raw, validate_config
from trilla.errors import TrillaError
from trilla.runs import Run, find_runs
from trilla.training.sweep import grid_points, run_sweep

TRILLA = [sys.executable, "-m", "trilla"]
BASE = {
    "model": {"name": "small_cnn", "conv": [{"maps": 4, "kernel": 3, "pool": 2}], "hidden": []},
    "augment": None,
    "train": {"epochs": 2, "batch_size": 16, "progress": False, "ema": None},
}


def _write(tmp_path: Path, sweep: dict, name: str = "grid", **sections) -> Path:
    data = make_image_folder(tmp_path / "images", {"a": 16, "b": 16}, size=16)
    raw = {**BASE, **sections, "data": {"path": str(data), "image_size": 16}, "run": {"dir": str(tmp_path / "runs"), "name": name},
           "sweep": sweep}
    path = tmp_path / f"{name}.yaml"
    path.write_text(yaml.safe_dump(raw))
    return path


def _study(folder: Path, name: str = "grid") -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{folder / 'sweep.db'}")


SIX = {"method": "grid", "parameters": {"train.lr": [0.01, 0.003], "model.conv.0.maps": [2, 4, 8]}}


def test_two_workers_on_one_sqlite_study_run_each_grid_point_once(tmp_path):
    config = _write(tmp_path, SIX)
    result = subprocess.run([*TRILLA, "sweep", config, "--workers", "2"], capture_output=True, text=True, check=True)
    folder = Path(result.stdout.strip().splitlines()[-1])
    assert "trials: 6 complete" in result.stdout
    trials = _study(folder).get_trials()
    assert [t.state for t in trials] == [TrialState.COMPLETE] * 6
    assert sorted(t.user_attrs["point"] for t in trials) == list(range(6))
    assert len({t.user_attrs["pid"] for t in trials}) == 2  # both workers took trials
    runs = find_runs(folder)
    assert len(runs) == 6 and all(r.info["status"] == "finished" for r in runs)
    assert {(r.config.train.lr, r.config.model.conv[0].maps) for r in runs} == {(lr, m) for lr in (0.01, 0.003) for m in (2, 4, 8)}

    again = subprocess.run([*TRILLA, "sweep", config], capture_output=True, text=True, check=True)
    assert "trials: 6 complete" in again.stdout and len(find_runs(folder)) == 6  # a finished sweep runs nothing

    table = pd.read_csv(pd.io.common.StringIO(subprocess.run(
        [*TRILLA, "runs", folder, "--format", "csv", "--sort", "test/balanced_accuracy"], capture_output=True, text=True, check=True).stdout))
    assert len(table) == 6 and "model.conv.0.maps" in table and set(table["lr"]) == {0.01, 0.003}
    assert table["test/balanced_accuracy"].is_monotonic_decreasing


def test_two_workers_share_one_study_on_a_real_postgresql_server(tmp_path, postgres):
    url = postgres()
    config = _write(tmp_path, {**SIX, "parameters": {"train.lr": [0.01, 0.003], "model.conv.0.maps": [2, 4]}, "storage": url})
    result = subprocess.run([*TRILLA, "sweep", config, "--workers", "2"], capture_output=True, text=True, check=True)
    assert "trials: 4 complete" in result.stdout
    trials = optuna.load_study(study_name="grid", storage=url).get_trials()
    assert sorted(t.user_attrs["point"] for t in trials) == [0, 1, 2, 3] and all(t.state == TrialState.COMPLETE for t in trials)
    assert not (Path(result.stdout.strip().splitlines()[-1]) / "sweep.db").exists()  # the study lives on the server


def _join_at_once(raw: dict, start, failures) -> None:
    start.wait()
    try:
        run_sweep(raw)
    except Exception:  # noqa: BLE001  (reported to the test, which shows it)
        failures.put(traceback.format_exc())


@pytest.mark.parametrize("storage", ["sqlite", "postgresql"])
def test_workers_started_at_the_same_moment_on_an_empty_database_all_join(tmp_path, storage, request):
    """`trilla sweep` started on every machine at once: all but one lose the race to create the
    database's tables and the study, and must join it rather than fail. On SQLite a grid (no point run
    twice); on PostgreSQL a random sweep (four workers counting against max_trials at the same moment
    must not start more than it)."""
    import multiprocessing

    grid = {**SIX, "parameters": {"train.lr": [0.01, 0.003], "model.conv.0.maps": [2]}}
    if storage == "postgresql":
        grid = {"method": "random", "max_trials": 2, "parameters": {"train.lr": {"low": 0.001, "high": 0.01, "log": True}},
                "storage": request.getfixturevalue("postgres")()}
    raw = yaml.safe_load(_write(tmp_path, grid, train={**BASE["train"], "epochs": 1}).read_text())
    context = multiprocessing.get_context("spawn")
    start, failures = context.Barrier(4), context.Queue()
    workers = [context.Process(target=_join_at_once, args=(raw, start, failures)) for _ in range(4)]
    for worker in workers:
        worker.start()
    for worker in workers:
        worker.join(300)
    errors = [failures.get() for _ in range(failures.qsize())]
    assert not errors, "\n".join(errors)
    assert [w.exitcode for w in workers] == [0] * 4
    url = grid.get("storage") or f"sqlite:///{tmp_path / 'runs' / 'grid' / 'sweep.db'}"
    trials = optuna.load_study(study_name="grid", storage=url).get_trials()
    assert len(trials) == 2 and all(t.state == TrialState.COMPLETE for t in trials), [t.state for t in trials]
    if storage == "sqlite":
        assert sorted(t.user_attrs["point"] for t in trials) == [0, 1]
    assert len(find_runs(tmp_path / "runs" / "grid")) == 2  # no point trained by two workers, no draw beyond max_trials


def test_a_killed_sweep_resumes_with_the_remaining_trials_only(tmp_path):
    config = _write(tmp_path, SIX, train={**BASE["train"], "epochs": 20})
    folder = tmp_path / "runs" / "grid"
    worker = subprocess.Popen([*TRILLA, "sweep", config, "-q"], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, start_new_session=True)
    try:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            # sweep.yaml is written once the study is in the database: opening it earlier races the sweep's
            # own creation of the tables
            trials = _study(folder).get_trials(states=(TrialState.COMPLETE, TrialState.RUNNING)) if (folder / "sweep.yaml").exists() else []
            running = [t for t in trials if t.state == TrialState.RUNNING and "run_dir" in t.user_attrs]
            if len(trials) - len(running) >= 2 and running and (Path(running[0].user_attrs["run_dir"]) / "checkpoints" / "last.ckpt").is_file():
                break  # two trials done and the third past its first checkpoint
            time.sleep(0.2)
        else:
            pytest.fail("the sweep never got two trials done and a third checkpointed")
    finally:
        os.killpg(worker.pid, signal.SIGKILL)
        worker.wait()
    before = {t.user_attrs["point"]: t.user_attrs["run_dir"] for t in _study(folder).get_trials() if t.state == TrialState.COMPLETE}
    interrupted = {t.user_attrs["point"]: t.user_attrs["run_dir"] for t in _study(folder).get_trials() if t.state == TrialState.RUNNING}
    assert len(before) >= 2 and len(interrupted) == 1

    subprocess.run([*TRILLA, "sweep", config, "-q"], capture_output=True, text=True, check=True)
    trials = _study(folder).get_trials()
    done = [t for t in trials if t.state == TrialState.COMPLETE]
    assert sorted(t.user_attrs["point"] for t in done) == list(range(6))  # every point finished exactly once
    assert {t.user_attrs["point"]: t.user_attrs["run_dir"] for t in done if t.user_attrs["point"] in before} == before
    killed = [t for t in trials if t.state == TrialState.FAIL]
    assert len(killed) == 1 and "error" not in killed[0].user_attrs  # the killed trial, queued again
    point, run_dir = interrupted.popitem()
    assert [t.user_attrs["run_dir"] for t in done if t.user_attrs["point"] == point] == [run_dir]  # resumed in its own directory
    assert Run(run_dir).history["epoch"].tolist() == list(range(1, 21))
    runs = find_runs(folder)
    assert len(runs) == 6 and Counter(r.info["status"] for r in runs) == {"finished": 6}


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path):
    too_deep = [{"maps": 4, "kernel": 3, "pool": 2}] * 6  # 16 px halved six times: nothing left to convolve
    config = _write(tmp_path, {"method": "grid", "trials": [{"name": "fine"}, {"name": "deep", "model.conv": too_deep}]})
    result = run_sweep(load_raw(config), config)
    assert result.counts == {"complete": 1, "fail": 1}
    assert [label for label, _ in result.failures] == ["deep"]
    failed = [t for t in _study(result.path).get_trials() if t.state == TrialState.FAIL][0]
    assert failed.user_attrs["label"] == "deep" and failed.user_attrs["error"]
    statuses = {r.config.run.name: r.info["status"] for r in find_runs(result.path)}
    assert statuses["fine"] == "finished" and statuses.get("deep", "failed") == "failed"


def test_the_time_budget_stops_claiming_and_a_rerun_continues(tmp_path):
    config = _write(tmp_path, {**SIX, "max_minutes": 0.001}, train={**BASE["train"], "epochs": 1})
    result = run_sweep(load_raw(config), config)
    assert result.counts == {"complete": 1, "waiting": 5}  # the budget ran out during the first trial
    again = run_sweep(load_raw(config), config)  # each start gets the budget anew
    assert again.counts == {"complete": 2, "waiting": 4} and len(find_runs(result.path)) == 2


def test_random_draws_respect_ranges_and_the_trial_budget(tmp_path):
    sweep = {"method": "random", "max_trials": 3, "seed": 1,
             "parameters": {"train.lr": {"low": 0.0001, "high": 0.1, "log": True}, "model.conv.0.maps": {"low": 2, "high": 6, "integer": True},
                            "model.hidden": [[], [8]]}}
    config = _write(tmp_path, sweep, name="rand", train={**BASE["train"], "epochs": 1})
    result = run_sweep(load_raw(config), config)
    assert result.counts == {"complete": 3}
    runs = find_runs(result.path)
    assert len(runs) == 3 and all(1e-4 <= r.config.train.lr <= 0.1 and r.config.model.hidden in ([], [8]) for r in runs)
    assert all(isinstance(r.config.model.conv[0].maps, int) and 2 <= r.config.model.conv[0].maps <= 6 for r in runs)
    assert len({r.config.train.lr for r in runs}) == 3
    bad = _write(tmp_path, {**sweep, "parameters": {"train.lrr": {"low": 0.001, "high": 0.1}}}, name="bad")
    with pytest.raises(TrillaError, match="(?s)sweep point a draw.*did you mean 'train.lr'"):
        run_sweep(load_raw(bad), bad)  # checked before any trial trains


def test_optuna_prunes_through_lightning_and_the_run_still_reports(tmp_path, monkeypatch):
    import trilla.training.sweep as sweep_module

    monkeypatch.setattr(sweep_module, "_pruner", lambda sweep: optuna.pruners.ThresholdPruner(upper=0.0))  # any loss > 0 is pruned
    config = _write(tmp_path, {"method": "optuna", "max_trials": 2, "parameters": {"train.lr": {"low": 0.001, "high": 0.1, "log": True}}},
                    name="tpe", train={**BASE["train"], "epochs": 5})
    result = run_sweep(load_raw(config), config)
    assert result.counts == {"pruned": 2}
    for run in find_runs(result.path):
        assert run.info["status"] == "pruned" and len(run.history) == 1  # stopped after the first validation
        assert (run.path / "report.md").is_file()


def test_resuming_with_another_config_is_refused(tmp_path):
    config = _write(tmp_path, {"method": "grid", "parameters": {"train.lr": [0.01]}}, train={**BASE["train"], "epochs": 1})
    run_sweep(load_raw(config), config)
    with pytest.raises(TrillaError, match="started from another config"):
        run_sweep(load_raw(config, ["train.epochs=2"]), config)


def test_sweep_config_errors_name_the_fix(tmp_path):
    config = _write(tmp_path, {"method": "grid", "parameters": {"train.lr": {"low": 0.001, "high": 0.1}}})
    with pytest.raises(TrillaError, match="method grid takes lists of values"):
        run_sweep(load_raw(config), config)
    config = _write(tmp_path, {"method": "random", "parameters": {"train.lr": [0.1, 0.01]}})
    with pytest.raises(TrillaError, match="set max_trials or max_minutes"):
        run_sweep(load_raw(config), config)
    config = _write(tmp_path, {"method": "grid", "parameters": {"train.lr": [0.1]}, "storage": "not a url"})
    with pytest.raises(TrillaError, match="sweep.storage not a url cannot be opened"):
        run_sweep(load_raw(config), config)
    config = _write(tmp_path, {"method": "grid", "parameters": {"train.lrr": [0.1]}})
    with pytest.raises(TrillaError, match="(?s)sweep point lrr=0.1.*did you mean 'train.lr'"):
        run_sweep(load_raw(config), config)


def test_grid_points_cross_named_trials_with_parameters():
    from trilla.config import SweepConfig

    sweep = SweepConfig(method="grid", parameters={"train.lr": [0.1, 0.01]},
                        trials=[{"name": "T1", "train.batch_size": 512}, {"name": "T2", "train.batch_size": 64}])
    points = grid_points(sweep)
    assert [p.label for p in points] == ["T1-lr=0.1", "T1-lr=0.01", "T2-lr=0.1", "T2-lr=0.01"]
    assert points[3].overrides == {"train.batch_size": 64, "train.lr": 0.01}


def test_compare_overlays_curves_and_plots_the_metric_by_key(tmp_path):
    config = _write(tmp_path, {"method": "grid", "parameters": {"train.lr": [0.01, 0.003]}}, train={**BASE["train"], "epochs": 1})
    result = run_sweep(load_raw(config), config)
    out = subprocess.run([*TRILLA, "compare", result.path, "--out", tmp_path / "cmp"], capture_output=True, text=True, check=True)
    written = [Path(line) for line in out.stdout.split()]
    assert [p.name for p in written] == ["curves.png", "test_balanced_accuracy_by_key.png"]
    assert all(p.stat().st_size > 10_000 for p in written)
    again = subprocess.run([*TRILLA, "compare", result.path, "--out", tmp_path / "cmp"], capture_output=True, text=True, check=True)
    assert [Path(line).name for line in again.stdout.split()][0] == "curves-2.png"  # nothing overwritten
    single = subprocess.run([*TRILLA, "compare", find_runs(result.path)[0].path], capture_output=True, text=True)
    assert single.returncode == 2 and "at least two runs" in single.stderr
    assert Run(find_runs(result.path)[0].path).config.run.dir == result.path / "runs"


def test_two_gloo_processes_under_torchrun_match_one_process(tmp_path):
    """2 CPU processes (gloo), 8 images each per step, against one process with 16: each process takes every
    other example of the one epoch order, so a step sees the examples one process would, and the averaged
    gradient is the same up to float rounding. Stated tolerance: losses per epoch and the test loss within
    1e-4 relative (measured: 1e-7); one run directory for the launch, its history counting every process's
    examples."""
    data = make_image_folder(tmp_path / "images", {"a": 40, "b": 40, "c": 40}, size=16)
    config = tmp_path / "ddp.yaml"
    config.write_text(yaml.safe_dump({
        "data": {"path": str(data), "image_size": 16},
        "model": {"name": "small_cnn", "conv": [{"maps": 6, "kernel": 3, "pool": 2}], "hidden": [], "batch_norm": False, "dropout": 0.0},
        "augment": None, "run": {"dir": str(tmp_path / "runs")},
        "train": {"epochs": 3, "batch_size": 16, "progress": False, "ema": None, "accelerator": "cpu", "schedule": "constant",
                  "optimizer": "sgd", "lr": 0.005},
    }))
    single = subprocess.run([*TRILLA, "train", config, "-q", "--set", "run.name=single"], capture_output=True, text=True, check=True)
    launch = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2", "-m", "trilla", "train",
                             config, "-q", "--set", "run.name=ddp", "--set", "train.devices=2", "--set", "train.strategy=ddp",
                             "--set", "train.batch_size=8"], capture_output=True, text=True, check=True)
    one, two = Run(single.stdout.split()[-1]), Run(launch.stdout.split()[-1])
    assert [r.config.run.name for r in find_runs(tmp_path / "runs")] == ["single", "ddp"]  # both processes wrote into one run
    assert two.info["status"] == "finished" and two.config.train.strategy == "ddp"
    assert len(one.history) == len(two.history) == 3
    assert (two.path / "splits.csv").read_text() == (one.path / "splits.csv").read_text()
    assert two.metrics["train_samples_per_s"] > 0 and two.history["train/loss"].iloc[0] > two.history["train/loss"].iloc[-1]
    for key in ("train/loss", "val/loss"):
        assert two.history[key].tolist() == pytest.approx(one.history[key].tolist(), rel=1e-4)
    assert two.metrics["test/loss"] == pytest.approx(one.metrics["test/loss"], rel=1e-4)
    assert two.metrics["test/accuracy"] == one.metrics["test/accuracy"]


def test_study_grids_are_recipes_whose_every_point_validates(tmp_path):
    from trilla.training.sweep import trial_config

    examples = Path(__file__).parents[1] / "examples"
    grid = load_raw(examples / "guitar_bass_grid.yaml")
    points = grid_points(validate_config(grid).sweep)
    assert [p.label for p in points] == ["T1", "T2", "T3", "T4", "T5", "T6", "T7", "T8", "T10"]
    t10 = trial_config(grid, points[-1].overrides, tmp_path, "T10")
    assert (t10.train.batch_size, t10.train.lr, t10.train.momentum, [c.maps for c in t10.model.conv], t10.model.batch_norm) == (
        512, 0.01, 0.6, [10, 30], True)
    t6 = trial_config(grid, points[5].overrides, tmp_path, "T6")
    assert (t6.train.batch_size, t6.model.dropout, t6.model.conv[0].kernel, t6.run.dir) == (32, 0.5, 5, tmp_path)
    recipe = load_raw(examples / "instruments.yaml")  # a swept epochs count is taken as given, not raised by the recipe's min_steps
    assert (trial_config(recipe, {"train.epochs": 3}, tmp_path, "e3").train.min_steps, recipe["train"]["min_steps"]) == (None, 3840)
    assert trial_config(recipe, {"train.lr": 0.01}, tmp_path, "lr").train.min_steps == 3840
    heads = load_raw(examples / "conus_heads.yaml")
    assert [trial_config(heads, p.overrides, tmp_path, p.label).model.head for p in grid_points(validate_config(heads).sweep)] == [
        [1024], [600], [2000], [1024, 600]]


def test_epoch_sampler_shards_interleave_the_one_order():
    from trilla.data.datamodule import EpochSampler

    whole = list(EpochSampler(11, seed=3))
    shards = [list(EpochSampler(11, seed=3, rank=r, replicas=3)) for r in range(3)]
    assert [len(s) for s in shards] == [4, 4, 4]
    assert [x for step in zip(*shards) for x in step] == whole + whole[:1]  # padded from the start to 12


def test_a_sweep_tells_its_data_warnings_once_and_one_line_per_finished_trial(tmp_path, caplog):
    config = _write(tmp_path, {"method": "grid", "parameters": {"train.lr": [0.01, 0.003]}}, train={**BASE["train"], "epochs": 1})
    (tmp_path / "images" / "a" / "broken.png").write_bytes(b"not a picture")
    with caplog.at_level("INFO", logger="trilla"):
        run_sweep(load_raw(config), config)
    warnings = [r.getMessage() for r in caplog.records if r.levelname == "WARNING"]
    assert sum("broken.png" in w for w in warnings) == 1, warnings
    finished = [w for w in warnings if w.startswith("trial ") and " finished: val/loss " in w]
    assert len(finished) == 2 and all("test/accuracy" in w for w in finished)


def test_the_private_optuna_calls_work_on_the_installed_optuna(tmp_path):
    """Everything trilla takes from past Optuna's public API, against the installed release, on a real
    SQLite storage: claim a queued trial once, fail and requeue it, read attributes, beat."""
    from trilla.training import study_storage
    from trilla.training.sweep import GRACE_S, HEARTBEAT_S

    with study_storage.quiet_experimental():
        storage = optuna.storages.RDBStorage(f"sqlite:///{tmp_path / 's.db'}", heartbeat_interval=HEARTBEAT_S, grace_period=GRACE_S,
                                             heartbeat_stale_trial_callback=optuna.storages.RetryHeartbeatStaleTrialCallback())
    study = optuna.create_study(storage=storage, study_name="pin")
    study.enqueue_trial({}, user_attrs={"label": "g0"})
    (waiting,) = study.get_trials(states=(TrialState.WAITING,))
    live = study_storage.claim(study, waiting)
    assert live is not None and study_storage.trial_id(live) == study_storage.trial_id(waiting)
    assert study_storage.claim(study, waiting) is None  # taken: a second worker gets nothing
    live.set_user_attr("run_dir", "runs/x")
    assert study_storage.user_attrs(study, live) == {"label": "g0", "run_dir": "runs/x"}
    study_storage.beat(study, live)
    running = study.get_trials(states=(TrialState.RUNNING,))
    assert study_storage.fail(study, running[0]) and not study_storage.fail(study, running[0])
    study_storage.requeue(study, running[0])
    requeued = study.get_trials(states=(TrialState.WAITING,))
    assert len(requeued) == 1 and requeued[0].user_attrs["label"] == "g0"
