"""Fetching a picture or a sound from a URL a client names, without letting the client reach what only
the server can reach (server-side request forgery).

Only http and https. The host name is resolved once, here; every address it resolves to must be a
public one (not loopback, private, link-local, multicast, reserved or unspecified) unless an operator
allowed it (`--url-allow 10.1.2.0/24` or `--url-allow 127.0.0.1:8080`), and the connection goes to
that checked address (the Host header and TLS SNI keep the name), so a second lookup that answers
differently (DNS rebinding) is never made. Redirects are followed by hand, each hop checked the same
way. The connect and read timeouts, the overall deadline and the size cap hold while the body streams.

Written by hand on httpx: no maintained package pins the connection to the address it checked.
"""

from __future__ import annotations

import ipaddress
import socket
import time
import urllib.parse
from dataclasses import dataclass
from typing import Callable

import httpx

from trilla.data.inputs import ItemError
from trilla.version import __version__

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    try:
        return sorted({info[4][0] for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except socket.gaierror as err:
        raise ItemError(f"cannot resolve {host}: {err.strerror}") from err


@dataclass(frozen=True)
class Allowed:
    """An operator's exception to the public-address rule: a network, optionally on one port."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> "Allowed":
        """`10.0.0.0/8`, `192.168.1.5`, `127.0.0.1:8080` or `[::1]:8080`."""
        address, port = text.strip(), None
        if address.startswith("["):
            address, _, rest = address[1:].partition("]")
            port = int(rest[1:]) if rest.startswith(":") and rest[1:].isdigit() else None
        elif address.count(":") == 1:
            address, _, given = address.partition(":")
            if not given.isdigit():
                raise ValueError(f"--url-allow {text!r}: the port must be a number")
            port = int(given)
        try:
            return cls(ipaddress.ip_network(address, strict=False), port)
        except ValueError as err:
            raise ValueError(f"--url-allow {text!r}: not an address or network ({err})") from None

    def admits(self, address: Address, port: int) -> bool:
        return address in self.network and (self.port is None or self.port == port)


def refusal(address: Address) -> str | None:
    """Why a client may not make the server connect to `address`, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        return refusal(address.ipv4_mapped)
    for kind in ("loopback", "link_local", "multicast", "unspecified", "reserved", "private"):  # most telling first
        if getattr(address, f"is_{kind}"):
            return f"a {kind.replace('_', '-')} address"
    if not address.is_global:
        return "not a public address"
    return None


@dataclass
class Fetcher:
    max_bytes: int = 20 * 2**20
    connect_timeout: float = 5.0
    read_timeout: float = 10.0
    deadline: float = 30.0
    max_redirects: int = 5
    allowed: tuple[Allowed, ...] = ()
    resolve: Resolver = system_resolver

    def check(self, url: str) -> tuple[httpx.URL, str]:
        """The URL and the address to connect to; ItemError says why the URL is refused."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as err:
            raise ItemError(f"not a URL: {url!r}") from err
        if parsed.scheme not in ("http", "https"):
            raise ItemError(f"only http and https URLs are fetched, not {parsed.scheme or 'a URL without a scheme'}")
        if not parsed.host:
            raise ItemError(f"the URL {url!r} names no host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = self.resolve(parsed.host, port)
        if not addresses:
            raise ItemError(f"{parsed.host} resolves to no address")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            why = refusal(address)
            if why and not any(allowed.admits(address, port) for allowed in self.allowed):
                raise ItemError(f"refused to fetch {parsed.host}: it resolves to {address}, {why}")
        return parsed, addresses[0]

    def fetch(self, url: str) -> bytes:
        """The body at `url`, at most `max_bytes`; ItemError (with the reason) for anything refused or failed."""
        started = time.monotonic()
        timeout = httpx.Timeout(self.read_timeout, connect=self.connect_timeout)
        headers = {"User-Agent": f"trilla/{__version__} (URL predict)"}
        with httpx.Client(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            for _ in range(self.max_redirects + 1):
                target, address = self.check(url)
                pinned = target.copy_with(host=address)
                request = client.build_request("GET", pinned, headers={**headers, "Host": _host_header(target)},
                                               extensions={"sni_hostname": target.host} if target.scheme == "https" else {})
                try:
                    response = client.send(request, stream=True)
                except httpx.TimeoutException as err:
                    raise ItemError(f"{target.host} did not answer in time") from err
                except httpx.HTTPError as err:
                    raise ItemError(f"cannot fetch {url}: {type(err).__name__}") from err
                try:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        url = urllib.parse.urljoin(str(target), location)
                        continue
                    if response.status_code != 200:
                        raise ItemError(f"{url} answered {response.status_code}")
                    return self._body(response, url, started)
                finally:
                    response.close()
        raise ItemError(f"{url}: more than {self.max_redirects} redirects")

    def _body(self, response: httpx.Response, url: str, started: float) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise ItemError(f"{url} is {int(declared) / 2**20:.1f} MB, over the {self.max_bytes / 2**20:g} MB limit")
        chunks, size = [], 0
        try:
            for chunk in response.iter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise ItemError(f"{url} is over the {self.max_bytes / 2**20:g} MB limit")
                if time.monotonic() - started > self.deadline:
                    raise ItemError(f"{url} took more than {self.deadline:g} s")
                chunks.append(chunk)
        except httpx.TimeoutException as err:
            raise ItemError(f"{url} stopped sending") from err
        except httpx.HTTPError as err:
            raise ItemError(f"cannot fetch {url}: {type(err).__name__}") from err
        return b"".join(chunks)


def _host_header(url: httpx.URL) -> str:
    default = 443 if url.scheme == "https" else 80
    return url.host if url.port in (None, default) else f"{url.host}:{url.port}"
