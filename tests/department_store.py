"""A second shop, built the other way round from catalogue_site.py, served on 127.0.0.1: category URLs
that nest (/catalogue/guitars-and-basses/guitars/electric/), a side menu listing the whole catalogue on
every page (another department, keyboards, included), with each listing's facet and sort links in it,
parents whose listings show every descendant's product, a bass branch robots.txt disallows whose
products its parent lists, a parent's own product beside that branch, a listing whose middle page is
short (it skips a product), and thumbnails named by a hash (/media/cache/ab/ab12....jpg) that no rewrite
can enlarge: the larger picture is in each product page's gallery. Every request is logged by path."""

from __future__ import annotations

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from catalogue_site import picture, png

ROOT = "/catalogue/guitars-and-basses/"
DISALLOWED = ROOT + "basses/fretless/"
# category URL -> listing pages of product ids
LISTINGS = {
    ROOT: [["e1", "e2", "e3"], ["e4", "a1", "f1"], ["d1", "n1"]],  # every descendant's product
    ROOT + "guitars/": [["e1", "e2", "e3", "e4", "a1"]],
    ROOT + "guitars/electric/": [["e1", "e2"], ["e3"], ["e4"]],  # page 2 is short: a shop that skips one there
    ROOT + "guitars/acoustic/": [["a1"]],
    ROOT + "basses/": [["f1", "d1", "n1"]],  # n1 is its own, d1 the fretless branch's: from the listing alone, no telling
    ROOT + "basses/5-string/": [["f1"]],
    DISALLOWED: [["d1"]],
    "/catalogue/keyboards/": [["k1"]],  # another department, in the same menu
}
PRODUCTS = sorted({p for pages in LISTINGS.values() for page in pages for p in page})
EXPECTED = {"guitar": ["a1", "e1", "e2", "e3", "e4"], "bass": ["f1"]}
LARGE, THUMB = 128, 32


def thumbnail_path(product: str) -> str:
    digest = hashlib.sha1(product.encode()).hexdigest()
    return f"/media/cache/{digest[:2]}/{digest}.jpg"


def serve_store():
    """(log of requested paths, base URL, stop function): the store running on a free loopback port."""
    log: list[str] = []
    lock = threading.Lock()
    large = {p: png(picture(200 + n, LARGE)) for n, p in enumerate(PRODUCTS)}
    thumbs = {thumbnail_path(p): png(picture(200 + n, LARGE).resize((THUMB, THUMB))) for n, p in enumerate(PRODUCTS)}
    menu = "".join(f'<li><a href="{url}">{url.rstrip("/").rsplit("/", 1)[1]}</a></li>' for url in LISTINGS)

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def send(self, status: int, body: bytes, kind: str = "text/html; charset=utf-8"):
            self.send_response(status)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def do_GET(self):
            path, _, query = self.path.partition("?")
            with lock:
                log.append(self.path)
            if path == "/robots.txt":
                return self.send(200, f"User-agent: *\nDisallow: {DISALLOWED}\n".encode(), "text/plain")
            if path in LISTINGS:
                return self.send(200, self.listing(path, query).encode())
            if path.startswith("/products/") and path.split("/")[2] in large:
                pid = path.split("/")[2]
                return self.send(200, (f'<html><body><h1>{pid}</h1><div class="gallery"><img src="/media/images/{pid}.png"></div>'
                                       f'<aside class="related"><img src="{thumbnail_path(PRODUCTS[0])}"></aside></body></html>').encode())
            if path.startswith("/media/images/") and path.split("/")[3].removesuffix(".png") in large:
                return self.send(200, large[path.split("/")[3].removesuffix(".png")], "image/png")
            if path in thumbs:
                return self.send(200, thumbs[path], "image/png")
            return self.send(404, b"<html><body>not found</body></html>")

        def listing(self, path: str, query: str) -> str:
            pages = LISTINGS[path]
            page = int(dict(p.split("=") for p in query.split("&") if "=" in p).get("page", 1))
            refine = f'<li><a href="{path}?selected_facets=colour_exact%3Ared">red</a></li><li><a href="{path}?sort=price-asc">by price</a></li>'
            tiles = "".join(f'<article class="product"><img src="{thumbnail_path(pid)}"><h3><a href="/products/{pid}/">{pid}</a></h3></article>'
                            for pid in pages[page - 1])
            more = f'<li class="next"><a href="{path}?page={page + 1}">next</a></li>' if page < len(pages) else ""
            return (f"<html><body><nav class='menu'><ul>{menu}{refine}</ul></nav><ol>{tiles}</ol><ul class='pager'>{more}</ul>"
                    "</body></html>")

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()

    def stop():
        server.shutdown()
        server.server_close()

    return log, f"http://127.0.0.1:{server.server_address[1]}", stop


SITE_YAML = """\
start_urls: ["{base}/catalogue/guitars-and-basses/"]
allowed_domains: [127.0.0.1]
selectors:
  categories: "nav.menu a::attr(href)"
  products: "article.product"
  product_link: "h3 a::attr(href)"
  product_page: true
  image: ".gallery img"
  image_attributes: [src]
  next_page: "li.next a::attr(href)"
labels:
  - "guitar -> guitar"
  - "bass -> bass"
politeness:
  delay: 0
  concurrency: 2
  timeout: 10
"""
