"""Names to keys and keys to names: what a typed peer name means, and how a peer is shown.

A peer *is* its key. A typed name resolves to exactly one known key or is refused:
a name held by more than one known key (the same text, or names that look alike by
TR 39 skeletons), online or not, is ambiguous, and the refusal lists the candidates. A
list number, `NICK#PREFIX` (a prefix of the id) and a full id always work.

On screen a name carries a short id suffix (`alice#k3f9`) whenever another known peer's
name is the same or looks alike, and a mark when the peer is verified or trusted.

Peers are anything with `id`, `nick` and optionally `number`, `online`, `trust`, as
mapping keys (the contract's peer object) or attributes (the table's `Peer`, the shell's
snapshots). No I/O, no clock.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any, TypeVar

from lanchat.identity import fingerprint, short_id
from lanchat.nicks import look_alike_keys
from lanchat.text import safe_line

P = TypeVar("P")

MIN_SUFFIX_CHARS = 4  # id characters after '#' on screen (more only if 4 are not unique)
MIN_PREFIX_CHARS = 4  # a bare id prefix must be at least this long
TRUST_MARKS = {"verified": "\u2713", "trusted": "\u2605"}  # check mark, star
UNKNOWN_TRUST = "new"


def field(peer: Any, key: str, default: Any = None) -> Any:
    """A field of a peer given as a mapping or as an object."""
    if isinstance(peer, Mapping):
        return peer.get(key, default)
    return getattr(peer, key, default)


@dataclass(frozen=True)
class Candidate:
    """One of several peers a name could mean."""

    number: int
    id: str
    nick: str
    trust: str
    online: bool

    def line(self) -> str:
        """How the candidate is listed for the user."""
        state = "online" if self.online else "offline"
        return (f"  {self.number:>3}  {safe_line(self.nick)}#{self.id[:MIN_SUFFIX_CHARS]}"
                f"  {short_id(self.id)}  {self.trust}, {state}")


class AmbiguousName(LookupError):
    """More than one known key goes by this name; `candidates` lists them."""

    def __init__(self, ref: str, candidates: list[Candidate]) -> None:
        self.ref = ref
        self.candidates = candidates
        lines = "\n".join(c.line() for c in candidates)
        super().__init__(
            f"{len(candidates)} known peers go by {safe_line(ref)!r} (or a name that looks "
            f"like it); nothing was sent. Name one by its list number or as NICK#ID:\n{lines}")

    def __str__(self) -> str:
        return str(self.args[0])


def candidate(peer: Any) -> Candidate:
    """The listing of one peer."""
    return Candidate(int(field(peer, "number", 0) or 0), str(field(peer, "id")),
                     str(field(peer, "nick", "")),
                     str(field(peer, "trust", None) or UNKNOWN_TRUST),
                     bool(field(peer, "online", False)))


def _ambiguous(ref: str, found: list[P]) -> P:
    if len(found) == 1:
        return found[0]
    ordered = sorted(found, key=lambda p: int(field(p, "number", 0) or 0))
    raise AmbiguousName(ref, [candidate(p) for p in ordered])


def resolve(ref: str, known: Iterable[P]) -> P:
    """The one known peer `ref` names: a list number, a full id, `NICK#PREFIX`, a nick, or
    an id prefix. Raises AmbiguousName (a LookupError) or LookupError, each with a message
    for the user. Never chooses by who is online."""
    peers = list(known)
    ref = ref.strip()
    if not ref or ref == "#":
        raise LookupError("name a peer: a nick, a list number or an id")
    if ref.isdigit():
        for peer in peers:
            if field(peer, "number") == int(ref):
                return peer
        raise LookupError(f"no peer number {ref}; /list shows the numbers")
    for peer in peers:
        if field(peer, "id") == ref:
            return peer
    name, hashed, prefix = ref.rpartition("#")
    if hashed:
        compact = prefix.replace("-", "").lower()
        if compact:
            keys = look_alike_keys(name) if name else None
            found = [p for p in peers if str(field(p, "id")).startswith(compact)
                     and (keys is None or keys & look_alike_keys(str(field(p, "nick"))))]
            if found:
                return _ambiguous(ref, found)
    keys = look_alike_keys(ref)
    by_name = [p for p in peers if keys & look_alike_keys(str(field(p, "nick", "")))]
    if by_name:
        return _ambiguous(ref, by_name)
    compact = ref.lstrip("#").replace("-", "").lower()
    if len(compact) >= MIN_PREFIX_CHARS:
        by_id = [p for p in peers if str(field(p, "id")).startswith(compact)]
        if len(by_id) > 1:
            raise AmbiguousName(ref, [candidate(p) for p in by_id])
        if by_id:
            return by_id[0]
    raise LookupError(f"no peer {safe_line(ref)!r}; /list shows who is here")


class NameIndex:
    """Which known names collide or look alike; build once per snapshot of the peers."""

    def __init__(self, known: Iterable[Any]) -> None:
        self._by_key: dict[str, set[str]] = {}
        self._ids: list[str] = []
        for peer in known:
            pid = str(field(peer, "id"))
            self._ids.append(pid)
            for key in look_alike_keys(str(field(peer, "nick", ""))):
                self._by_key.setdefault(key, set()).add(pid)
        self._ids.sort()

    def look_alikes(self, peer_id: str, nick: str) -> set[str]:
        """Other known ids whose names are the same as `nick` or look like it."""
        out: set[str] = set()
        for key in look_alike_keys(nick):
            out |= self._by_key.get(key, set())
        out.discard(peer_id)
        return out

    def suffix(self, peer_id: str) -> str:
        """The shortest id prefix (at least MIN_SUFFIX_CHARS) no other known id shares."""
        n = MIN_SUFFIX_CHARS
        for other in self._ids:
            if other == peer_id:
                continue
            while n < len(peer_id) and other[:n] == peer_id[:n]:
                n += 1
        return peer_id[:n]

    def handle(self, peer: Any) -> str:
        """What to type for this peer: the nick, or `nick#prefix` if the nick is shared."""
        pid, nick = str(field(peer, "id")), str(field(peer, "nick", ""))
        if self.look_alikes(pid, nick):
            return f"{nick}#{self.suffix(pid)}"
        return nick

    def display(self, peer: Any) -> str:
        """The name on screen, safe for a terminal: handle plus trust mark."""
        return safe_line(self.handle(peer)) + TRUST_MARKS.get(str(field(peer, "trust", "")), "")


def display_name(peer: Any, known: Iterable[Any]) -> str:
    """How to show `peer` among `known` peers: `alice`, `alice#k3f9`, `alice\u2713`."""
    return NameIndex(known).display(peer)


PEER_EVENTS = ("peer_joined", "peer_updated", "peer_left")


class PeerNames:
    """`display_name` for a face that writes many lines: the known peers are read again
    (`peers()`) after a peer event only, not for each line. Subscribe `seen` before the
    face's own listener (listeners run in order, on the event thread)."""

    def __init__(self, peers: Callable[[], Iterable[Any]]) -> None:
        self._peers = peers
        self._index: NameIndex | None = None

    def seen(self, event: Any) -> None:
        """A peer came, went or changed: read the peers again at the next name."""
        if event.name in PEER_EVENTS:
            self._index = None

    def display(self, peer: Any) -> str:
        """How to show `peer` among the known peers (`display_name`)."""
        index = self._index
        if index is None:
            index = self._index = NameIndex(self._peers())
        return index.display(peer)


def mark(trust: str | None) -> str:
    """The mark for a trust level ('' for strangers)."""
    return TRUST_MARKS.get(trust or "", "")


KNOWN_TRUST = ("tofu", "verified", "trusted")  # a stored peer: we had a session with it


def name_taken(peer_id: str, nick: str, known: Iterable[P],
               trust_of: Callable[[str], str | None]) -> list[P]:
    """Known peers (met in a session before, or verified) whose name `nick` now uses or
    imitates: the same name or one that looks alike, under another key."""
    keys = look_alike_keys(nick)
    return [other for other in known
            if field(other, "id") != peer_id
            and keys & look_alike_keys(str(field(other, "nick", "")))
            and trust_of(str(field(other, "id"))) in KNOWN_TRUST]


def taken_message(peer: Mapping[str, Any], other: Mapping[str, Any]) -> str:
    """The notice when a new key goes by a known peer's name."""
    return (f"a new key calls itself {safe_line(str(peer['nick']))!r} [{peer.get('number')}], "
            f"like {safe_line(str(other['nick']))} [{other.get('number')}] whom you know "
            f"({other.get('trust')}). New: {fingerprint(str(peer['id']))}; known: "
            f"{fingerprint(str(other['id']))}. Messages to that name are refused until you "
            f"pick one by number; /verify {other.get('number')} to check the one you know.")
