"""Fetching a picture or a sound from a URL a client names, without letting the client reach what only
the server can reach (server-side request forgery).

Only http and https. The host name is resolved once, here; every address it resolves to must be a
public one (not loopback, private, link-local, multicast, reserved or unspecified) unless an operator
allowed it (`--url-allow 10.1.2.0/24` or `--url-allow 127.0.0.1:8080`), and the connection goes to
that checked address (the Host header and TLS SNI keep the name), so a second lookup that answers
differently (DNS rebinding) is never made. Redirects are followed by hand, each hop checked the same
way. The connect and read timeouts hold per operation, the size cap while the body streams, and one
deadline over the whole fetch, from the lookup to the last byte with the headers between. Fetches run
on the event loop (the lookup on a thread), never on the pool that decodes uploads, so a slow host
holds no decoding thread.

Written by hand on httpx: no maintained package pins the connection to the address it checked.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
import urllib.parse
from collections.abc import Callable
from dataclasses import dataclass

import httpx

from trilla.errors import Unreadable
from trilla.version import __version__

Address = ipaddress.IPv4Address | ipaddress.IPv6Address
Resolver = Callable[[str, int], list[str]]


def system_resolver(host: str, port: int) -> list[str]:
    try:
        return sorted({str(info[4][0]) for info in socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)})
    except socket.gaierror as err:
        raise Unreadable(f"cannot resolve {host}: {err.strerror}") from err


@dataclass(frozen=True)
class Allowed:
    """An operator's exception to the public-address rule: a network, optionally on one port."""

    network: ipaddress.IPv4Network | ipaddress.IPv6Network
    port: int | None = None

    @classmethod
    def parse(cls, text: str) -> Allowed:
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


NAT64 = (ipaddress.ip_network("64:ff9b::/96"), ipaddress.ip_network("64:ff9b:1::/48"))
IPV4_COMPATIBLE = ipaddress.ip_network("::/96")


def embedded(address: ipaddress.IPv6Address) -> tuple[str, ipaddress.IPv4Address] | None:
    """The IPv4 address an IPv6 one carries to its destination, and how: mapped, 6to4, NAT64, or
    IPv4-compatible (a Teredo address carries its client's, obfuscated, and is refused on its own)."""
    if address.ipv4_mapped is not None:
        return "IPv4-mapped", address.ipv4_mapped
    if address.sixtofour is not None:
        return "6to4", address.sixtofour
    last = ipaddress.IPv4Address(int(address) & 0xFFFFFFFF)
    if any(address in network for network in NAT64):
        return "NAT64", last
    if address in IPV4_COMPATIBLE and int(address) > 1:
        return "IPv4-compatible", last
    return None


def refusal(address: Address) -> str | None:
    """Why a client may not make the server connect to `address`, or None for a public address."""
    if isinstance(address, ipaddress.IPv6Address):
        if address.teredo is not None:
            return "a Teredo address (it tunnels to an IPv4 host)"
        carried = embedded(address)
        if carried is not None:
            why = refusal(carried[1])
            return None if why is None else f"{why} ({carried[1]}) inside {'an' if carried[0][0] in 'AEIOU' else 'a'} {carried[0]} address"
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
        """The URL and the address to connect to; Unreadable says why the URL is refused."""
        try:
            parsed = httpx.URL(url)
        except (httpx.InvalidURL, TypeError) as err:
            raise Unreadable(f"not a URL: {url!r}") from err
        if parsed.scheme not in ("http", "https"):
            raise Unreadable(f"only http and https URLs are fetched, not {parsed.scheme or 'a URL without a scheme'}")
        if not parsed.host:
            raise Unreadable(f"the URL {url!r} names no host")
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        addresses = self.resolve(parsed.host, port)
        if not addresses:
            raise Unreadable(f"{parsed.host} resolves to no address")
        for text in addresses:
            address = ipaddress.ip_address(text.split("%")[0])
            why = refusal(address)
            if why and not any(allowed.admits(address, port) for allowed in self.allowed):
                raise Unreadable(f"refused to fetch {parsed.host}: it resolves to {address}, {why}")
        return parsed, addresses[0]

    def fetch(self, url: str) -> bytes:
        """`fetch_async` for a caller without an event loop (the DEEPaaS plugin's worker)."""
        return asyncio.run(self.fetch_async(url))

    async def fetch_async(self, url: str) -> bytes:
        """The body at `url`, at most `max_bytes`; Unreadable (with the reason) for anything refused or failed.
        The deadline runs from the name's lookup to the last byte, headers included: a host that sends
        its answer a byte at a time never resets it, as it resets the read timeout."""
        try:
            async with asyncio.timeout(self.deadline):
                return await self._fetch(url)
        except TimeoutError:
            raise Unreadable(f"{url} took more than {self.deadline:g} s") from None

    async def _fetch(self, url: str) -> bytes:
        timeout = httpx.Timeout(self.read_timeout, connect=self.connect_timeout)
        headers = {"User-Agent": f"trilla/{__version__} (URL predict)"}
        async with httpx.AsyncClient(timeout=timeout, follow_redirects=False, trust_env=False) as client:
            for _ in range(self.max_redirects + 1):
                target, address = await asyncio.to_thread(self.check, url)
                pinned = target.copy_with(host=address)
                request = client.build_request("GET", pinned, headers={**headers, "Host": _host_header(target)},
                                               extensions={"sni_hostname": target.host} if target.scheme == "https" else {})
                try:
                    response = await client.send(request, stream=True)
                except httpx.TimeoutException as err:
                    raise Unreadable(f"{target.host} did not answer in time") from err
                except httpx.HTTPError as err:
                    raise Unreadable(f"cannot fetch {url}: {type(err).__name__}") from err
                try:
                    if response.is_redirect:
                        location = response.headers.get("location", "")
                        url = urllib.parse.urljoin(str(target), location)
                        continue
                    if response.status_code != 200:
                        raise Unreadable(f"{url} answered {response.status_code}")
                    return await self._body(response, url)
                finally:
                    await response.aclose()
        raise Unreadable(f"{url}: more than {self.max_redirects} redirects")

    async def _body(self, response: httpx.Response, url: str) -> bytes:
        declared = response.headers.get("content-length", "")
        if declared.isdigit() and int(declared) > self.max_bytes:
            raise Unreadable(f"{url} is {int(declared) / 2**20:.1f} MB, over the {self.max_bytes / 2**20:g} MB limit")
        chunks, size = [], 0
        try:
            async for chunk in response.aiter_bytes():
                size += len(chunk)
                if size > self.max_bytes:
                    raise Unreadable(f"{url} is over the {self.max_bytes / 2**20:g} MB limit")
                chunks.append(chunk)
        except httpx.TimeoutException as err:
            raise Unreadable(f"{url} stopped sending") from err
        except httpx.HTTPError as err:
            raise Unreadable(f"cannot fetch {url}: {type(err).__name__}") from err
        return b"".join(chunks)


def _host_header(url: httpx.URL) -> str:
    default = 443 if url.scheme == "https" else 80
    return url.host if url.port in (None, default) else f"{url.host}:{url.port}"
