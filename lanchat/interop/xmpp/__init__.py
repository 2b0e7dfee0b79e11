"""Bonjour chat (XEP-0174 serverless messaging) peers: `attach(node)` adds the peer kind."""

from lanchat.interop.xmpp.kind import KIND, XmppKind, attach

__all__ = ["KIND", "XmppKind", "attach"]
