"""The headless contract's JSON Schema, applied to every event a test sees.

`tests/lab.py` (events read from `lanchat run --json`) and `tests/nodes.py` (events of
in-process nodes) pass each event through `violations()`; a test that saw an event the
schema (lanchat/headless/schema.json, documented in docs/HEADLESS.md) does not allow fails.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

import fastjsonschema
import jsonschema

# Events that only tests emit (e.g. a probe that waits for the event thread to drain).
TEST_ONLY_PREFIX = "test_"


@cache
def schema() -> dict[str, Any]:
    """The schema shipped in the package."""
    text = resources.files("lanchat.headless").joinpath("schema.json").read_text("utf-8")
    loaded: dict[str, Any] = json.loads(text)
    jsonschema.Draft202012Validator.check_schema(loaded)
    return loaded


def _inline(node: Any, defs: dict[str, Any]) -> Any:
    """The schema with every local `$ref` replaced by what it names (the schema has no
    cycles): validating then takes microseconds, not the reference resolver's milliseconds."""
    if isinstance(node, list):
        return [_inline(x, defs) for x in node]
    if not isinstance(node, dict):
        return node
    out = {k: _inline(v, defs) for k, v in node.items() if k != "$ref"}
    ref = node.get("$ref")
    if isinstance(ref, str):
        target: Any = {"$defs": defs}
        for part in ref.removeprefix("#/").split("/"):
            target = target[part]
        out = {**_inline(target, defs), **out}
    return out


@cache
def _fast(name: str) -> Any:
    """The event's schema compiled to Python by fastjsonschema: a few microseconds an event
    (jsonschema takes ~80), which a 100,000-message flood test needs; jsonschema then words
    the errors of an event that fails."""
    validator = _validator(name)
    return None if validator is None else fastjsonschema.compile(validator.schema)


@cache
def _validator(name: str) -> jsonschema.Draft202012Validator | None:
    defs = schema()["$defs"]
    if name not in defs["events"]:
        return None
    envelope, fields = defs["envelope"], _inline(defs["events"][name], defs)
    # The envelope and the event's own fields, and nothing else.
    one = {"type": "object",
           "required": [*envelope["required"], *fields.get("required", [])],
           "properties": {**envelope["properties"], **fields.get("properties", {})},
           "additionalProperties": False}
    return jsonschema.Draft202012Validator(one)


def violations(event: dict[str, Any]) -> list[str]:
    """What is wrong with one event as it appears on the wire (empty: nothing)."""
    name = event.get("event")
    if not isinstance(name, str):
        return [f"no event name in {event!r}"]
    if name.startswith(TEST_ONLY_PREFIX):
        return []
    fast, validator = _fast(name), _validator(name)
    if fast is None or validator is None:
        return [f"event {name!r} is not in lanchat/headless/schema.json (nor docs/HEADLESS.md)"]
    try:
        fast(event)
        return []
    except fastjsonschema.JsonSchemaException as exc:
        quick = f"{name}: {exc.message}"
    return [f"{name}: {'/'.join(map(str, e.absolute_path)) or '(top)'}: {e.message}"
            for e in validator.iter_errors(event)] or [quick]


def wire(event: Any) -> dict[str, Any]:
    """An in-process Event as a script reads it from `run --json`."""
    loaded: dict[str, Any] = json.loads(event.to_json())
    return loaded
