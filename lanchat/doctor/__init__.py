"""Why a peer is or is not seen: `report` gathers, per interface, what was sent and heard
and what that means in plain words, for `lanchat doctor` and `/doctor`."""

from lanchat.doctor.report import collect, format_text, hints

__all__ = ["collect", "format_text", "hints"]
