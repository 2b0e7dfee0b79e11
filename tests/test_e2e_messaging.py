"""Real `lanchat run --json` processes on lab hosts: duplex, broadcast, crashes, partitions."""

from __future__ import annotations

import signal
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable

from lab import FAST_LIVENESS, NO_DISCOVERY, Lab, LanchatProc


def send_many(proc: LanchatProc, to: str, n: int, prefix: str) -> threading.Thread:
    """Type `n` /msg lines into a node from a background thread."""
    def run() -> None:
        for i in range(n):
            proc.command(f"/msg {to} {prefix}{i}")
    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def stored_incoming(proc: LanchatProc) -> list[str]:
    """Texts of incoming messages in the node's database, in arrival order."""
    db = sqlite3.connect(proc.home / "lanchat.db")
    try:
        return [r[0] for r in db.execute(
            "SELECT text FROM messages WHERE direction='in' ORDER BY seq")]
    finally:
        db.close()


def test_full_duplex_ten_thousand_each_way(lab2: Lab) -> None:
    """Alice and bob each send 10,000 messages at once; each gets all, once, in order."""
    alice, bob = lab2.start_pair()
    n = 10_000
    senders = [send_many(alice, "bob", n, "a"), send_many(bob, "alice", n, "b")]
    got_bob = bob.wait_count("message", n, timeout=180)
    got_alice = alice.wait_count("message", n, timeout=180)
    assert [e["text"] for e in got_bob] == [f"a{i}" for i in range(n)]
    assert [e["text"] for e in got_alice] == [f"b{i}" for i in range(n)]
    alice.wait_count("delivered", n, timeout=60)
    bob.wait_count("delivered", n, timeout=60)
    for t in senders:
        t.join(5)
    assert alice.stop() == 0 and bob.stop() == 0
    assert len(stored_incoming(bob)) == n and len(stored_incoming(alice)) == n


def test_broadcast_from_one_host_reaches_four_others(lab5: Lab) -> None:
    """A line to everyone arrives at each of four hosts once, and is acked by each."""
    others = [h.start_node(*NO_DISCOVERY, nick=f"peer{i}") for i, h in
              enumerate(lab5.hosts[1:], 1)]
    for proc in others:
        proc.wait_event("ready")
    peers = [a for h, p in zip(lab5.hosts[1:], others, strict=True)
             for a in ("--peer", f"{h.ip}:{p.port}")]
    alice = lab5.hosts[0].start_node(*NO_DISCOVERY, *peers, nick="alice")
    alice.wait_count("peer_joined", 4)
    alice.command("/all hello everyone")
    out = alice.wait_event("output", command="/all hello everyone")
    msg_id = out["data"]["id"]
    for proc in others:
        got = proc.wait_event("message", id=msg_id)
        assert got["to"] == "broadcast" and got["from"]["nick"] == "alice"
    acks = alice.wait_count("delivered", 4, pred=lambda e: e["id"] == msg_id)
    assert len({e["to"] for e in acks}) == 4


def _deliver_through(fault: Callable[[LanchatProc, LanchatProc], LanchatProc],
                     lab: Lab) -> None:
    """Stream 3,000 messages alice -> bob, inject `fault` mid-stream, check exactly once."""
    alice, bob = lab.start_pair(env=FAST_LIVENESS)
    n = 3000
    sender = send_many(alice, "bob", n, "m")
    bob.wait_count("message", 300, timeout=60)
    bob = fault(alice, bob)
    alice.wait_count("delivered", n, timeout=120)
    sender.join(10)
    assert alice.stop() == 0
    bob.stop()
    texts = stored_incoming(bob)
    assert texts == [f"m{i}" for i in range(n)], "every message once, in order"


def test_receiver_killed_mid_stream_gets_every_message_once(lab2: Lab) -> None:
    """SIGKILL bob mid-stream and start him again: nothing lost, nothing twice."""
    def crash(alice: LanchatProc, bob: LanchatProc) -> LanchatProc:
        bob.kill(signal.SIGKILL)
        bob.wait_exit(10)
        alice.wait_event("peer_left", peer={"nick": "bob"}, timeout=15)
        again = bob.restart()
        again.wait_event("ready")
        return again
    _deliver_through(crash, lab2)


def test_link_down_and_up_mid_stream_loses_nothing(lab2: Lab) -> None:
    """Cut bob's cable until alice notices, then plug it back: all arrive once."""
    def partition(alice: LanchatProc, bob: LanchatProc) -> LanchatProc:
        lab2.link_down(lab2.hosts[1])
        alice.wait_event("peer_left", peer={"nick": "bob"}, reason="timeout", timeout=20)
        lab2.link_up(lab2.hosts[1])
        return bob
    _deliver_through(partition, lab2)


def test_a_frozen_peer_is_declared_gone_and_catches_up_when_thawed(lab2: Lab) -> None:
    """SIGSTOP bob: alice's heartbeats declare him gone, her messages wait; SIGCONT: they go."""
    alice, bob = lab2.start_pair(env=FAST_LIVENESS)
    bob.kill(signal.SIGSTOP)
    try:
        assert alice.wait_event("peer_left", timeout=15)["reason"] == "timeout"
        for i in range(5):
            alice.command(f"/msg bob while frozen {i}")
        alice.wait_count("output", 5)
    finally:
        bob.kill(signal.SIGCONT)
    got = [bob.wait_event("message", timeout=20)["text"] for _ in range(5)]
    assert got == [f"while frozen {i}" for i in range(5)]
    alice.wait_count("delivered", 5, timeout=20)


def test_sender_killed_resends_its_outbox_after_restart(lab2: Lab) -> None:
    """SIGKILL alice mid-stream: after her restart what was queued still arrives, once."""
    alice, bob = lab2.start_pair(env=FAST_LIVENESS)
    send_many(alice, "bob", 2000, "m")
    bob.wait_count("message", 200, timeout=60)
    alice.kill(signal.SIGKILL)
    alice.wait_exit(10)
    alice = alice.restart()
    alice.wait_event("ready")
    # Everything alice had stored before the crash reaches bob, in order, exactly once.
    db = sqlite3.connect(alice.home / "lanchat.db")
    try:
        want = [r[0] for r in db.execute(
            "SELECT text FROM messages WHERE direction='out' ORDER BY seq")]
    finally:
        db.close()
    assert len(want) >= 200
    bob.wait_count("message", len(want), timeout=60)
    bob.stop()
    alice.stop()
    got = stored_incoming(bob)
    # Bob may also hold messages alice had put on the wire but not yet committed when she
    # died (she never reported more than "queued" for those): none twice, all in order.
    assert len(got) == len(set(got)) and got == sorted(got, key=lambda t: int(t[1:]))
    assert got[:len(want)] == want and len(got) - len(want) <= 512  # one outbox page


KILL_BEFORE_COMMIT = """
import os, signal, sys
import lanchat.store as store
marker = os.environ.get("LANCHAT_TEST_KILL_BEFORE_COMMIT", "")
if marker and os.path.exists(marker):  # once: the restarted process runs as usual
    real = store.Store.commit_batch
    def commit_batch(self, incoming, outgoing, acked=(), before_commit=None):
        if not outgoing or before_commit is None:
            return real(self, incoming, outgoing, acked, before_commit)
        def sent_then_killed():
            before_commit()  # the frames are on the wire; the commit never happens
            os.unlink(marker)
            os.kill(os.getpid(), signal.SIGKILL)
        return real(self, incoming, outgoing, acked, sent_then_killed)
    store.Store.commit_batch = commit_batch
from lanchat.cli import main
sys.exit(main(sys.argv[1:]))
"""


def test_sender_killed_after_sending_before_its_commit_reports_nothing_and_no_duplicate(
        lab2: Lab) -> None:
    """SIGKILL alice after her message left but before her commit: she never said more than
    "queued"; bob has it at most once; after her restart nothing is resent or reported."""
    h1, h2 = lab2.hosts[:2]
    bob = h2.start_node(*NO_DISCOVERY, nick="bob", env=FAST_LIVENESS)
    bob.wait_event("ready")
    marker = lab2.base_dir / "kill-before-commit"
    marker.touch()
    lab2.lanchat_cmd = [sys.executable, "-c", KILL_BEFORE_COMMIT]
    try:
        alice = h1.start_node(*NO_DISCOVERY, "--peer", f"{h2.ip}:{bob.port}", nick="alice",
                              env={**FAST_LIVENESS,
                                   "LANCHAT_TEST_KILL_BEFORE_COMMIT": str(marker)})
    finally:
        lab2.lanchat_cmd = [sys.executable, "-m", "lanchat"]
    alice.wait_event("peer_joined", peer={"nick": "bob"})
    alice.command("/msg bob in the window")
    assert alice.wait_exit(15) == -signal.SIGKILL and not marker.exists()
    assert not alice.events_named("delivered"), "reported beyond queued before its commit"
    alice = alice.restart()
    alice.wait_event("peer_joined", peer={"nick": "bob"})
    alice.command("/msg bob after the restart")
    bob.wait_event("message", text="after the restart", timeout=20)
    alice.wait_count("delivered", 1, timeout=20)
    alice.stop()
    bob.stop()
    got = stored_incoming(bob)
    assert got in (["after the restart"], ["in the window", "after the restart"]), got
    db = sqlite3.connect(alice.home / "lanchat.db")
    try:
        mine = [r[0] for r in db.execute("SELECT text FROM messages WHERE direction='out'")]
        queued = db.execute("SELECT count(*) FROM outbox").fetchone()[0]
    finally:
        db.close()
    assert mine == ["after the restart"] and queued == 0


def test_a_different_key_at_a_pinned_address_is_refused(lab2: Lab) -> None:
    """Bob's address is pinned to his key; a new key there is refused and alice is told."""
    alice, bob = lab2.start_pair(env=FAST_LIVENESS)
    bob_id = bob.events_named("ready")[0]["id"]
    bob.stop()
    mallory = lab2.hosts[1].start_node(*NO_DISCOVERY, nick="bob", port=bob.port,
                                       home=lab2.base_dir / "mallory", env=FAST_LIVENESS)
    mallory_id = mallory.wait_event("ready")["id"]
    err = alice.wait_event("error", code="key_mismatch", timeout=20)
    assert err["expected"] == bob_id and err["got"] == mallory_id
    assert "pinned" in err["message"]
    assert not mallory.events_named("peer_joined")


def test_garbage_and_silent_clients_leave_the_node_serving(lab3: Lab) -> None:
    """Junk bytes, an oversized frame and a never-finished handshake hurt no other peer."""
    alice, bob = lab3.start_pair()
    h2, h3 = lab3.hosts[1], lab3.hosts[2]
    attack = f"""
import socket, ssl, struct, sys
addr = ("{h2.ip}", {bob.port})
silent = [socket.create_connection(addr) for _ in range(50)]
junk = socket.create_connection(addr); junk.sendall(b"\\x16\\x03\\x01junk" * 100)
ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT); ctx.check_hostname = False
ctx.verify_mode = ssl.CERT_NONE
big = ctx.wrap_socket(socket.create_connection(addr))
big.sendall(struct.pack(">I", 1 << 30) + b"x" * 64)
cut = ctx.wrap_socket(socket.create_connection(addr)); cut.sendall(struct.pack(">I", 500) + b"{{")
cut.close()
sys.stdout.write("sent\\n"); sys.stdout.flush()
sys.stdin.readline()
"""
    proc = h3.popen([sys.executable, "-c", attack], stdin=subprocess.PIPE,
                    stdout=subprocess.PIPE)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "sent"
    alice.command("/msg bob are you still there")
    assert bob.wait_event("message", text="are you still there")["from"]["nick"] == "alice"
    bob.command("/msg alice yes")
    alice.wait_event("message", text="yes")
    assert proc.stdin is not None
    proc.stdin.close()
    proc.wait(10)


def test_lanchat_send_speaks_in_exit_codes(lab2: Lab) -> None:
    """A script sends with `lanchat send`: 0 once stored by bob, 1 if not, 2 for bad use."""
    h1, h2 = lab2.hosts
    bob = h2.start_node(*NO_DISCOVERY, nick="bob")
    bob.wait_event("ready")
    cli = [*h1.lanchat("--home", str(lab2.base_dir / "script")), "--nick",
           "script", "--port", "0", *NO_DISCOVERY, "--peer", f"{h2.ip}:{bob.port}"]
    sent = h1.run([*cli, "send", "--to", "bob", "hello from a script"])
    assert sent.returncode == 0, sent.stderr
    assert bob.wait_event("message", text="hello from a script")["from"]["nick"] == "script"
    everyone = h1.run([*cli, "send", "--all", "to all of you"])
    assert everyone.returncode == 0, everyone.stderr
    bob.wait_event("message", text="to all of you", to="broadcast")
    nobody = h1.run([*cli, "send", "--to", "carol", "--wait", "1", "hi"])
    assert nobody.returncode == 1 and "no peer 'carol'" in nobody.stderr
    assert h1.run([*cli, "send", "no target"]).returncode == 2
    bob.stop()
    queued = h1.run([*cli, "send", "--to", "bob", "--wait", "2", "later"])
    assert queued.returncode == 1 and "stays queued" in queued.stderr
    bob = bob.restart()
    bob.wait_event("ready")
    resend = h1.run([*cli, "send", "--to", "bob", "and now"])
    assert resend.returncode == 0, resend.stderr
    got = [bob.wait_event("message")["text"] for _ in range(2)]
    assert got == ["later", "and now"], "the queued message goes first, once"
