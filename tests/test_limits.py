"""A stranger is bounded: messages wait in the sender's outbox, nothing is lost; the store,
the peer table and what is kept across restarts stay bounded."""

from __future__ import annotations

from pathlib import Path

import pytest

from lanchat.limits import Guard, Limits, accepted_time
from lanchat.protocol import Chat
from nodes import Peers, make_node

PEER = "s" * 52


def guard(limits: Limits, trust: str | None = None, stored: int = 0,
          size: int = 0) -> Guard:
    return Guard(limits, trust_of=lambda _: trust, stored_today=lambda _p, _s: stored,
                 store_size=lambda: size)


def chats(n: int, size: int = 10, first: int = 0) -> list[Chat]:
    return [Chat(f"id{i}", 1.0, "x" * size) for i in range(first, first + n)]


def test_a_strangers_burst_passes_then_it_is_asked_to_slow_down() -> None:
    """Within its burst everything is stored; beyond it, a slow_down with a wait; nothing
    overtakes the first deferred message, which comes again first."""
    g = guard(Limits(stranger_msgs_per_s=10, stranger_msg_burst=20))
    assert g.chats(PEER, chats(15), 100.0).accepted == 15
    verdict = g.chats(PEER, chats(15, first=15), 100.0)
    assert verdict.accepted == 5 and verdict.retry_after is not None
    assert 0.9 <= verdict.retry_after <= 2.0
    tail = g.chats(PEER, chats(5, first=25), 100.5)  # sent before the slow_down arrived
    assert tail.accepted == 0 and tail.retry_after is None  # one slow_down a second
    again = g.chats(PEER, chats(10, first=18), 102.0)  # the resend, acked ones first
    assert (again.start, again.accepted) == (2, 8)  # from id20, refilled at 10/s


def test_verified_and_trusted_peers_have_no_budget() -> None:
    """A verified peer may flood; only the store bound applies to it."""
    g = guard(Limits(stranger_msgs_per_s=1, stranger_msg_burst=1), trust="verified")
    assert g.chats(PEER, chats(10_000), 1.0).accepted == 10_000
    full = guard(Limits(max_store_bytes=100), trust="trusted", size=200)
    assert full.chats(PEER, chats(1), 1.0).accepted == 0


def test_a_strangers_daily_bytes_count_what_is_stored_already() -> None:
    """Bytes stored today (read from the store) count; the wait lasts till the day turns."""
    g = guard(Limits(stranger_bytes_per_day=1000), stored=900)
    verdict = g.chats(PEER, chats(3, size=60), 10.0)
    assert verdict.accepted == 1 and verdict.retry_after == 3600.0
    assert g.chats(PEER, chats(1, size=60, first=1), 10.0 + 86_400).accepted == 1


def test_offers_and_new_keys_per_address_are_bounded() -> None:
    """Six offers a minute from a stranger; ten new keys a minute from one address."""
    g = guard(Limits())
    assert sum(g.offer(PEER, 5.0) for _ in range(20)) == 6
    assert sum(g.new_identity("10.0.0.9", 5.0) for _ in range(50)) == 10
    assert g.new_identity("10.0.0.9", 11.0)  # one more after six seconds
    assert all(g.new_identity("127.0.0.1", 5.0) for _ in range(50))  # this computer


def test_a_flood_of_ignored_slow_downs_closes_the_session() -> None:
    """A sender that keeps flooding after slow_down (not an honest lanchat) is cut off."""
    g = guard(Limits(stranger_msgs_per_s=1, stranger_msg_burst=1))
    verdicts = [g.chats(PEER, chats(100, size=16_000), 1.0 + i / 10) for i in range(10)]
    assert verdicts[-1].close and not verdicts[0].close


def test_send_times_outside_the_window_are_not_believed() -> None:
    """1e300, infinity, NaN, a year ago or two days ahead: the receive time is used."""
    now = 1_800_000_000.0
    for bad in (1e300, float("inf"), float("nan"), -1.0, now - 400 * 86_400, now + 2 * 86_400):
        assert accepted_time(bad, now) is None
    assert accepted_time(now - 30 * 86_400, now) == now - 30 * 86_400


def test_an_honest_stranger_flooding_loses_nothing(peers: Peers,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    """Alice is a stranger to bob and sends 400 messages at once: bob takes his budget,
    asks her to slow down, and every message still arrives once, in order."""
    monkeypatch.setenv("LANCHAT_LIMIT_STRANGER_MSGS_PER_S", "200")
    monkeypatch.setenv("LANCHAT_LIMIT_STRANGER_MSG_BURST", "100")
    a, b = peers.pair()
    alice, alice_log, bob, bob_log = a.node, a.log, b.node, b.log
    n = 400
    for i in range(n):
        alice.send(bob.node_id, f"m{i}")
    got = bob_log.wait("message", count=n, timeout=60)
    assert [e["text"] for e in got] == [f"m{i}" for i in range(n)]
    assert bob.counters.get("chats_deferred", 0) > 0
    assert alice.counters.get("slowed_down", 0) >= 1
    warning = alice_log.wait("warning", lambda e: e["code"] == "slow_down")[0]
    assert "wait in the outbox" in warning["message"]
    alice_log.wait("delivered", count=n, timeout=30)
    assert alice.peers()[0]["queued"] == 0


def test_a_full_store_is_a_clear_error_and_peers_wait(tmp_path: Path, peers: Peers,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """At its size bound bob stores nothing more, says why once, and refuses to queue."""
    bob, bob_log = make_node(tmp_path / "bob", "bob")
    size = bob.store.size_bytes()
    bob.close()
    monkeypatch.setenv("LANCHAT_LIMIT_MAX_STORE_BYTES", str(size + 64 * 1024))
    a, b = peers.pair()
    alice, alice_log, bob, bob_log = a.node, a.log, b.node, b.log
    for i in range(100):
        alice.send(bob.node_id, f"{i} " + "y" * 2000)
    error = bob_log.wait("error", lambda e: e["code"] == "store_full", timeout=30)[0]
    assert "size bound" in error["message"]
    with pytest.raises(ValueError, match="size bound"):
        bob.send(alice.node_id, "hello")
    assert len(bob_log.named("message")) < 100
    alice_log.wait("warning", lambda e: e["code"] == "slow_down", timeout=30)


def test_the_peer_table_is_bounded_for_sessions_too(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    """With room for three peers, a fourth key that connects is refused, bob goes on."""
    monkeypatch.setenv("LANCHAT_LIMIT_MAX_PEERS", "3")
    bob, bob_log = make_node(tmp_path / "bob", "bob")
    others = []
    try:
        for name in ("c1", "c2", "c3"):
            node, log = make_node(tmp_path / name, name, peers=[f"127.0.0.1:{bob.port}"])
            others.append(node)
            log.wait("peer_joined")
        late, late_log = make_node(tmp_path / "late", "late", peers=[f"127.0.0.1:{bob.port}"])
        others.append(late)
        refused = late_log.wait("error", lambda e: e["code"] == "refused", timeout=15)[0]
        assert "too many peers" in refused["message"]
        assert len(bob.peers()) == 3 and bob.counters["peer_table_full"] >= 1
    finally:
        for node in others:
            node.close()
        bob.close()


def test_only_peers_that_exchanged_a_message_are_kept_across_restarts(tmp_path: Path) -> None:
    """Carol only connected; dave sent a message: after bob restarts he knows only dave.
    Carol reached bob at an address she typed (--peer): she keeps him, and after her
    restart his name works before any session is up (bob is gone by then)."""
    bob, bob_log = make_node(tmp_path / "bob", "bob")
    port = bob.port
    carol, carol_log = make_node(tmp_path / "carol", "carol", peers=[f"127.0.0.1:{port}"])
    dave, dave_log = make_node(tmp_path / "dave", "dave", peers=[f"127.0.0.1:{port}"])
    carol_log.wait("peer_joined")
    dave_log.wait("peer_joined")
    msg = dave.send(bob.node_id, "remember me")
    dave_log.wait("delivered", lambda e: e["id"] == msg)
    assert {p["nick"] for p in bob.peers()} == {"carol", "dave"}
    for node in (carol, dave, bob):
        node.close()
    bob = make_node(tmp_path / "bob", "bob", port=port)[0]
    try:
        assert [p["nick"] for p in bob.peers()] == ["dave"]
    finally:
        bob.close()
    carol = make_node(tmp_path / "carol", "carol", peers=[f"127.0.0.1:{port}"])[0]
    try:
        assert [(p["nick"], p["online"]) for p in carol.peers()] == [("bob", False)]
        queued = carol.send("bob", "when you are back")  # by name, bob is offline
        assert carol.store.outbox_last(carol.peers()[0]["id"]) > 0, queued
    finally:
        carol.close()


def test_limits_come_from_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """LANCHAT_LIMIT_<NAME> sets a bound; nonsense keeps the default."""
    monkeypatch.setenv("LANCHAT_LIMIT_MAX_PEERS", "12")
    monkeypatch.setenv("LANCHAT_LIMIT_STRANGER_MSGS_PER_S", "fast")
    limits = Limits.from_env()
    assert limits.max_peers == 12 and limits.stranger_msgs_per_s == Limits().stranger_msgs_per_s




def test_bench_trusts_checks_off_reaches_what_the_node_runs() -> None:
    """bench_trust's baseline (`--checks off`) patches the guard, the send-time window and
    the store-size check where the running node calls them (it patched names the node
    module no longer has, and the baseline run died on an AttributeError)."""
    import subprocess
    import sys

    script = (
        "from bench._trust_driver import checks_off\n"
        "checks_off()\n"
        "from lanchat import core, delivery, limits\n"
        "from lanchat.protocol import Chat\n"
        "g = limits.Guard(limits.Limits(stranger_msg_burst=1), trust_of=lambda _: None,\n"
        "                 stored_today=lambda _p, _s: 0, store_size=lambda: 0)\n"
        "assert g.chats('p', [Chat(f'i{n}', 1.0, 'x') for n in range(50)], 0.0).accepted"
        " == 50\n"
        "assert delivery.accepted_time(1.0, 1e9) == 1.0\n"
        "assert core.Core.check_room(None) is None  # type: ignore[arg-type]\n")
    root = Path(__file__).resolve().parent.parent
    done = subprocess.run([sys.executable, "-c", script], cwd=root, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
