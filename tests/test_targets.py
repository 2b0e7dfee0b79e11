"""Peers typed by address (`--peer [ID@]HOST[:PORT]`): what is taken, and a clear error
for the rest, before anything else loads."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanchat.cli import main
from lanchat.config import DEFAULT_PORT
from lanchat.targets import StaticTarget


@pytest.mark.parametrize(("text", "host", "port", "expected"), [
    ("10.0.0.5", "10.0.0.5", DEFAULT_PORT, None),
    ("bob.local:9000", "bob.local", 9000, None),
    ("[fe80::1]", "fe80::1", DEFAULT_PORT, None),
    ("[fe80::1]:9000", "fe80::1", 9000, None),
    ("fe80::1", "fe80::1", DEFAULT_PORT, None),  # a bare IPv6 address: the default port
    ("C6DI@10.0.0.5:9000", "10.0.0.5", 9000, "c6di"),
])
def test_a_typed_address_is_taken(text: str, host: str, port: int,
                                  expected: str | None) -> None:
    assert StaticTarget.parse(text) == StaticTarget(host, port, expected)


@pytest.mark.parametrize(("text", "words"), [
    ("host:", "bad port"),
    ("host:port", "bad port"),
    ("[::1]:x", "bad port"),  # was int()'s own message
    ("[::1]:", "bad port"),
    ("[::1]x", "[IPv6]:PORT"),  # was taken as [::1] on the default port
    ("[::1", "[IPv6]:PORT"),  # likewise
    ("host:0", "HOST[:PORT]"),
    ("host:70000", "HOST[:PORT]"),
    ("[]:5", "HOST[:PORT]"),
])
def test_a_bad_address_is_a_clear_error(text: str, words: str) -> None:
    with pytest.raises(ValueError, match=r"--peer") as caught:
        StaticTarget.parse(text)
    assert words in str(caught.value) and repr(text) in str(caught.value)


def test_the_command_line_refuses_a_bad_peer_with_one_line(
        capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    assert main(["--home", str(tmp_path), "--peer", "[::1]:x", "peers"]) == 2
    err = capsys.readouterr().err
    assert err == "lanchat: bad port in --peer '[::1]:x'\n"
