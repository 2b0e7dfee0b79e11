"""Two hosts, each on two segments: every start each knows the other at both addresses, and
when the cable carrying their session is pulled mid-conversation the session moves to the
other link; every message arrives once, in order (docs/RELIABILITY.md)."""

from __future__ import annotations

from typing import Any

from lab import Host, Lab, LanchatProc

ROUNDS = 3  # fresh starts (new homes), pulling alice's, bob's, then alice's cable
BEFORE, TOTAL = 100, 300  # messages before the pull, and in all


def knows_both(proc: LanchatProc, other: Host, peer_id: str) -> None:
    """Wait until `proc` lists the peer at every address `other` has."""
    both = {i.ip for i in other.interfaces.values()}
    proc.wait_event(None, pred=lambda e: e["event"] in ("peer_joined", "peer_updated")
                    and e["peer"]["id"] == peer_id and set(e["peer"]["addresses"]) == both,
                    consume=False, timeout=15)


def two_homed_pair(lab: Lab, tag: str) -> tuple[LanchatProc, LanchatProc]:
    """Fresh alice (h1) and bob (h2), each knowing the other at both addresses."""
    h1, h2 = lab.hosts
    bob = h2.start_node("--no-mdns", nick="bob", home=lab.base_dir / f"bob-{tag}")
    alice = h1.start_node("--no-mdns", nick="alice", home=lab.base_dir / f"alice-{tag}")
    bob_id = bob.wait_event("ready")["id"]
    alice_id = alice.wait_event("ready")["id"]
    knows_both(alice, h2, bob_id)
    knows_both(bob, h1, alice_id)
    return alice, bob


def converse_through_a_pull(lab: Lab, alice: LanchatProc, bob: LanchatProc,
                            pulled: Host) -> Any:
    """Alice talks to bob; after BEFORE messages the cable of `pulled` that carries the
    session goes down; the rest follow. Return the pulled interface."""
    for i in range(BEFORE):
        alice.command(f"/msg bob m{i}")
    bob.wait_count("message", BEFORE, timeout=30)
    [iface] = pulled.session_interfaces(bob.port)
    lab.link_down(pulled, iface.segment)
    for i in range(BEFORE, TOTAL):
        alice.command(f"/msg bob m{i}")
    return iface


def test_a_pulled_cable_moves_the_session_to_the_other_link(lab_factory: Any) -> None:
    """Fresh starts; each time the link carrying the session is pulled mid-conversation:
    all 300 messages arrive, once, in order, over the other link."""
    lab: Lab = lab_factory(2)
    segment = lab.add_segment()
    for host in lab.hosts:
        host.add_interface(segment)
    for n in range(ROUNDS):
        alice, bob = two_homed_pair(lab, str(n))
        pulled = lab.hosts[n % 2]
        iface = converse_through_a_pull(lab, alice, bob, pulled)
        got = bob.wait_count("message", TOTAL, timeout=60)
        assert [e["text"] for e in got] == [f"m{i}" for i in range(TOTAL)]
        alice.wait_count("delivered", TOTAL, timeout=30)
        # The new session runs over the link that is still up.
        assert [i for i in pulled.session_interfaces(bob.port) if i is not iface]
        lab.link_up(pulled, iface.segment)
        assert alice.stop() == 0 and bob.stop() == 0
