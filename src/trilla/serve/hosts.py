"""The Host check that stops DNS rebinding when the server has no token.

A page on an attacker's domain can make that domain resolve to 127.0.0.1 and then read this server's
pages (and their CSRF token) as same-origin, then answer on the labelling page. The browser still sends
the attacker's name in the Host header, so a server without a token answers only requests whose Host
is one of its own names or an IP address (a rebinding page always comes under a name).

Written by hand: Starlette's TrustedHostMiddleware cuts the port at the first colon, which breaks IPv6
literals (`[::1]:5000`), and does not let addresses through by kind.
"""

from __future__ import annotations

import ipaddress
import json
from urllib.parse import urlsplit

LOOPBACK_NAMES = ("localhost",)


def host_name(header: str) -> str | None:
    """The name or address of a Host header without its port (None when it is malformed)."""
    try:
        return urlsplit(f"//{header}").hostname
    except ValueError:
        return None


def is_address(name: str) -> bool:
    try:
        ipaddress.ip_address(name)
    except ValueError:
        return False
    return True


class HostCheck:
    """ASGI middleware: 400 for a request whose Host is a name not in `names` (addresses always pass)."""

    def __init__(self, app, names: tuple[str, ...]):
        self.app = app
        self.names = {name.lower().rstrip(".") for name in (*LOOPBACK_NAMES, *names)}

    def allowed(self, header: str) -> bool:
        name = host_name(header)
        return name is not None and (is_address(name) or name.rstrip(".") in self.names)

    async def __call__(self, scope, receive, send) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        header = dict(scope.get("headers") or []).get(b"host", b"").decode("latin-1")
        if self.allowed(header):
            return await self.app(scope, receive, send)
        body = json.dumps({"message": f"this server answers only to its own names, not to Host {header!r}: "
                                     "reach it by address or localhost, start it with --allow-host NAME, or give it a --token"}).encode()
        await send({"type": "http.response.start", "status": 400,
                    "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode())]})
        await send({"type": "http.response.body", "body": body})
