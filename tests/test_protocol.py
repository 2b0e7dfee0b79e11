"""The wire format: every message round-trips; any bytes give messages or ProtocolError."""

from __future__ import annotations

import json
import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from lanchat import protocol as p

ids = st.from_regex(r"[A-Za-z0-9_.:-]{1,64}", fullmatch=True)
nicks = st.text(st.characters(blacklist_categories=("Cc", "Cs", "Zs")), min_size=1,
                max_size=64)
texts = st.text(max_size=2000)
sha = st.one_of(st.none(), st.from_regex(r"[0-9a-f]{64}", fullmatch=True))

messages = st.one_of(
    st.builds(p.Hello, ids, nicks, st.text(min_size=1, max_size=64)),
    st.builds(p.Auth, ids, nicks, st.text(min_size=1, max_size=200),
              st.text(min_size=1, max_size=200), st.integers(0, 65535)),
    st.builds(p.Welcome),
    st.builds(p.Refused, st.text(min_size=1, max_size=100)),
    st.builds(p.Chat, ids, st.floats(allow_nan=False, allow_infinity=False), texts,
              st.booleans(), st.one_of(st.just(""), nicks)),
    st.builds(p.Ack, st.lists(ids, max_size=50).map(tuple)),
    st.builds(p.Ping),
    st.builds(p.Pong),
    st.builds(p.NickChange, nicks),
    st.builds(p.Bye, st.text(max_size=50)),
    st.builds(p.SlowDown, st.floats(0, p.MAX_SLOW_DOWN_S), st.text(max_size=50)),
    st.builds(p.FileOffer, ids, st.text(min_size=1, max_size=100),
              st.integers(0, p.MAX_FILE_BYTES), sha,
              st.lists(st.builds(p.FileEntry, st.text(min_size=1, max_size=50),
                                 st.integers(0, 1 << 40)), max_size=5).map(tuple),
              st.integers(0, 65535),
              st.lists(st.sampled_from(p.FILE_HASHES), max_size=2, unique=True).map(tuple)),
    st.builds(p.FileAnswer, ids, st.booleans(),
              st.lists(st.integers(0, 1 << 40), max_size=5).map(tuple),
              st.text(max_size=50)),
    st.builds(p.FileCancel, ids, st.text(max_size=50)),
    st.builds(p.FileRequest, ids, st.integers(0, p.MAX_FILES_PER_OFFER),
              st.integers(0, p.MAX_FILE_BYTES), sha, st.sampled_from(p.FILE_HASHES)),
    st.builds(p.FileStart, ids, st.integers(0, p.MAX_FILES_PER_OFFER),
              st.integers(0, p.MAX_FILE_BYTES)),
    st.builds(p.FileEnd, ids, st.integers(0, p.MAX_FILES_PER_OFFER),
              sha.filter(lambda s: s is not None)),
    st.builds(p.FileDone, ids, sha.filter(lambda s: s is not None)),
)


@given(messages)
def test_every_message_type_round_trips(message: p.Message) -> None:
    """decode(encode(m)) == m for every message type."""
    assert p.FrameDecoder().feed(p.encode(message)) == [message]


@given(st.lists(messages, min_size=1, max_size=8), st.data())
def test_frames_survive_any_split(batch: list[p.Message], data: st.DataObject) -> None:
    """A stream of frames cut at arbitrary points decodes to the same messages."""
    stream = b"".join(p.encode(m) for m in batch)
    cuts = sorted(data.draw(st.lists(st.integers(0, len(stream)), max_size=10)))
    decoder = p.FrameDecoder()
    out: list[p.Message] = []
    last = 0
    for cut in [*cuts, len(stream)]:
        out += decoder.feed(stream[last:cut])
        last = cut
    assert out == batch
    assert decoder.buffered == 0


@settings(max_examples=300)
@given(st.binary(max_size=600), st.data())
def test_random_bytes_give_messages_or_protocol_error(blob: bytes, data: st.DataObject) -> None:
    """Garbage in any split raises only ProtocolError."""
    decoder = p.FrameDecoder()
    cuts = sorted(data.draw(st.lists(st.integers(0, len(blob)), max_size=5)))
    last = 0
    try:
        for cut in [*cuts, len(blob)]:
            decoder.feed(blob[last:cut])
            last = cut
        decoder.at_eof()
    except p.ProtocolError:
        pass


@settings(max_examples=200)
@given(st.dictionaries(st.text(max_size=8), st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats() | st.text(max_size=20),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=5), c, max_size=3),
    max_leaves=8), max_size=6), st.sampled_from(sorted(p.MESSAGE_TYPES)))
def test_random_json_objects_give_messages_or_protocol_error(body: dict, kind: str) -> None:
    """Well-framed JSON of the wrong shape is a ProtocolError, never another exception."""
    import json

    body = dict(body, t=kind)
    payload = json.dumps(body).encode()
    try:
        p.FrameDecoder().feed(struct.pack(">I", len(payload)) + payload)
    except p.ProtocolError:
        pass


def test_oversized_length_is_refused_before_buffering() -> None:
    """A header announcing a huge frame fails at once, not after buffering it."""
    decoder = p.FrameDecoder()
    with pytest.raises(p.ProtocolError, match="frame length"):
        decoder.feed(struct.pack(">I", p.MAX_FRAME_BYTES + 1) + b"x")
    with pytest.raises(p.ProtocolError):
        p.FrameDecoder().feed(struct.pack(">I", 0))


def test_truncated_frame_at_eof_is_an_error() -> None:
    """A stream that ends inside a frame says so."""
    frame = p.encode(p.Ping())
    decoder = p.FrameDecoder()
    assert decoder.feed(frame[:-1]) == []
    with pytest.raises(p.ProtocolError, match="inside a frame"):
        decoder.at_eof()


def test_unknown_type_and_wrong_fields_are_named() -> None:
    """Unknown types and bad fields give a reason a person can read."""
    def frame(obj: bytes) -> bytes:
        return struct.pack(">I", len(obj)) + obj
    with pytest.raises(p.ProtocolError, match="unknown message type"):
        p.FrameDecoder().feed(frame(b'{"t":"zap"}'))
    with pytest.raises(p.ProtocolError, match="'to'"):
        p.FrameDecoder().feed(frame(b'{"t":"msg","id":"a","ts":1,"text":"x","to":"x"}'))
    with pytest.raises(p.ProtocolError, match="not UTF-8 JSON"):
        p.FrameDecoder().feed(frame(b"\xff\xfe"))


def test_file_digests_are_negotiated_and_version_1_peers_get_sha256() -> None:
    """An offer lists digests (unknown names skipped); a request names one it may use; a
    peer from before BLAKE3 sends neither field and is answered in SHA-256."""
    offer = p.decode_payload(json.dumps({
        "t": "file_offer", "transfer": "t1", "name": "a", "size": 1, "sha256": None,
        "hashes": ["k12", "blake3", "sha256"]}).encode())
    assert isinstance(offer, p.FileOffer) and offer.hashes == ("blake3", "sha256")
    old = p.decode_payload(b'{"t":"file_offer","transfer":"t1","name":"a","size":1,'
                           b'"sha256":null}')
    assert isinstance(old, p.FileOffer) and old.hashes == ()
    assert "hashes" not in p.FileOffer("t1", "a", 1, None).to_dict(), "version 1 shape"
    request = p.decode_payload(b'{"t":"file_request","transfer":"t1","index":0,"offset":0}')
    assert isinstance(request, p.FileRequest) and request.hash == p.SHA256
    assert "hash" not in request.to_dict()
    with pytest.raises(p.ProtocolError, match="'hash'"):
        p.decode_payload(b'{"t":"file_request","transfer":"t1","index":0,"offset":0,"hash":"md5"}')
    with pytest.raises(p.ProtocolError, match="'hashes'"):
        p.decode_payload(b'{"t":"file_offer","transfer":"t1","name":"a","size":1,'
                         b'"sha256":null,"hashes":"blake3"}')


def test_state_table_refuses_chat_before_handshake() -> None:
    """A chat message before authentication is a protocol error."""
    with pytest.raises(p.ProtocolError, match="unexpected 'msg'"):
        p.check_allowed(p.SessionState.HANDSHAKE, True, p.Chat("a", 1.0, "x"))
    p.check_allowed(p.SessionState.READY, True, p.Chat("a", 1.0, "x"))


def test_heartbeat_pings_when_idle_and_declares_silence_dead() -> None:
    """With a fake clock: ping after the interval once, dead after the limit."""
    hb = p.Heartbeat(now=0.0, interval=5.0, dead_after=15.0)
    assert hb.poll(1.0) is None
    assert hb.poll(5.0) == "ping"
    assert hb.poll(5.1) is None
    assert hb.next_deadline(5.1) == pytest.approx(10.0)
    hb.received(6.0)
    assert hb.poll(14.9) == "ping"
    assert hb.poll(21.0) == "dead"
