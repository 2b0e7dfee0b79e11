"""The sender puts a message on the wire before its own commit finishes (the round trip
overlaps the fsync), but reports nothing beyond "queued" until that commit is durable; the
receiver still acks only after its own commit."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from lanchat.node import Node
from nodes import EventLog, Peer
from waiting import wait_until


@pytest.fixture
def duo(pair: tuple[Peer, Peer]) -> tuple[Node, EventLog, Node, EventLog]:
    """The shared two-node fixture, as nodes and logs."""
    alice, bob = pair
    return alice.node, alice.log, bob.node, bob.log


def test_bob_stores_the_message_while_alices_commit_is_still_open(duo: Any) -> None:
    """Alice's transaction is held open until bob has stored the message: it got there
    before her commit; her `delivered` comes only after that commit. (Writing ahead of
    the insert is off here: this is the send inside the open transaction, which a session
    with older rows unsent gets.)"""
    alice, alice_log, bob, bob_log = duo
    alice._running.delivery.wire.write_ahead = lambda outbound, peers: set()
    real = alice.store.commit_batch
    order: list[str] = []

    def held(incoming: Any, outgoing: Any, acked: Any = (), before_commit: Any = None) -> Any:
        if not outgoing:
            return real(incoming, outgoing, acked, before_commit)

        def then_wait() -> None:
            before_commit()
            bob_log.wait("message")  # bob stored it (and acked) while we have not committed
            order.append("bob stored")
        result = real(incoming, outgoing, acked, then_wait)
        order.append("alice committed")
        return result

    alice.store.commit_batch = held
    msg = alice.send("bob", "before my own fsync")
    assert bob_log.wait("message")[0]["id"] == msg
    alice_log.wait("delivered", lambda e: e["id"] == msg)
    assert order == ["bob stored", "alice committed"]
    assert [r.id for r in alice.store.history() if r.direction == "out"] == [msg]


def test_a_message_to_a_caught_up_session_leaves_before_the_sender_stores_it(
        duo: Any) -> None:
    """With nothing older unsent to bob, alice writes the message before her transaction
    even starts (the round trip overlaps her inserts as well as her fsync); it is stored
    all the same, written once, and `delivered` still follows her commit."""
    alice, alice_log, bob, bob_log = duo
    real = alice.store.commit_batch
    order: list[str] = []

    def late(incoming: Any, outgoing: Any, acked: Any = (), before_commit: Any = None) -> Any:
        if outgoing:
            bob_log.wait("message")  # bob has it while alice has not begun to store it
            order.append("bob stored")
        result = real(incoming, outgoing, acked, before_commit)
        if outgoing:
            order.append("alice committed")
        return result

    alice.store.commit_batch = late
    msg = alice.send("bob", "ahead of my own insert")
    alice_log.wait("delivered", lambda e: e["id"] == msg)
    assert order == ["bob stored", "alice committed"]
    assert [r.id for r in alice.store.history() if r.direction == "out"] == [msg]
    later = alice.send("bob", "and the next one once")
    bob_log.wait("message", lambda e: e["id"] == later)
    alice_log.wait("delivered", lambda e: e["id"] == later)
    assert [e["id"] for e in bob_log.named("message")] == [msg, later]
    assert bob.stats()["counters"].get("duplicates", 0) == 0
    assert alice.call(alice._running.delivery.queued, bob.node_id) == 0


def test_a_new_message_waits_behind_older_unsent_rows(duo: Any) -> None:
    """Rows stored while the session could not take them (its buffer was full) go first:
    a message queued once it could again is not written ahead of them."""
    alice, alice_log, bob, bob_log = duo
    session = alice.call(alice._running.sessions.get, bob.node_id)
    alice.call(session.pause_writing)
    older = [alice.send("bob", f"older {i}") for i in range(3)]
    alice_log.wait("sent", count=3)
    assert not bob_log.named("message"), "nothing was written while paused"

    def writable_without_pumping() -> None:
        session.paused = False  # as if the buffer drained, before its pump has run

    alice.call(writable_without_pumping)
    newer = alice.send("bob", "newer")
    got = bob_log.wait("message", count=4)
    assert [e["id"] for e in got] == [*older, newer]
    alice_log.wait("delivered", count=4)
    assert bob.stats()["counters"].get("duplicates", 0) == 0


def test_delivered_comes_as_the_ack_is_read_and_the_outbox_row_goes_after(duo: Any) -> None:
    """The ack of a message this session carried is reported at once (its row was durable
    before the ack could be read); the commit that deletes the row comes after, joined to
    the next message's when there is one, and nothing is reported twice."""
    alice, alice_log, bob, bob_log = duo
    real = alice.store.commit_batch
    seen_before_delete: list[bool] = []

    def watched(incoming: Any, outgoing: Any, acked: Any = (), before_commit: Any = None) -> Any:
        if acked:
            ids = {i for _, batch in acked for i in batch}
            alice_log.wait("delivered", lambda e: e["id"] in ids)  # already reported
            seen_before_delete.append(True)
        return real(incoming, outgoing, acked, before_commit)

    alice.store.commit_batch = watched
    sent = [alice.send("bob", f"one by one {i}") for i in range(5)]
    for msg in sent:
        alice_log.wait("delivered", lambda e, msg=msg: e["id"] == msg)
    assert alice.call(alice._running.delivery.queued, bob.node_id) == 0  # counted at once
    wait_until(lambda: alice.store.outbox_peers() == {}, "the acked rows to leave the outbox")
    assert seen_before_delete
    assert [e["id"] for e in alice_log.named("delivered")] == sent
    assert alice.stats()["counters"].get("acks_unknown", 0) == 0


def test_a_row_sent_again_by_a_new_session_before_its_delete_is_reported_once(
        tmp_path: Path) -> None:
    """The ack came on S1 (reported), and before the commit that deletes the row a new
    session S2 for the same peer (it replaces S1; S1's close comes later) sent the row
    again; the peer acks that copy after the delete: nothing is reported twice and the
    peer's outbox count stays at 0."""
    import asyncio

    from lanchat.api import Capability
    from lanchat.delivery import Delivery
    from lanchat.sessions import SessionRegistry
    from lanchat.store import Store

    peer = "p" * 52

    class Runtime:
        def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
            self.loop, self.events, self.counters = loop, [], {}

        def call_soon(self, fn: Any, *args: Any) -> None:
            self.loop.call_soon(fn, *args)

        def emit(self, name: str, /, **fields: Any) -> None:
            self.events.append((name, fields))

        def count(self, key: str, n: int = 1) -> None:
            self.counters[key] = self.counters.get(key, 0) + n

    class Session:
        capabilities = frozenset({Capability.CHAT, Capability.CONTROL})
        ready, paused, peer_id, server = True, False, peer, False

        def __init__(self) -> None:
            self.frames = 0
            self.peer_instance = "i"  # a redial of the same instance: the new one wins

        def write_outbox(self, payloads: list[bytes]) -> None:
            self.frames += len(payloads)

        def close(self, reason: str = "quit") -> None:
            pass  # a real one reports `session_closed` later, from connection_lost

    async def story(store: Store) -> tuple[Runtime, Delivery]:
        runtime = Runtime(asyncio.get_running_loop())
        registry = SessionRegistry("o" * 52)
        delivery = Delivery(runtime, store, registry, lambda: "me",  # type: ignore[arg-type]
                            lambda p: None, lambda: 0, lambda n, f: None)
        s1, s2 = Session(), Session()
        registry.claim(s1)  # type: ignore[arg-type]
        delivery.session_ready(s1)  # type: ignore[arg-type]
        msg = delivery.queue([peer], "hello", broadcast=False)
        await asyncio.sleep(0.01)
        assert s1.frames == 1
        delivery.session_acks(s1, (msg,))  # type: ignore[arg-type]  # reported (1)
        registry.claim(s2)  # type: ignore[arg-type]
        delivery.session_ready(s2)  # type: ignore[arg-type]
        assert s2.frames == 1, "the new session sent the row again (not yet deleted)"
        delivery.session_closed(s1)  # type: ignore[arg-type]  # S1's close: the delete commits
        registry.release(s1)  # type: ignore[arg-type]
        await asyncio.sleep(0.01)
        assert store.outbox_peers() == {}
        delivery.session_acks(s2, (msg,))  # type: ignore[arg-type]  # the copy's ack
        await asyncio.sleep(0.1)
        return runtime, delivery

    store = Store(tmp_path / "lanchat.db")
    try:
        runtime, delivery = asyncio.run(story(store))
    finally:
        store.close()
    assert [name for name, _ in runtime.events if name == "delivered"] == ["delivered"]
    assert delivery.outbox_count.get(peer, 0) == 0
    assert not delivery.waiting()


def test_a_commit_that_fails_after_the_early_send_does_not_skip_later_messages(
        duo: Any) -> None:
    """The outbox rows of a failed commit are rolled back (their seqs may be used again):
    the session's position goes back too, so the next message is still sent."""
    alice, alice_log, bob, bob_log = duo
    real = alice.store.commit_batch
    failures: list[bool] = []

    def failing_once(incoming: Any, outgoing: Any, acked: Any = (),
                     before_commit: Any = None) -> Any:
        if outgoing and not failures:
            failures.append(True)

            def sent_then_disk_fails() -> None:
                before_commit()
                raise OSError("disk I/O error (injected at COMMIT)")
            return real(incoming, outgoing, acked, sent_then_disk_fails)
        return real(incoming, outgoing, acked, before_commit)

    alice.store.commit_batch = failing_once
    lost = alice.send("bob", "never stored by alice")
    alice_log.wait("not_delivered", lambda e: e["id"] == lost)
    assert not alice_log.named("delivered"), "nothing beyond queued for a message not stored"
    kept = alice.send("bob", "after the disk came back")
    alice_log.wait("delivered", lambda e: e["id"] == kept)
    bob_log.wait("message", lambda e: e["id"] == kept)  # bob's event thread may lag his ack
    got = [e["id"] for e in bob_log.named("message")]
    assert got.count(kept) == 1
    assert [r.id for r in alice.store.history() if r.direction == "out"] == [kept]


def test_a_store_that_failed_gets_no_write_ahead_until_a_commit_succeeds(duo: Any) -> None:
    """A message written ahead of its rows leaves even if the commit then fails; after a
    failure the next messages wait for their commit, until one succeeds again."""
    alice, alice_log, bob, bob_log = duo
    real = alice.store.commit_batch
    wire = alice._running.delivery.wire
    real_ahead = wire.write_ahead
    ahead: list[tuple[list[str], bool]] = []
    failures: list[bool] = []

    def recorded(outbound: Any, peers: Any) -> Any:
        written = real_ahead(outbound, peers)
        ahead.append(([m.msg_id for _, m, _ in outbound], bool(written)))
        return written

    def failing_once(incoming: Any, outgoing: Any, acked: Any = (),
                     before_commit: Any = None) -> Any:
        if outgoing and not failures:
            failures.append(True)
            raise OSError("disk I/O error (injected)")
        return real(incoming, outgoing, acked, before_commit)

    wire.write_ahead = recorded
    alice.store.commit_batch = failing_once
    lost = alice.send("bob", "written ahead, then the store fails")
    alice_log.wait("not_delivered", lambda e: e["id"] == lost)
    second = alice.send("bob", "after the failure")
    alice_log.wait("delivered", lambda e: e["id"] == second)
    third = alice.send("bob", "the store works again")
    alice_log.wait("delivered", lambda e: e["id"] == third)
    assert ahead[0] == ([lost], True)
    assert [ids for ids, _ in ahead[1:]] == [[third]], "no write ahead right after a failure"
    assert ahead[-1] == ([third], True)
    bob_log.wait("message", lambda e: e["id"] == third)
    assert [e["id"] for e in bob_log.named("message")] == [lost, second, third]


def test_the_receiver_still_acks_only_after_its_commit(duo: Any) -> None:
    """Bob's ack leaves after his commit, never inside it."""
    alice, alice_log, bob, bob_log = duo
    real = bob.store.commit_batch
    acks_inside: list[int] = []
    sent_acks = threading.Event()

    def watched(incoming: Any, outgoing: Any, acked: Any = (), before_commit: Any = None) -> Any:
        if not incoming:
            return real(incoming, outgoing, acked, before_commit)
        session = next(iter(bob._running.sessions))  # the one session, alice's
        frames = session.frames_out

        def check() -> None:
            if before_commit is not None:
                before_commit()
            acks_inside.append(session.frames_out - frames)
        result = real(incoming, outgoing, acked, check)
        sent_acks.set()
        return result

    bob.store.commit_batch = watched
    msg = alice.send("bob", "ack me after you stored me")
    alice_log.wait("delivered", lambda e: e["id"] == msg)
    assert sent_acks.is_set() and acks_inside and set(acks_inside) == {0}


def test_a_flood_queued_at_once_is_stored_in_bounded_commits(duo: Any) -> None:
    """Messages queued while the loop is busy go out in commits of at most FLUSH_MAX_OUT
    (one commit of the whole flood held the loop, and with it every ack, for seconds);
    bob gets each once, in order."""
    from lanchat.delivery import FLUSH_MAX_OUT

    alice, alice_log, bob, bob_log = duo
    real = alice.store.commit_batch
    sizes: list[int] = []

    def counted(incoming: Any, outgoing: Any, acked: Any = (),
                before_commit: Any = None) -> Any:
        if outgoing:
            sizes.append(len(outgoing))
        return real(incoming, outgoing, acked, before_commit)

    alice.store.commit_batch = counted
    n = 2 * FLUSH_MAX_OUT + 50
    held, queued = threading.Event(), threading.Event()

    def hold_loop() -> None:
        held.set()
        queued.wait(5.0)  # released as soon as the test thread has queued the flood

    alice.runtime.call_soon(hold_loop)
    assert held.wait(5.0)
    try:
        sent = [alice.send("bob", f"flood {i}") for i in range(n)]
    finally:
        queued.set()
    got = bob_log.wait("message", count=n, timeout=60.0)
    assert [e["id"] for e in got] == sent
    alice_log.wait("delivered", count=n, timeout=60.0)
    assert max(sizes) == FLUSH_MAX_OUT and sum(sizes) == n and len(sizes) >= 3


def test_close_stores_every_queued_message_of_a_flood(
        duo: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """A flood queued just before close is stored whole, though one commit takes at most
    FLUSH_MAX_OUT (close stored one batch, the loop stopped before the next ones ran, and
    the rest were lost though each send had returned an id)."""
    from lanchat import delivery
    from lanchat.store import Store

    monkeypatch.setattr(delivery, "FLUSH_MAX_OUT", 8)  # many batches, each quick
    alice, _, bob, bob_log = duo
    alice.close()
    bob_log.wait("peer_left")
    n = 50 * delivery.FLUSH_MAX_OUT + 5
    held, queued, submitted = threading.Event(), threading.Event(), threading.Event()
    runtime = bob._runtime
    real_submit = runtime.submit

    def submit(coro: Any) -> Any:
        future = real_submit(coro)
        submitted.set()
        return future

    def hold_loop() -> None:
        held.set()
        queued.wait(5.0)  # released once the flood and close are queued behind it

    runtime.submit = submit
    bob.runtime.call_soon(hold_loop)
    assert held.wait(5.0)
    closer = threading.Thread(target=bob.close)
    try:
        sent = [bob.send("alice", f"flood {i}") for i in range(n)]
        closer.start()
        assert submitted.wait(5.0)
    finally:
        queued.set()
    closer.join(30.0)
    assert not closer.is_alive()
    store = Store(bob.config.home / "lanchat.db")
    try:
        assert [r.id for r in store.history(limit=n + 1) if r.direction == "out"] == sent
        assert store.outbox_peers() == {alice.node_id: n}
    finally:
        store.close()


def test_a_session_that_acks_inside_its_write_is_not_taken_as_carrying_those(
        tmp_path: Path) -> None:
    """A Bonjour chat stream acks inside `write_outbox`, before a row written ahead may be
    stored: those ids are never kept as in flight on it (a later ack of them would be
    reported before their commit, and the set would only grow), whether written ahead of
    their rows or pumped from the outbox."""
    from types import SimpleNamespace

    from lanchat.api import Capability
    from lanchat.protocol import Chat, decode_payload, encode
    from lanchat.sessions import SessionRegistry
    from lanchat.store import Store
    from lanchat.wire import Wire

    class AckingStream:
        capabilities = frozenset({Capability.CHAT})
        peer_id = "x" * 52
        ready, paused = True, False

        def __init__(self) -> None:
            self.answers: list[list[str]] = []

        def write_outbox(self, payloads: list[bytes]) -> None:
            ids = tuple(getattr(decode_payload(p), "msg_id") for p in payloads)  # noqa: B009
            self.answers.append(wire.acked(self, ids))

    store = Store(tmp_path / "lanchat.db")
    try:
        registry = SessionRegistry("o" * 52)
        wire = Wire(SimpleNamespace(), store, registry)  # type: ignore[arg-type]
        stream = AckingStream()
        registry.add(stream)  # type: ignore[arg-type]
        assert registry.claim(stream)  # type: ignore[arg-type]
        wire.pump(stream)  # type: ignore[arg-type]  # nothing queued: caught up
        chats = [Chat(f"{i:032x}", 1.0, f"m{i}", False, "alice") for i in range(3)]
        ids = tuple(c.msg_id for c in chats)
        outbound = [([stream.peer_id], c, encode(c)[4:]) for c in chats]
        assert wire.write_ahead(outbound, {stream.peer_id}) == {stream}
        store.commit_batch([], outbound)
        wire.pump(stream)  # type: ignore[arg-type]  # the same rows, from the outbox
        assert stream.answers == [[], []]
        assert wire.acked(stream, ids) == []  # type: ignore[arg-type]
    finally:
        store.close()
