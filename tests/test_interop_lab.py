"""Foreign peers in the lab, beside a lanchat node (alice on h1): Bonjour chat (XEP-0174)
peers, scripted and hostile; localsendd, the LocalSend v2 daemon from PyPI; a scripted,
hostile LocalSend device. One lab serves every test of this module."""

from __future__ import annotations

import hashlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from interop_peers import (
    Finch,
    LocalSendD,
    ScriptedLocalSend,
    ScriptedXmppPeer,
    finch_missing,
    localsendd_venv,
)
from lab import Lab, LanchatProc
from waiting import wait_until

pytestmark = pytest.mark.lab


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    with Lab(4) as lab:
        if lab.mode != "netns":
            pytest.skip(f"needs the namespace lab: {lab.fallback_reason}")
        yield lab


@pytest.fixture(scope="module")
def alice(lab: Lab) -> LanchatProc:
    proc = lab.hosts[0].start_node(nick="alice")
    proc.wait_event("ready", timeout=20)
    return proc


@pytest.fixture(scope="module")
def lsd(lab: Lab) -> Iterator[LocalSendD]:
    venv = localsendd_venv()
    if venv is None:
        pytest.skip("localsendd could not be installed (pip install localsendd==0.1.1)")
    daemon = LocalSendD(lab.hosts[1], venv, lab.base_dir, "lsd-b")
    yield daemon
    daemon.stop()
    assert not daemon.fatal, "localsendd fell back to scanning the subnet"


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_bonjour_chat_peer_talks_with_alice_and_hostile_streams_are_refused(
        lab: Lab, alice: LanchatProc) -> None:
    """bob (a scripted XEP-0174 peer) appears in alice's list as unencrypted xmpp; messages go
    both ways with markup intact; the first /msg asks once. eve's entity bomb, her 100 MB
    stanza and mallory's stream from an address that never announced bob are refused and
    counted, and alice goes on serving bob."""
    _, h2, h3, h4 = lab.hosts
    bob = ScriptedXmppPeer(h2, "bob@h2")
    joined = alice.wait_event("peer_joined", timeout=20, match={"peer": {"nick": "Bob"}})
    assert joined["peer"]["kind"] == "xmpp" and joined["peer"]["encrypted"] is False
    me = bob.wait("peer", timeout=20)["peer"]
    assert me.startswith("alice@")

    # bob -> alice: markup characters and Unicode arrive as text.
    bob.command(cmd="send", to=me, text="hi <&> 'é' 🙂")
    got = alice.wait_event("message", timeout=10, match={"from": {"nick": "Bob"}})
    assert got["text"] == "hi <&> 'é' 🙂" and got["to"] == "direct"

    # alice -> bob: the first /msg is held once (unencrypted), the second goes on bob's stream.
    alice.command("/msg Bob first <b>")
    held = alice.wait_event("output", timeout=10)
    assert held["data"]["sent"] is False and "not encrypted" in held["text"]
    alice.command("/msg Bob hello <b>&amp;")
    msg = bob.wait("message", timeout=10)
    assert msg["text"] == "hello <b>&amp;" and msg["peer"] == me and msg["html"]
    alice.wait_event("delivered", timeout=10)

    # eve announces herself, then attacks; mallory (h4, never announced) claims to be bob.
    eve = ScriptedXmppPeer(h3, "eve@h3")
    eve.wait("peer", timeout=20, peer=me)
    alice.wait_event("peer_joined", timeout=20, match={"peer": {"nick": "Eve"}})
    # alice speaks first to eve: her own stream carries it.
    alice.command("/msg Eve hi")
    alice.command("/msg Eve hi eve")
    assert eve.wait("message", timeout=10)["text"] == "hi eve"
    eve.command(cmd="entity", to=me)
    bomb = eve.wait("result", timeout=20)
    assert "restricted-xml" in bomb["answer"]
    eve.command(cmd="huge", to=me, mb=100)
    huge = eve.wait("result", timeout=60)
    assert huge["sent"] < 100 * 1024 * 1024 and "policy-violation" in huge["answer"]
    mallory = ScriptedXmppPeer(h4, "mallory@h4", silent=True)
    mallory.command(cmd="spoof", ip=lab.hosts[0].ip, port=5298, **{"as": "bob@h2"})
    spoof = mallory.wait("result", timeout=20)
    assert "spoofed" not in spoof["answer"]

    # alice still serves bob, and counted each refusal.
    bob.command(cmd="send", to=me, text="still there?")
    alice.wait_event("message", timeout=10, match={"text": "still there?"})
    alice.command("/doctor")
    report = alice.wait_event("output", timeout=10, match={"command": "/doctor"})
    refused = report["data"]["xmpp"]["refused"]
    assert refused.get("restricted-xml") == 1 and refused.get("policy-violation") == 1
    assert refused.get("unannounced") == 1
    assert "streams refused" in report["text"]

    # bob quits: his goodbye ends him at alice as peer_left.
    bob.stop()
    left = alice.wait_event("peer_left", timeout=20, match={"peer": {"nick": "Bob"}})
    assert left["reason"] == "bye"
    for peer in (eve, mallory):
        peer.stop()


def _lsd_send(lsd: LocalSendD, files: list[Path], to: str) -> subprocess.Popen[str]:
    envs = [f"{k}={v}" for k, v in lsd.env.items()]
    return subprocess.Popen(lsd.host.wrap(
        ["env", *envs, str(lsd.venv / "bin" / "localsendctl"), "send", *map(str, files),
         "--to", to, "--wait", "--quiet"]), stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
        text=True)


def test_files_go_both_ways_between_alice_and_localsendd(
        lab: Lab, alice: LanchatProc, lsd: LocalSendD) -> None:
    """localsendd is listed as a LocalSend peer (files only); alice sends it two files and
    it sends her two, each an offer she accepts; every hash is equal."""
    joined = alice.wait_event("peer_joined", timeout=30, match={"peer": {"nick": "lsd-b"}})
    peer = joined["peer"]
    assert peer["kind"] == "localsend" and peer["fingerprint"] == lsd.status()["self"][
        "fingerprint"]
    alice.command("/msg lsd-b hello")
    refusal = alice.wait_event("error", timeout=10, match={"command": "/msg lsd-b hello"})
    assert "LocalSend device" in refusal["message"] and "not messages" in refusal["message"]

    out = [lab.base_dir / "out-a.bin", lab.base_dir / "out b é.txt"]
    out[0].write_bytes(os.urandom(3 * 1024 * 1024 + 17))
    out[1].write_text("from alice <&>\n")
    for path in out:
        alice.command(f'/file lsd-b "{path}"')
    done = alice.wait_events("file_done", 2, timeout=60, direction="out")
    assert {d["sha256"] for d in done} == {sha256(p) for p in out}
    for path in out:
        assert sha256(lsd.downloads / path.name) == sha256(path)

    src = [lab.base_dir / "in-1.bin", lab.base_dir / "in-2.txt"]
    src[0].write_bytes(os.urandom(2 * 1024 * 1024 + 5))
    src[1].write_text("from localsendd\n")
    sender = _lsd_send(lsd, src, "alice")
    offers = alice.wait_events("file_offer", 2, timeout=60, match={"from": {"nick": "lsd-b"}})
    downloads = Path(alice.home) / "downloads"
    assert not downloads.exists() or not list(downloads.iterdir())  # nothing before accept
    for offer in offers:
        alice.command(f"/accept {offer['transfer']}")
    got = alice.wait_events("file_done", 2, timeout=60, direction="in")
    assert sorted(d["sha256"] for d in got) == sorted(sha256(p) for p in src)
    for d in got:
        assert sha256(Path(d["path"])) == d["sha256"]
    output, _ = sender.communicate(timeout=30)
    assert sender.returncode == 0, output

    # `lanchat send --to PEER --file` reaches a LocalSend device too (a second node on h1).
    one = lab.base_dir / "by-send.txt"
    one.write_text("sent by lanchat send\n")
    done = lab.hosts[0].run(lab.hosts[0].lanchat(
        "--home", str(lab.base_dir / "h1-sender"), "--nick", "sender", "--port", "0",
        "send", "--to", "lsd-b", "--file", str(one), "--wait", "60"), timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert sha256(lsd.downloads / one.name) == sha256(one)
    assert not lsd.fatal


def test_a_localsend_device_that_asks_for_a_pin_gets_it(lab: Lab, alice: LanchatProc) -> None:
    """lsd-p wants a PIN: alice's offer is declined saying so; after /pin it goes through."""
    venv = localsendd_venv()
    if venv is None:
        pytest.skip("localsendd could not be installed (pip install localsendd==0.1.1)")
    lsd_p = LocalSendD(lab.hosts[3], venv, lab.base_dir, "lsd-p", "--pin", "4321")
    try:
        alice.wait_event("peer_joined", timeout=30, match={"peer": {"nick": "lsd-p"}})
        path = lab.base_dir / "for-pin.txt"
        path.write_text("behind a PIN\n")
        alice.command(f"/file lsd-p {path}")
        failed = alice.wait_event("file_failed", timeout=30, direction="out")
        assert "PIN" in failed["detail"]
        alice.command("/pin lsd-p 4321")
        alice.wait_event("output", timeout=10, match={"command": "/pin lsd-p 4321"})
        alice.command(f"/file lsd-p {path}")
        done = alice.wait_event("file_done", timeout=30, direction="out")
        assert done["sha256"] == sha256(path) == sha256(lsd_p.downloads / path.name)
    finally:
        lsd_p.stop()
    assert not lsd_p.fatal


def test_a_localsend_device_gets_lanchats_rules(lab: Lab, alice: LanchatProc) -> None:
    """mal, a scripted LocalSend device: a path in its file name is cut to a safe name; an
    upload larger than its offer, an upload nobody accepted and one with a made-up token are
    refused; a file too big for the disk cannot be accepted; nothing lands outside the
    downloads, and alice goes on."""
    mal = ScriptedLocalSend(lab.hosts[2], lab.base_dir, "mal")
    me = [lab.hosts[0].ip, 53317, _alice_fingerprint(alice)]
    downloads = Path(alice.home) / "downloads"
    before = set(downloads.iterdir()) if downloads.exists() else set()

    def prepare(files: list[list[Any]]) -> dict[str, Any]:
        mal.command(cmd="prepare", to=me, files=files)
        return alice.wait_event("file_offer", timeout=30, match={"from": {"nick": "mal"}})

    # A name with a path and an escape: offered, accepted, written under a safe name.
    offer = prepare([["f1", "../../../tmp/evil\x1b[31m.txt", 5]])
    assert set(downloads.iterdir()) == before  # nothing before accept
    alice.command(f"/accept {offer['transfer']}")
    answer = mal.next()
    assert answer["status"] == 200
    ticket = answer["body"]
    mal.command(cmd="upload", to=me, session=ticket["sessionId"], file="f1",
                token=ticket["files"]["f1"], bytes=5)
    assert mal.next()["status"] == 200
    done = alice.wait_event("file_done", timeout=20, transfer=offer["transfer"])
    path = Path(done["path"])
    assert path.parent == downloads and "/" not in path.name and "\x1b" not in path.name
    # The same token again, and a made-up one: refused.
    mal.command(cmd="upload", to=me, session=ticket["sessionId"], file="f1",
                token=ticket["files"]["f1"], bytes=5)
    assert mal.next()["status"] == 403
    mal.command(cmd="upload", to=me, session="guess", file="f1", token="guess", bytes=5)
    assert mal.next()["status"] == 403

    # Larger than offered: refused, nothing published, the transfer fails.
    offer = prepare([["f2", "small.txt", 10]])
    alice.command(f"/accept {offer['transfer']}")
    ticket = mal.next()["body"]
    mal.command(cmd="upload", to=me, session=ticket["sessionId"], file="f2",
                token=ticket["files"]["f2"], bytes=100_000)
    assert mal.next()["status"] == 400
    alice.wait_event("file_failed", timeout=20, transfer=offer["transfer"])
    assert not (downloads / "small.txt").exists()

    # Declined: 403, and an upload for it is refused.
    offer = prepare([["f3", "unwanted.txt", 3]])
    alice.command(f"/decline {offer['transfer']}")
    assert mal.next()["status"] == 403
    assert not (downloads / "unwanted.txt").exists()

    # More than lanchat takes in one offer: 400 at once. 16 TiB: alice cannot accept it
    # (free space), so it is declined.
    mal.command(cmd="prepare", to=me, files=[["f5", "vast.bin", 1 << 50]])
    assert mal.next()["status"] == 400
    offer = prepare([["f4", "huge.bin", 1 << 44]])
    alice.command(f"/accept {offer['transfer']}")
    alice.wait_event(None, timeout=10, pred=lambda e: "not enough space" in str(e))
    alice.command(f"/decline {offer['transfer']}")
    assert mal.next()["status"] == 403
    assert set(downloads.iterdir()) == before | {path}
    alice.command("/list")
    assert alice.wait_event("output", timeout=10, match={"command": "/list"})
    mal.command(cmd="quit")


def _alice_fingerprint(alice: LanchatProc) -> str:
    alice.command("/doctor")
    report = alice.wait_event("output", timeout=10, match={"command": "/doctor"})
    return str(report["data"]["localsend"]["fingerprint"])


def test_finch_chats_with_alice_and_one_list_holds_every_kind(
        lab: Lab, alice: LanchatProc, lsd: LocalSendD) -> None:
    """carol runs finch (libpurple Bonjour chat): her message reaches alice and alice's
    answer reaches finch's window with Unicode and <&> intact; alice's /list then holds a
    lanchat node, a LocalSend device and a Bonjour chat peer, each with its kind; carol
    quitting finch is seen as peer_left."""
    missing = finch_missing()
    if missing:
        pytest.skip(f"not installed: {', '.join(missing)} (.ci/run installs them)")
    h3, h4 = lab.hosts[2], lab.hosts[3]
    finch = Finch(h4, lab.base_dir, "carol")
    try:
        joined = alice.wait_event("peer_joined", timeout=30, match={"peer": {"nick": "Carol"}})
        assert joined["peer"]["kind"] == "xmpp"
        dave = h3.start_node(nick="dave")
        dave.wait_event("ready", timeout=20)
        alice.command("/doctor")
        me = alice.wait_event("output", timeout=10, match={"command": "/doctor"})[
            "data"]["xmpp"]["instance"]

        finch.send(me, "hi &lt;&amp;&gt; 'é' 🙂")  # libpurple takes HTML
        got = alice.wait_event("message", timeout=20, match={"from": {"nick": "Carol"}})
        assert got["text"] == "hi <&> 'é' 🙂"
        alice.command("/msg Carol ok?")  # held once: unencrypted
        alice.command("/msg Carol back <&> é 🙂")
        alice.wait_event("delivered", timeout=10, to=joined["peer"]["id"])
        # finch writes its log file; there is nothing to wait on
        wait_until(lambda: any(line.endswith(": back <&> é 🙂") for line in finch.received(me)),
                   "finch received the reply", 15, poll=0.2,
                   state=lambda: str(finch.received(me)))

        alice.wait_event("peer_joined", timeout=20, match={"peer": {"nick": "dave"}})
        alice.command("/list")
        listed = alice.wait_event("output", timeout=10, match={"command": "/list"})
        kinds = {p["nick"]: p["kind"] for p in listed["data"] if p["online"]}
        assert {kinds.get("dave"), kinds.get("lsd-b"), kinds.get("Carol")} == {
            "lanchat", "localsend", "xmpp"}
        assert "[xmpp, unencrypted]" in listed["text"] and "[localsend]" in listed["text"]

        finch.quit()
        left = alice.wait_event("peer_left", timeout=20, match={"peer": {"nick": "Carol"}})
        assert left["reason"] == "bye"
    finally:
        finch.stop()
