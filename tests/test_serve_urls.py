"""URL predict: pictures fetched from a real HTTP server on loopback, and every way a client could make
the server reach what only it can reach refused before a connection is made."""

from __future__ import annotations

import http.server
import re
import sys
import threading
import time

import httpx
import pytest

from conftest import make_image_folder, serving
from trilla import load_config, train
from trilla.errors import Unreadable
from trilla.serve.remote import Allowed, Fetcher


class Pictures(http.server.BaseHTTPRequestHandler):
    """A picture host: what it was asked (path, Host header) is recorded."""

    picture = b""
    elsewhere = ""
    seen: list[tuple[str, str]] = []

    def do_GET(self):  # noqa: N802 - http.server's name
        type(self).seen.append((self.path, self.headers.get("Host", "")))
        if self.path == "/pic.png":
            return self._send(200, self.picture)
        if self.path == "/hop":
            return self._redirect("/pic.png")
        if self.path == "/out":
            return self._redirect(self.elsewhere)
        if self.path == "/file":
            return self._redirect("file:///etc/passwd")
        if self.path == "/big":
            return self._send(200, b"\0" * (2 * 2**20))
        if self.path == "/stream":  # no Content-Length: the cap must hold while it streams
            self.send_response(200)
            self.send_header("Connection", "close")
            self.end_headers()
            for _ in range(40):
                self.wfile.write(b"\0" * 65536)
            return None
        if self.path == "/slow":
            time.sleep(3)
            return self._send(200, self.picture)
        return self._send(404, b"no")

    def _send(self, code: int, body: bytes):
        self.send_response(code)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _redirect(self, where: str):
        self.send_response(302)
        self.send_header("Location", where)
        self.send_header("Content-Length", "0")
        self.end_headers()

    def log_message(self, *args):
        pass


class PictureServer(http.server.ThreadingHTTPServer):
    def handle_error(self, request, client_address):
        """A client that gave up (the API's deadline, its size cap) is what these tests provoke, not an error
        to print: printed, it lands in whatever stderr a later test in this process is capturing."""
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


@pytest.fixture(scope="module")
def host(tmp_path_factory):
    root = tmp_path_factory.mktemp("urls")
    data = make_image_folder(root / "shapes", {"alpha": 16, "beta": 16})
    Pictures.picture = (data / "beta" / "beta_002.png").read_bytes()
    server = PictureServer(("127.0.0.1", 0), Pictures)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    run = train(load_config(data=data, overrides=["data.image_size=16", "train.epochs=2", "train.progress=false", f"run.dir={root / 'runs'}"]))
    yield f"http://127.0.0.1:{server.server_address[1]}", server.server_address[1], run
    server.shutdown()
    server.server_close()  # and waits for the requests still being answered (a slow one sleeps 3 s)


@pytest.fixture(scope="module")
def api(host):
    pictures, port, run = host
    with serving(run.path, "-q", "--url-allow", f"127.0.0.1:{port}", "--max-upload-mb", "1") as (base, _, _):
        Pictures.elsewhere = f"{base}/healthz"  # the API's own port: loopback, not allowed
        yield base, pictures, run


def ask(base: str, *urls: str) -> httpx.Response:
    return httpx.post(f"{base}/v2/models/shapes/predict/", params={"urls": list(urls), "top_k": 2}, timeout=60)


def test_a_picture_at_an_allowed_url_predicts_as_its_bytes_do(api):
    base, pictures, run = api
    [expected] = run.predict([Pictures.picture], top_k=2)
    answer = ask(base, f"{pictures}/pic.png")
    assert answer.status_code == 200, answer.text
    assert answer.json()["predictions"]["labels"] == [p["label"] for p in expected["predictions"]]
    two = ask(base, f"{pictures}/pic.png", f"{pictures}/hop").json()["predictions"]  # a redirect within the allowed host is followed
    assert [p["labels"] for p in two] == [answer.json()["predictions"]["labels"]] * 2
    both = httpx.post(f"{base}/v2/models/shapes/predict/", params={"urls": [f"{pictures}/pic.png"]},
                      files={"data": ("b.png", Pictures.picture, "image/png")}).json()["predictions"]
    assert len(both) == 2 and both[0]["labels"] == both[1]["labels"]


@pytest.mark.parametrize("url, reason", [
    ("file:///etc/passwd", "only http and https"),
    ("ftp://example.com/x.png", "only http and https"),
    ("http://localhost:{api_port}/healthz", "loopback"),
    ("http://127.0.0.1:{api_port}/healthz", "loopback"),
    ("http://[::1]:{api_port}/healthz", "loopback"),
    ("http://[::ffff:127.0.0.1]:{api_port}/healthz", "loopback"),
    ("http://10.1.2.3/x.png", "private"),
    ("http://192.168.0.1/x.png", "private"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://224.0.0.1/x.png", "multicast"),
    ("http://0.0.0.0:{api_port}/healthz", "unspecified"),
    ("http:///x.png", "names no host"),
])
def test_urls_the_server_must_not_reach_are_refused(api, url, reason):
    base, _, _ = api
    url = url.format(api_port=base.rsplit(":", 1)[1])
    answer = ask(base, url)
    assert answer.status_code == 400 and reason in answer.json()["message"], answer.text


def test_redirects_are_checked_hop_by_hop_and_sizes_capped_while_streaming(api):
    base, pictures, _ = api
    Pictures.seen.clear()
    out = ask(base, f"{pictures}/out")
    assert out.status_code == 400 and "loopback" in out.json()["message"]
    assert ask(base, f"{pictures}/file").json()["message"].endswith("only http and https URLs are fetched, not file")
    for path in ("/big", "/stream"):
        answer = ask(base, f"{pictures}{path}")
        assert answer.status_code == 400 and "over the 1 MB limit" in answer.json()["message"], answer.text
    missing = ask(base, f"{pictures}/nothing.png")
    assert missing.status_code == 400 and "answered 404" in missing.json()["message"]
    assert [path for path, _ in Pictures.seen] == ["/out", "/file", "/big", "/stream", "/nothing.png"]
    assert httpx.get(f"{base}/healthz").status_code == 200


def test_the_name_is_resolved_once_and_the_checked_address_is_the_one_connected_to(host):
    pictures, port, _ = host
    asked: list[str] = []

    def resolve(name: str, _port: int) -> list[str]:
        asked.append(name)
        return ["127.0.0.1"]

    Pictures.seen.clear()
    fetcher = Fetcher(allowed=(Allowed.parse(f"127.0.0.1:{port}"),), resolve=resolve)
    assert fetcher.fetch(f"http://pictures.test:{port}/pic.png") == Pictures.picture
    assert asked == ["pictures.test"]  # nothing else resolved the name: httpx connected to 127.0.0.1 itself
    assert Pictures.seen == [("/pic.png", f"pictures.test:{port}")]
    rebinding = Fetcher(allowed=(), resolve=lambda name, _: ["93.184.216.34", "127.0.0.1"])
    with pytest.raises(Unreadable, match="loopback"):  # one bad address among the answers refuses the name
        rebinding.fetch(f"http://pictures.test:{port}/pic.png")
    with pytest.raises(Unreadable, match="did not answer in time"):
        Fetcher(read_timeout=0.5, allowed=(Allowed.parse(f"127.0.0.1:{port}"),)).fetch(f"{pictures}/slow")


def test_allowed_networks_parse_or_say_why_not():
    assert Allowed.parse("10.0.0.0/8").port is None and Allowed.parse("[::1]:8080").port == 8080
    import ipaddress

    assert Allowed.parse("127.0.0.1:81").admits(ipaddress.ip_address("127.0.0.1"), 81)
    assert not Allowed.parse("127.0.0.1:81").admits(ipaddress.ip_address("127.0.0.1"), 82)
    with pytest.raises(ValueError, match="not an address"):
        Allowed.parse("intranet/8")
    with pytest.raises(ValueError, match="port must be a number"):
        Allowed.parse("10.0.0.1:http")


class Dribbler:
    """A loopback host that sends its response headers one byte every `every` seconds (bounded: it stops
    after `limit` seconds or when the client hangs up), counting the connections it got."""

    def __init__(self, every: float = 0.5, limit: float = 20.0):
        import socket

        self.every, self.limit, self.connections = every, limit, 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                connection, _ = self.listener.accept()
            except OSError:
                return
            self.connections += 1
            threading.Thread(target=self._dribble, args=(connection,), daemon=True).start()

    def _dribble(self, connection):
        started = time.monotonic()
        with connection:
            for byte in b"HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nX-Padding: " + b"x" * 1000:
                if time.monotonic() - started > self.limit:
                    return
                try:
                    connection.sendall(bytes([byte]))
                except OSError:
                    return
                time.sleep(self.every)

    def close(self):
        self.listener.close()


def test_a_host_that_dribbles_its_headers_neither_outlives_the_deadline_nor_holds_up_uploads(host):
    _, _, run = host
    slow = Dribbler()
    try:
        with serving(run.path, "-q", "--url-allow", f"127.0.0.1:{slow.port}", "--url-deadline", "4") as (base, _, _):
            results: dict[str, object] = {}

            def ask_slow():
                started = time.monotonic()
                results["answer"] = ask(base, *[f"http://127.0.0.1:{slow.port}/pic{n}.png" for n in range(4)])
                results["seconds"] = time.monotonic() - started

            asking = threading.Thread(target=ask_slow)
            asking.start()
            deadline = time.monotonic() + 10
            while slow.connections < 4 and time.monotonic() < deadline:  # every fetch is under way
                time.sleep(0.05)
            assert slow.connections == 4
            for _ in range(3):  # uploads meanwhile answer at once: no decoding thread waits on the slow host
                started = time.monotonic()
                upload = httpx.post(f"{base}/v2/models/shapes/predict/", files={"data": ("p.png", Pictures.picture, "image/png")}, timeout=30)
                assert upload.status_code == 200 and time.monotonic() - started < 1.0, time.monotonic() - started
            asking.join(30)
            answer = results["answer"]
            assert answer.status_code == 400 and "took more than 4 s" in answer.json()["message"], answer.text
            assert results["seconds"] < 8  # the deadline counts the headers: not the minutes a byte every 0.5 s would take
    finally:
        slow.close()


@pytest.mark.parametrize("address, carried", [
    ("2002:a00:1::1", "10.0.0.1"),  # 6to4
    ("2002:7f00:1::", "127.0.0.1"),
    ("64:ff9b::a9fe:a9fe", "169.254.169.254"),  # NAT64: the cloud metadata address
    ("64:ff9b::c0a8:101", "192.168.1.1"),
    ("::10.1.2.3", "10.1.2.3"),  # IPv4-compatible
    ("::ffff:172.16.0.1", "172.16.0.1"),  # IPv4-mapped
])
def test_ipv6_addresses_that_carry_a_private_ipv4_one_are_refused(address, carried):
    """The check only: nothing is sent (the resolver is the test's)."""
    fetcher = Fetcher(allowed=(), resolve=lambda name, _: [address])
    with pytest.raises(Unreadable, match=rf"refused to fetch images\.test: .*\({re.escape(carried)}\) inside an? "):
        fetcher.check("http://images.test/x.png")


def test_teredo_is_refused_and_public_ipv4_inside_ipv6_is_not():
    with pytest.raises(Unreadable, match="Teredo"):
        Fetcher(allowed=(), resolve=lambda name, _: ["2001:0:4136:e378:8000:63bf:3fff:fdd2"]).check("http://t.test/")
    for public in ("2002:5db8:d822::1", "64:ff9b::5db8:d822"):  # 93.184.216.34 by 6to4 and NAT64
        assert Fetcher(allowed=(), resolve=lambda name, _, a=public: [a]).check("http://p.test/")[1] == public
