"""The two rules that move a session off a pulled cable, with a fake clock: which address is
dialled first, and which of two sessions from one peer is kept."""

from __future__ import annotations

from dataclasses import dataclass, field

from lanchat.peers import PeerTable
from lanchat.sessions import RACE_WINDOW_S, SessionRegistry

ME, BOB = "a" * 52, "b" * 52


def test_an_address_that_missed_the_last_beacon_round_is_dialled_last() -> None:
    """Bob's proven address went quiet (its cable is out); the one still beaconing is first."""
    table = PeerTable(ME)
    table.seen(BOB, "beacon", 10.0, nick="bob", address="10.0.1.2", port=47800)
    table.seen(BOB, "beacon", 10.0, nick="bob", address="10.0.2.2", port=47800)
    table.seen(BOB, "session", 10.1, nick="bob", address="10.0.1.2", port=47800,
               verified=True)
    assert [a for a, _ in table.dial_order(BOB)] == ["10.0.1.2", "10.0.2.2"]
    table.seen(BOB, "beacon", 11.5, nick="bob", address="10.0.2.2", port=47800)
    assert [a for a, _ in table.dial_order(BOB)] == ["10.0.2.2", "10.0.1.2"]
    # Both heard in the same round again: the proven one leads once more.
    table.seen(BOB, "beacon", 13.0, nick="bob", address="10.0.1.2", port=47800)
    table.seen(BOB, "beacon", 13.0, nick="bob", address="10.0.2.2", port=47800)
    assert [a for a, _ in table.dial_order(BOB)] == ["10.0.1.2", "10.0.2.2"]


@dataclass(eq=False)
class FakeSession:
    """What the registry reads of a session."""

    server: bool
    peer_id: str = BOB
    peer_instance: str = "i1"
    closed_with: list[str] = field(default_factory=list)

    def close(self, reason: str) -> None:
        self.closed_with.append(reason)


def test_a_peer_that_connects_again_long_after_replaces_our_silent_session() -> None:
    """Within the race window the smaller id's session wins on both sides; later, the new
    connection wins: the peer lost the old one (its cable), ours just has not noticed."""
    now = [100.0]
    registry = SessionRegistry(ME, lambda: now[0])
    ours = FakeSession(server=False)  # we dialled: initiator ME, the smaller id
    assert registry.claim(ours)  # type: ignore[arg-type]
    racing = FakeSession(server=True)  # bob dialled at the same moment
    assert not registry.claim(racing)  # type: ignore[arg-type]
    assert racing.closed_with == ["duplicate"] and registry.get(BOB) is ours
    now[0] += RACE_WINDOW_S + 0.5
    later = FakeSession(server=True)
    assert registry.claim(later)  # type: ignore[arg-type]
    assert ours.closed_with == ["duplicate"] and registry.get(BOB) is later
