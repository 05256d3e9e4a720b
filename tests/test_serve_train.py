"""Trainings over HTTP against a real server: started as subprocesses from a served run's config, data
only from inside --data-root, the bearer token on these routes only, cancel ends the child and marks its
run, and a finished training is served as a new model."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from datetime import datetime

import httpx
import pytest

from conftest import make_image_folder, serving
from trilla import load_config, train
from trilla.runs import FORMAT, Run
from trilla.serve.trainings import Training

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


@pytest.fixture(scope="module")
def api(tmp_path_factory):
    root = tmp_path_factory.mktemp("train_http")
    data_root = root / "data"
    data = make_image_folder(data_root / "shapes", {"alpha": 12, "beta": 12})
    make_image_folder(root / "private" / "secret", {"x": 8, "y": 8})
    run = train(load_config(data=data, overrides=["data.image_size=16", "train.epochs=1", "train.progress=false", f"run.dir={root / 'runs'}"]))
    with serving(run.path, "-q", "--token", TOKEN, "--data-root", data_root) as (base, _, _):
        yield base, run, root


def until(check, timeout: float = 240, every: float = 0.5):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = check()
        if found:
            return found
        time.sleep(every)
    raise AssertionError(f"not within {timeout} s")


def test_training_routes_need_the_token_and_refuse_paths_outside_the_data_root(api):
    base, _, _ = api
    url = f"{base}/v2/models/shapes/train/"
    assert httpx.get(f"{base}/v2/models/").status_code == 200  # reading and predicting need no token
    for headers in ({}, {"Authorization": "Bearer wrong"}, {"Authorization": TOKEN}):
        refused = httpx.post(url, headers=headers)
        assert refused.status_code == 401 and refused.headers["www-authenticate"] == "Bearer", refused.text
        assert refused.json()["message"].startswith("trainings need the server's token")
    quiz = httpx.post(f"{base}/quiz/api/start", json={"model": "shapes", "player": "x", "rounds": 1})
    assert quiz.status_code == 401 and quiz.json()["message"].startswith("the quiz needs the server's token")
    assert httpx.get(url).status_code == 401
    for params, reason in [
        ({"data": "../private/secret"}, "outside the server's data root"),
        ({"data": "/etc"}, "relative to the server's data root"),
        ({"data": "nothing-here"}, "does not exist"),
        ({"overrides": ["run.dir=/tmp/elsewhere"]}, "the server's choice"),
        ({"overrides": ["data.class_list=/etc/passwd"]}, "cannot change a path"),
        ({"overrides": ["train.epoch=3"]}, "epochs"),  # the config's own did-you-mean
        ({"epochs": 0}, "greater than or equal to 1"),
        ({"overrides": [f"data.path={api[2] / 'private' / 'secret'}"]}, "data.path: a training over HTTP cannot change a path"),
        ({"overrides": [f"data={{path: {api[2] / 'private' / 'secret'}}}"]}, "cannot change a path"),
        ({"data": "shapes", "overrides": ["data.path=/etc"]}, "cannot change a path"),
        ({"overrides": ["data.allow_outside=true"]}, "data.allow_outside"),
        ({"overrides": ["model={name: timm, pretrained: /etc/passwd}"]}, "model.pretrained: a training over HTTP cannot change a path"),
        ({"data": "shapes\x00/x"}, "no NUL character"),
        ({"data": "a" * 5000}, "at most 1000 characters"),
        ({"overrides": ["train.epochs=100000"]}, "at most 1000 epochs"),
        ({"overrides": ["train.min_steps=100000000"]}, "train.min_steps"),
    ]:
        answer = httpx.post(url, headers=AUTH, params=params)
        assert answer.status_code == 422 and reason in answer.json()["message"], (params, answer.text)
    assert httpx.get(url, headers=AUTH).json() == []


def test_a_finished_training_is_listed_with_progress_and_served_as_a_new_model(api):
    base, run, _ = api
    started = httpx.post(f"{base}/v2/models/shapes/train/", headers=AUTH, params={"data": "shapes", "epochs": 2, "overrides": ["train.lr=0.002"]})
    assert started.status_code == 200, started.text
    body = started.json()
    assert body["status"] == "running" and body["args"] == {"data": "shapes", "epochs": 2, "overrides": ["train.lr=0.002"]}
    key = body["uuid"]
    done = until(lambda: (t := httpx.get(f"{base}/v2/models/shapes/train/{key}", headers=AUTH).json())["status"] != "running" and t)
    assert done["status"] == "done", done
    assert done["progress"]["epoch"] == 2 and done["progress"]["epochs"] == 2 and "val/loss" in done["progress"]["metrics"]
    result = done["result"]  # DEEPaaS's own keys of a finished training
    assert result["output"]["run"] == done["run"] and "test/accuracy" in result["output"]["metrics"]
    assert datetime.strptime(result["finish_date"], "%Y-%m-%d %H:%M:%S.%f") > datetime.strptime(done["date"], "%Y-%m-%d %H:%M:%S.%f")
    assert result["duration"].startswith("0:0")
    [listed] = httpx.get(f"{base}/v2/models/shapes/train/", headers=AUTH).json()
    assert listed["uuid"] == key
    new = until(lambda: httpx.get(f"{base}/v2/models/shapes/train/{key}", headers=AUTH).json().get("model"))
    assert new in [m["name"] for m in httpx.get(f"{base}/v2/models/").json()["models"]]
    trained = Run(run.path.parent / done["run"])
    assert trained.status == "finished" and trained.config.train.lr == 0.002 and trained.config.train.epochs == 2
    picture = (run.path.parent.parent / "data" / "shapes" / "alpha" / "alpha_001.png").read_bytes()
    answer = httpx.post(f"{base}/v2/models/{new}/predict/", files={"data": ("a.png", picture, "image/png")})
    assert answer.status_code == 200 and answer.json()["predictions"]["labels"]
    assert httpx.get(f"{base}/v2/models/{new}/train/nope", headers=AUTH).status_code == 404


def test_cancelling_ends_the_subprocess_marks_its_run_and_loses_nothing_else(api):
    base, run, _ = api
    started = httpx.post(f"{base}/v2/models/shapes/train/", headers=AUTH, params={"epochs": 1000}).json()
    key = started["uuid"]
    until(lambda: httpx.get(f"{base}/v2/models/shapes/train/{key}", headers=AUTH).json()["progress"]["epoch"] >= 1)
    assert httpx.get(f"{base}/healthz", timeout=5).status_code == 200  # the server answers while it trains
    second = httpx.post(f"{base}/v2/models/shapes/train/", headers=AUTH, params={"epochs": 1})
    assert second.status_code == 429 and "--max-trainings 1" in second.json()["message"] and second.headers["retry-after"]
    cancelled = httpx.delete(f"{base}/v2/models/shapes/train/{key}", headers=AUTH, timeout=60).json()
    assert cancelled["status"] == "cancelled"
    child = Run(run.path.parent / cancelled["run"])
    assert child.status == "cancelled" and len(child.history) >= 1  # what it had trained stays on disk
    assert Run(run.path).status == "finished"
    assert httpx.get(f"{base}/v2/models/shapes/train/{key}", headers=AUTH).json()["status"] == "cancelled"
    assert cancelled["run"] not in [m["name"] for m in httpx.get(f"{base}/v2/models/").json()["models"]]


def test_without_a_data_root_a_training_keeps_the_runs_own_data(api):
    """The one guard both trilla serve and the DEEPaaS plugin use, on a server started without --data-root."""
    from trilla.errors import Refused
    from trilla.serve.trainings import guarded

    _, run, root = api
    config, given = guarded(run, None, 3, ["train.lr=0.01"], None)
    assert config.data.path == run.config.data.path and config.train.epochs == 3
    for overrides in (["data.path=/etc"], [f"data.path={root / 'private' / 'secret'}"], [f"data={{path: {root}}}"],
                      [f"data.test_path={root / 'private'}"], ["data.store=/tmp/elsewhere"]):
        with pytest.raises(Refused, match="cannot change a path"):
            guarded(run, None, None, overrides, None)
    with pytest.raises(Refused, match="takes no data paths"):
        guarded(run, "shapes", None, [], None)


def test_a_run_folder_without_its_config_yet_is_not_read(tmp_path):
    """The child makes its run folder a moment before it writes config.yaml and run.json; a status request
    in between (a 500 in a full test run once) answers 'no run yet' and reads the run once both are there."""
    config = load_config(data=make_image_folder(tmp_path / "d", {"a": 6, "b": 6}, size=16))
    folder = tmp_path / "children" / "20261203-000000-child"
    folder.mkdir(parents=True)
    process = subprocess.Popen([sys.executable, "-c", "pass"])
    process.wait()
    training = Training("key", "shapes", "2026-12-03", {}, "child", folder.parent, process, tmp_path / "log.txt")
    assert "run" not in training.describe() and training.describe()["progress"]["epoch"] == 0
    (folder / "config.yaml").write_text(config.to_yaml())
    assert "run" not in training.describe()  # run.json follows the config
    (folder / "run.json").write_text(json.dumps({"id": folder.name, "format": FORMAT}))
    assert training.describe()["run"] == folder.name
