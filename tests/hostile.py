"""A hostile lanchat client, run as its own process (in a lab host): it proves a key like
any node, then sends what an honest node never would.

    python tests/hostile.py HOST PORT ACTION [--nick N] [--home DIR] [--count N] ...

Actions (each prints one JSON line of what happened):
  say      chat frames whose own `nick` field claims --claim and whose send time is --ts
  flood    chat frames as fast as the socket takes them for --seconds, ignoring slow_down
  offers   --count file offers
  nicks    nick frames with every kind of bad nick, then `--nick`
  keys     --count handshakes, each with a fresh key, --parallel at a time
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import secrets
import sys
import time
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from lanchat.identity import Identity, auth_payload, node_id_from_spki
from lanchat.protocol import (
    HEADER,
    Ack,
    Auth,
    Chat,
    FileAnswer,
    FileOffer,
    FrameDecoder,
    Hello,
    Message,
    NickChange,
    Ping,
    Pong,
    Refused,
    SlowDown,
    Welcome,
)
from lanchat.tls import client_context

BAD_NICKS = ["\u3164", "ali\u200bce", "bob\u202eevil", "\x1b[2Jx", "", "  ", "x" * 200]


class FreshKey:
    """An Ed25519 key made in memory (a client needs no certificate)."""

    def __init__(self) -> None:
        self.key = ed25519.Ed25519PrivateKey.generate()
        self.spki = self.key.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
        self.node_id = node_id_from_spki(self.spki)
        self.key_b64 = base64.b64encode(self.spki).decode()

    def sign(self, payload: bytes) -> str:
        return base64.b64encode(self.key.sign(payload)).decode()


class Conn:
    """One authenticated session, driven by hand."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader, self.writer = reader, writer
        self.decoder = FrameDecoder()
        self.acked: set[str] = set()
        self.slow_downs: list[float] = []
        self.refused = ""
        self.declined = 0

    async def read(self, wait_s: float) -> list[Message]:
        data = await asyncio.wait_for(self.reader.read(65536), wait_s)
        if not data:
            raise ConnectionError("closed")
        out = self.decoder.feed(data)
        for m in out:
            if isinstance(m, Ack):
                self.acked.update(m.ids)
            elif isinstance(m, SlowDown):
                self.slow_downs.append(m.retry_after)
            elif isinstance(m, Refused):
                self.refused = m.reason
            elif isinstance(m, FileAnswer) and not m.accept:
                self.declined += 1
            elif isinstance(m, Ping):
                self.send(Pong())
        return out

    def send(self, message: Message) -> None:
        # ASCII JSON: a lone surrogate goes out as the escape \\udXXXX, as a raw JSON
        # encoder in another language would send it
        body = {**message.to_dict(), "t": message.T}
        payload = json.dumps(body, ensure_ascii=True, separators=(",", ":")).encode()
        self.writer.write(HEADER.pack(len(payload)) + payload)

    async def drain_for(self, seconds: float) -> None:
        end = time.monotonic() + seconds
        while (left := end - time.monotonic()) > 0:
            try:
                await self.read(left)
            except (TimeoutError, ConnectionError):
                return


async def connect(host: str, port: int, key: Any, nick: str) -> Conn:
    """TCP, TLS, then the in-channel proof with `key`; raise ConnectionError if refused."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection(
        host, port, ssl=client_context(), server_hostname=None), 10)
    conn = Conn(reader, writer)
    hello = None
    while hello is None:
        for m in await conn.read(10):
            if isinstance(m, Hello):
                hello = m
    sig = key.sign(auth_payload(hello.nonce, hello.node_id, key.node_id))
    conn.send(Auth(key.node_id, nick, key.key_b64, sig, 0, instance=secrets.token_hex(8)))
    while True:
        for m in await conn.read(10):
            if isinstance(m, Welcome):
                return conn
        if conn.refused:
            raise ConnectionError(conn.refused)


def chat(text: str, ts: float, claim: str) -> Chat:
    return Chat(f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}", ts, text, False, claim)


async def act(args: argparse.Namespace) -> dict[str, Any]:
    key: Any = Identity.load_or_create(Path(args.home)) if args.home else FreshKey()
    if args.action == "keys":
        return await many_keys(args)
    conn = await connect(args.host, args.port, key, args.nick)
    out: dict[str, Any] = {"id": key.node_id}
    if args.action == "say":
        ids = []
        for i in range(args.count):
            msg = chat(f"{args.text} {i}" if args.count > 1 else args.text, args.ts, args.claim)
            ids.append(msg.msg_id)
            conn.send(msg)
        await conn.writer.drain()
        end = time.monotonic() + 10
        while not set(ids) <= conn.acked and time.monotonic() < end:
            await conn.drain_for(0.2)
        out["acked"] = len(set(ids) & conn.acked)
    elif args.action == "flood":
        text = "x" * args.size
        sent = 0
        closed = False
        end = time.monotonic() + args.seconds
        while time.monotonic() < end and not closed:
            try:
                for _ in range(50):
                    conn.send(chat(text, time.time(), args.nick))
                    sent += 1
                await conn.writer.drain()
                await conn.read(0.001)
            except TimeoutError:
                pass
            except (ConnectionError, OSError):
                closed = True
            closed = closed or conn.writer.is_closing() or conn.reader.at_eof()
        if not closed:
            await conn.drain_for(2.0)
        out.update(sent=sent, acked=len(conn.acked), slow_downs=len(conn.slow_downs),
                   closed=closed or conn.reader.at_eof(), refused=conn.refused)
    elif args.action == "offers":
        for i in range(args.count):
            conn.send(FileOffer(f"t{secrets.token_hex(8)}", f"junk{i}.bin", 1 << 20, None))
        await conn.writer.drain()
        await conn.drain_for(2.0)
        out["sent"] = args.count
        out["declined"] = conn.declined
    elif args.action == "nicks":
        for bad in BAD_NICKS:
            conn.send(NickChange(bad))
        conn.send(NickChange(args.nick))
        await conn.writer.drain()
        await conn.drain_for(1.0)
    conn.writer.close()
    return out


async def many_keys(args: argparse.Namespace) -> dict[str, Any]:
    """`count` sessions from this address, each with a key never seen before."""
    welcomed = refused = failed = 0
    reasons: dict[str, int] = {}
    gate = asyncio.Semaphore(args.parallel)

    async def one(i: int) -> None:
        nonlocal welcomed, refused, failed
        async with gate:
            try:
                conn = await connect(args.host, args.port, FreshKey(), f"{args.nick}{i}")
            except ConnectionError as exc:
                refused += 1
                reasons[str(exc)[:60]] = reasons.get(str(exc)[:60], 0) + 1
                return
            except (OSError, TimeoutError):
                failed += 1
                return
            welcomed += 1
            conn.writer.close()

    await asyncio.gather(*(one(i) for i in range(args.count)))
    return {"welcomed": welcomed, "refused": refused, "failed": failed, "reasons": reasons}


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("host")
    p.add_argument("port", type=int)
    p.add_argument("action", choices=["say", "flood", "offers", "nicks", "keys"])
    p.add_argument("--nick", default="mallory")
    p.add_argument("--home", default="")
    p.add_argument("--claim", default="")
    p.add_argument("--ts", type=float, default=0.0)
    p.add_argument("--text", default="hello")
    p.add_argument("--text-json", default="", help="the text as a JSON string (lone surrogates)")
    p.add_argument("--count", type=int, default=1)
    p.add_argument("--seconds", type=float, default=3.0)
    p.add_argument("--size", type=int, default=16000)
    p.add_argument("--parallel", type=int, default=32)
    args = p.parse_args()
    if not args.ts:
        args.ts = time.time()
    if args.text_json:
        args.text = json.loads(args.text_json)
    print(json.dumps(asyncio.run(act(args))), flush=True)


if __name__ == "__main__":
    sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
    main()
