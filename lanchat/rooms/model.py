"""Room membership without a server (pure: no I/O, no clock).

Open rooms: the members are those whose own latest signed statement says "in". Private
rooms: the creator's latest signed member list, less members whose own statement says they
left. Statements, lists and topics are versioned; a higher version replaces a lower one,
so members that tell each other what they know in any order end up agreeing.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable
from dataclasses import dataclass, field

from lanchat.rooms.names import room_id
from lanchat.rooms.wire import MAX_ROOM_MEMBERS, RoomMember, RoomRoster, RoomTopic


class Verdict(enum.Enum):
    """What became of a statement from the network."""

    ACCEPTED = "accepted"
    STALE = "stale"  # not newer than what we hold: nothing to do
    REFUSED = "refused"  # not allowed (not a member, wrong creator, wrong kind): counted


@dataclass(frozen=True)
class Change:
    """Who joined and who left a room's effective member set."""

    joined: frozenset[str] = frozenset()
    left: frozenset[str] = frozenset()
    evicted: RoomMember | None = None  # a parted member's statement, forgotten for room

    def __bool__(self) -> bool:
        return bool(self.joined or self.left)


@dataclass
class Room:
    """One room as this node knows it."""

    name: str
    kind: str  # "open" or "private"
    creator: str | None = None  # private rooms: whose signed list counts
    joined: bool = False  # this node is in it
    roster: RoomRoster | None = None
    statements: dict[str, RoomMember] = field(default_factory=dict)
    topic: RoomTopic | None = None

    @property
    def key(self) -> str:
        """The room's id: its name (open), or its name and creator (private)."""
        return room_id(self.name, self.owner)

    @property
    def owner(self) -> str:
        """The creator of a private room as its frames name it; '' for an open room."""
        return (self.creator or "") if self.kind == "private" else ""

    def members(self) -> frozenset[str]:
        """The effective member set."""
        if self.kind == "open":
            return frozenset(m for m, s in self.statements.items() if s.joined)
        if self.roster is None:
            return frozenset()
        return frozenset(m for m in self.roster.members
                         if (s := self.statements.get(m)) is None or s.joined)

    def listed(self, node_id: str) -> bool:
        """True if `node_id` may be a member at all (any id in an open room)."""
        return self.kind == "open" or (self.roster is not None and node_id in self.roster.members)

    def may_post(self, author: str, ts_ms: int, from_author: bool) -> bool:
        """Whether a post by `author` signed at `ts_ms` is taken: a member's; or, relayed by
        someone else, one signed before its author parted (catch-up of what was said while
        in). A parted member cannot post; a stranger who never joined cannot post."""
        if author in self.members():
            return True
        s = self.statements.get(author)
        return (not from_author and s is not None and not s.joined and self.listed(author)
                and ts_ms <= s.ver)

    def nick_of(self, node_id: str) -> str | None:
        """The nick a member signed with, if known."""
        s = self.statements.get(node_id)
        return s.nick if s is not None else None

    def accept_statement(self, s: RoomMember) -> tuple[Verdict, Change]:
        """Apply a member's own signed statement (already verified)."""
        if s.rid != self.key or s.kind != self.kind or not self.listed(s.member):
            return Verdict.REFUSED, Change()
        held = self.statements.get(s.member)
        if held is not None and held.ver >= s.ver:
            return Verdict.STALE, Change()
        evicted = None
        if held is None and len(self.statements) >= MAX_ROOM_MEMBERS:
            # Keys cost nothing: a room keeps at most MAX_ROOM_MEMBERS statements. A
            # parted member's is forgotten first (the oldest), so a busy room keeps
            # taking members; members who are in are never pushed out.
            evicted = oldest_parted(self.statements.values())
            if evicted is None:
                return Verdict.REFUSED, Change()
            del self.statements[evicted.member]
        before = self.members()
        self.statements[s.member] = s
        diff = _diff(before, self.members())
        return Verdict.ACCEPTED, Change(diff.joined, diff.left, evicted)

    def accept_roster(self, r: RoomRoster) -> tuple[Verdict, Change]:
        """Apply the creator's signed member list (already verified)."""
        if self.kind != "private" or r.rid != self.key:
            return Verdict.REFUSED, Change()
        if self.roster is not None and self.roster.ver >= r.ver:
            return Verdict.STALE, Change()
        before = self.members()
        self.creator = r.creator
        self.roster = r
        return Verdict.ACCEPTED, _diff(before, self.members())

    def accept_topic(self, t: RoomTopic) -> Verdict:
        """Apply a signed topic from a member (already verified); the higher (ver, by) wins."""
        if t.rid != self.key or t.by not in self.members():
            return Verdict.REFUSED
        if self.topic is not None and (self.topic.ver, self.topic.by) >= (t.ver, t.by):
            return Verdict.STALE
        self.topic = t
        return Verdict.ACCEPTED


def oldest_parted(statements: Iterable[RoomMember]) -> RoomMember | None:
    """The parted member's statement with the lowest version, if any."""
    parted = [s for s in statements if not s.joined]
    return min(parted, key=lambda s: (s.ver, s.member)) if parted else None


def _diff(before: frozenset[str], after: frozenset[str]) -> Change:
    return Change(after - before, before - after)
