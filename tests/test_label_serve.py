"""The labelling routes over HTTP against a real server: CSRF and the token on every answer, media by item
id only, each annotator's own view, and a `kill -9` of the server losing no answer it acknowledged."""

from __future__ import annotations

import os
import re
import signal
import threading
import time

import httpx
import pytest

from conftest import make_image_folder, serving
from trilla.label import Project


def csrf_of(base: str, project: str) -> str:
    page = httpx.get(f"{base}/label/{project}", headers={"Accept": "text/html"})
    return re.search(r'<meta name="csrf" content="([^"]+)"', page.text).group(1)


@pytest.fixture
def project(tmp_path):
    pictures = make_image_folder(tmp_path / "pics", {"alpha": 20, "beta": 20})
    return Project.create(tmp_path / "shop", pictures, "classes", ["alpha", "beta"])


def test_answers_need_the_csrf_header_and_the_token_and_media_come_by_id_only(project):
    with serving("--label", project.folder, "-q", "--token", "tok") as (base, _, _):
        csrf = csrf_of(base, "shop")
        nxt = httpx.get(f"{base}/label/shop/api/next", params={"annotator": "ann"}).json()["item"]
        body = {"annotator": "ann", "item": nxt["id"], "value": "alpha", "seconds": 2.5}
        assert httpx.post(f"{base}/label/shop/api/answer", json=body, headers={"Authorization": "Bearer tok"}).status_code == 403
        untokened = httpx.post(f"{base}/label/shop/api/answer", json=body, headers={"X-CSRF-Token": csrf})
        assert untokened.status_code == 401 and untokened.json()["message"].startswith("labelling answers need the server's token")
        rebound = httpx.get(f"{base}/label/shop", headers={"Host": "rebind.example", "Accept": "text/html"})
        assert rebound.status_code == 200  # with a token the answers are guarded anyway: any Host is served
        both = {"X-CSRF-Token": csrf, "Authorization": "Bearer tok"}
        answered = httpx.post(f"{base}/label/shop/api/answer", json=body, headers=both)
        assert answered.status_code == 200 and answered.json()["item"]["position"] == 1
        wrong = httpx.post(f"{base}/label/shop/api/answer", json={**body, "value": "gamma"}, headers=both)
        assert wrong.status_code == 422 and "one of alpha, beta" in wrong.json()["message"]
        assert httpx.get(f"{base}/label/shop/api/item/{nxt['id']}", params={"annotator": "bob"}).json()["item"]["answer"] is None
        media = httpx.get(base + nxt["url"])
        assert media.status_code == 200 and media.headers["content-type"] == "image/png"
        assert media.content == open(project.item(nxt["id"]).path, "rb").read()
        assert httpx.get(f"{base}/label/shop/media/9999").status_code == 404
        assert httpx.get(f"{base}/label/shop/media/..%2F..%2Fetc%2Fpasswd").status_code in (404, 422)
        assert httpx.get(f"{base}/label/nothing/api/next", params={"annotator": "x"}).status_code == 404
    [row] = project.answers().itertuples()
    assert (row.annotator, row.value, row.seconds) == ("ann", "alpha", 2.5)


def test_without_a_token_only_requests_for_the_servers_own_names_are_answered(project):
    """A DNS-rebinding page comes under its own name: it cannot read the page (and its CSRF token) or answer."""
    with serving("--label", project.folder, "-q", "--allow-host", "labels.lan") as (base, _, _):
        port = base.rsplit(":", 1)[1]
        page = {"Accept": "text/html"}
        for host in (f"127.0.0.1:{port}", f"localhost:{port}", "labels.lan", f"[::1]:{port}", "192.0.2.7"):
            assert httpx.get(f"{base}/label/shop", headers={**page, "Host": host}).status_code == 200, host
        for host in (f"rebind.example:{port}", "localhost.rebind.example", "", "[::1"):
            refused = httpx.get(f"{base}/label/shop", headers={**page, "Host": host})
            assert refused.status_code == 400 and "own names" in refused.json()["message"], host
        csrf = csrf_of(base, "shop")
        body = {"annotator": "ann", "item": int(project.items()["item"].iloc[0]), "value": "alpha"}
        sneaked = httpx.post(f"{base}/label/shop/api/answer", json=body, headers={"X-CSRF-Token": csrf, "Host": "rebind.example"})
        assert sneaked.status_code == 400 and project.answers().empty


def test_a_killed_server_loses_no_acknowledged_answer(project):
    acknowledged: list[int] = []
    with serving("--label", project.folder, "-q") as (base, process, _):
        csrf = csrf_of(base, "shop")
        items = list(project.items()["item"])

        def answer_all():
            with httpx.Client(timeout=5) as client:
                for item in items:
                    try:
                        reply = client.post(f"{base}/label/shop/api/answer", headers={"X-CSRF-Token": csrf},
                                            json={"annotator": "ann", "item": int(item), "value": "alpha"})
                    except httpx.TransportError:
                        return
                    if reply.status_code == 200:
                        acknowledged.append(int(item))

        sender = threading.Thread(target=answer_all)
        sender.start()
        deadline = time.monotonic() + 30
        while len(acknowledged) < 10 and time.monotonic() < deadline:
            time.sleep(0.01)
        os.kill(process.pid, signal.SIGKILL)
        sender.join(timeout=30)
    assert 10 <= len(acknowledged) < len(items), "the kill came too late to test anything"
    stored = set(Project(project.folder).standing()["item"])
    assert set(acknowledged) <= stored and len(stored - set(acknowledged)) <= 1  # at most the answer being sent
