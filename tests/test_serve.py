"""The REST API, end to end: `trilla serve` started as a real process on a free loopback port, asked
over HTTP as a DEEPaaS client would."""

from __future__ import annotations

import io
import json
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import pytest
from PIL import Image

from conftest import make_image_folder, serving, trilla
from trilla import load_config, train


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    root = tmp_path_factory.mktemp("serve")
    data = make_image_folder(root / "shapes", {"alpha": 20, "beta": 20, "gamma": 20})
    run = train(load_config(data=data, overrides=["data.image_size=16", "train.epochs=3", "train.progress=false", f"run.dir={root / 'runs'}"]))
    with serving(run.path, "-q", "--max-upload-mb", "1", "--max-wait-ms", "50", "--max-batch", "8") as (base, _, _):
        yield base, run, data


def test_versions_models_and_metadata_answer_as_deepaas(server):
    base, run, _ = server
    assert httpx.get(f"{base}/").json()["versions"][0]["id"] == "v2"
    version = httpx.get(f"{base}/v2/").json()
    assert version["version"] == "stable" and version["links"][0]["rel"] == "self"
    [model] = httpx.get(f"{base}/v2/models/").json()["models"]
    assert model["id"] == model["name"] == "shapes"
    assert {"id", "name", "description", "author", "version", "url", "license", "links"} <= set(model)
    assert model["classes"] == ["alpha", "beta", "gamma"] and model["input"] == "image"
    assert model["metrics"]["test/accuracy"] == pytest.approx(run.metrics["test/accuracy"])
    assert httpx.get(f"{base}/v2/models/shapes/").json() == model
    missing = httpx.get(f"{base}/v2/models/nothing/")
    assert missing.status_code == 404 and "no model 'nothing'" in missing.json()["message"]


def test_a_missing_trailing_slash_is_a_308_and_missing_arguments_a_422(server):
    base, _, _ = server
    moved = httpx.get(f"{base}/v2/models", follow_redirects=False)
    assert moved.status_code == 308 and moved.headers["location"].endswith("/v2/models/")
    missing = httpx.post(f"{base}/v2/models/shapes/predict/")
    assert missing.status_code == 422 and "data" in missing.json()["message"]


def test_predict_answers_as_the_run_predicts_the_same_bytes(server):
    base, run, data = server
    picture = data / "beta" / "beta_003.png"
    answer = httpx.post(f"{base}/v2/models/shapes/predict/", files={"data": ("x.png", picture.read_bytes(), "image/png")},
                        params={"top_k": 3})
    assert answer.status_code == 200, answer.text
    body = answer.json()
    [expected] = run.predict([picture], top_k=3)
    assert body["status"] == "OK" and body["predictions"]["labels"] == [p["label"] for p in expected["predictions"]]
    assert body["predictions"]["probabilities"] == pytest.approx([p["probability"] for p in expected["predictions"]], abs=1e-6)
    assert body["predictions"]["links"]["Wikipedia"][0].startswith("https://en.wikipedia.org/wiki/")
    bad = httpx.post(f"{base}/v2/models/shapes/predict/", files={"data": ("notes.txt", b"not a picture", "text/plain")})
    assert bad.status_code == 400 and "not an image" in bad.json()["message"]


def test_several_files_at_once_each_get_their_own_answer(server):
    base, _, data = server
    buffer = io.BytesIO()
    Image.new("RGB", (30, 20), (200, 0, 0)).save(buffer, "JPEG")
    files = [("files", ("a.png", (data / "alpha" / "alpha_001.png").read_bytes(), "image/png")),
             ("files", ("../../etc/passwd", b"nope", "text/plain")), ("files", ("red.jpg", buffer.getvalue(), "image/jpeg"))]
    body = httpx.post(f"{base}/predict", files=files).json()
    assert body["model"] == "shapes" and [r["file"] for r in body["results"]] == ["a.png", "../../etc/passwd", "red.jpg"]
    assert body["results"][0]["predictions"] and "error" in body["results"][1] and body["results"][2]["predictions"]


def test_the_schema_documents_every_answer_and_the_swagger_ui_loads_nothing_from_elsewhere(server):
    base, _, _ = server
    schema = httpx.get(f"{base}/openapi.json").json()
    assert {"/", "/v2/", "/v2/models/", "/v2/models/{name}/", "/v2/models/{name}/predict/", "/predict"} <= set(schema["paths"])
    assert {"ModelMeta", "Prediction", "ManyAnswers", "Failure"} <= set(schema["components"]["schemas"])
    deepaas = httpx.get(f"{base}/swagger.json").json()  # DEEPaaS's format: one path per model, formData, definitions
    assert deepaas["swagger"] == "2.0" and {"ModelMeta", "Prediction", "Failure"} <= set(deepaas["definitions"])
    predict = deepaas["paths"]["/v2/models/shapes/predict/"]["post"]
    assert {(p["name"], p["in"], p["type"]) for p in predict["parameters"]} == {("data", "formData", "file"), ("urls", "query", "array"),
                                                                                ("top_k", "query", "integer")}
    assert predict["responses"]["200"]["schema"] == {"$ref": "#/definitions/Prediction"}
    assert "components" not in json.dumps(deepaas) and "anyOf" not in json.dumps(deepaas)
    page = httpx.get(f"{base}/docs").text
    assert "/swagger-assets/swagger-ui-bundle.js" in page and "cdn" not in page.lower() and "https://" not in page
    assert httpx.get(f"{base}/swagger-assets/swagger-ui-bundle.js").status_code == 200
    assert json.loads(httpx.get(f"{base}/v2/").text)["id"] == "v2"


def test_uploads_over_the_limit_are_a_413_declared_or_streamed(server):
    base, _, _ = server
    big = b"\0" * (2 * 2**20)
    declared = httpx.post(f"{base}/v2/models/shapes/predict/", files={"data": ("big.png", big, "image/png")})
    assert declared.status_code == 413 and "exceeds 1 MB" in declared.json()["message"]

    def chunks():  # a well-formed multipart body with no Content-Length: the limit is enforced as it streams in
        yield b'--x\r\nContent-Disposition: form-data; name="files"; filename="big.png"\r\nContent-Type: image/png\r\n\r\n'
        for _ in range(32):
            yield b"\0" * 65536
        yield b"\r\n--x--\r\n"

    streamed = httpx.post(f"{base}/predict", content=chunks(), headers={"content-type": "multipart/form-data; boundary=x"})
    assert streamed.status_code == 413 and "exceeds 1 MB" in streamed.json()["message"], streamed.text


def test_health_readiness_and_prometheus_metrics(server):
    base, _, data = server
    assert httpx.get(f"{base}/healthz").json() == {"status": "alive"}
    assert httpx.get(f"{base}/readyz").json() == {"status": "ready", "models": ["shapes"], "projects": []}
    httpx.post(f"{base}/v2/models/shapes/predict/", files={"data": ("a.png", (data / "alpha" / "alpha_002.png").read_bytes(), "image/png")})
    metrics = httpx.get(f"{base}/metrics").text
    assert 'trilla_requests_total{route="/v2/models/{name}/predict/",status="200"}' in metrics
    assert "trilla_request_seconds_bucket" in metrics


def test_concurrent_requests_share_forward_passes_and_each_gets_its_own_answer(server):
    base, run, data = server
    pictures = sorted(data.glob("*/*.png"))[::3]
    bodies = [p.read_bytes() for p in pictures] + [b"not a picture", b"\x89PNG\r\n\x1a\n broken"]
    expected = run.predict(list(bodies), top_k=1)
    before = _batches(httpx.get(f"{base}/metrics").text)

    def ask(body: bytes):
        return httpx.post(f"{base}/v2/models/shapes/predict/", files={"data": ("x.png", body, "image/png")}, params={"top_k": 1}, timeout=60)

    with ThreadPoolExecutor(len(bodies)) as pool:
        answers = list(pool.map(ask, bodies))
    for answer, want in zip(answers, expected):
        if "error" in want:
            assert answer.status_code == 400 and answer.json()["message"], answer.text
        else:
            assert answer.status_code == 200, answer.text
            got = answer.json()["predictions"]
            assert got["labels"] == [want["predictions"][0]["label"]]
            assert got["probabilities"][0] == pytest.approx(want["predictions"][0]["probability"], abs=1e-5)
    passes, windows = (after - was for after, was in zip(_batches(httpx.get(f"{base}/metrics").text), before))
    good = sum("error" not in want for want in expected)
    assert windows == good and passes < good, f"{good} pictures went through {passes} forward passes"
    assert 'trilla_prediction_errors_total{kind="unreadable",model="shapes"}' in httpx.get(f"{base}/metrics").text


def _batches(metrics: str) -> tuple[float, float]:
    """(forward passes, windows) of the model so far, from the batch-size histogram."""
    count = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith('trilla_batch_size_count{model="shapes"}'))
    total = next(float(line.split()[-1]) for line in metrics.splitlines() if line.startswith('trilla_batch_size_sum{model="shapes"}'))
    return count, total


def test_decompression_bombs_and_oversized_pictures_are_refused_before_they_are_decoded(server):
    base, _, _ = server
    for side in (9000, 30000):  # 81 Mpx: over input.max_pixels (64); 900 Mpx: PIL's own bomb limit too
        buffer = io.BytesIO()
        Image.new("1", (side, side)).save(buffer, "PNG")
        assert len(buffer.getvalue()) < 2**20  # small on the wire: the upload limit does not catch it
        answer = httpx.post(f"{base}/v2/models/shapes/predict/", files={"data": ("bomb.png", buffer.getvalue(), "image/png")})
        assert answer.status_code == 400 and "over the limit of 64 Mpx" in answer.json()["message"], answer.text
    assert httpx.get(f"{base}/healthz").status_code == 200


def test_only_loopback_or_a_token_goes_without_a_warning():
    from trilla.serve.app import exposure

    assert exposure("127.0.0.1", None) is None and exposure("::1", None) is None and exposure("localhost", None) is None
    assert exposure("0.0.0.0", "t") is None
    assert "without --token" in exposure("0.0.0.0", None) and "without --token" in exposure("myhost.example", None)


def test_the_interpreter_hands_its_lock_over_every_millisecond_while_serving_and_not_after(server):
    from fastapi.testclient import TestClient

    from trilla.errors import TrillaError
    from trilla.serve.app import create_app

    _, run, _ = server
    before = sys.getswitchinterval()
    for options, interval in (({}, 0.001), ({"gil_switch_ms": 2.5}, 0.0025)):
        with TestClient(create_app([run], **options)) as client:
            assert client.get("/readyz").status_code == 200 and sys.getswitchinterval() == pytest.approx(interval)
        assert sys.getswitchinterval() == before
    with pytest.raises(TrillaError, match="gil_switch_ms must be positive"):
        create_app([run], gil_switch_ms=0)


def test_several_worker_processes_each_load_the_models_and_log_each_request(tmp_path):
    data = make_image_folder(tmp_path / "shapes", {"alpha": 10, "beta": 10})
    run = train(load_config(data=data, overrides=["data.image_size=16", "train.epochs=1", "train.progress=false", f"run.dir={tmp_path / 'runs'}"]))
    picture = (data / "alpha" / "alpha_001.png").read_bytes()
    [expected] = run.predict([picture], top_k=2)
    with serving(run.path, "--workers", "2") as (base, process, log):
        children = Path(f"/proc/{process.pid}/task/{process.pid}/children").read_text().split()
        workers = [pid for pid in children if "spawn_main" in Path(f"/proc/{pid}/cmdline").read_text()]  # not the resource tracker
        assert len(workers) == 2, children
        for _ in range(30):
            answer = httpx.post(f"{base}/v2/models/shapes/predict/", files={"data": ("a.png", picture, "image/png")}, params={"top_k": 2})
            assert answer.json()["predictions"]["labels"] == [p["label"] for p in expected["predictions"]]
        refused = httpx.post(f"{base}/v2/models/shapes/train/")
        assert refused.status_code == 501 and "--workers 1" in refused.json()["message"]
        for _ in range(4):  # whichever process answers /metrics counts every process's requests
            counted = [line for line in httpx.get(f"{base}/metrics").text.splitlines()
                       if line.startswith('trilla_requests_total{route="/v2/models/{name}/predict/",status="200"}')]
            assert [float(line.split()[-1]) for line in counted] == [30.0], counted
        time.sleep(0.5)
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
    predicted = [line for line in lines if line["route"] == "/v2/models/{name}/predict/"]
    assert len(predicted) == 30 and all(line["status"] == 200 and line["model"] == "shapes" and line["ms"] > 0 for line in predicted)
    assert {line["pid"] for line in predicted} == {int(pid) for pid in workers}  # both answered: the sum above is over two processes


def test_a_run_whose_classes_file_disagrees_with_its_checkpoint_is_refused(tmp_path):
    """Metadata and predictions name the same classes: an edited classes.json is not served."""
    data = make_image_folder(tmp_path / "shapes", {"alpha": 8, "beta": 8})
    run = train(load_config(data=data, overrides=["data.image_size=16", "train.epochs=1", "train.progress=false", f"run.dir={tmp_path / 'runs'}"]))
    (run.path / "classes.json").write_text('["cat", "dog"]')
    for command in (["serve", run.path, "--port", "0"], ["predict", run.path, data / "alpha" / "alpha_000.png"]):
        refused = trilla(*command, check=False, timeout=120)
        assert refused.returncode == 2 and "Traceback" not in refused.stderr, refused.stderr
        assert f"{run.path / 'classes.json'} lists ['cat', 'dog'], but the checkpoint" in refused.stderr
        assert "trained on ['alpha', 'beta']" in refused.stderr
