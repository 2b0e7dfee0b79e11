"""File transfer: offers over the control session, bytes over their own TLS connection.

`attach(node)` adds the extension before `node.start()`; `lanchat.transfer.commands` is the
plugin with /file, /accept, /decline, /transfers, /cancel and /autoaccept.
"""

from __future__ import annotations

from lanchat.transfer.manager import TransferManager, attach
from lanchat.transfer.records import State, Transfer, TransferError

__all__ = ["State", "Transfer", "TransferError", "TransferManager", "attach", "manager_of"]


def manager_of(node: object) -> TransferManager | None:
    """The node's transfer extension, if attached."""
    for ext in getattr(node, "extensions", ()):
        if isinstance(ext, TransferManager):
            return ext
    return None
