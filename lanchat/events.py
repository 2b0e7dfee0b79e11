"""Events the node emits: a name, fields, a time; JSON only at the edge."""

from __future__ import annotations

import json
import re
import time
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any


@dataclass(frozen=True)
class Event:
    """One thing that happened, as the headless contract names it."""

    name: str
    fields: MappingProxyType[str, Any]
    ts: float = field(default_factory=time.time)

    @classmethod
    def make(cls, name: str, /, **fields: Any) -> Event:
        """Build an event from keyword fields."""
        return cls(name, MappingProxyType(fields))

    def __getitem__(self, key: str) -> Any:
        return self.fields[key]

    def to_dict(self) -> dict[str, Any]:
        """Return the JSON object of the headless contract."""
        out: dict[str, Any] = {"event": self.name, "ts": round(self.ts, 6)}
        out.update(self.fields)
        return out

    def to_json(self) -> str:
        """One line of JSON; non-ASCII and control characters are escaped."""
        return json_line(self.to_dict())


# A \uXXXX escape of a surrogate that is not half of a pair: valid JSON syntax, but no
# UTF-8 text can hold it, and strict readers refuse the line.
_LONE_SURROGATE = re.compile(r"\\ud[89ab][0-9a-f]{2}(?!\\ud[c-f][0-9a-f]{2})"
                             r"|(?<!\\ud[89ab][0-9a-f]{2})\\ud[c-f][0-9a-f]{2}")


_SURROGATE = re.compile("[\ud800-\udfff]")  # in a str, every surrogate is a lone one


def _scrub(value: Any) -> Any:
    """The same data with every lone surrogate replaced by U+FFFD."""
    if isinstance(value, str):
        return _SURROGATE.sub("\ufffd", value)
    if isinstance(value, dict):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_scrub(v) for v in value]
    if isinstance(value, MappingProxyType):
        return {_scrub(k): _scrub(v) for k, v in value.items()}
    return value


# One encoder for every line (`json.dumps` with options builds a new one per call; `run
# --json` writes a line per message).
_to_line = json.JSONEncoder(ensure_ascii=True, separators=(",", ":"), default=str).encode


def json_line(obj: Any) -> str:
    """One line of ASCII JSON that is valid UTF-8 JSON to any reader: non-ASCII and control
    characters escaped, lone surrogates (from a peer or a plugin) replaced by U+FFFD."""
    line = _to_line(obj)
    if "\\ud" in line and _LONE_SURROGATE.search(line):
        line = _to_line(_scrub(obj))
    return line
