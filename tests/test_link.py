"""The link timeout: a pulled cable is noticed in seconds, a peer that only paused reading
(its listeners lag) is not cut off."""

from __future__ import annotations

import asyncio
import socket
import time

import pytest

from lanchat.link import LinkTimeout, peer_window
from waiting import wait_until


def _pair() -> tuple[socket.socket, socket.socket]:
    srv = socket.create_server(("127.0.0.1", 0))
    sender = socket.create_connection(srv.getsockname())
    reader, _ = srv.accept()
    srv.close()
    sender.setblocking(False)
    return sender, reader


def _fill(sender: socket.socket, seconds: float) -> OSError | None:
    """Write as fast as the peer's window allows for `seconds`; the error if it was cut."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        try:
            sender.send(b"x" * 65536)
        except BlockingIOError:
            time.sleep(0.02)
        except OSError as exc:
            return exc
    return None


def test_a_peer_that_stops_reading_shows_a_shut_window() -> None:
    """The signal the link timeout relies on: the kernel reports the peer's window as 0."""
    sender, reader = _pair()
    try:
        if peer_window(sender) is None:
            pytest.skip("this kernel does not report the peer's window (tcpi_snd_wnd)")
        assert peer_window(sender)  # open at first
        _fill(sender, 0.5)
        wait_until(lambda: peer_window(sender) == 0, "the peer's window shut", 5)
    finally:
        sender.close()
        reader.close()


def test_a_paused_reader_outlives_the_link_timeout_and_the_bytes_then_flow() -> None:
    """With a 1 s link timeout, a reader paused for 3 s keeps its connection (the bare
    kernel option alone cuts it: ETIMEDOUT), and reading again lets the writer go on."""
    loop = asyncio.new_event_loop()
    sender, reader = _pair()
    try:
        if peer_window(sender) is None:
            pytest.skip("this kernel does not report the peer's window (tcpi_snd_wnd)")
        link = LinkTimeout.start(sender, 1.0, loop)
        assert link is not None
        deadline = time.monotonic() + 3.0
        error: OSError | None = None
        while time.monotonic() < deadline and error is None:
            error = _fill(sender, 0.05)
            loop.run_until_complete(asyncio.sleep(0.05))  # the window checks run here
        assert error is None, f"a live peer that paused reading was cut off: {error}"
        reader.setblocking(False)
        got = 0
        while got < 1 << 20:
            try:
                got += len(reader.recv(1 << 20))
            except BlockingIOError:
                break
        assert _fill(sender, 0.2) is None
        link.stop()
    finally:
        sender.close()
        reader.close()
        loop.close()


def test_the_bare_option_would_cut_a_paused_reader() -> None:
    """Why the window is watched: the kernel counts a shut window against the timeout."""
    sender, reader = _pair()
    try:
        sender.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT, 1000)
        error = _fill(sender, 4.0)
        if error is None:
            pytest.skip("this kernel does not cut a zero-window connection on TCP_USER_TIMEOUT")
        assert isinstance(error, TimeoutError) or error.errno == 110
    finally:
        sender.close()
        reader.close()
