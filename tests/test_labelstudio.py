"""trilla and a real Label Studio server (1.23, from .venv-labelstudio, which make test builds), started
on loopback for this module: what trilla exports is imported through Label Studio's REST API with every
picture loading and every annotator's annotation in place, and what Label Studio exports comes back into
trilla under trilla's names, once, even for a project labelled only in Label Studio."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx
import pytest

from conftest import listening, make_image_folder, make_tone_folder, trilla
from trilla.label import Project

ROOT = Path(__file__).resolve().parents[1]
LABEL_STUDIO = ROOT / ".venv-labelstudio" / "bin" / "label-studio"
TOKEN = "trilla-test-token-0123456789"


@pytest.fixture(scope="module")
def studio(tmp_path_factory):
    """(Label Studio's base URL, an httpx client with the admin's token, the document root it serves
    local files from)."""
    assert LABEL_STUDIO.exists(), f"{LABEL_STUDIO} is missing: make labelstudio (make test builds it) installs Label Studio"
    home = tmp_path_factory.mktemp("label-studio")
    media = tmp_path_factory.mktemp("media")
    env = {"LABEL_STUDIO_BASE_DATA_DIR": str(home), "LABEL_STUDIO_LOCAL_FILES_SERVING_ENABLED": "true",
           "LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT": str(media), "LATEST_VERSION_CHECK": "false", "COLLECT_ANALYTICS": "false",
           "HOST": ""}
    command = [LABEL_STUDIO, "start", "--no-browser", "--internal-host", "127.0.0.1", "--username", "admin@example.org",
               "--password", "admin-password-1", "--user-token", TOKEN, "--enable-legacy-api-token", "--port"]
    with listening(command, "/health", timeout=600, env=env, cwd=home) as (base, _, _):
        with httpx.Client(base_url=base, headers={"Authorization": f"Token {TOKEN}"}, timeout=60) as client:
            yield base, client, media


def ok(response: httpx.Response) -> httpx.Response:
    assert response.status_code < 300, f"{response.request.method} {response.request.url}: {response.status_code} {response.text[:500]}"
    return response


def label_studio_project(client: httpx.Client, title: str, config: str, storage: str | None = None) -> int:
    made = ok(client.post("/api/projects", json={"title": title, "label_config": config})).json()["id"]
    if storage is not None:
        ok(client.post("/api/storages/localfiles", json={"project": made, "path": storage, "use_blob_urls": False, "title": "trilla media"}))
    return made


def printed_storage(printed: str) -> str:
    """The folder step 4 of `trilla label export --format labelstudio` says to add as Local Files storage."""
    return re.search(r"Local Files source storage on (.+?) \(do not sync", printed).group(1)


def exported(client: httpx.Client, project: int) -> list[dict]:
    return ok(client.get(f"/api/projects/{project}/export", params={"exportType": "JSON"})).json()


def test_a_trilla_export_imports_into_label_studio_and_comes_back_unchanged(studio, tmp_path):
    base, client, media = studio
    photos = make_image_folder(media / "shop" / "photos", {"guitar": 3, "bass": 3})
    trilla("label", "new", tmp_path / "shop", "--data", photos, "--classes", "guitar,bass", "-q")
    project = Project(tmp_path / "shop")
    names = ["ann", "Bob Smith", "carla@example.org"]
    for k, row in enumerate(project.items().itertuples()):
        for n, annotator in enumerate(names[: 2 + k % 2]):
            project.answer(int(row.item), annotator, row.given if n != 1 or k % 3 else ("guitar" if row.given == "bass" else "bass"))
    project.answer(int(project.items()["item"].iloc[0]), "ann", None)  # a skip stands: no annotation for it
    printed = trilla("label", "export", tmp_path / "shop", "--format", "labelstudio", "--media-root", media).stdout
    assert f"LABEL_STUDIO_LOCAL_FILES_DOCUMENT_ROOT={media}" in printed
    tasks = json.loads((tmp_path / "shop" / "labelstudio.json").read_text())
    users = json.loads((tmp_path / "shop" / "labelstudio.users.json").read_text())
    assert {u["trilla_annotator"] for u in users} == set(names) and len({u["email"] for u in users}) == 3

    for user in users:  # step 2 as printed: Label Studio's users, by the export's addresses
        ok(client.post("/api/users/", json={"email": user["email"], "username": user["username"]}))
    config = (tmp_path / "shop" / "labelstudio.image.xml").read_text()
    made = label_studio_project(client, "shop from trilla", config, storage=printed_storage(printed))  # the steps as printed
    ok(client.post(f"/api/projects/{made}/import", json=tasks))

    back = exported(client, made)
    assert len(back) == 6
    emails = {u["id"]: u["email"] for u in ok(client.get("/api/users/")).json()}
    standing = project.standing()
    want = {(int(r.item), next(u["email"] for u in users if u["trilla_annotator"] == r.annotator)): r.value for r in standing.itertuples()}
    got = {(t["data"]["trilla_item"], emails[a["completed_by"]]): a["result"][0]["value"]["choices"][0] for t in back for a in t["annotations"]}
    assert got == want and len(got) == len(standing)
    for task in back:  # every item's picture loads from Label Studio, byte for byte
        shown = ok(client.get(task["data"]["image"]))
        assert shown.content == Path(project.item(task["data"]["trilla_item"]).path).read_bytes()

    (tmp_path / "export.json").write_text(json.dumps(back))
    (tmp_path / "users.json").write_text(ok(client.get("/api/users/")).text)
    again = trilla("label", "import", tmp_path / "shop", tmp_path / "export.json", "--users", tmp_path / "users.json")
    assert "0 answers imported, 0 left out" in again.stdout  # every annotation is already the standing answer

    trilla("label", "new", tmp_path / "fresh", "--data", photos, "--classes", "guitar,bass", "-q")
    fresh = Project(tmp_path / "fresh")
    first = trilla("label", "import", tmp_path / "fresh", tmp_path / "export.json", "--users", tmp_path / "users.json", "--users",
                   tmp_path / "shop" / "labelstudio.users.json")
    assert f"{len(standing)} answers imported, 0 left out" in first.stdout
    key = ["item", "annotator"]
    assert fresh.standing().sort_values(key).reset_index(drop=True).equals(standing.sort_values(key).reset_index(drop=True))
    second = trilla("label", "import", tmp_path / "fresh", tmp_path / "export.json", "--users", tmp_path / "users.json", "--users",
                    tmp_path / "shop" / "labelstudio.users.json")
    assert "0 answers imported" in second.stdout and len(fresh.answers()) == len(standing)


def test_a_project_labelled_only_in_label_studio_imports_by_file_name(studio, tmp_path):
    base, client, media = studio
    photos = make_image_folder(media / "only" / "photos", {"guitar": 2, "bass": 2}, seed=3)
    config = ('<View><Image name="image" value="$image"/><Choices name="kind" toName="image">'
              '<Choice value="guitar"/><Choice value="bass"/></Choices></View>')
    made = label_studio_project(client, "labelled in Label Studio", config, storage=str(media / "only"))
    files = sorted(photos.rglob("*.png"))
    ok(client.post(f"/api/projects/{made}/import", json=[{"image": f"/data/local-files/?d={f.relative_to(media).as_posix()}"} for f in files]))
    listed = ok(client.get("/api/tasks", params={"project": made})).json()
    for task in listed["tasks"]:
        label = "guitar" if "/guitar/" in task["data"]["image"] else "bass"
        ok(client.post(f"/api/tasks/{task['id']}/annotations/",
                       json={"result": [{"from_name": "kind", "to_name": "image", "type": "choices", "value": {"choices": [label]}}]}))
    (tmp_path / "export.json").write_text(json.dumps(exported(client, made)))
    (tmp_path / "users.json").write_text(ok(client.get("/api/users/")).text)
    trilla("label", "new", tmp_path / "p", "--data", photos, "--classes", "guitar,bass", "-q")
    result = trilla("label", "import", tmp_path / "p", tmp_path / "export.json", "--users", tmp_path / "users.json")
    assert "4 answers imported, 0 left out" in result.stdout
    project = Project(tmp_path / "p")
    standing = project.standing().merge(project.items(), on="item")
    assert set(standing["annotator"]) == {"admin@example.org"}
    assert (standing["value"] == standing["given"]).all()  # each answer landed on the picture it was given for


def test_points_on_the_plane_and_their_sounds_go_through_label_studio(studio, tmp_path):
    base, client, media = studio
    tones = make_tone_folder(media / "mood" / "songs", {"low": 2, "high": 2})
    trilla("label", "new", tmp_path / "mood", "--data", tones, "--plane", "valence,arousal", "-q")
    project = Project(tmp_path / "mood")
    for k, item in enumerate(project.items()["item"]):
        project.answer(int(item), "ann", [round(0.3 * k - 0.5, 4), -0.25])
        project.answer(int(item), "bob", [0.5, round(0.1 * k, 4)])
    printed = trilla("label", "export", tmp_path / "mood", "--format", "labelstudio", "--media-root", media, "-q").stdout
    for user in json.loads((tmp_path / "mood" / "labelstudio.users.json").read_text()):
        client.post("/api/users/", json={"email": user["email"], "username": user["username"]})  # ann may exist from another test
    made = label_studio_project(client, "mood from trilla", (tmp_path / "mood" / "labelstudio.audio.xml").read_text(),
                                storage=printed_storage(printed))
    ok(client.post(f"/api/projects/{made}/import", json=json.loads((tmp_path / "mood" / "labelstudio.json").read_text())))
    back = exported(client, made)
    assert sum(len(t["annotations"]) for t in back) == 8
    for task in back:
        assert ok(client.get(task["data"]["audio"])).content == Path(project.item(task["data"]["trilla_item"]).path).read_bytes()
    (tmp_path / "export.json").write_text(json.dumps(back))
    (tmp_path / "users.json").write_text(ok(client.get("/api/users/")).text)
    trilla("label", "new", tmp_path / "again", "--data", tones, "--plane", "valence,arousal", "-q")
    result = trilla("label", "import", tmp_path / "again", tmp_path / "export.json", "--users", tmp_path / "users.json",
                    "--users", tmp_path / "mood" / "labelstudio.users.json")
    assert "8 answers imported, 0 left out" in result.stdout
    key = ["item", "annotator"]
    assert Project(tmp_path / "again").standing().sort_values(key).reset_index(drop=True).equals(project.standing().sort_values(key).reset_index(drop=True))
