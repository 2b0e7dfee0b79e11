"""Baseline: plain Python TLS 1.3 (and raw TCP) with small length-prefixed frames.

Runs inside a lab namespace (started by bench_messaging through `Host.popen`).

    python -m bench._tls_baseline server --ip IP --cert C --key K
        prints {"kind": "listening", "tls_port": P, "raw_port": Q}; serves connections one
        at a time until stdin closes.
    python -m bench._tls_baseline client --ip IP --port P [--tls] --mode pingpong|stream
        --n N --size BYTES [--warmup W]
        prints one JSON result line.

Every connection starts with a 5-byte header: mode ("p" ping-pong, "s" stream) and a
4-byte big-endian count. Frames are a 4-byte big-endian length and a payload, sent one
`sendall` each (one TLS record per frame), like lanchat writes one frame per message.
The stream receiver only splits frames (no JSON decoding), then answers one byte.
Both ends use TCP_NODELAY; the server context matches lanchat's (TLS 1.3 only, no
tickets, no client certificate) and shows the same kind of Ed25519 certificate.
"""

from __future__ import annotations

import argparse
import json
import os
import socket
import struct
import sys
import threading
import time

from lanchat.tls import client_context, tls_server_context

HEADER = struct.Struct(">I")
START = struct.Struct(">cI")


# The same TLS settings as lanchat's sessions, by construction.
server_ctx = tls_server_context
client_ctx = client_context


def recv_exact(sock: socket.socket, n: int) -> bytes:
    buf = bytearray(n)
    view = memoryview(buf)
    got = 0
    while got < n:
        k = sock.recv_into(view[got:], n - got)
        if k == 0:
            raise ConnectionError("peer closed")
        got += k
    return bytes(buf)


def serve_one(conn: socket.socket) -> None:
    conn.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    mode, count = START.unpack(recv_exact(conn, START.size))
    if mode == b"p":
        for _ in range(count):
            (length,) = HEADER.unpack(recv_exact(conn, 4))
            payload = recv_exact(conn, length)
            conn.sendall(HEADER.pack(length) + payload)
    elif mode == b"s":
        buf = bytearray()
        seen = 0
        while seen < count:
            data = conn.recv(262144)
            if not data:
                raise ConnectionError("peer closed mid-stream")
            buf += data
            pos, end = 0, len(buf)
            while end - pos >= 4:
                (length,) = HEADER.unpack_from(buf, pos)
                if end - pos - 4 < length:
                    break
                pos += 4 + length
                seen += 1
            del buf[:pos]
        conn.sendall(b"k")
    # wait for the client to close
    try:
        conn.recv(1)
    except OSError:
        pass


def server(args: argparse.Namespace) -> None:
    ctx = server_ctx(args.cert, args.key)
    tls_l = socket.create_server((args.ip, 0))
    raw_l = socket.create_server((args.ip, 0))

    def accept_loop(listener: socket.socket, wrap: bool) -> None:
        while True:
            conn, _ = listener.accept()
            try:
                if wrap:
                    conn = ctx.wrap_socket(conn, server_side=True)
                serve_one(conn)
            except (OSError, ConnectionError) as exc:
                print(f"baseline server: {exc}", file=sys.stderr)
            finally:
                conn.close()

    for listener, wrap in ((tls_l, True), (raw_l, False)):
        threading.Thread(target=accept_loop, args=(listener, wrap), daemon=True).start()
    print(json.dumps({"kind": "listening", "tls_port": tls_l.getsockname()[1],
                      "raw_port": raw_l.getsockname()[1]}), flush=True)
    sys.stdin.read()  # until the bench closes our stdin
    os._exit(0)


def client(args: argparse.Namespace) -> None:
    sock = socket.create_connection((args.ip, args.port), timeout=30)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    if args.tls:
        sock = client_ctx().wrap_socket(sock)
    frame = HEADER.pack(args.size - 4) + b"x" * (args.size - 4)
    result: dict[str, object] = {"kind": args.mode, "tls": args.tls, "frame_bytes": args.size}
    if args.mode == "pingpong":
        total = args.warmup + args.n
        sock.sendall(START.pack(b"p", total))
        samples = []
        clock = time.perf_counter
        for i in range(total):
            t0 = clock()
            sock.sendall(frame)
            (length,) = HEADER.unpack(recv_exact(sock, 4))
            recv_exact(sock, length)
            if i >= args.warmup:
                samples.append(clock() - t0)
        result["samples_s"] = samples
    else:
        sock.sendall(START.pack(b"s", args.n))
        t0 = time.perf_counter()
        send = sock.sendall
        for _ in range(args.n):
            send(frame)
        t_sent = time.perf_counter()
        if recv_exact(sock, 1) != b"k":
            raise ConnectionError("bad answer")
        t_done = time.perf_counter()
        result.update(n=args.n, seconds=t_done - t0, send_seconds=t_sent - t0,
                      rate=args.n / (t_done - t0))
    sock.close()
    print(json.dumps(result), flush=True)


def main() -> None:
    p = argparse.ArgumentParser()
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("server")
    s.add_argument("--ip", required=True)
    s.add_argument("--cert", required=True)
    s.add_argument("--key", required=True)
    c = sub.add_parser("client")
    c.add_argument("--ip", required=True)
    c.add_argument("--port", type=int, required=True)
    c.add_argument("--tls", action="store_true")
    c.add_argument("--mode", choices=("pingpong", "stream"), required=True)
    c.add_argument("--n", type=int, required=True)
    c.add_argument("--size", type=int, default=160)
    c.add_argument("--warmup", type=int, default=200)
    args = p.parse_args()
    server(args) if args.cmd == "server" else client(args)


if __name__ == "__main__":
    main()
