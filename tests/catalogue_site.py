"""A small music shop served on 127.0.0.1 for the crawler's tests: four category levels, branches to
skip, listings of several pages (a next link, or a page count), placeholder thumbnails, the same product
in two categories, a resized copy, a picture under two labels, a broken link, a 404 picture, redirects,
a slow page, a flaky picture (503 once, with Retry-After), a page posing as a picture, a robots.txt
that disallows one branch and asks for a Crawl-delay, a decompression bomb and a picture over the size
limit, a link to another host, on every listing links to itself and to its sorted and faceted
variants (the same listing under other queries), and a parent listing that shows its descendants'
products (electric guitars shows solid-body's g1 and electric-basses' b11), and a last page that
repeats a product of the first (acoustic guitars), and a bass branch named like the strings accessories
(4-string-basses, beside strings). Every request is logged (time, host, path, user agent)."""

from __future__ import annotations

import io
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import numpy as np
from PIL import Image, ImageDraw

SLOW = "/c/solid-body/"
CRAWL_DELAY = 0.15

# category -> (sub-categories, listing pages of product ids); "PH" is the shared placeholder picture,
# "NI" a "no image" picture like the example the site file names.
TREE = {
    "instruments": (["guitars", "basses", "ukuleles", "hidden-basses", "broken", "old-basses", "strings", "OUTSIDE"], []),
    "guitars": (["electric-guitars", "acoustic-guitars", "guitar-sets"], []),
    "electric-guitars": (["solid-body", "electric-basses"], [["g1", "g2", "g3", "g4:PH", "b11"], ["g5", "g6", "g7:PH"]]),
    "electric-basses": ([], [["b11"]]),  # listed by its parent too, as shops list descendants' products: a bass, not a guitar
    "solid-body": ([], [["g8", "g1", "g9", "g10:PH"]]),
    "acoustic-guitars": ([], [["g11", "g12", "c1"], ["g13:PH", "g14:NI", "g11"]]),  # the last page repeats g11
    "guitar-sets": ([], [["s1", "s2"]]),
    "basses": (["4-string-basses"], [["b1", "b2", "c1", "b3:PH"], ["b4", "b5", "b6:NI", "b7:PH", "b10"]]),
    "4-string-basses": ([], [["b12"]]),  # named like the accessory word "string": a bass branch all the same
    "strings": ([], [["x1"]]),  # the accessories the "string" rule is meant for
    "fretless-basses": ([], [["b8", "b9"]]),
    "ukuleles": ([], [["u1"]]),
    "hidden-basses": ([], [["h1"]]),
}
PRODUCTS = {p.split(":")[0]: (p.split(":") + [p])[1] for _, pages in TREE.values() for page in pages for p in page}  # id -> picture
PAGE_COUNT = {"basses"}  # listings that show "1 / 2" instead of a next link
EXPECTED = {  # what a harvest keeps: the largest of each picture, once, under its one label
    "guitar": ["g1", "g11", "g2", "g3", "g5", "g8"],
    "bass": ["b1", "b11", "b12", "b2", "b4", "b5", "b8"],
}


def picture(seed: int, size: int = 64) -> Image.Image:
    """Random 8x8 blocks, enlarged: every seed looks different to a perceptual hash, and a resized copy
    looks the same."""
    blocks = np.random.default_rng(seed).integers(0, 256, (8, 8, 3), dtype=np.uint8)
    return Image.fromarray(blocks).resize((size, size), Image.NEAREST)


def no_image(size: int = 64) -> Image.Image:
    img = Image.new("RGB", (size, size), "white")
    draw = ImageDraw.Draw(img)
    draw.rectangle([size // 8, size // 8, size * 7 // 8, size * 7 // 8], outline="gray", width=max(1, size // 16))
    draw.line([size // 8, size // 8, size * 7 // 8, size * 7 // 8], fill="gray", width=max(1, size // 16))
    draw.line([size // 8, size * 7 // 8, size * 7 // 8, size // 8], fill="gray", width=max(1, size // 16))
    return img


def png(img: Image.Image) -> bytes:
    buffer = io.BytesIO()
    img.save(buffer, "PNG")
    return buffer.getvalue()


def _pictures() -> dict[str, bytes]:
    """The large pictures by name (the thumbnails are 16 px versions of the same)."""
    out = {}
    for n, name in enumerate(sorted({p.split(":")[0] for _, pages in TREE.values() for page in pages for p in page})):
        out[name] = png(picture(n + 1))
    out["g8"] = png(picture(100, 128))
    out["g9"] = png(picture(100, 128).resize((96, 96), Image.LANCZOS))  # a resized copy of g8
    out["PH"] = png(Image.new("RGB", (64, 64), (230, 230, 230)))
    out["NI"] = png(no_image(64))
    out["g12"] = png(Image.new("1", (20000, 20000)))  # a bomb: 400 Mpx in a few kB
    out["b9"] = png(Image.fromarray(np.random.default_rng(9).integers(0, 256, (300, 300, 3), dtype=np.uint8)))  # ~270 kB of noise
    return out


@dataclass
class Shop:
    port: int = 0
    log: list[tuple[float, str, str, str]] = field(default_factory=list)  # (time, host, path, user agent)
    flaky_served: bool = False

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def requested(self, path: str) -> list[tuple[float, str, str, str]]:
        return [entry for entry in self.log if entry[2] == path]


def _image_of(product: str) -> str:
    name, _, kind = product.partition(":")
    return kind or name


def serve_shop():
    """(Shop, stop function): the shop running on a free loopback port in a thread."""
    shop = Shop()
    pictures = _pictures()
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status: int, body: bytes = b"", kind: str = "text/html; charset=utf-8", headers: dict | None = None):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path, _, query = self.path.partition("?")
            with lock:
                shop.log.append((time.monotonic(), self.headers.get("Host", ""), self.path, self.headers.get("User-Agent", "")))
            if path == "/robots.txt":
                return self.send(200, f"User-agent: *\nDisallow: /c/hidden-basses/\nCrawl-delay: {CRAWL_DELAY}\n".encode(), "text/plain")
            if path == SLOW:
                time.sleep(2.0)
            if path == "/c/old-basses/":
                return self.send(301, headers={"Location": "/c/fretless-basses/"})
            if path.startswith("/c/") and path.count("/") == 3 and path.split("/")[2] in TREE:
                return self.send(200, self.category(path.split("/")[2], query).encode())
            if path.startswith("/img/thumb/") or path.startswith("/img/large/"):
                name = path.rsplit("/", 1)[1].removesuffix(".png")
                if name == "g6" or name not in pictures and name not in ("b5", "b10"):
                    return self.send(404, b"no such picture")
                if name == "b5" and path.startswith("/img/large/"):
                    return self.send(302, headers={"Location": "/img/moved/b5.png"})
                if name == "b10":
                    return self.send(200, b"<html><body>Sorry, the picture is gone</body></html>")
                if name == "b4" and not shop.flaky_served:
                    shop.flaky_served = True
                    return self.send(503, b"busy", headers={"Retry-After": "1"})
                body = pictures[name]
                if path.startswith("/img/thumb/") and name not in ("g12", "b9"):
                    body = png(Image.open(io.BytesIO(body)).resize((16, 16)))
                return self.send(200, body, "image/png")
            if path.startswith("/p/") and path.removeprefix("/p/").removesuffix("-model") in PRODUCTS:
                image = PRODUCTS[path.removeprefix("/p/").removesuffix("-model")]
                return self.send(200, f'<html><body><h1>{path}</h1><img class="main" src="/img/large/{image}.png"></body></html>'.encode())
            if path == "/img/moved/b5.png":
                return self.send(200, pictures["b5"], "image/png")
            return self.send(404, b"<html><body>not found</body></html>")

        def category(self, name: str, query: str) -> str:
            subs, pages = TREE[name]
            page = int(dict(p.split("=") for p in query.split("&") if "=" in p).get("page", 1))
            links = "".join(
                f'<a href="http://localhost:{shop.port}/c/outside/">Outlet</a>' if sub == "OUTSIDE" else f'<a href="/c/{sub}/">{sub}</a>'
                for sub in subs)
            if pages:  # a listing's own refinements: the same listing under other queries, and itself
                links += (f'<a href="/c/{name}/?sort=price">by price</a><a href="/c/{name}/?selected_facets=colour%3Ared#top">red</a>'
                          f'<a href="/c/{name}/">{name}</a>')
            tiles = ""
            if pages:
                for product in pages[page - 1]:
                    pid = product.split(":")[0]
                    tiles += (f'<div class="tile"><a href="/p/{pid}-model">{pid}</a>'
                              f'<img data-src="/img/thumb/{_image_of(product)}.png" src="/img/lazy.gif"></div>')
            more = ""
            if len(pages) > 1 and name in PAGE_COUNT:
                more = f'<span class="pages">{page} / {len(pages)}</span>'
            elif page < len(pages):
                more = f'<a class="next" href="/c/{name}/?page={page + 1}">next</a>'
            return f"<html><body><h1>{name}</h1><nav class='sub'>{links}</nav><main>{tiles}</main>{more}</body></html>"

    class Server(ThreadingHTTPServer):
        def handle_error(self, request, client_address):
            pass  # a crawler that hangs up on a picture over its size limit is no error of the shop's

    server = Server(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    shop.port = server.server_address[1]
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return shop, stop


SITE_YAML = """\
start_urls: ["{base}/c/instruments/"]
allowed_domains: [127.0.0.1]
selectors:
  categories: "nav.sub a::attr(href)"
  products: ".tile"
  product_link: "a::attr(href)"
  image: img
  image_attributes: [data-src, src]
  next_page: "a.next::attr(href)"
  page_count: "span.pages::text"
image_rewrite:
  - {{pattern: "/img/thumb/", replace: "/img/large/"}}
labels:
  - "ukulele|banjo|pedal|amp|string|set -> skip"
  - "electric-guitars|acoustic-guitars -> guitar"
  - "bass -> bass"
placeholders:
  examples: [noimage.png]
politeness:
  delay: 0
  concurrency: 1
  backoff: 0.2
  timeout: 10
limits:
  max_image_mb: 0.2
"""
