"""A name is not a person, attacked by real hostile processes in the namespace lab.

One lab serves many checks: alice and bob are honest lanchat nodes, mallory runs a real
lanchat node with its own key and alice's nick, and `tests/hostile.py` processes send what
no honest node would (a frame lying about its sender, a forged send time, lone surrogates,
bad nicks in auth and nick frames, raw beacons with bad nicks).
"""

from __future__ import annotations

import json
import sys
import time
from typing import Any

from lab import Host, Lab, LanchatProc
from lanchat.nicks import placeholder

HOSTILE = "tests/hostile.py"
RAW_BEACON = """
import json, secrets, socket, sys
data = json.dumps({"v": 1, "t": "hello", "id": sys.argv[1], "nick": sys.argv[2], "host": "evil",
                   "port": 4000, "inst": secrets.token_hex(8), "seq": 1}).encode()
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
for _ in range(3):
    s.sendto(data, ("239.255.77.77", 47812))
"""


def hostile(host: Host, target: LanchatProc, *args: str, timeout: float = 60) -> dict[str, Any]:
    """Run tests/hostile.py from `host` against `target`; return its JSON summary."""
    out = host.run([sys.executable, HOSTILE, target.host.ip, str(target.port), *args],
                   check=True, timeout=timeout)
    result: dict[str, Any] = json.loads(out.stdout.strip().splitlines()[-1])
    return result


def command(node: LanchatProc, line: str, **kw: Any) -> dict[str, Any]:
    """Run one command and return its `output` or `error` event."""
    mark = node.mark()
    node.command(line)
    return node.wait_event(None, since=mark, timeout=kw.get("timeout", 10),
                           pred=lambda e: e.get("command") == line)


def no_surrogates(value: Any) -> bool:
    """True if no string inside `value` holds a lone surrogate."""
    text = json.dumps(value, ensure_ascii=False)
    return not any("\ud800" <= c <= "\udfff" for c in text)


def test_a_stranger_taking_a_verified_nick_never_gets_alices_messages(lab3: Lab) -> None:
    """Bob verified alice. Mallory, with her own key, calls herself alice while alice is
    offline and again while she is online: bob is warned once with both fingerprints,
    `/msg alice` is refused with the candidates both times, and NICK#ID reaches each."""
    h_alice, h_bob, h_mallory = lab3.hosts
    bob = h_bob.start_node(nick="bob")
    alice = h_alice.start_node(nick="alice")
    alice_id = alice.wait_event("ready")["id"]
    bob_id = bob.wait_event("ready")["id"]
    bob.wait_event("peer_joined", peer={"id": alice_id}, timeout=20)
    command(bob, f"/msg {alice_id} hello alice")
    alice.wait_event("message", text="hello alice", timeout=20)
    assert command(bob, f"/verify {alice_id} yes")["event"] == "output"
    alice.stop()
    bob.wait_event("peer_left", peer={"id": alice_id}, timeout=20)

    # Offline: the stranger takes the name.
    mallory = h_mallory.start_node(nick="alice")
    mallory_id = mallory.wait_event("ready")["id"]
    warning = bob.wait_event("warning", code="name_taken", timeout=20)
    assert warning["peer"] == mallory_id and warning["known"] == alice_id
    assert alice_id[:4] in warning["message"].replace(" ", "")
    refused = command(bob, "/msg alice the password is hunter2")
    assert refused["event"] == "error" and "2 known peers go by 'alice'" in refused["message"]
    assert "verified, offline" in refused["message"] and "new, online" in refused["message"]
    command(bob, f"/msg alice#{mallory_id[:5]} canary one")
    got = mallory.wait_event("message", timeout=20)
    assert got["text"] == "canary one", "the refused message reached the stranger"

    # Online: alice is back; the name is still ambiguous, NICK#ID picks each.
    alice = alice.restart()
    bob.wait_event("peer_joined", peer={"id": alice_id}, timeout=20)
    refused = command(bob, "/msg alice the password is hunter2")
    assert refused["event"] == "error" and "verified, online" in refused["message"]
    command(bob, f"/msg alice#{alice_id[:5]} for alice only")
    assert alice.wait_event("message", timeout=20)["text"] == "for alice only"
    command(bob, f"/msg alice#{mallory_id[:5]} canary two")
    assert mallory.wait_event("message", timeout=20)["text"] == "canary two"
    listing = command(bob, "/list")
    shown = {p["id"]: p["display"] for p in listing["data"]}
    assert shown[alice_id] == f"alice#{alice_id[:4]}\u2713"
    assert shown[mallory_id] == f"alice#{mallory_id[:4]}"
    assert len(bob.events_named("warning")) == 1  # said once

    # Hostile frames: a chat frame that claims to be alice, with a forged send time and
    # a lone surrogate; an auth with an invisible nick; nick frames with bad nicks.
    before = time.time()
    liar = hostile(h_mallory, bob, "say", "--nick", "\u3164", "--claim", "alice",
                   "--ts", "1e300", "--text-json", '"from alice\\ud800!"')
    assert liar["acked"] == 1
    msg = bob.wait_event("message", match={"from": {"id": liar["id"]}}, timeout=20)
    assert msg["from"]["nick"] == placeholder(liar["id"])
    assert before - 5 <= msg["sent"] <= time.time() + 5
    assert msg["text"] == "from alice\ufffd!" and no_surrogates(msg)
    history = command(bob, "/history 50")
    assert history["event"] == "output"
    row = next(r for r in history["data"] if r["id"] == msg["id"])
    assert row["nick"] == placeholder(liar["id"]) and row["peer"] == liar["id"]
    assert command(bob, "/search alice")["event"] == "output"
    nicks = hostile(h_mallory, bob, "nicks", "--nick", "mallory3")
    bob.wait_event("peer_updated", peer={"id": nicks["id"], "nick": "mallory3"}, timeout=20)
    renamed = [e["peer"]["nick"] for e in bob.events_named("peer_updated")
               if e["peer"]["id"] == nicks["id"]]
    assert set(renamed) <= {placeholder(nicks["id"]), "mallory3"}
    if lab3.mode == "netns":  # a raw beacon with an invisible nick, from the segment
        beacon_id = "b" * 52
        h_mallory.python(RAW_BEACON, beacon_id, "\u3164", check=True)
        bob.wait_event("peer_joined", peer={"id": beacon_id, "nick": placeholder(beacon_id)},
                       timeout=20)
    doctor = command(bob, "/doctor")
    assert doctor["data"]["counters"].get("send_times_clamped", 0) >= 1
    assert no_surrogates([e for e in bob.events])
    assert bob_id != alice_id


def rss_kib(pid: int) -> int:
    """Resident memory of a process, from /proc."""
    for line in open(f"/proc/{pid}/status", encoding="ascii"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError(f"no VmRSS for {pid}")


def disk_bytes(home: Any) -> int:
    """The node's store and everything else it wrote in its home."""
    return sum(p.stat().st_size for p in home.rglob("*") if p.is_file())


STRANGER_LIMITS = {"LANCHAT_LIMIT_STRANGER_MSGS_PER_S": "40",
                   "LANCHAT_LIMIT_STRANGER_MSG_BURST": "40",
                   "LANCHAT_LIMIT_STRANGER_OFFERS_PER_MIN": "6",
                   "LANCHAT_LIMIT_STRANGER_BYTES_PER_DAY": str(2 << 20)}


def test_strangers_flooding_fresh_keys_and_one_shots_stay_bounded(lab3: Lab) -> None:
    """Bob's stranger budget (40 msg/s, 2 MiB a day) meets a raw flood that ignores
    slow_down, fifty file offers, an honest lanchat stranger sending 300 messages at once,
    2,000 fresh keys from one address and one-shot `peers` runs; alice, whom bob verified,
    chats throughout. Memory, store and disk stay bounded, the honest stranger's messages
    all arrive later, in order, and bob lists none of the fresh keys or one-shots."""
    h_alice, h_bob, h_evil = lab3.hosts
    bob = h_bob.start_node(nick="bob", env=STRANGER_LIMITS)
    alice = h_alice.start_node(nick="alice")
    bob_id = bob.wait_event("ready")["id"]
    alice_id = alice.wait_event("ready")["id"]
    bob.wait_event("peer_joined", peer={"id": alice_id}, timeout=20)
    command(bob, f"/verify {alice_id} yes")
    rss0, disk0 = rss_kib(bob.pid), disk_bytes(bob.home)

    flood = hostile(h_evil, bob, "flood", "--seconds", "4", "--size", "16000")
    assert flood["slow_downs"] >= 1 and flood["acked"] < flood["sent"]
    offers = hostile(h_evil, bob, "offers", "--count", "50")
    command(alice, f"/msg {bob_id} still here")
    assert bob.wait_event("message", timeout=20, match={"from": {"id": alice_id}})["text"] \
        == "still here"

    rss_flood = rss_kib(bob.pid)  # after the message flood and the offers

    carol = h_evil.start_node(nick="carol")
    carol.wait_event("peer_joined", peer={"id": bob_id}, timeout=20)
    for i in range(300):
        carol.command(f"/msg {bob_id} c{i}")
    texts = [e["text"] for e in bob.wait_events("message", 300, timeout=90,
                                                 match={"from": {"nick": "carol"}})]
    assert texts == [f"c{i}" for i in range(300)], "every message once, in order"
    carol.wait_event("warning", code="slow_down", timeout=10)

    rss_keys = [rss_kib(bob.pid)]
    welcomed = 0
    for _ in range(2):  # 2 x 1,000 fresh keys: the second thousand must not cost more
        keys = hostile(h_evil, bob, "keys", "--count", "1000", "--parallel", "64",
                       timeout=180)
        welcomed += keys["welcomed"]
        rss_keys.append(rss_kib(bob.pid))
    assert welcomed <= 20, keys
    for _ in range(2):
        h_evil.run(h_evil.lanchat("--home", str(lab3.base_dir / "oneshot"), "peers",
                                  "--wait", "1"), check=True, timeout=60)
    command(alice, f"/msg {bob_id} after the storm")
    bob.wait_event("message", timeout=20, text="after the storm")

    listing = command(bob, "/list")["data"]
    nicks = sorted(p["nick"] for p in listing)
    assert len(listing) <= 3 + welcomed + 1, nicks  # alice, carol, the flooder...
    stats = command(bob, "/doctor")["data"]
    counters = stats["counters"]
    assert counters["chats_deferred"] > 0 and counters["offers_refused"] >= 40
    assert counters["new_identities_refused"] >= 1900
    assert len([e for e in bob.events_named("file_offer")]) <= 6 + 1
    assert offers["sent"] == 50
    rss1, disk1 = rss_kib(bob.pid), disk_bytes(bob.home)
    print(f"bob: RSS {rss0} -> {rss_flood} (flood) -> {rss_keys} (keys) -> {rss1} KiB; home "
          f"{disk0} -> {disk1} bytes; flood sent {flood['sent']} x 16 kB, acked {flood['acked']}")
    assert disk1 - disk0 < 3 * (2 << 20)  # the daily share of two strangers, and a margin
    assert rss_flood - rss0 < 64 * 1024
    assert rss_keys[2] - rss_keys[1] <= rss_keys[1] - rss_keys[0] + 8 * 1024  # no per-key cost
    assert rss1 < 512 * 1024
    assert bob.alive and alice.alive
