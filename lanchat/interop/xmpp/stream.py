"""XMPP streams, sans-IO: bytes in, stream events out; stanzas built as escaped bytes.

The parser is defusedxml's expat parser with DTDs, entity declarations and external
references forbidden, fed incrementally. XMPP's restricted XML (RFC 6120 s11.1) also bars
comments and processing instructions. Limits are enforced while parsing: bytes are fed in
small slices and the count since the last complete stanza is checked before each one, so a
peer cannot make us buffer more than `MAX_STANZA_BYTES` (+ one slice).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError, TreeBuilder
from xml.sax.saxutils import escape, quoteattr

from defusedxml import DefusedXmlException
from defusedxml.ElementTree import DefusedXMLParser

STREAM_NS = "http://etherx.jabber.org/streams"
CLIENT_NS = "jabber:client"
XHTML_IM_NS = "http://jabber.org/protocol/xhtml-im"
XHTML_NS = "http://www.w3.org/1999/xhtml"
MAX_STANZA_BYTES = 256 * 1024  # one stanza (or the stream header), counted as it arrives
MAX_DEPTH = 32  # element nesting inside one stanza
FEED_SLICE_BYTES = 4096  # bytes fed to expat between limit checks
MAX_BODY_CHARS = 16_000  # longer bodies are cut (lanchat's own text limit)

_STREAM_TAG = f"{{{STREAM_NS}}}stream"
# Characters XML 1.0 cannot carry (RFC 6120 s11.2 via XML 1.0 s2.2): C0 controls but
# tab/newline/return, lone surrogates, U+FFFE and U+FFFF.
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


class XmppError(Exception):
    """The peer broke the stream; `condition` is the RFC 6120 stream error to send."""

    def __init__(self, condition: str, detail: str) -> None:
        super().__init__(f"{condition}: {detail}")
        self.condition = condition
        self.detail = detail


@dataclass(frozen=True)
class StreamOpened:
    """The peer's stream header."""

    attrs: dict[str, str] = field(hash=False)

    @property
    def sender(self) -> str:
        """The header's `from` (an XEP-0174 instance name), or ''."""
        return self.attrs.get("from", "")


@dataclass(frozen=True)
class StanzaReceived:
    """One complete first-level child of the stream."""

    element: Element = field(hash=False)


@dataclass(frozen=True)
class StreamClosed:
    """The peer sent `</stream:stream>`."""


StreamEvent = StreamOpened | StanzaReceived | StreamClosed


class _Target:
    """Expat target: depth 0 is the stream, depth 1 starts a stanza."""

    def __init__(self) -> None:
        self.depth = 0
        self.events: list[StreamEvent] = []
        self._builder: TreeBuilder | None = None
        self.expat: Any = None  # the expat parser, for byte positions
        self.boundary = 0  # stream byte index where the last stanza (or header) ended

    def start(self, tag: str, attrs: dict[str, str]) -> None:
        if self.depth == 0:
            if tag != _STREAM_TAG:
                raise XmppError("invalid-namespace", f"stream root is {tag[:80]!r}")
            self.events.append(StreamOpened(dict(attrs)))
            self.boundary = self.expat.CurrentByteIndex
        else:
            if self.depth > MAX_DEPTH:
                raise XmppError("policy-violation", f"elements nested deeper than {MAX_DEPTH}")
            if self._builder is None:
                self._builder = TreeBuilder()
            self._builder.start(tag, attrs)
        self.depth += 1

    def end(self, tag: str) -> None:
        self.depth -= 1
        if self.depth == 0:
            self.events.append(StreamClosed())
            return
        assert self._builder is not None
        self._builder.end(tag)
        if self.depth == 1:
            self.events.append(StanzaReceived(self._builder.close()))
            self._builder = None
            self.boundary = self.expat.CurrentByteIndex

    def data(self, text: str) -> None:
        if self._builder is not None:
            self._builder.data(text)

    def comment(self, text: str) -> None:
        raise XmppError("restricted-xml", "a comment")

    def pi(self, target: str, text: str | None = None) -> None:
        raise XmppError("restricted-xml", "a processing instruction")

    def close(self) -> None:
        return None


class StreamParser:
    """Feed the bytes of one incoming stream; get its header, stanzas and end."""

    def __init__(self, max_stanza_bytes: int = MAX_STANZA_BYTES) -> None:
        self.max_stanza_bytes = max_stanza_bytes
        self._target = _Target()
        self._parser = DefusedXMLParser(target=self._target, forbid_dtd=True,
                                        forbid_entities=True, forbid_external=True)
        self._target.expat = self._parser.parser
        self.closed = False
        self.bytes_in = 0

    def feed(self, data: bytes) -> list[StreamEvent]:
        """Parse `data`; return the events it completed. Raises XmppError."""
        if self.closed:
            return []
        out: list[StreamEvent] = []
        view = memoryview(data)
        for start in range(0, len(view), FEED_SLICE_BYTES):
            piece = view[start:start + FEED_SLICE_BYTES]
            # Bytes since the last stanza ended: the one in progress, or the header.
            if self.bytes_in + len(piece) - self._target.boundary > self.max_stanza_bytes:
                raise XmppError("policy-violation",
                                f"a stanza larger than {self.max_stanza_bytes} bytes")
            self.bytes_in += len(piece)
            try:
                self._parser.feed(bytes(piece))
            except XmppError:
                raise
            except DefusedXmlException as exc:
                raise XmppError("restricted-xml", type(exc).__name__) from None
            except ParseError as exc:
                raise XmppError("not-well-formed", str(exc)) from None
            events = self._target.events
            if events:
                self._target.events = []
                out.extend(events)
                if any(isinstance(e, StreamClosed) for e in events):
                    self.closed = True
                    break
        return out


def clean(text: str) -> str:
    """Replace what XML cannot carry with U+FFFD."""
    return _NOT_XML.sub("\ufffd", text)


def header(sender: str, to: str) -> bytes:
    """Our stream header (XEP-0174: `from` is our instance name, `to` the peer's)."""
    return ("<?xml version='1.0' encoding='UTF-8'?><stream:stream xmlns='jabber:client' "
            f"xmlns:stream='{STREAM_NS}' from={quoteattr(clean(sender))} "
            f"to={quoteattr(clean(to))} version='1.0'>").encode()


FOOTER = b"</stream:stream>"


def chat_message(sender: str, to: str, text: str) -> bytes:
    """A chat `<message>`: the text escaped as a plain body, and as XHTML-IM.

    libpurple renders a plain body as HTML (`<&>` would vanish) unless the message has an
    XHTML-IM body whose `<font>` holds the text: that it shows as the escaped text it is.
    """
    body = escape(clean(text))
    html = body.replace("\n", "<br/>")
    return (f"<message from={quoteattr(clean(sender))} to={quoteattr(clean(to))} "
            f"type='chat'><body>{body}</body><html xmlns='{XHTML_IM_NS}'>"
            f"<body xmlns='{XHTML_NS}'><font>{html}</font></body></html></message>").encode()


def stream_error(condition: str) -> bytes:
    """A stream error, sent before closing."""
    cond = condition if re.fullmatch(r"[a-z-]{1,40}", condition) else "undefined-condition"
    return (f"<stream:error><{cond} xmlns='urn:ietf:params:xml:ns:xmpp-streams'/>"
            "</stream:error>").encode()


def message_text(stanza: Element) -> str | None:
    """The text of a chat message as plain text, or None for anything else.

    The plain `<body>` wins; without one, the XHTML-IM body with its markup stripped.
    Unknown children (chat states, events, receipts) are ignored.
    """
    if stanza.tag != f"{{{CLIENT_NS}}}message" or stanza.get("type", "normal") == "error":
        return None
    body = stanza.find(f"{{{CLIENT_NS}}}body")
    if body is not None:
        text = "".join(body.itertext())
    else:
        html_body = stanza.find(f"{{{XHTML_IM_NS}}}html/{{{XHTML_NS}}}body")
        if html_body is None:
            html_body = stanza.find(f"{{{XHTML_NS}}}html/{{{XHTML_NS}}}body")
        if html_body is None:
            return None
        text = _html_text(html_body)
    text = text.strip("\n")
    return text[:MAX_BODY_CHARS] if text.strip() else None


def _html_text(element: Element) -> str:
    parts: list[str] = []

    def walk(node: Element) -> None:
        if node.tag == f"{{{XHTML_NS}}}br":
            parts.append("\n")
        if node.text:
            parts.append(node.text)
        for child in node:
            walk(child)
            if child.tail:
                parts.append(child.tail)

    walk(element)
    return "".join(parts)
