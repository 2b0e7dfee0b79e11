"""Invitations waiting for the user's consent (pure: the caller gives the clock).

A private room's signed list that newly names this node is an invitation: it is kept
here, shown, and joined only when the user accepts it (`/join`). Anyone can sign a list,
so what strangers can make us keep is bounded: so many invitations in all, so many from
one inviter (a newer list of the same room replaces its older one), each for so long.
"""

from __future__ import annotations

from dataclasses import dataclass

from lanchat.rooms.wire import RoomRoster

MAX_INVITES = 32  # pending invitations in all
MAX_INVITES_PER_INVITER = 4  # pending invitations from one creator's key
INVITE_TTL_S = 24 * 3600.0  # an invitation not answered within a day is dropped


@dataclass(frozen=True)
class Invite:
    """A private room's list naming this node, as its creator sent it."""

    roster: RoomRoster
    since: float  # when it came (the caller's clock, seconds)

    @property
    def rid(self) -> str:
        """The room's id."""
        return self.roster.rid

    @property
    def expires(self) -> float:
        """When it is dropped unless answered."""
        return self.since + INVITE_TTL_S


class Invites:
    """Pending invitations by room id, bounded and expiring."""

    def __init__(self) -> None:
        self.pending: dict[str, Invite] = {}

    def prune(self, now: float) -> list[Invite]:
        """Drop and return the invitations past their time."""
        old = [i for i in self.pending.values() if i.expires <= now]
        for i in old:
            del self.pending[i.rid]
        return old

    def offer(self, roster: RoomRoster, now: float) -> Invite | None:
        """Keep an invitation (or a newer list of a pending one); None if refused
        (over a bound) or stale. The caller checked the signature and that it names us."""
        self.prune(now)
        held = self.pending.get(roster.rid)
        if held is not None:
            if held.roster.ver >= roster.ver:
                return None
            self.pending[roster.rid] = Invite(roster, held.since)
            return None  # the same invitation, updated: nothing new to show
        by_inviter = sum(1 for i in self.pending.values()
                         if i.roster.creator == roster.creator)
        if len(self.pending) >= MAX_INVITES or by_inviter >= MAX_INVITES_PER_INVITER:
            raise OverflowError("too many pending invitations")
        invite = self.pending[roster.rid] = Invite(roster, now)
        return invite

    def withdraw(self, roster: RoomRoster) -> Invite | None:
        """A newer list that no longer names us: the invitation is gone."""
        held = self.pending.get(roster.rid)
        if held is not None and held.roster.ver < roster.ver:
            return self.pending.pop(roster.rid)
        return None

    def take(self, rid: str) -> Invite | None:
        """Remove an invitation (accepted or declined)."""
        return self.pending.pop(rid, None)
