"""Make untrusted text safe for a terminal: no control, escape or bidi-override characters."""

from __future__ import annotations

import logging
import re

# C0 controls except tab and newline, DEL, C1 controls, and Unicode bidi/format controls
# that can reorder or hide text (Trojan Source).
_UNSAFE = re.compile(
    "[\x00-\x08\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2066-\u2069\ufeff]"
)


def _show(match: re.Match[str]) -> str:
    ch = match.group()
    code = ord(ch)
    if code < 0x20:
        return "^" + chr(code + 0x40)
    if code == 0x7F:
        return "^?"
    return f"<U+{code:04X}>"


def safe_text(text: str, *, newlines: bool = True) -> str:
    """Return `text` with every unsafe character shown as a visible token (ESC as ^[)."""
    out = _UNSAFE.sub(_show, text)
    if not newlines:
        out = out.replace("\n", "^J").replace("\t", " ")
    return out


def safe_line(text: str) -> str:
    """`safe_text` for one-line fields: nicks, file names, host names."""
    return safe_text(text, newlines=False)


class SafeLogFormatter(logging.Formatter):
    """Log lines quote what peers sent (nicks, reasons, names): show it harmlessly."""

    def format(self, record: logging.LogRecord) -> str:
        """The usual line with control, escape and bidi characters made visible."""
        return safe_text(super().format(record))
