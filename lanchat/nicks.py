"""The one nick rule, for our own nick and every nick a peer sends, and TR 39 skeletons.

A nick is NFC text of 1..MAX_NICK_CHARS characters and at most MAX_NICK_BYTES of UTF-8,
with no default-ignorable code points (zero width, Hangul fillers, variation selectors,
tags), no bidi controls, no C0/C1 controls, no surrogates, line separators, private-use or
unassigned code points, and no more than MAX_MARKS_IN_A_ROW combining marks on one letter.
Runs of spaces (any Unicode space) become one ASCII space; edge spaces go.

Our own bad nick is an error (`check_nick` raises NickError); a bad nick a peer sends
(beacon, TXT, hello/auth, nick frame) becomes `unnamed-<id prefix>` (`clean_received_nick`)
and is counted. Room names use the same rule (`check_name`).

`skeleton(name)` is the Unicode TR 39 skeleton (confusables.txt, from the maintained
`confusable-homoglyphs` table) of the case-folded name: two names with one skeleton look
alike on screen (`аlice` with a Cyrillic a, `AIice`, `alice`).
"""

from __future__ import annotations

import re
import threading
import unicodedata
from collections import Counter
from collections.abc import MutableMapping
from functools import lru_cache
from typing import Any

MAX_NICK_CHARS = 32  # characters (code points), after NFC
MAX_NICK_BYTES = 64  # UTF-8 bytes, after NFC: fits a DNS label and a beacon
MAX_WIRE_NICK_CHARS = 256  # what a frame may carry before the rule even looks at it
MAX_MARKS_IN_A_ROW = 3  # combining marks on one base character ("Zalgo" text)
PLACEHOLDER = "unnamed"
ID_SUFFIX_CHARS = 8  # id characters in a placeholder

# Characters no nick may hold, by Unicode property (the regex module tracks the current
# Unicode version): default-ignorable (U+200B, U+3164, U+FE0F, U+E0041 ...), bidi
# controls, controls, surrogates, line/paragraph separators, private use, unassigned.
_FORBIDDEN = (r"[\p{Default_Ignorable_Code_Point}\p{Bidi_Control}\p{Cc}\p{Cs}\p{Zl}\p{Zp}"
              r"\p{Co}\p{Cn}]")
_SPACES = r"\p{Zs}+"
_MARK_RUN = r"\p{M}{" + str(MAX_MARKS_IN_A_ROW + 1) + ",}"
# The same three rules for ASCII text, where they come down to: controls are forbidden,
# the space is the one space, and there are no marks. Most nicks are ASCII: they are
# checked without the regex module (tens of ms to import) ever being loaded.
_ASCII_FORBIDDEN = re.compile(r"[\x00-\x1f\x7f]")
_ASCII_SPACES = re.compile(r" +")


@lru_cache(maxsize=1)
def _unicode_rules() -> tuple[Any, Any, Any]:
    """(forbidden, spaces, mark run) compiled with the regex module, on first non-ASCII
    text."""
    import regex

    return regex.compile(_FORBIDDEN), regex.compile(_SPACES), regex.compile(_MARK_RUN)


_lock = threading.Lock()
_replaced: Counter[str] = Counter()


class NickError(ValueError):
    """Our own nick breaks the rule; the message says what to change."""


def _normal(text: str) -> str:
    if text.isascii():  # NFC leaves ASCII as it is
        return _ASCII_SPACES.sub(" ", text).strip(" ")
    return _unicode_rules()[1].sub(" ", unicodedata.normalize("NFC", text)).strip(" ")


def nick_problem(text: object, *, what: str = "nick") -> str | None:
    """Why `text` cannot be a nick (after NFC and space folding), or None if it can."""
    if not isinstance(text, str):
        return f"a {what} is text"
    if len(text) > MAX_WIRE_NICK_CHARS:
        return f"a {what} has at most {MAX_NICK_CHARS} characters"
    try:
        text = _normal(text)
    except ValueError:  # lone surrogates cannot be normalised
        return f"a {what} cannot hold lone surrogates"
    ascii_only = text.isascii()
    bad = (_ASCII_FORBIDDEN if ascii_only else _unicode_rules()[0]).search(text)
    if bad is not None:
        return (f"a {what} cannot hold U+{ord(bad.group()):04X} (invisible, control or "
                "direction characters)")
    if not text:
        return f"a {what} cannot be empty or only spaces"
    if len(text) > MAX_NICK_CHARS:
        return f"a {what} has at most {MAX_NICK_CHARS} characters"
    try:
        size = len(text.encode("utf-8"))
    except UnicodeEncodeError:
        return f"a {what} cannot hold lone surrogates"
    if size > MAX_NICK_BYTES:
        return f"a {what} has at most {MAX_NICK_BYTES} bytes of UTF-8 ({size} given)"
    if not ascii_only and _unicode_rules()[2].search(text):
        return f"a {what} has at most {MAX_MARKS_IN_A_ROW} accents on one letter"
    return None


def check_name(text: str, *, what: str = "nick") -> str:
    """Return `text` in its normal form (NFC, single spaces) or raise NickError."""
    problem = nick_problem(text, what=what)
    if problem is not None:
        raise NickError(problem)
    return _normal(text)


def check_nick(nick: str) -> str:
    """Our own nick in its normal form; raise NickError saying what to change."""
    return check_name(nick)


def placeholder(peer_id: str) -> str:
    """The name shown for a peer whose nick broke the rule: safe, and unique per key."""
    return f"{PLACEHOLDER}-{peer_id[:ID_SUFFIX_CHARS]}"


def clean_received_nick(raw: object, peer_id: str, *, source: str = "session",
                        counters: MutableMapping[str, int] | None = None) -> str:
    """A peer's nick in normal form, or the placeholder plus its id if it breaks the rule.

    Each replacement is counted in the module's counter (`replaced_nicks`) by source and,
    when given, in `counters["bad_nicks"]` (a node's counters, shown by doctor).
    """
    if isinstance(raw, str) and nick_problem(raw) is None:
        return _normal(raw)
    with _lock:
        _replaced[source] += 1
    if counters is not None:
        counters["bad_nicks"] = counters.get("bad_nicks", 0) + 1
    return placeholder(peer_id)


def replaced_nicks() -> dict[str, int]:
    """How many received nicks were replaced so far in this process, by source."""
    with _lock:
        return dict(_replaced)


# -- confusability (Unicode TR 39) ------------------------------------------------------


@lru_cache(maxsize=1)
def _prototypes() -> dict[str, str]:
    """Each confusable character's TR 39 prototype (`lanchat.confusables`)."""
    from lanchat.confusables import prototypes

    return prototypes()


def _once(text: str) -> str:
    table = _prototypes()
    mapped = "".join(table.get(ch, ch) for ch in unicodedata.normalize("NFD", text))
    return unicodedata.normalize("NFD", mapped)


@lru_cache(maxsize=4096)
def skeleton(name: str) -> str:
    """The TR 39 skeleton of the case-folded name (`ALICE`, `аlice` -> `alice`)."""
    return _once(name.casefold())


@lru_cache(maxsize=4096)
def look_alike_keys(name: str) -> frozenset[str]:
    """Keys two names share when they look alike: the skeleton of the folded name, and of
    the name folded after mapping (so a capital I read as l, `AIice`, meets `alice`)."""
    return frozenset((skeleton(name), _once(_once(name).casefold())))


def confusable(a: str, b: str) -> bool:
    """True if two names look alike without being the same text."""
    return a != b and bool(look_alike_keys(a) & look_alike_keys(b))
