"""A lanchat node that misbehaves in rooms, run inside a lab host by the room lab tests.

    python room_peer.py MODE HOME ROOM_ID VICTIM_ID MEMBER_ID@HOST:PORT...

MODE `intrude`: a peer that is not on a private room's list but knows its id (name and
creator) dials every member, claims to be in the room, asks for its history and posts to it.
MODE `forge`: a member of an open room relays to the others a message that names VICTIM_ID
as its author but is not signed by the victim's key.
It prints one JSON line when its frames are acked ({"acked": n}), then on stdin EOF one
line saying what it received of ROOM ({"frames": n, "messages": n}), and exits.
"""

from __future__ import annotations

import json
import sys
import threading
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from lanchat import discovery  # noqa: E402
from lanchat.api import PeerSession  # noqa: E402
from lanchat.config import Config  # noqa: E402
from lanchat.delivery import new_message_id  # noqa: E402
from lanchat.events import Event  # noqa: E402
from lanchat.node import Node  # noqa: E402
from lanchat.protocol import Message  # noqa: E402
from lanchat.rooms import Rooms  # noqa: E402
from lanchat.rooms.names import split_id  # noqa: E402
from lanchat.rooms.wire import RoomMember, RoomMsg, RoomSync, sign  # noqa: E402

WAIT_S = 30.0


class Watching(Rooms):
    """Rooms that also count every room frame that reaches this node for one room."""

    def __init__(self, room: str) -> None:
        super().__init__()
        self.watched = room
        self.frames = 0

    def on_message(self, session: PeerSession, message: Message) -> bool:
        if getattr(message, "rid", None) == self.watched:
            self.frames += 1
        return super().on_message(session, message)

    def admit(self, peer_id: str, frames: list[Message]) -> list[Message]:
        self.frames += sum(1 for f in frames if getattr(f, "rid", None) == self.watched)
        return super().admit(peer_id, frames)


def main(argv: list[str]) -> int:
    mode, home, rid, victim, *addresses = argv
    room, creator = split_id(rid)
    rooms = Watching(rid)
    node = Node(Config(home=Path(home), nick=mode, port=0, peers=addresses, mdns=False))
    discovery.attach(node)  # it joins the LAN like anyone: the beacon announces it
    node.add_extension(rooms)
    # Exactly the members it was pointed at, by id: the beacon may show others first.
    members = [a.split("@", 1)[0] for a in addresses]
    acked: set[tuple[str, str]] = set()
    cond = threading.Condition()

    def on_event(event: Event) -> None:
        with cond:
            if event.name == "delivered":
                acked.add((event["to"], event["id"]))
            cond.notify_all()  # a delivery, or a peer coming online

    node.subscribe(on_event)
    node.start()
    ident = node.identity
    with cond:
        if not cond.wait_for(lambda: set(members) <= _online(node), WAIT_S):
            raise SystemExit("members not reached")
    frames: list[RoomMsg] = []
    if mode == "intrude":
        claim = sign(RoomMember(room, ident.node_id, ident.key_b64, "private", True,
                                1 << 40, "intruder", creator=creator), ident.sign)
        for peer in members:
            node.send_control(peer, claim)
            node.send_control(peer, RoomSync(room, (), None, creator))
        frames.append(sign(RoomMsg(room, new_message_id(), ident.node_id, ident.key_b64, 1,
                                   0, "intruder", "let me in", creator=creator), ident.sign))
    else:
        rooms.join(room)
        key = _key_of(node, rooms, room, victim)
        fake = RoomMsg(room, new_message_id(), victim, key, 1 << 30, 0, "victim",
                       "forged words")
        frames.append(sign(fake, ident.sign))
    for frame in frames:
        node.queue_frame(members, frame)
    want = {(p, f.msg_id) for p in members for f in frames}
    with cond:
        if not cond.wait_for(lambda: want <= acked, WAIT_S):
            raise SystemExit(f"frames not acked: {len(want - acked)} left")
    print(json.dumps({"acked": len(want), "members": members}), flush=True)
    sys.stdin.read()
    received = node.store.read(lambda db: db.execute(
        "SELECT count(*) FROM room_log WHERE room=? AND author!=?",
        (rid, ident.node_id)).fetchone()[0])
    print(json.dumps({"frames": rooms.frames, "messages": received}), flush=True)
    node.close()
    return 0


def _online(node: Node) -> set[str]:
    return {p["id"] for p in node.peers() if p["online"] and p.get("connected")}


def _key_of(node: Node, rooms: Rooms, room: str, member: str) -> str:
    """The victim's key, from its signed statement (waits until the statement is here)."""
    def look() -> str | None:
        s = rooms.rooms[room].statements.get(member)
        return s.key if s is not None else None
    done = threading.Event()
    key: list[Any] = [None]

    def poll() -> None:
        key[0] = look()
        if key[0] is not None:
            done.set()
        else:
            node.runtime.loop.call_later(0.05, poll)
    node.runtime.call_soon(poll)
    if not done.wait(WAIT_S):
        raise SystemExit("victim's statement never came")
    return str(key[0])


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
