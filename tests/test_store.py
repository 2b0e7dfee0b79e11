"""The SQLite store: dedupe, acks, damage and versions; and the node when storing fails."""

from __future__ import annotations

import sqlite3
from pathlib import Path

import pytest

from lanchat.node import Node, NodeError
from lanchat.protocol import Chat
from lanchat.store import Received, Store, StoreError
from tests.nodes import Peers, make_node


def test_a_known_id_with_another_body_keeps_the_first(tmp_path: Path) -> None:
    """A replay with the same id but different text is dropped, not stored again."""
    store = Store(tmp_path / "db")
    fresh, _ = store.commit_batch([Received("alice", "alice", 1.0,
                                            Chat("id1", 1.0, "original"))], [])
    again, _ = store.commit_batch([Received("alice", "alice", 2.0,
                                            Chat("id1", 2.0, "forged"))], [])
    assert len(fresh) == 1 and again == []
    assert [r.text for r in store.history()] == ["original"]


def test_an_ack_from_the_wrong_peer_removes_nothing(tmp_path: Path) -> None:
    """Only the peer a message was queued for can confirm it."""
    store = Store(tmp_path / "db")
    msg = Chat("id1", 1.0, "for bob")
    store.commit_batch([], [(["bob"], msg, b"{}")])
    _, done = store.commit_batch([], [], [("mallory", ("id1",)), ("bob", ("nope",))])
    assert done == [] and store.outbox_peers() == {"bob": 1}
    _, done = store.commit_batch([], [], [("bob", ("id1",))])
    assert done == [("bob", "id1")] and store.outbox_peers() == {}


def test_outbox_sequence_numbers_are_never_reused(tmp_path: Path) -> None:
    """A session sends 'everything after seq N': an emptied outbox must not restart at 1."""
    store = Store(tmp_path / "db")
    store.commit_batch([], [(["bob"], Chat("a", 1.0, "x"), b"a")])
    first = store.outbox_after("bob", 0)[0][0]
    store.commit_batch([], [], [("bob", ("a",))])
    store.commit_batch([], [(["bob"], Chat("b", 1.0, "y"), b"b")])
    assert store.outbox_after("bob", first)[0][0] > first


def test_a_damaged_database_gives_a_clear_error(tmp_path: Path) -> None:
    """Flipped bytes: the node refuses to start and says what to do."""
    home = tmp_path / "home"
    node, _ = make_node(home, "alice")
    node.close()
    db = home / "lanchat.db"
    data = bytearray(db.read_bytes())
    for at in range(100, len(data), 97):
        data[at] ^= 0xFF
    db.write_bytes(bytes(data))
    for extra in home.glob("lanchat.db-*"):
        extra.unlink()
    with pytest.raises(NodeError, match="damaged or unreadable.*move it away"):
        make_node(home, "alice")


def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    """A history written by a newer lanchat is not touched."""
    Store(tmp_path / "db").close()
    db = sqlite3.connect(tmp_path / "db")
    db.execute("UPDATE meta SET value='99' WHERE key='schema'")
    db.commit()
    db.close()
    with pytest.raises(StoreError, match="schema 99.*upgrade lanchat"):
        Store(tmp_path / "db")


def test_when_storing_fails_nothing_is_acked_and_it_arrives_later(
        peers: Peers, monkeypatch: pytest.MonkeyPatch) -> None:
    """Bob's disk is full for a moment: he says so, does not ack, and gets it on retry."""
    monkeypatch.setenv("LANCHAT_HEARTBEAT_S", "0.3")
    monkeypatch.setenv("LANCHAT_DEAD_AFTER_S", "1.0")
    a, b = peers.pair()
    alice, alice_log, bob, bob_log = a.node, a.log, b.node, b.log
    assert bob.store is not None
    real = bob.store.commit_batch
    failures = [sqlite3.OperationalError("database or disk is full")]

    def flaky(*args, **kwargs):  # type: ignore[no-untyped-def]
        if failures and args[0]:
            raise failures.pop()
        return real(*args, **kwargs)
    monkeypatch.setattr(bob.store, "commit_batch", flaky)
    msg = alice.send("bob", "do not lose me")
    err = bob_log.wait("error", lambda e: e["code"] == "store_failed")[0]
    assert "disk is full" in err["message"]
    got = bob_log.wait("message", lambda e: e["id"] == msg, timeout=20)
    assert len(got) == 1
    alice_log.wait("delivered", lambda e: e["id"] == msg)


def test_node_error_names_a_home_that_cannot_be_made(tmp_path: Path) -> None:
    """A home under a file is a clear error, not a traceback."""
    blocker = tmp_path / "file"
    blocker.write_text("x")
    with pytest.raises(NodeError, match="cannot create home"):
        make_node(blocker / "home", "alice")
    assert Node is not None


def test_history_and_search_never_wait_for_the_writer(tmp_path: Path,
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    """Reads go through the read-only connection and the index through its own, in chunks:
    while the writer's lock is held (a commit on the loop), history and a search that has
    a backlog to index both finish, and the index catches up chunk by chunk."""
    import threading

    import lanchat.store as store_module

    monkeypatch.setattr(store_module, "INDEX_CHUNK", 7)
    store = Store(tmp_path / "db")
    store.commit_batch([Received("alice", "alice", float(i),
                                 Chat(f"id{i}", float(i), f"word{i % 3} text"))
                        for i in range(30)], [])
    answers: dict[str, object] = {}

    def read() -> None:
        answers["history"] = len(store.history(limit=100))
        answers["search"] = len(store.search("word1", limit=100))

    with store._lock:  # noqa: SLF001 - stands for a long commit holding the writer
        reader = threading.Thread(target=read)
        reader.start()
        reader.join(30)
        assert not reader.is_alive(), "a read waited for the writer's lock"
    assert answers == {"history": 30, "search": 10}
    assert store.index_new() == 0  # all indexed: 30 rows in five chunks of 7
    store.commit_batch([Received("alice", "alice", 99.0, Chat("late", 99.0, "word1 late"))], [])
    assert [r.id for r in store.search("late")] == ["late"]
    store.close()


def test_history_and_search_never_fail_on_rows_older_versions_stored(tmp_path: Path) -> None:
    """A 1e300, infinite, textual or negative send time from an older version's row reads
    back as the time it was stored; /history and /search still work."""
    store = Store(tmp_path / "db")
    db = sqlite3.connect(tmp_path / "db")
    rows = [("a", 1e300), ("b", float("inf")), ("c", "soon"), ("d", -5.0)]
    for msg_id, ts in rows:
        db.execute("INSERT INTO messages (id, peer, direction, broadcast, nick, text, ts,"
                   " stored) VALUES (?, 'p', 'in', 0, ?, 'old row', ?, 1700000000.0)",
                   (msg_id, "alice\x1b[2J", ts))
    db.commit()
    db.close()
    assert [r.ts for r in store.history()] == [1700000000.0] * 4
    assert [r.ts for r in store.search("old")] == [1700000000.0] * 4
    store.close()


def test_a_peer_store_write_after_a_commit_of_acks_alone_is_durable(tmp_path: Path) -> None:
    """A commit that only deletes acked outbox rows leaves the writer at
    synchronous=NORMAL (losing it costs a resend); a trust, pin or /ignore change made
    next must still wait for the disk (FULL), as every other write does."""
    store = Store(tmp_path / "lanchat.db")
    try:
        def synchronous() -> int:
            return int(store._db.execute("PRAGMA synchronous").fetchone()[0])

        store.commit_batch([], [], [("p" * 52, ("0" * 32,))])
        assert synchronous() == 1  # NORMAL: only acks
        store.peers.set_ignored("q" * 52, True)
        assert synchronous() == 2  # FULL
        assert store.peers.ignored() == {"q" * 52}
    finally:
        store.close()
