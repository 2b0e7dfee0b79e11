"""A timed mutation fuzz of the frame decoder: short in CI, long with `tox -e fuzz`."""

from __future__ import annotations

import os
import random
import struct
import time

from lanchat import protocol as p

SEEDS = [
    p.Hello("a" * 52, "alice", "bm9uY2U="),
    p.Auth("b" * 52, "bob", "a2V5", "c2ln", 47800),
    p.Chat("01a2b3c4", 1.5, "hello \u202e\x1b[2J world", True, "bob"),
    p.Ack(("x1", "x2", "x3")),
    p.FileOffer("t1", "report.pdf", 1234, "0" * 64),
    p.Bye("quit"),
    p.Ping(),
]


def mutate(rng: random.Random, data: bytearray) -> bytes:
    """One random damage: flip bits, cut, splice, duplicate, or rewrite the length."""
    kind = rng.randrange(6)
    if kind == 0 and data:
        for _ in range(rng.randint(1, 8)):
            data[rng.randrange(len(data))] ^= 1 << rng.randrange(8)
    elif kind == 1 and data:
        del data[rng.randrange(len(data)):]
    elif kind == 2:
        at = rng.randrange(len(data) + 1)
        data[at:at] = rng.randbytes(rng.randint(1, 40))
    elif kind == 3 and len(data) > 4:
        data[:4] = struct.pack(">I", rng.choice([0, 1, 3, len(data), 2**31, 2**32 - 1,
                                                 p.MAX_FRAME_BYTES, p.MAX_FRAME_BYTES + 1]))
    elif kind == 4:
        data += data[: rng.randrange(len(data) + 1)]
    else:
        body = bytes(data[4:]).replace(b'"', b"'", rng.randint(0, 3))
        data[:] = struct.pack(">I", len(body)) + body
    return bytes(data)


def test_damaged_frames_give_messages_or_protocol_error_only() -> None:
    """For LANCHAT_FUZZ_SECONDS (default 2), feed damaged frames in random splits."""
    seconds = float(os.environ.get("LANCHAT_FUZZ_SECONDS", "2"))
    rng = random.Random(int(os.environ.get("LANCHAT_FUZZ_SEED", "7")))
    frames = [p.encode(m) for m in SEEDS]
    deadline = time.monotonic() + seconds
    runs = 0
    while time.monotonic() < deadline:
        stream = bytearray(b"".join(rng.sample(frames, rng.randint(1, 3))))
        for _ in range(rng.randint(1, 3)):
            stream = bytearray(mutate(rng, stream))
        decoder = p.FrameDecoder()
        pos = 0
        try:
            while pos < len(stream):
                step = rng.randint(1, 64)
                for message in decoder.feed(bytes(stream[pos:pos + step])):
                    assert p.decode_payload(p.encode(message)[4:]) == message
                pos += step
            decoder.at_eof()
        except p.ProtocolError:
            pass
        runs += 1
    assert runs > 100
