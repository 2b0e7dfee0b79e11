"""Peers typed by address (`--peer [ID@]HOST[:PORT]`): parsed by the command line before
anything else loads, dialed by `dialing`."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from lanchat.config import DEFAULT_PORT


@dataclass(frozen=True)
class StaticTarget:
    """A peer typed by address (`--peer [ID@]HOST[:PORT]`)."""

    host: str
    port: int
    expected_id: str | None = None

    @property
    def key(self) -> str:
        """Pin and dialer key."""
        return f"{self.host}:{self.port}"

    @classmethod
    def parse(cls, text: str) -> StaticTarget:
        """Parse `[ID@]HOST[:PORT]`; raise ValueError with a usable message."""
        expected = None
        if "@" in text:
            expected, text = text.split("@", 1)
            expected = expected.strip().lower() or None
        host, port_text = text, str(DEFAULT_PORT)
        if text.startswith("["):  # [IPv6] or [IPv6]:PORT
            host, bracket, rest = text[1:].partition("]")
            if not bracket or (rest and not rest.startswith(":")):
                raise ValueError(f"--peer takes [IPv6]:PORT, not {text!r}")
            if rest:
                port_text = rest[1:]
        elif text.count(":") == 1:
            host, _, port_text = text.partition(":")
        try:
            port = int(port_text)
        except ValueError:
            raise ValueError(f"bad port in --peer {text!r}") from None
        if not host or not 0 < port < 65536:
            raise ValueError(f"--peer takes HOST[:PORT], not {text!r}")
        return cls(host, port, expected)


def parse_targets(texts: Sequence[str]) -> list[StaticTarget]:
    """Parse every `--peer` value; raise ValueError on the first bad one."""
    return [StaticTarget.parse(t) for t in texts]
