"""The kernel's link timeout on a session socket, and the one case it must not judge.

TCP_USER_TIMEOUT makes the kernel abort a connection whose data stays unacknowledged for
the link timeout, however busy our loop is: a pulled cable is noticed in seconds and the
session moves to another address. But Linux also aborts, after the same time, a
connection whose peer advertises a zero window: a peer that is alive and has only paused
reading because its listeners lag (lanchat's own backpressure). So the window is looked at
every `CHECK_S`, and the timeout is off while the peer's window is shut; the application's
heartbeat (the paused peer still writes its pings) judges that peer instead.
"""

from __future__ import annotations

import asyncio
import socket
import sys
from typing import Any

_TCP_USER_TIMEOUT = getattr(socket, "TCP_USER_TIMEOUT", None)  # Linux
_TCP_INFO = getattr(socket, "TCP_INFO", None)
# struct tcp_info (linux/tcp.h): tcpi_snd_wnd, the peer's advertised window, at this
# offset since Linux 5.4; a shorter answer means the kernel cannot tell, so no timeout.
_SND_WND_AT = 228
_INFO_LEN = _SND_WND_AT + 4
CHECK_S = 0.5  # well inside any link timeout: the window is looked at this often


def peer_window(sock: Any) -> int | None:
    """The window the peer advertises to us, in bytes; None where the kernel cannot say."""
    if _TCP_INFO is None:
        return None
    try:
        info = sock.getsockopt(socket.IPPROTO_TCP, _TCP_INFO, _INFO_LEN)
    except OSError:
        return None
    if len(info) < _INFO_LEN:
        return None
    return int.from_bytes(info[_SND_WND_AT:_INFO_LEN], sys.byteorder)


class LinkTimeout:
    """TCP_USER_TIMEOUT on one socket, off while the peer's window is shut."""

    def __init__(self, sock: Any, timeout_s: float, loop: asyncio.AbstractEventLoop) -> None:
        self._sock = sock
        self._ms = int(timeout_s * 1000)
        self._loop = loop
        self._armed = False
        self._timer: asyncio.TimerHandle | None = None

    @classmethod
    def start(cls, sock: Any, timeout_s: float,
              loop: asyncio.AbstractEventLoop) -> LinkTimeout | None:
        """Arm it where the kernel has both the option and the window; else None."""
        if timeout_s <= 0 or _TCP_USER_TIMEOUT is None or peer_window(sock) is None:
            return None
        link = cls(sock, timeout_s, loop)
        link._check()
        return link

    def stop(self) -> None:
        """No more checks (the connection is gone)."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _set(self, armed: bool) -> None:
        try:
            self._sock.setsockopt(socket.IPPROTO_TCP, _TCP_USER_TIMEOUT,
                                  self._ms if armed else 0)
        except OSError:
            return
        self._armed = armed

    def _check(self) -> None:
        shut = peer_window(self._sock) == 0
        if shut == self._armed:
            self._set(not shut)
        self._timer = self._loop.call_later(CHECK_S, self._check)
