"""The headless contract as a script sees it: every event line is JSON with the fields the
contract names (extra fields are allowed; none may go missing or change type)."""

from __future__ import annotations

from typing import Any

from lab import Lab

PEER_FIELDS = {"id": str, "nick": str, "host": str, "addresses": list, "port": int,
               "via": list, "online": bool}
CONTRACT: dict[str, dict[str, Any]] = {
    "ready": {"id": str, "nick": str, "port": int, "addresses": list},
    "peer_joined": {"peer": PEER_FIELDS},
    "peer_updated": {"peer": PEER_FIELDS},
    "peer_left": {"peer": PEER_FIELDS, "reason": str},
    "message": {"id": str, "from": {"id": str, "nick": str}, "to": str, "text": str},
    "delivered": {"id": str, "to": str},
    "output": {"command": str, "text": str},
    "error": {"code": str, "message": str},
}


def check(event: dict[str, Any], shape: dict[str, Any], where: str) -> None:
    """Assert `event` has every field of `shape` with the right type, recursively."""
    for key, kind in shape.items():
        assert key in event, f"{where}: missing {key!r} in {event}"
        if isinstance(kind, dict):
            check(event[key], kind, f"{where}.{key}")
        else:
            assert isinstance(event[key], kind), f"{where}.{key}: {event[key]!r}"


def test_every_event_matches_the_contract(lab2: Lab) -> None:
    """Join, talk, err and leave; every line alice printed fits the contract."""
    h1, h2 = lab2.hosts
    bob = h2.start_node(nick="bob")
    alice = h1.start_node(nick="alice")
    alice.wait_event("peer_joined", peer={"nick": "bob"})
    bob.wait_event("peer_joined", peer={"nick": "alice"})
    alice.command("/msg bob hello")
    bob.wait_event("message", text="hello")
    alice.wait_event("delivered")
    bob.command("/all hi all")
    alice.wait_event("message", text="hi all", to="broadcast")
    alice.command("/msg nobody hi")
    alice.command("/frobnicate")
    alice.command('/msg "unclosed')
    assert alice.wait_event("error", command="/frobnicate")["code"] == "command"
    alice.command("/list")
    listing = alice.wait_event("output", command="/list")
    assert listing["data"][0]["nick"] == "bob"
    bob.stop()
    assert alice.wait_event("peer_left")["reason"] == "bye"
    alice.command("/quit")
    assert alice.wait_exit(10) == 0
    events = alice.snapshot()
    assert all(e["event"] != "_nonjson" for e in events), "stdout carries only JSON lines"
    assert all(isinstance(e["ts"], float) for e in events)
    names = {e["event"] for e in events}
    assert {"ready", "peer_joined", "message", "delivered", "output", "error",
            "peer_left"} <= names
    for event in events:
        if event["event"] in CONTRACT:
            check(event, CONTRACT[event["event"]], event["event"])
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 3, "each bad line is one error event and the node goes on"
