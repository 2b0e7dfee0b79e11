"""Slash commands for rooms: a plugin through `lanchat_register_commands`, like any other.

`/msg #room TEXT`, `/chat #room` and plain lines reach rooms through the '#' target.
"""

from __future__ import annotations

from typing import Any

from lanchat.commands import CommandError, CommandRegistry, Context, Output, split_words
from lanchat.hookspecs import hookimpl
from lanchat.rooms import RoomError, Rooms, is_room, rooms_of
from lanchat.rooms.render import invitation_line
from lanchat.text import safe_line, safe_text


def _rooms(ctx: Context) -> Rooms:
    rooms = rooms_of(ctx.node)
    if rooms is None:
        raise CommandError("rooms are not enabled in this node")
    return rooms


def _run(fn: Any, *args: Any) -> Any:
    try:
        return fn(*args)
    except (RoomError, ValueError) as exc:
        raise CommandError(str(exc)) from None
    except LookupError as exc:
        raise CommandError(str(exc).strip("'\"")) from None


def _current(ctx: Context, words: list[str], usage: str) -> tuple[str, list[str], bool]:
    """The room named first, else the current target if it is a room (then `exact`: the
    target is a room's id)."""
    if words and is_room(words[0]):
        return words[0], words[1:], words[0] == ctx.target
    if is_room(ctx.target):
        return ctx.target, words, True
    raise CommandError(f"usage: {usage}")


def _send(ctx: Context, room: str, text: str) -> Output:
    sent = _run(_rooms(ctx).post, room, text, room == ctx.target)
    n = len(sent["members"])
    return Output(f"-> {safe_line(sent['room'])} ({n}): {safe_text(text)}", sent)


def _join(ctx: Context, args: str) -> Output | None:
    words = split_words(args)
    if not words or len(words) > 2 or (len(words) == 2 and words[1] != "private"):
        raise CommandError("usage: /join #ROOM [private]")
    view = _run(_rooms(ctx).join, words[0], len(words) == 2)
    ctx.target = view["room_id"]
    nicks = ", ".join(safe_line(m["nick"]) for m in view["members"])
    return Output(f"in {view['room']} ({view['kind']}): {nicks}; plain lines now go there",
                  view)


def _part(ctx: Context, args: str) -> Output | None:
    room, rest, exact = _current(ctx, split_words(args), "/part [#ROOM]")
    if rest:
        raise CommandError("usage: /part [#ROOM]")
    done = _run(_rooms(ctx).part, room, exact)
    if ctx.target == done["room_id"]:
        ctx.target = "all"
    return Output(f"left {done['room']}", done)


def _peer_and_room(ctx: Context, args: str, usage: str) -> tuple[str, str]:
    words = split_words(args)
    if len(words) != 2 or not is_room(words[1]):
        raise CommandError(f"usage: {usage}")
    return words[0], words[1]


def _invite(ctx: Context, args: str) -> Output | None:
    peer, room = _peer_and_room(ctx, args, "/invite PEER #ROOM")
    done = _run(_rooms(ctx).invite, peer, room)
    return Output(f"invited {safe_line(peer)} to {done['room']}", done)


def _kick(ctx: Context, args: str) -> Output | None:
    peer, room = _peer_and_room(ctx, args, "/kick PEER #ROOM")
    done = _run(_rooms(ctx).kick, peer, room)
    return Output(f"{safe_line(peer)} is no longer in {done['room']}", done)


def _topic(ctx: Context, args: str) -> Output | None:
    first, _, rest = args.strip().partition(" ")
    if first and is_room(first):
        room, text = first, rest.strip()
    elif is_room(ctx.target):
        room, text = ctx.target, args.strip()
    else:
        raise CommandError("usage: /topic [#ROOM] [TEXT]")
    exact = room == ctx.target
    if not text:
        view = _run(_rooms(ctx).info, room, exact)
        return Output(f"{view['room']}: {safe_text(view['topic']) or '(no topic)'}",
                      {"room": view["room"], "room_id": view["room_id"],
                       "topic": view["topic"]})
    done = _run(_rooms(ctx).set_topic, room, text, exact)
    return Output(f"{done['room']} topic: {safe_text(text)}", done)


def _names(ctx: Context, args: str) -> Output | None:
    room, rest, exact = _current(ctx, split_words(args), "/names [#ROOM]")
    if rest:
        raise CommandError("usage: /names [#ROOM]")
    view = _run(_rooms(ctx).info, room, exact)
    names = " ".join(safe_line(m["nick"]) + ("" if m["online"] else "(away)")
                     for m in view["members"])
    return Output(f"{view['room']} ({view['kind']}, {len(view['members'])}): {names}", view)


def _list_rooms(ctx: Context, args: str) -> Output | None:
    rows = _rooms(ctx).listing()
    if not rows:
        return Output("no open rooms announced yet; /join #NAME makes one", [])
    lines = [f"{r['room']:<24} {r['kind']:<8} {r['members']:>3} members"
             + ("  (joined)" if r["joined"] else "")
             + (f"  {safe_text(r['topic'])}" if r["topic"] else "") for r in rows]
    return Output("\n".join(lines), rows)


def _invites(ctx: Context, args: str) -> Output | None:
    words = split_words(args)
    if words and (len(words) != 2 or words[0] != "decline" or not is_room(words[1])):
        raise CommandError("usage: /invites [decline #ROOM]  (/join #ROOM accepts)")
    if words:
        done = _run(_rooms(ctx).decline, words[1])
        return Output(f"declined {safe_line(done['room'])}", done)
    rows = _rooms(ctx).invitations()
    if not rows:
        return Output("no invitations waiting", [])
    lines = [invitation_line(r) for r in rows]
    return Output("\n".join(lines), rows)


@hookimpl
def lanchat_register_commands(registry: CommandRegistry) -> None:
    """The room commands, and '#' as a message target."""
    registry.add_target("#", _send)
    registry.add("join", _join, help="join an open room (made if new), accept an "
                 "invitation, or make a private room",
                 usage="/join #ROOM [private]")
    registry.add("part", _part, help="leave a room", usage="/part [#ROOM]")
    registry.add("invite", _invite, help="bring a peer into a room (private: its creator)",
                 usage="/invite PEER #ROOM")
    registry.add("kick", _kick, help="drop a peer from a private room (its creator)",
                 usage="/kick PEER #ROOM")
    registry.add("topic", _topic, help="show or set a room's topic",
                 usage="/topic [#ROOM] [TEXT]")
    registry.add("names", _names, help="who is in a room", usage="/names [#ROOM]")
    registry.add("rooms", _list_rooms, help="open rooms on the LAN and yours", usage="/rooms")
    registry.add("invites", _invites, help="invitations to private rooms waiting for you: "
                 "/join #ROOM accepts one, /invites decline #ROOM says no",
                 usage="/invites [decline #ROOM]")
