"""LocalSend (protocol v2) devices as peers: `attach(node)` adds the peer kind."""

from lanchat.interop.localsend.kind import KIND, LocalSendKind, attach

__all__ = ["KIND", "LocalSendKind", "attach"]
