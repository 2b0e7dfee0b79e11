"""Bracketed paste that stays fast however much is pasted.

prompt-toolkit's parser appends each chunk of a paste to one string and searches all of it
for the end mark again, so a 10 MB paste took ~46 s of CPU before anything could refuse it
(and the screen stayed blank meanwhile). This parser finds the start and end marks itself,
searches only the new chunk (plus a few characters carried over), and keeps at most
`limit` + 1 characters: a key binding sees that the paste is too long and refuses it at
once. Everything outside a paste goes to prompt-toolkit's own parser unchanged.
"""

from __future__ import annotations

from collections.abc import Callable

from prompt_toolkit.input import Input
from prompt_toolkit.input.vt100_parser import Vt100Parser
from prompt_toolkit.key_binding import KeyPress
from prompt_toolkit.keys import Keys

PASTE_START = "\x1b[200~"
PASTE_END = "\x1b[201~"


def _partial_suffix(data: str, mark: str) -> int:
    """How many characters at the end of `data` could be the start of `mark`."""
    for n in range(min(len(mark) - 1, len(data)), 0, -1):
        if mark.startswith(data[-n:]):
            return n
    return 0


class PasteGuardParser(Vt100Parser):
    """A Vt100Parser whose bracketed pastes cost O(size) and keep at most limit+1 chars."""

    def __init__(self, feed_key_callback: Callable[[KeyPress], None], limit: int) -> None:
        super().__init__(feed_key_callback)
        self.limit = limit
        self.pasted_chars = 0  # the full size of the last paste, kept or not
        self._pasting = False
        self._parts: list[str] = []
        self._kept = 0
        self._carry = ""

    def feed(self, data: str) -> None:
        """Feed terminal input: pastes are cut out here, the rest parsed as usual."""
        data, self._carry = self._carry + data, ""
        while data:
            if not self._pasting:
                start = data.find(PASTE_START)
                if start < 0:
                    keep = _partial_suffix(data, PASTE_START)
                    super().feed(data[:len(data) - keep])
                    self._carry = data[len(data) - keep:]
                    return
                super().feed(data[:start])
                data = data[start + len(PASTE_START):]
                self._pasting, self._parts, self._kept, self.pasted_chars = True, [], 0, 0
                continue
            end = data.find(PASTE_END)
            if end < 0:
                keep = _partial_suffix(data, PASTE_END)
                self._keep(data[:len(data) - keep])
                self._carry = data[len(data) - keep:]
                return
            self._keep(data[:end])
            data = data[end + len(PASTE_END):]
            self._pasting = False
            text, self._parts = "".join(self._parts), []
            self.feed_key_callback(KeyPress(Keys.BracketedPaste, text))

    def _keep(self, text: str) -> None:
        self.pasted_chars += len(text)
        room = self.limit + 1 - self._kept
        if room > 0:
            part = text[:room]
            self._parts.append(part)
            self._kept += len(part)

    def flush(self) -> None:
        """A lone Escape (or the start of a mark that never finished) is a key after all."""
        if self._carry and not self._pasting:
            carry, self._carry = self._carry, ""
            super().feed(carry)
        super().flush()


def guard_pastes(inp: Input, limit: int) -> PasteGuardParser | None:
    """Give a VT100 terminal input the fast paste parser; None for other inputs."""
    parser = getattr(inp, "vt100_parser", None)
    if not isinstance(parser, Vt100Parser):
        return None
    if not isinstance(parser, PasteGuardParser):
        parser = PasteGuardParser(parser.feed_key_callback, limit)
        inp.vt100_parser = parser  # type: ignore[attr-defined]
    return parser
