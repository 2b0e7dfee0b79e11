"""`/doctor`, a default plugin: the report takes a moment (ports are checked, the node is
asked for figures), so it runs on its own thread and answers with an `output` event."""

from __future__ import annotations

import threading

from lanchat.commands import CommandRegistry, Context, Output
from lanchat.doctor.report import collect, format_text
from lanchat.hookspecs import hookimpl


def _doctor(ctx: Context, args: str) -> Output | None:
    """Neither the prompt nor other plugins wait for the report."""
    node = ctx.node

    def run() -> None:
        try:
            report = collect(node)
        except Exception as exc:  # noqa: BLE001 - a report that fails is an error event
            node.emit("error", code="internal", message=f"/doctor failed: {exc}",
                      command="/doctor")
            return
        node.emit("output", command="/doctor", text=format_text(report), data=report)

    threading.Thread(target=run, name="lanchat-doctor", daemon=True).start()
    return None


@hookimpl
def lanchat_register_commands(registry: CommandRegistry) -> None:
    """/doctor."""
    registry.add("doctor", _doctor, help="why peers are or are not seen", usage="/doctor")
