"""A scriptable XEP-0174 (Bonjour chat) peer for the lab, friendly or hostile.

Run inside a lab host: ``python tests/xmpp_peer.py --ip IP --name bob@h2``. It announces
`_presence._tcp` on IP (unless --silent), browses, listens, and speaks JSON lines:
events on stdout (``ready``, ``peer``, ``gone``, ``message``, ``closed``, ``result``), commands
on stdin, one JSON object each:

    {"cmd": "send", "to": INSTANCE, "text": "..."}      a chat message (reuses a stream)
    {"cmd": "entity", "to": INSTANCE}                  a stream with a DTD and entities
    {"cmd": "huge", "to": INSTANCE, "mb": 100}         one stanza of that many MB
    {"cmd": "spoof", "ip": IP, "port": N, "as": NAME}  a stream claiming NAME (not announced here)
    {"cmd": "quit"}                                    close streams, goodbye, exit
"""

from __future__ import annotations

import argparse
import json
import queue
import socket
import sys
import threading
import xml.etree.ElementTree as ET
from typing import Any
from xml.sax.saxutils import escape

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

TYPE = "_presence._tcp.local."
NS = "{jabber:client}"
HDR = ("<?xml version='1.0' encoding='UTF-8'?><stream:stream xmlns='jabber:client' "
       "xmlns:stream='http://etherx.jabber.org/streams' from='{me}' to='{peer}' version='1.0'>")
MSG = "<message from='{me}' to='{peer}' type='chat'><body>{text}</body></message>"

out_lock = threading.Lock()


def emit(event: str, **fields: Any) -> None:
    with out_lock:
        print(json.dumps({"event": event, **fields}), flush=True)


class Stream:
    """One connection, either direction; read on its own thread."""

    def __init__(self, peer: Peer, sock: socket.socket, instance: str, server: bool) -> None:
        self.peer, self.sock, self.instance, self.server = peer, sock, instance, server
        self.lock = threading.Lock()
        threading.Thread(target=self.read, daemon=True).start()

    def send(self, data: bytes) -> None:
        with self.lock:
            self.sock.sendall(data)

    def read(self) -> None:
        parser = ET.XMLPullParser(events=("start", "end"))
        depth = 0
        try:
            while True:
                data = self.sock.recv(65536)
                if not data:
                    break
                parser.feed(data)
                for kind, elem in parser.read_events():
                    if kind == "start":
                        depth += 1
                        if depth == 1:
                            if self.server:
                                self.instance = elem.get("from", "")
                                self.send(HDR.format(me=self.peer.name,
                                                     peer=self.instance).encode())
                                self.peer.streams[self.instance] = self
                            emit("stream", peer=self.instance, server=self.server)
                        continue
                    depth -= 1
                    if depth == 0:
                        emit("closed", peer=self.instance, clean=True)
                        self.sock.close()
                        return
                    if depth == 1 and elem.tag == NS + "message":
                        body = elem.find(NS + "body")
                        html = elem.find("{http://jabber.org/protocol/xhtml-im}html")
                        if self.peer.echo and body is not None:
                            self.peer.echoed(self, "".join(body.itertext()))
                            continue
                        emit("message", **{"from": elem.get("from", ""), "peer": self.instance,
                                           "text": "".join(body.itertext()) if body is not None
                                           else None, "html": html is not None})
        except (OSError, ET.ParseError) as exc:
            emit("closed", peer=self.instance, clean=False, error=str(exc))
            return
        emit("closed", peer=self.instance, clean=False)


class Peer:
    def __init__(self, ip: str, name: str, port: int, silent: bool,
                 echo: bool = False) -> None:
        self.ip, self.name, self.port = ip, name, port
        self.echo = echo  # answer "ping X" with "pong X", count the rest (benchmarks)
        self.count = 0
        self.buddies: dict[str, tuple[str, int]] = {}
        self.streams: dict[str, Stream] = {}
        self.zc = Zeroconf(interfaces=[ip], ip_version=IPVersion.V4Only)
        self.listener = socket.create_server((ip, port))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self.accept, daemon=True).start()
        self.info: ServiceInfo | None = None
        if not silent:
            self.info = ServiceInfo(
                TYPE, f"{name}.{TYPE}", addresses=[socket.inet_aton(ip)], port=self.port,
                server=f"{name.replace('@', '-')}.local.",
                properties={"txtvers": "1", "1st": name.split("@")[0].title(),
                            "port.p2pj": str(self.port), "status": "avail", "msg": ""})
            self.zc.register_service(self.info)
        self.todo: queue.SimpleQueue[str] = queue.SimpleQueue()
        ServiceBrowser(self.zc, TYPE, handlers=[self.changed])
        threading.Thread(target=self.resolve, daemon=True).start()

    def changed(self, zeroconf: Zeroconf, service_type: str, name: str,
                state_change: ServiceStateChange) -> None:
        if state_change is ServiceStateChange.Removed:
            emit("gone", peer=name[:-len(TYPE) - 1])
        else:
            self.todo.put(name)

    def echoed(self, stream: Stream, text: str) -> None:
        """Echo mode: a ping is answered on the same stream, anything else is counted."""
        if text.startswith("ping "):
            stream.send(MSG.format(me=self.name, peer=stream.instance,
                                   text=escape("pong " + text[5:])).encode())
        else:
            self.count += 1
            emit("count", n=self.count)

    def resolve(self) -> None:
        while True:
            name = self.todo.get()
            instance = name[:-len(TYPE) - 1]
            if instance == self.name:
                continue
            info = self.zc.get_service_info(TYPE, name, timeout=3000)
            if info is None:
                continue
            addresses = info.parsed_addresses(IPVersion.V4Only)
            if addresses:
                self.buddies[instance] = (addresses[0], info.port or 0)
                txt = {k.decode(): (v or b"").decode() for k, v in info.properties.items()}
                emit("peer", peer=instance, address=addresses[0], port=info.port, txt=txt)

    def accept(self) -> None:
        while True:
            sock, _ = self.listener.accept()
            Stream(self, sock, "", server=True)

    def stream_to(self, instance: str) -> Stream:
        stream = self.streams.get(instance)
        if stream is not None:
            return stream
        address, port = self.buddies[instance]
        sock = socket.create_connection((address, port), timeout=5)
        sock.settimeout(None)
        stream = Stream(self, sock, instance, server=False)
        stream.send(HDR.format(me=self.name, peer=instance).encode())
        self.streams[instance] = stream
        return stream

    def command(self, cmd: dict[str, Any]) -> None:
        what = cmd["cmd"]
        if what == "send":
            to = cmd["to"]
            self.stream_to(to).send(MSG.format(me=self.name, peer=to,
                                               text=escape(cmd["text"])).encode())
            emit("result", cmd="send", ok=True)
        elif what == "entity":
            address, port = self.buddies[cmd["to"]]
            bomb = ("<?xml version='1.0'?><!DOCTYPE s [<!ENTITY a 'aaaaaaaaaa'>"
                    + "".join(f"<!ENTITY {c} '{('&' + p + ';') * 10}'>"
                              for p, c in zip("abcdefgh", "bcdefghi", strict=True))
                    + "]>" + HDR.format(me=self.name, peer=cmd["to"])
                    + "<message type='chat'><body>&i;</body></message>")
            emit("result", cmd="entity", **self.attack(address, port, bomb.encode()))
        elif what == "huge":
            address, port = self.buddies[cmd["to"]]
            head = (HDR.format(me=self.name, peer=cmd["to"])
                    + "<message type='chat'><body>").encode()
            emit("result", cmd="huge", **self.attack(address, port, head,
                                                     filler_mb=int(cmd.get("mb", 100))))
        elif what == "spoof":
            emit("result", cmd="spoof", **self.attack(
                cmd["ip"], int(cmd["port"]),
                HDR.format(me=cmd["as"], peer="x").encode() + MSG.format(
                    me=cmd["as"], peer="x", text="spoofed").encode()))
        elif what == "quit":
            for stream in list(self.streams.values()):
                try:
                    stream.send(b"</stream:stream>")
                except OSError:
                    pass
            if self.info is not None:
                self.zc.unregister_service(self.info)
            self.zc.close()
            emit("result", cmd="quit", ok=True)
            sys.exit(0)

    def attack(self, address: str, port: int, head: bytes, filler_mb: int = 0) -> dict[str, Any]:
        """Send `head` (then `filler_mb` MB of text); report what was sent and answered."""
        sock = socket.create_connection((address, port), timeout=5)
        sent = 0
        answer = b""
        try:
            sock.sendall(head)
            sent = len(head)
            chunk = b"A" * 65536
            for _ in range(filler_mb * 16):
                sock.sendall(chunk)
                sent += len(chunk)
        except OSError:
            pass
        try:
            while True:
                data = sock.recv(65536)
                if not data:
                    break
                answer += data
        except OSError:
            pass
        sock.close()
        return {"sent": sent, "answer": answer.decode("utf-8", "replace")[-400:]}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ip", required=True)
    ap.add_argument("--name", required=True)
    ap.add_argument("--port", type=int, default=0)
    ap.add_argument("--silent", action="store_true", help="do not announce")
    ap.add_argument("--echo", action="store_true", help="answer pings, count other messages")
    args = ap.parse_args()
    peer = Peer(args.ip, args.name, args.port, args.silent, args.echo)
    emit("ready", port=peer.port)
    for line in sys.stdin:
        if line.strip():
            try:
                peer.command(json.loads(line))
            except (KeyError, OSError, ValueError) as exc:
                emit("result", ok=False, error=f"{type(exc).__name__}: {exc}")


if __name__ == "__main__":
    main()
