"""XEP-0174 streams: parsing that refuses what XMPP forbids, escaping out, markup stripped in,
and the peer kind's gate (streams only from announced addresses) on loopback."""

from __future__ import annotations

import asyncio
import socket
from typing import Any

import pytest

from lanchat.interop import foreign_id
from lanchat.interop.xmpp.kind import XmppKind
from lanchat.interop.xmpp.presence import Buddy
from lanchat.interop.xmpp.stream import (
    FOOTER,
    StanzaReceived,
    StreamClosed,
    StreamOpened,
    StreamParser,
    XmppError,
    chat_message,
    header,
    message_text,
)
from lanchat.peers import PeerTable

HDR = header("bob@h2", "alice@h1")


def parse(data: bytes, chunk: int = 7) -> list[Any]:
    parser = StreamParser()
    out: list[Any] = []
    for i in range(0, len(data), chunk):
        out.extend(parser.feed(data[i:i + chunk]))
    return out


def test_a_stream_split_anywhere_gives_header_stanzas_and_end() -> None:
    """Bytes arrive in any split; the header, each stanza and the end come out once."""
    events = parse(HDR + chat_message("bob@h2", "alice@h1", "hi") + b" \n" + FOOTER)
    assert [type(e) for e in events] == [StreamOpened, StanzaReceived, StreamClosed]
    assert events[0].sender == "bob@h2"
    assert message_text(events[1].element) == "hi"


def test_text_with_markup_characters_and_unicode_round_trips() -> None:
    """What we send is escaped; what we read is the text, entities decoded once."""
    text = "a <&> b \"q\" 'é' 🙂\nline <script>x</script>"
    events = parse(HDR + chat_message("bob@h2", "alice@h1", text))
    assert message_text(events[1].element) == text


def test_control_characters_are_replaced_not_sent() -> None:
    """XML cannot carry most C0 controls: they become U+FFFD instead of breaking the stream."""
    events = parse(HDR + chat_message("bob@h2", "alice@h1", "a\x1b[31mb\x00"))
    assert message_text(events[1].element) == "a\ufffd[31mb\ufffd"


def test_unknown_children_are_ignored_and_html_is_stripped_to_text() -> None:
    """libpurple's message: plain body wins; XHTML-IM alone is shown as its text only."""
    purple = (b"<message to='alice@h1' from='bob@h2' type='chat'><body>plain &lt;b&gt;</body>"
              b"<html xmlns='http://jabber.org/protocol/xhtml-im'><body "
              b"xmlns='http://www.w3.org/1999/xhtml'><b>bold</b></body></html>"
              b"<x xmlns='jabber:x:event'><composing/></x></message>")
    html_only = (b"<message type='chat'><html xmlns='http://jabber.org/protocol/xhtml-im'>"
                 b"<body xmlns='http://www.w3.org/1999/xhtml'><font>x<br/>"
                 b"<a href='javascript:alert(1)'>y</a></font></body></html></message>")
    typing = b"<message type='chat'><x xmlns='jabber:x:event'><composing/></x></message>"
    events = parse(HDR + purple + html_only + typing + b"<iq type='get' id='1'/>")
    texts = [message_text(e.element) for e in events[1:]]
    assert texts == ["plain <b>", "x\ny", None, None]


@pytest.mark.parametrize("payload, condition", [
    (b"<!DOCTYPE s [<!ENTITY a 'aaaa'><!ENTITY b '&a;&a;&a;&a;'>]>" + HDR, "restricted-xml"),
    (HDR + b"<message><body>&lol;</body></message>", "not-well-formed"),
    (HDR + b"<!-- hello -->", "restricted-xml"),
    (HDR + b"<?php echo 1 ?>", "restricted-xml"),
    (b"<html>" + HDR, "invalid-namespace"),
    (HDR + b"<message><body>" + b"<b>" * 40, "policy-violation"),
])
def test_forbidden_xml_is_refused(payload: bytes, condition: str) -> None:
    """DTDs, entities, comments, PIs, a wrong root and deep nesting: a stream error."""
    with pytest.raises(XmppError) as err:
        parse(payload, chunk=4096)
    assert err.value.condition == condition


def test_a_huge_stanza_is_refused_before_it_is_buffered() -> None:
    """A peer streaming a 100 MB stanza is stopped at the limit, not after 100 MB."""
    parser = StreamParser(max_stanza_bytes=64 * 1024)
    parser.feed(HDR + b"<message><body>")
    fed = 0
    with pytest.raises(XmppError) as err:
        while fed < 100 * 1024 * 1024:
            parser.feed(b"A" * 65536)
            fed += 65536
    assert err.value.condition == "policy-violation"
    assert fed < 128 * 1024
    # Many stanzas each under the limit are fine.
    ok = StreamParser(max_stanza_bytes=64 * 1024)
    ok.feed(HDR)
    small = chat_message("b@h", "a@h", "x" * 30_000)
    assert len([e for e in ok.feed(small * 20) if isinstance(e, StanzaReceived)]) == 20


# -- the kind's gate, on loopback with a fake node ---------------------------------------------


class FakePresence:
    """The node's presence as XmppKind reports to it: the table and the changes."""

    def __init__(self) -> None:
        self.table = PeerTable("0" * 52)
        self.changes: list[Any] = []

    def seen(self, peer_id: str, via: str, now: float, **fields: Any) -> None:
        self._note(self.table.seen(peer_id, via, now, **fields))

    def lost(self, peer_id: str, via: str, reason: str, now: float) -> None:
        self._note(self.table.lost(peer_id, via, reason, now))

    def _note(self, change: Any) -> None:
        if change is not None:
            self.changes.append((change.kind, change.peer.kind, change.peer.nick))


class FakeNode:
    """What XmppKind uses of a node: presence and the session owner."""

    def __init__(self) -> None:
        self.presence = FakePresence()
        self.ready: list[Any] = []
        self.chats: list[tuple[Any, list[Any]]] = []
        self.closed: list[Any] = []

    def session_ready(self, session: Any) -> None:
        self.ready.append(session)

    def session_chats(self, session: Any, chats: list[Any]) -> None:
        self.chats.append((session, chats))

    def session_acks(self, session: Any, ids: tuple[str, ...]) -> None:
        pass

    def session_writable(self, session: Any) -> None:
        pass

    def session_closed(self, session: Any, reason: Any, detail: str) -> None:
        self.closed.append((session, reason, detail))


async def _kind_on_loopback() -> tuple[XmppKind, FakeNode, int]:
    kind = XmppKind()
    node = FakeNode()
    kind.node = node
    kind.instance = "alice@h1"
    loop = asyncio.get_running_loop()
    server = await loop.create_server(kind._accept, "127.0.0.1", 0)
    kind._servers = [server]
    return kind, node, server.sockets[0].getsockname()[1]


UNTIL_S = 10.0


async def _until(pred: Any, what: str) -> None:
    """Wait on this test's own loop (a blocking wait would stop it) until `pred()`; fail
    naming `what` after UNTIL_S."""
    try:
        async with asyncio.timeout(UNTIL_S):
            while not pred():  # noqa: ASYNC110 - the fake node has no event to await
                await asyncio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting for {what}") from None


async def _read_until(reader: asyncio.StreamReader, marker: bytes) -> bytes:
    data = b""
    while marker not in data:
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 5)
        except ConnectionResetError:
            break
        if not chunk:
            break
        data += chunk
    return data


def test_streams_only_from_announced_peers_and_messages_arrive() -> None:
    """A stream from an address that never announced is refused and counted; an announced
    peer's stream is answered, its message arrives as text, the node keeps serving."""

    async def story() -> None:
        kind, node, port = await _kind_on_loopback()
        # Nobody announced 127.0.0.1 yet: the connection is dropped at once, counted.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HDR)
        assert await _read_until(reader, b"\0") == b""
        assert kind.refused["unannounced"] == 1
        # bob announces at 127.0.0.1; a stream claiming another name is refused too.
        kind._seen(Buddy("bob@h2", "127.0.0.1", 5298, first="Bob"))
        assert node.presence.changes == [("joined", "xmpp", "Bob")]
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(header("mallory@h9", "alice@h1"))
        answer = await _read_until(reader, b"</stream:stream>")
        assert b"not-authorized" in answer
        assert kind.refused["unannounced"] == 2
        # bob's own stream: answered with our header, his message arrives.
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(HDR + chat_message("bob@h2", "alice@h1", "hi <&>"))
        answer = await _read_until(reader, b"<stream:stream")
        assert b'from="alice@h1"' in answer
        await _until(lambda: node.chats, "bob's message")
        session, chats = node.chats[0]
        assert session.peer_id == foreign_id("xmpp", "bob@h2", "127.0.0.1")
        assert chats[0].text == "hi <&>" and node.ready == [session]
        # Our reply goes out on the stream bob opened.
        from lanchat.protocol import Chat, encode
        session.write_outbox([encode(Chat("m1", 1.0, "yo <b>", False, "alice"))[4:]])
        answer = await _read_until(reader, b"</message>")
        assert b"<body>yo &lt;b&gt;</body>" in answer
        # bob says goodbye: the session ends with a clean reason.
        writer.write(FOOTER)
        assert (await _read_until(reader, b"</stream:stream>")).endswith(b"</stream:stream>")
        await _until(lambda: node.closed, "the session to close")
        assert node.closed[0][1].value == "bye"
        kind._servers[0].close()

    asyncio.run(story())


def test_a_hostile_stream_is_refused_with_a_stream_error() -> None:
    """Entity expansion from an announced address: stream error, counted, connection closed."""

    async def story() -> None:
        kind, node, port = await _kind_on_loopback()
        kind._seen(Buddy("eve@h4", "127.0.0.1", 5298))
        reader, writer = await asyncio.open_connection("127.0.0.1", port)
        writer.write(b"<?xml version='1.0'?><!DOCTYPE x [<!ENTITY a 'a'>]>" + HDR)
        answer = await _read_until(reader, b"</stream:stream>")
        assert b"restricted-xml" in answer
        await _until(lambda: kind.refused.get("restricted-xml"), "the refusal to be counted")
        assert kind.refused["restricted-xml"] == 1
        kind._servers[0].close()

    asyncio.run(story())


def test_the_listener_moves_off_5298_when_it_is_taken() -> None:
    """The kind listens on 5298 when it can and on any port when it cannot."""

    async def story() -> None:
        kind = XmppKind()
        loop = asyncio.get_running_loop()
        holder = socket.socket()
        holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            holder.bind(("127.0.0.1", 5298))
            holder.listen()
        except OSError:
            pass
        port = await kind._listen(loop, ["127.0.0.1"])
        assert port and port != 5298
        for server in kind._servers:
            server.close()
        holder.close()

    asyncio.run(story())


def test_list_and_whois_mark_foreign_peers_and_the_table_keeps_their_kind() -> None:
    """A Bonjour chat peer is listed with its kind and marked unencrypted; a lanchat node
    that was seen first keeps its kind whatever a later sighting claims."""
    from lanchat.commands.peers import _kind_line, _kind_mark

    table = PeerTable("0" * 52)
    table.seen("b" * 52, "xmpp", 1.0, nick="Bob", address="10.0.0.2", port=5298, kind="xmpp")
    table.seen("a" * 52, "beacon", 1.0, nick="al", address="10.0.0.3", port=47800)
    table.seen("a" * 52, "xmpp", 2.0, nick="al", kind="xmpp")
    bob, al = table.get("b" * 52), table.get("a" * 52)
    assert bob is not None and al is not None
    assert bob.public()["kind"] == "xmpp" and bob.public()["encrypted"] is False
    assert bob.public()["via"] == ["mdns"]
    assert al.public()["kind"] == "lanchat" and al.public()["encrypted"] is True
    assert _kind_mark(bob.public()) == "  [xmpp, unencrypted]"
    assert _kind_mark(al.public()) == ""
    assert "unencrypted" in _kind_line(bob.public())


class ProbingZeroconf:
    """Just enough of a zeroconf for Presence: its own loop thread, and registrations that
    probe until `probe_done` is set (never, unless a test sets it)."""

    def __init__(self) -> None:
        import threading

        self.loop = asyncio.new_event_loop()
        self.done = False
        self.registered: list[str] = []
        self.probing = threading.Event()
        self.probe_done = asyncio.Event()
        self._thread = threading.Thread(target=self.loop.run_forever, name="fake-zc")
        self._thread.start()

    async def async_register_service(self, info: Any, allow_name_change: bool) -> Any:
        self.probing.set()
        await self.probe_done.wait()
        self.registered.append(info.name)
        return asyncio.sleep(0)

    async def async_unregister_service(self, info: Any) -> Any:
        self.registered.remove(info.name)
        return asyncio.sleep(0)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(5)
        self.loop.close()


class NoBrowser:
    def __init__(self, *args: Any, **kwargs: Any) -> None:
        pass

    def cancel(self) -> None:
        pass


def _presence(announce: bool = True) -> Any:
    import ipaddress

    from lanchat.interop.xmpp.presence import Presence

    return Presence(instance="alice@h1", first="alice", server="lanchat-x.local.", port=5298,
                    interfaces=[ipaddress.IPv4Interface("10.0.0.1/24")],
                    on_seen=lambda b: None, on_gone=lambda i: None, announce=announce)


def test_stopping_while_the_presence_still_probes_ends_the_probe_at_once(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """A node that quits during the first ~1.5 s (the probe) does not wait for the probe,
    and leaves no thread blocked on it: the registration is cancelled."""
    import threading

    from lanchat.interop.xmpp import presence as presence_module

    monkeypatch.setattr(presence_module, "ServiceBrowser", NoBrowser)
    zc = ProbingZeroconf()
    presence = _presence()
    starting = threading.Thread(target=presence.start, args=(zc,), name="lanchat-test-start")
    try:
        starting.start()
        assert zc.probing.wait(5)
        presence.stop()
        starting.join(5)
        assert not starting.is_alive(), "start() returned when stop() cancelled the probe"
        assert not presence.announced and zc.registered == [] and presence.error == ""
    finally:
        zc.loop.call_soon_threadsafe(zc.probe_done.set)
        starting.join(5)
        zc.close()


def test_a_one_shot_run_browses_but_never_announces(monkeypatch: pytest.MonkeyPatch) -> None:
    """`lanchat send` and `peers` look for Bonjour chat peers; they do not appear in anyone's
    buddy list for the second they run."""
    from lanchat.interop.xmpp import presence as presence_module

    monkeypatch.setattr(presence_module, "ServiceBrowser", NoBrowser)
    zc = ProbingZeroconf()
    zc.loop.call_soon_threadsafe(zc.probe_done.set)
    try:
        quiet, heard = _presence(announce=False), _presence()
        quiet.start(zc)  # type: ignore[arg-type]
        assert not zc.probing.is_set() and not quiet.announced
        heard.start(zc)  # type: ignore[arg-type]
        assert heard.announced and zc.registered == ["alice@h1._presence._tcp.local."]
    finally:
        quiet.stop()
        heard.stop()
        zc.close()
