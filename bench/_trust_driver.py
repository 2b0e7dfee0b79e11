"""bench._driver's sink and client with the trust checks on or off (bench_trust.py).

    python -m bench._trust_driver --checks on|off sink|client ARGS...

`off` runs the node as it was before the checks: the receiver's stranger budget and
send-time window are bypassed and the sender skips the store-size check. Name resolution
and the nick rule are not on this path (the client sends by id; nicks are judged once per
session). Everything else is bench._driver unchanged.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence
from typing import Any


def checks_off() -> None:
    """Put the node back to what it did before the trust checks on the message path."""
    from lanchat import core, delivery, limits
    from lanchat.limits import Verdict
    from lanchat.protocol import Chat

    def admit_all(self: Any, peer_id: str, chats: Sequence[Chat], now: float) -> Verdict:
        return Verdict(len(chats))

    def believe(sent: float, now: float) -> float:
        return sent

    limits.Guard.chats = admit_all  # type: ignore[method-assign, assignment]
    delivery.accepted_time = believe
    core.Core.check_room = lambda self: None  # type: ignore[method-assign]


def main() -> None:
    args = sys.argv[1:]
    if args[:1] != ["--checks"] or args[1] not in ("on", "off"):
        raise SystemExit("usage: python -m bench._trust_driver --checks on|off MODE ARGS")
    if args[1] == "off":
        checks_off()
    from bench import _driver

    sys.argv = [sys.argv[0], *args[2:]]
    _driver.main()


if __name__ == "__main__":
    main()
