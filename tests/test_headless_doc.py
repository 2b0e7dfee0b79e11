"""docs/HEADLESS.md, the events' JSON Schema and the code say the same thing."""

from __future__ import annotations

import re
from pathlib import Path

import jsonschema

from contract import schema, violations
from lanchat.commands import build_registry
from lanchat.events import Event
from lanchat.plugins import Plugins
from lanchat.transfer.progress import Meter, clock_text, human_size

DOC = (Path(__file__).resolve().parent.parent / "docs" / "HEADLESS.md").read_text()
BOB = "b" * 52


def test_the_schema_is_a_valid_draft_2020_12_schema() -> None:
    jsonschema.Draft202012Validator.check_schema(schema())


def test_every_event_in_the_schema_has_a_section_and_back() -> None:
    """An event added to the code needs one schema entry and one `### name` section."""
    documented = set(re.findall(r"^### ([a-z_]+)$", DOC, re.MULTILINE))
    assert documented == set(schema()["$defs"]["events"])


def test_every_command_is_in_the_stdin_table() -> None:
    """Each built-in command (and the file commands) has its row under 'Commands on stdin'."""
    registry = build_registry(Plugins(None, entry_points=False))
    table = DOC.split("## Commands on stdin", 1)[1].split("\n## ", 1)[0]
    rows = set(re.findall(r"^\| `/([a-z]+)", table, re.MULTILINE))
    assert set(registry.names()) <= rows


def test_the_check_refuses_what_the_contract_does_not_allow() -> None:
    """Unknown events, missing or extra fields and wrong types are each reported."""
    ok = Event.make("delivered", id="m1", to=BOB).to_dict()
    assert violations(ok) == []
    assert violations({**ok, "event": "deliverd"})
    assert violations({k: v for k, v in ok.items() if k != "to"})
    assert violations({**ok, "colour": "red"})
    assert violations({**ok, "to": "bob"})
    assert violations({**ok, "ts": "now"})


def test_a_meter_shows_rate_and_time_left_over_recent_samples() -> None:
    meter = Meter(size=100 * 1024 * 1024)
    meter.update(0, now=10.0)
    assert meter.eta is None
    meter.update(10 * 1024 * 1024, now=11.0)
    meter.update(20 * 1024 * 1024, now=12.0)
    assert meter.rate == 10 * 1024 * 1024 and meter.eta == 8.0
    line = meter.line("report.pdf -> bob", width=80)
    assert line == ("report.pdf -> bob [####----------------]  20%  10.0 MiB/s  0:08 left")
    assert len(meter.line("x" * 200, width=60)) <= 60
    assert human_size(512) == "512 B" and clock_text(3725) == "1:02:05"


def test_every_subcommand_is_in_the_table() -> None:
    """Each subcommand of the parser (but the shell) has its row under 'Subcommands'."""
    from lanchat.cli import build_parser

    parser = build_parser()
    subs = next(a for a in parser._actions if a.dest == "command").choices
    table = DOC.split("## Subcommands", 1)[1].split("\n## ", 1)[0]
    assert {name for name in subs if f"| `lanchat {name}" not in table} == {"shell"}
