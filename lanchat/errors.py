"""Errors the layers below the CLI raise for people to read."""

from __future__ import annotations


class NodeError(Exception):
    """The node cannot do what was asked; the message says what to do."""
