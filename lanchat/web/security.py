"""What keeps the web window to this computer and this user: the token exchanged for a
cookie, the Host and Origin checks, the Content-Security-Policy, safe download headers.

No I/O here: the server (server.py) applies these to each request.
"""

from __future__ import annotations

import hmac
import secrets
from dataclasses import dataclass, field
from urllib.parse import quote

TOKEN_BYTES = 32
COOKIE_PREFIX = "lanchat_web_"
# 'self' in connect-src also allows ws:// to this origin (CSP level 3); the explicit ws
# source keeps browsers that predate that rule working.
CSP_TEMPLATE = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
                "connect-src 'self' ws://{host}; base-uri 'none'; form-action 'none'; "
                "frame-ancestors 'none'")
FILENAME_FALLBACK = "download"


@dataclass(frozen=True)
class Guard:
    """The secrets and names of one web server: which requests it lets in."""

    host: str  # "127.0.0.1:PORT", the only Host header accepted
    token: str = field(default_factory=lambda: secrets.token_urlsafe(TOKEN_BYTES))
    session: str = field(default_factory=lambda: secrets.token_urlsafe(TOKEN_BYTES))

    @property
    def origin(self) -> str:
        """The page's origin; a WebSocket or a write from anywhere else is refused."""
        return f"http://{self.host}"

    @property
    def cookie_name(self) -> str:
        """Per port: cookies are shared by every port of a host, so the name says which."""
        return COOKIE_PREFIX + self.host.rsplit(":", 1)[-1]

    @property
    def url(self) -> str:
        """What the user opens: the token, exchanged at once for the cookie."""
        return f"http://{self.host}/?token={self.token}"

    @property
    def csp(self) -> str:
        """The Content-Security-Policy of every answer: no inline script, nothing remote."""
        return CSP_TEMPLATE.format(host=self.host)

    def host_ok(self, host: str | None) -> bool:
        """True for exactly the loopback address and port (DNS rebinding sends another)."""
        return host is not None and hmac.compare_digest(host.encode(), self.host.encode())

    def origin_ok(self, origin: str | None) -> bool:
        """True for the page's own origin only (a missing Origin is not ours)."""
        return origin is not None and hmac.compare_digest(origin.encode(),
                                                          self.origin.encode())

    def token_ok(self, token: str | None) -> bool:
        """True for the token of the printed URL."""
        return token is not None and hmac.compare_digest(token.encode(), self.token.encode())

    def cookie_ok(self, value: str | None) -> bool:
        """True for the session cookie this server set."""
        return value is not None and hmac.compare_digest(value.encode(),
                                                         self.session.encode())


def security_headers(guard: Guard) -> dict[str, str]:
    """Headers on every answer."""
    return {"Content-Security-Policy": guard.csp,
            "X-Content-Type-Options": "nosniff",
            "X-Frame-Options": "DENY",
            "Referrer-Policy": "no-referrer",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Cache-Control": "no-store"}


def content_disposition(name: str) -> str:
    """`attachment` with an ASCII fallback name and the exact name as RFC 6266 `filename*`
    (percent-encoded UTF-8), so no quote, backslash or control character reaches the
    header and the browser still saves the file under its real name."""
    fallback = "".join(c if " " <= c <= "~" and c not in '"\\%;' else "_" for c in name)
    fallback = fallback.strip(" .") or FILENAME_FALLBACK
    return f"attachment; filename=\"{fallback}\"; filename*=UTF-8''{quote(name, safe='')}"
