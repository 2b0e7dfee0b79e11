"""Files between real `lanchat run --json` processes on two lab hosts (veth): resume after
SIGKILL of either side, and chat that stays prompt while a file moves."""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path

from lab import FAST_LIVENESS, NO_DISCOVERY, Lab, LanchatProc
from lanchat.transfer.hashing import new_hasher

MiB = 1 << 20

def big_file(path: Path, size: int) -> str:
    """A file of `size` bytes (a repeated random block, written fast); return its BLAKE3
    digest (what two lanchat peers verify with)."""
    block = os.urandom(MiB)
    h = new_hasher("blake3")
    with open(path, "wb") as fh:
        for i in range(size // MiB):
            chunk = block[i % 7:] + block[:i % 7]  # no two blocks alike
            fh.write(chunk)
            h.update(chunk)
    return h.hexdigest()


def file_digest(path: Path) -> str:
    h = new_hasher("blake3")
    with open(path, "rb") as fh:
        while chunk := fh.read(4 * MiB):
            h.update(chunk)
    return h.hexdigest()


def offer(alice: LanchatProc, bob: LanchatProc, path: Path) -> str:
    alice.command(f"/file bob {path}")
    out = alice.wait_event("output", command=f"/file bob {path}")
    tid = out["data"]["transfer"]
    bob.wait_event("file_offer", transfer=tid)
    return str(tid)


def test_file_resumes_after_the_receiver_is_killed(lab2: Lab, tmp_path: Path) -> None:
    """Bob is SIGKILLed mid-file and started again on the same home: the file completes,
    verified, and his first progress after the restart starts where the .part ended."""
    alice, bob = lab2.start_pair(env=FAST_LIVENESS)
    src = tmp_path / "movie.bin"
    digest = big_file(src, 1024 * MiB)
    tid = offer(alice, bob, src)
    bob.command(f"/accept {tid}")
    bob.wait_event("file_progress", transfer=tid, pred=lambda e: e["done"] > 0, timeout=30)
    bob.kill(signal.SIGKILL)
    bob.wait_exit(10)
    part = bob.home / "downloads" / "movie.bin.part"
    kept = part.stat().st_size
    assert 0 < kept < src.stat().st_size
    bob = bob.restart()
    done = bob.wait_event("file_done", transfer=tid, timeout=60)
    assert done["digest"] == digest == file_digest(Path(done["path"]))
    first = bob.wait_event("file_progress", transfer=tid, consume=False)
    assert first["done"] >= kept - 4 * MiB, "bytes already received were sent again"
    alice.wait_event("file_done", transfer=tid, direction="out", timeout=20)


def test_file_resumes_after_the_sender_is_killed(lab2: Lab, tmp_path: Path) -> None:
    """Alice is SIGKILLed mid-file and started again on the same home: she offers again by
    herself, bob resumes from his .part, and both see the file verified."""
    alice, bob = lab2.start_pair(env=FAST_LIVENESS)
    src = tmp_path / "disk.img"
    digest = big_file(src, 1024 * MiB)
    tid = offer(alice, bob, src)
    bob.command(f"/accept {tid}")
    bob.wait_event("file_progress", transfer=tid, pred=lambda e: e["done"] > 0, timeout=30)
    alice.kill(signal.SIGKILL)
    alice.wait_exit(10)
    failed = bob.wait_event("file_failed", transfer=tid, timeout=20)
    assert failed["resumable"]
    kept = (bob.home / "downloads" / "disk.img.part").stat().st_size
    mark = bob.mark()
    alice = alice.restart()
    done = bob.wait_event("file_done", transfer=tid, timeout=60)
    assert done["digest"] == digest == file_digest(Path(done["path"]))
    first = bob.wait_event("file_progress", transfer=tid, since=mark, consume=False)
    assert first["done"] >= kept - 4 * MiB, "bytes already received were sent again"
    alice.wait_event("file_done", transfer=tid, direction="out", timeout=20)


def test_chat_stays_prompt_during_a_200_mib_transfer(lab2: Lab,
                                                     tmp_path: Path) -> None:
    """Messages typed while 200 MiB move arrive before the file is done (latency printed)."""
    alice, bob = lab2.start_pair(env=FAST_LIVENESS)
    src = tmp_path / "data.bin"
    big_file(src, 200 * MiB)
    tid = offer(alice, bob, src)
    bob.command(f"/accept {tid}")
    alice.wait_event("file_progress", transfer=tid, direction="out", timeout=30)
    sent = []
    for i in range(5):
        alice.command(f"/msg bob during-{i}")
        sent.append(time.time())
    got = [bob.wait_event("message", text=f"during-{i}", timeout=20) for i in range(5)]
    done = bob.wait_event("file_done", transfer=tid, timeout=60)
    latencies = [g["ts"] - s for g, s in zip(got, sent, strict=True)]
    print(f"chat latency during transfer: max {max(latencies) * 1000:.1f} ms, "
          f"file done {done['ts'] - got[-1]['ts']:.3f} s after the last message")
    assert all(g["ts"] < done["ts"] for g in got), "messages waited for the file"


def test_lanchat_send_file_exits_zero_once_bob_verified_it(lab2: Lab, tmp_path: Path) -> None:
    """A script offers a file with `lanchat send --file`; bob accepts; exit 0 means verified."""
    h1, h2 = lab2.hosts
    bob = h2.start_node(*NO_DISCOVERY, nick="bob", env=FAST_LIVENESS)
    bob.wait_event("ready")
    src = tmp_path / "notes.txt"
    src.write_bytes(os.urandom(3 * MiB))
    cli = [*h1.lanchat("--home", str(lab2.base_dir / "script")), "--nick",
           "script", "--port", "0", *NO_DISCOVERY, "--peer", f"{h2.ip}:{bob.port}"]
    sender = h1.popen([*cli, "send", "--to", "bob", "--file", str(src), "--wait", "60"])
    got = bob.wait_event("file_offer", timeout=20)
    assert got["name"] == "notes.txt" and got["size"] == 3 * MiB
    bob.command(f"/accept {got['transfer']}")
    done = bob.wait_event("file_done", timeout=60)
    assert sender.wait(60) == 0
    assert file_digest(Path(done["path"])) == file_digest(src) == done["digest"]
    declined = h1.popen([*cli, "send", "--to", "bob", "--file", str(src), "--wait", "60"])
    offer2 = bob.wait_event("file_offer", timeout=20)
    bob.command(f"/decline {offer2['transfer']}")
    assert declined.wait(60) == 1
    assert h1.run([*cli, "send", "--all", "--file", str(src)]).returncode == 2
