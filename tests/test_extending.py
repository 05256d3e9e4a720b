"""The worked examples of "Extending trilla" (docs/extending.md) run as the page shows them: a source of
one's own (a JSON-lines manifest) is read wherever trilla reads data, bad lines listed and skipped, and a
route of one's own is served beside trilla's over real HTTP, in the OpenAPI document, and guarded as the
rest. (The input kind and the objective of that page are trained in test_kinds.py and test_objectives.py.)"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import httpx
import pytest

import trilla
from conftest import docs_example, listening, make_image_folder

EXAMPLES = Path(__file__).resolve().parents[1] / "docs" / "examples"


@pytest.fixture(scope="module")
def jsonl_run(tmp_path_factory):
    """A run trained on a JSON-lines manifest through the example source (unregistered afterwards)."""
    from trilla.data import sources

    root = tmp_path_factory.mktemp("jsonl")
    make_image_folder(root / "img", {"a": 12, "b": 12})
    lines = [json.dumps({"path": f"img/{c}/{c}_{i:03d}.png", "label": c}) for c in "ab" for i in range(12)]
    lines += ["{not json", json.dumps({"label": "a"}), json.dumps({"path": "../outside.png", "label": "a"})]
    (root / "photos.jsonl").write_text("\n".join(lines) + "\n")
    with docs_example("jsonl_source"):
        try:
            run = trilla.train(trilla.load_config(data=root / "photos.jsonl", overrides=[
                "data.image_size=16", "train.epochs=2", "train.progress=false", f"run.dir={root / 'runs'}",
            ]))
        finally:
            sources._SOURCES.pop("jsonl")
    return run


def test_a_source_of_ones_own_is_read_wherever_trilla_reads_data(jsonl_run):
    assert jsonl_run.info["data"]["samples"] == 24
    reasons = jsonl_run.table("skipped.csv")["reason"].tolist()
    assert any(r.startswith("not JSON") for r in reasons) and "needs a 'path' text" in reasons
    assert any("outside the manifest's folder" in r for r in reasons)


def test_a_route_of_ones_own_is_served_documented_and_guarded(jsonl_run):
    code = (f"import sys; sys.path.insert(0, {str(EXAMPLES)!r}); import uvicorn; from extra_route import app_with_classes; "
            f"from trilla.runs import Run; uvicorn.run(app_with_classes({{'photos': Run({str(jsonl_run.path)!r})}}, allowed_hosts=('localhost',)), "
            "host='127.0.0.1', port=int(sys.argv[1]), log_level='warning')")
    with listening([sys.executable, "-c", code], ready="/readyz") as (base, _, _):
        answer = httpx.get(f"{base}/extra/classes/photos", timeout=10)
        assert answer.status_code == 200 and answer.json() == {"model": "photos", "classes": ["a", "b"]}
        missing = httpx.get(f"{base}/extra/classes/nothing", timeout=10)
        assert missing.status_code == 404 and "served: photos" in missing.json()["message"]
        assert "/extra/classes/{name}" in httpx.get(f"{base}/openapi.json", timeout=10).json()["paths"]
        assert httpx.get(f"{base}/extra/classes/photos", headers={"Host": "evil.example"}, timeout=10).status_code == 400
        assert httpx.get(f"{base}/v2/models/photos/", timeout=10).status_code == 200  # trilla's own routes beside it
