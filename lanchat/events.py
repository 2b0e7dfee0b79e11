"""Events the node emits: a name, fields, a time; JSON only at the edge."""

from __future__ import annotations

import json
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
        return json.dumps(self.to_dict(), ensure_ascii=True, separators=(",", ":"),
                          default=str)
