"""The web window in a real browser: Debian's Chromium, driven by Playwright, inside a lab
namespace next to a `lanchat web` node whose peer runs in another lab host.

One lab, one node pair and one browser serve every test here (module scope)."""

from __future__ import annotations

import base64
import hashlib
import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from lab import Lab, LanchatProc
from web_lab import NO_DISCOVERY, Browser, browser_missing, start_web_node

HOSTILE_NICK = "<i>alice</i>"


@dataclass
class Web:
    lab: Lab
    alice: LanchatProc
    bob: LanchatProc
    url: str
    browser: Browser
    first_visits: dict[str, dict[str, object]]  # what the browser got before and at login

    @property
    def port(self) -> int:
        return int(re.search(r":(\d+)/", self.url).group(1))  # type: ignore[union-attr]

    @property
    def alice_id(self) -> str:
        return str(self.alice.events_named("ready")[0]["id"])

    def texts(self) -> list[str]:
        """The message texts the page shows, top to bottom."""
        return list(self.browser.eval(
            "() => [...document.querySelectorAll('#log li .text')].map(e => e.textContent)"))

    def wait_text(self, text: str) -> None:
        self.browser.wait("(t) => [...document.querySelectorAll('#log li .text')]"
                          ".some(e => e.textContent === t)", text)

    def open_conv(self, key: str) -> None:
        self.browser.call("click", selector=f'#convs button[data-conv="{key}"]')
        self.browser.wait("(k) => lanchat.active === k && !lanchat.loading", key)


@pytest.fixture(scope="module")
def web(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:
    why = browser_missing()
    if why:
        pytest.skip(why)
    lab = Lab(2, base_dir=tmp_path_factory.mktemp("weblab"))
    browser: Browser | None = None
    try:
        if lab.mode != "netns":
            pytest.skip(f"a browser runs only inside a lab namespace ({lab.fallback_reason})")
        alice = lab[1].start_node(*NO_DISCOVERY, nick=HOSTILE_NICK)
        alice.wait_event("ready")
        bob, url = start_web_node(lab, peers=[alice])
        bob.wait_event("peer_joined", timeout=15)
        alice.wait_event("peer_joined", timeout=15)
        browser = Browser(lab[0])
        port = int(url.split(":")[2].split("/")[0])
        token = url.split("token=", 1)[1]
        visits = {  # in this order: the cookie does not exist before the last one
            "no key": browser.call("open", url=f"http://127.0.0.1:{port}/", ready=False),
            "rebound": browser.call("open", url=f"http://rebind.test:{port}/?token={token}",
                                    ready=False),
            "login": browser.call("open", url=url)}
        yield Web(lab, alice, bob, url, browser, visits)
    finally:
        if browser is not None:
            browser.close()
        lab.close()


def test_the_page_refuses_strangers_and_hides_its_key(web: Web) -> None:
    """No cookie, a rebinding host name or a foreign origin gets nothing; the key leaves
    the URL, the cookie is out of the page's reach, and the CSP blocks inline script."""
    base = f"http://127.0.0.1:{web.port}/"
    assert web.first_visits["no key"]["status"] == 403
    assert web.first_visits["rebound"]["status"] == 421
    opened: dict[str, Any] = web.first_visits["login"]
    assert opened["status"] == 200 and opened["url"] == base
    assert "unsafe-inline" not in opened["headers"]["content-security-policy"]
    assert web.browser.eval("() => document.cookie") == ""  # HttpOnly
    violation = web.browser.eval("""() => new Promise((done) => {
        document.addEventListener('securitypolicyviolation', (e) => {
            probe.remove(); done(e.effectiveDirective); }, {once: true});
        const probe = document.createElement('div');
        probe.innerHTML = '<img src="data:," onerror="window.cspBroken = 1">';
        document.body.append(probe); })""")
    assert violation.startswith("script-src") and web.browser.eval("() => window.cspBroken") is None
    hostile = web.browser.call("page", url=f"http://evil.test:{web.port}/", arg=web.port, js="""
        async (port) => {
          const ws = await new Promise((done) => {
            const w = new WebSocket(`ws://127.0.0.1:${port}/ws`);
            w.onopen = () => done('open'); w.onerror = () => done('refused'); });
          try {
            await fetch(`http://127.0.0.1:${port}/api/send`, {method: 'POST', mode: 'no-cors',
              credentials: 'include', body: JSON.stringify({conv: 'all', text: 'csrf'})});
          } catch (e) { /* refused either way */ }
          return ws; }""")
    assert hostile == "refused"


def test_a_peers_message_appears_in_the_page(web: Web) -> None:
    web.alice.command("/all hello from alice")
    web.wait_text("hello from alice")
    web.alice.command("/msg bob psst")
    key = f"peer:{web.alice_id}"
    badge = web.browser.wait(
        "(k) => document.querySelector(`#convs button[data-conv='${k}'] .badge`)?.textContent",
        key)
    assert badge == "1"
    web.open_conv(key)
    web.wait_text("psst")
    web.open_conv("all")


def test_a_message_typed_in_the_page_reaches_the_peer(web: Web) -> None:
    """Enter sends, Shift+Enter adds a line; the sent line gets its delivered mark."""
    mark = web.alice.mark()
    web.browser.call("type", selector="#input", text="line one")
    web.browser.call("press", selector="#input", key="Shift+Enter")
    web.browser.call("type", selector="#input", text="line two")
    web.browser.call("press", selector="#input", key="Enter")
    got = web.alice.wait_event("message", since=mark, text="line one\nline two")
    assert got["to"] == "broadcast" and got["from"]["nick"] == "bob"
    # the node says it sent it (its other faces and scripts draw the line from that)
    sent = web.bob.wait_event("sent", id=got["id"])
    assert sent["to"] == "broadcast" and sent["text"] == "line one\nline two"
    assert [r["id"] for r in sent["recipients"]] == [web.alice_id]
    web.browser.wait("(id) => lanchat.shown.get(id)?.querySelector('.ack.done')", got["id"])
    assert web.browser.eval("() => document.querySelector('#input').value") == ""
    web.browser.call("type", selector="#input", text="/help")
    web.browser.call("press", selector="#input", key="Enter")
    assert "/msg PEER TEXT" in web.browser.wait(
        "() => document.querySelector('#output').textContent")
    # the hostile page's forged send (previous test) never reached alice
    assert not [e for e in web.alice.events_named("message") if e["text"] == "csrf"]


def test_hostile_text_from_a_peer_renders_as_plain_text(web: Web) -> None:
    texts = ["<img src=x onerror=window.pwned=1>", "<script>window.pwned=2</script>",
             "\x1b[2J\x1b]0;owned\x07red \u202eevil"]
    for text in texts:
        web.alice.command(f"/all {text}")
    shown = ["<img src=x onerror=window.pwned=1>", "<script>window.pwned=2</script>",
             "^[[2J^[]0;owned^Gred <U+202E>evil"]
    for text in shown:
        web.wait_text(text)
    assert web.browser.eval("""() => [document.querySelectorAll(
        '#log img, #log script, #convs i, #log i').length, window.pwned === undefined]"""
                            ) == [0, True]
    nicks = web.browser.eval(
        "() => [...document.querySelectorAll('#log li .nick')].map(e => e.textContent)")
    assert HOSTILE_NICK in nicks


def test_a_file_dropped_in_the_page_arrives_verified(web: Web) -> None:
    data = os.urandom(300_000)
    key = f"peer:{web.alice_id}"
    web.open_conv(key)
    mark = web.alice.mark()
    web.browser.call("drop", selector="#main", name="dropped <b>.bin",
                     data=base64.b64encode(data).decode())
    offer = web.alice.wait_event("file_offer", since=mark)
    assert offer["name"] == "dropped _b_.bin" and offer["size"] == len(data)
    web.alice.command(f"/accept {offer['transfer']}")
    done = web.alice.wait_event("file_done", since=mark, transfer=offer["transfer"])
    assert done["digest"] and Path(done["path"]).read_bytes() == data  # verified, intact
    web.browser.wait("(t) => document.querySelector(`#transfers li[data-transfer='${t}'] "
                     ".tstate`)?.classList.contains('done')", offer["transfer"])


def test_an_offer_accepted_in_the_page_lands_and_downloads(web: Web, tmp_path: Path) -> None:
    src = tmp_path / "report.pdf"
    src.write_bytes(os.urandom(200_000))
    mark = web.bob.mark()
    web.alice.command(f"/file bob {src}")
    offer = web.bob.wait_event("file_offer", since=mark)
    tid = offer["transfer"]
    web.browser.call("click", selector=f'#transfers li[data-transfer="{tid}"] button.accept')
    done = web.bob.wait_event("file_done", since=mark, transfer=tid)
    assert done["digest"] and Path(done["path"]).read_bytes() == src.read_bytes()
    web.browser.wait("(t) => document.querySelector(`#transfers li[data-transfer='${t}'] "
                     "a.download`)", tid)
    digest = web.browser.eval("""async (t) => {
        const res = await fetch(document.querySelector(
            `#transfers li[data-transfer='${t}'] a.download`).href);
        const buf = await crypto.subtle.digest('SHA-256', await res.arrayBuffer());
        return [res.headers.get('Content-Disposition'),
                [...new Uint8Array(buf)].map(b => b.toString(16).padStart(2, '0')).join('')];
        }""", tid)
    assert digest == ["attachment; filename=\"report.pdf\"; filename*=UTF-8''report.pdf",
                      hashlib.sha256(src.read_bytes()).hexdigest()]


def test_the_safety_code_and_verify_button(web: Web) -> None:
    key = f"peer:{web.alice_id}"
    web.open_conv(key)
    web.browser.call("click", selector="#safety-btn")
    code = web.browser.wait("() => document.querySelector('#safety-code').textContent")
    mark = web.alice.mark()
    web.alice.command("/verify bob")
    theirs = web.alice.wait_event("output", since=mark)["data"]["code"]
    assert code == theirs
    web.browser.call("click", selector="#verify-btn")
    web.browser.wait("(k) => document.querySelector(`#convs button[data-conv='${k}'] "
                     ".mark.verified`)", key)


def test_rooms_and_peer_kinds_show_from_their_events(web: Web) -> None:
    """Rooms are conversations keyed by the `room` field; kinds and marks show on peers
    (synthetic events fed to the page's own event handler)."""
    peer = {"id": "x" * 52, "nick": "<b>jabber</b>", "online": True, "kind": "xmpp",
            "trust": "new"}
    real = web.browser.eval("() => lanchat.lastSeq")
    n = real + 1_000_000  # numbers the server will not reach in this test
    web.browser.eval("""([n, peer]) => applyEvents([
        {event: 'room_joined', n: n, ts: 1, room: '#ops'},
        {event: 'topic', n: n + 1, ts: 1, room: '#ops', topic: '<script>x</script> deploys'},
        {event: 'message', n: n + 2, ts: 1, id: 'r1', seq: 0, room: '#ops',
         from: {id: 'y'.repeat(52), nick: 'dave'}, to: 'broadcast', text: 'in the room'},
        {event: 'peer_joined', n: n + 3, ts: 1, peer: peer}])""", [n, peer])
    badge = web.browser.wait("() => document.querySelector("
                             "`#convs button[data-conv='room:#ops'] .badge`)?.textContent")
    assert badge == "1"
    marks = web.browser.eval("""(id) => [...document.querySelectorAll(
        `#convs button[data-conv='peer:${id}'] .mark`)].map(e => e.textContent)""", peer["id"])
    assert marks == ["xmpp", "unencrypted"]
    web.open_conv("room:#ops")
    assert web.browser.eval("() => document.querySelector('#conv-topic').textContent") == (
        "<script>x</script> deploys")
    web.browser.eval(f"() => applyEvents([{{event: 'message', n: {n + 4}, ts: 2, id: 'r2', "
                     "room: '#ops', from: {id: 'y'.repeat(52), nick: 'dave'}, "
                     "to: 'broadcast', text: 'live in the room'}])")
    web.wait_text("live in the room")
    web.browser.eval(f"() => applyEvents([{{event: 'room_left', n: {n + 5}, ts: 3, "
                     "room: '#ops'}])")
    web.browser.wait("() => lanchat.active === 'all' && "
                     "!document.querySelector(`#convs button[data-conv='room:#ops']`)")
    # two rooms of one name are two conversations (by room_id), each titled with whose;
    # an invitation is a notice naming the inviter with its trust mark, joining nothing
    a, b = "a" * 52, "b" * 52
    web.browser.eval("""([n, a, b]) => applyEvents([
        {event: 'room_joined', n: n, ts: 4, room: '#team (ann#aaaa)', room_id: '#team@' + a,
         kind: 'private'},
        {event: 'room_joined', n: n + 1, ts: 4, room: '#team (bo#bbbb)', room_id: '#team@' + b,
         kind: 'private'},
        {event: 'room_invited', n: n + 2, ts: 4, room: '#plans', room_id: '#plans@' + a,
         kind: 'private', creator: a, by: {id: a, nick: 'ann'}, trust: 'verified', members: 3,
         expires: 9}])""", [n + 6, a, b])
    titles = web.browser.wait("""() => [...document.querySelectorAll(
        "#convs button[data-conv^='room:#team@']")].map(e => e.textContent).join('|')""")
    assert "#team (ann#aaaa)" in titles and "#team (bo#bbbb)" in titles
    note = web.browser.eval("() => document.querySelector('#notice').textContent")
    assert note.startswith("ann\u2713 [aaaaaaaa] invites you to the private room #plans")
    assert "/join #plans" in note
    web.browser.eval("(n) => { lanchat.lastSeq = n; }", real)  # back to the server's count


def test_a_room_joined_from_the_page_carries_messages_both_ways(web: Web) -> None:
    """End to end with the rooms extension: /join typed in the page, the room becomes a
    conversation, a line typed there reaches the other member and theirs shows."""
    pytest.importorskip("lanchat.rooms")
    mark = web.alice.mark()
    web.alice.command("/join #lab")
    web.alice.wait_event("room_joined", since=mark, room="#lab")
    web.browser.call("type", selector="#input", text="/join #lab")
    web.browser.call("press", selector="#input", key="Enter")
    web.bob.wait_event("room_joined", room="#lab", timeout=15)
    web.alice.wait_event("member_joined", since=mark, room="#lab", timeout=15)
    web.open_conv("room:#lab")
    web.browser.call("type", selector="#input", text="hello room")
    web.browser.call("press", selector="#input", key="Enter")
    got = web.alice.wait_event("message", since=mark, text="hello room")
    assert got["room"] == "#lab"
    web.alice.command("/msg #lab welcome <b>bob</b>")
    web.wait_text("welcome <b>bob</b>")
    assert "hello room" in web.texts()
    web.open_conv("all")
    assert "welcome <b>bob</b>" not in web.texts()


def test_the_keyboard_alone_moves_between_conversations_and_sends(web: Web) -> None:
    """Alt+Down and Alt+Up switch conversations (focus follows); Enter in the box sends."""
    web.open_conv("all")
    web.browser.call("press", selector="#input", key="Alt+ArrowDown")
    moved = web.browser.wait("() => lanchat.active !== 'all' && "
                             "document.activeElement.dataset.conv === lanchat.active "
                             "&& lanchat.active")
    assert moved.startswith(("peer:", "room:"))
    web.browser.call("press", selector="#convs button[aria-current='true']",
                     key="Alt+ArrowUp")
    web.browser.wait("() => lanchat.active === 'all'")
    mark = web.alice.mark()
    web.browser.call("click", selector="#input")
    web.browser.call("type", selector="#input", text="by keys only")
    web.browser.call("press", selector="#input", key="Enter")
    web.alice.wait_event("message", since=mark, text="by keys only")


def test_a_dropped_socket_reconnects_and_loses_nothing(web: Web) -> None:
    """Messages that arrive while the page's socket is down are replayed once it is back."""
    web.open_conv("all")
    web.browser.eval("() => { lanchat.hold = true; lanchat.socket.close(); }")
    web.browser.wait("() => lanchat.socket === null")
    mark = web.bob.mark()
    for i in range(30):
        web.alice.command(f"/all while away {i}")
    web.bob.wait_count("message", 30, pred=lambda e: e["text"].startswith("while away"))
    assert web.bob.mark() > mark
    assert not [t for t in web.texts() if t.startswith("while away")]
    web.browser.eval("() => lanchat.release()")
    web.wait_text("while away 29")
    away = [t for t in web.texts() if t.startswith("while away")]
    assert away == [f"while away {i}" for i in range(30)]


def test_a_message_shown_live_while_the_history_loads_is_kept(web: Web) -> None:
    """The history page was read before a message was stored; the message is shown live
    before that page comes back: the page's rows must not wipe it."""
    web.open_conv("all")
    web.browser.eval("""() => {
        const real = window.fetch;
        window.heldHistory = new Promise((done) => { window.releaseHistory = done; });
        window.fetch = async (url, options) => {
            const res = await real(url, options);
            if (String(url).includes('/api/history')) {
                window.fetch = real;  // only this once
                window.historyRead = true;
                await window.heldHistory;
            }
            return res; }; }""")
    web.browser.call("click", selector='#convs button[data-conv="all"]')
    web.browser.wait("() => window.historyRead === true")
    seen = web.browser.eval("() => lanchat.received")
    web.alice.command("/all stored after the history was read")
    web.browser.wait("(n) => lanchat.received > n", seen)
    web.browser.eval("() => window.releaseHistory()")
    web.browser.wait("() => !lanchat.loading")
    assert web.texts()[-1:] == ["stored after the history was read"]


def carol_shell(web: Web, term: Any, tmp_path: Path) -> None:
    """Carol's shell in `term` (a test_shell_tmux.Tmux) beside the browser, knowing alice."""
    from test_shell_tmux import shell_argv

    term.start(shell_argv(web.lab[0], web.lab, tmp_path / "carol", "carol",
                          f"{web.alice.host.ip}:{web.alice.port}"))
    term.wait_text("lanchat: you are carol")
    term.wait_text("[1] is here")


def test_the_shell_and_its_web_window_show_each_others_lines_once(web: Web,
                                                                  tmp_path: Path) -> None:
    """Carol's shell (in tmux, beside the browser) opens its own window with /web: a line
    typed in the page shows in the shell's buffer, and one typed in the shell shows in the
    page live; each once, with its delivered mark."""
    from test_shell_tmux import TMUX, Tmux

    if TMUX is None:
        pytest.skip("tmux is not installed")
    term = Tmux(tmp_path, width=160, height=30)
    try:
        carol_shell(web, term, tmp_path)
        term.type("/web --no-browser")
        term.key("Enter")
        screen = term.wait_text("lanchat web: http://127.0.0.1:")
        url = re.search(r"lanchat web: (http://127\.0\.0\.1:\d+/\?token=\S+)", screen)
        assert url is not None, screen
        web.browser.call("open", url=url.group(1))
        mark = web.alice.mark()
        web.browser.call("type", selector="#input", text="typed in the page")
        web.browser.call("press", selector="#input", key="Enter")
        from_page = web.alice.wait_event("message", since=mark, text="typed in the page")
        assert from_page["from"]["nick"] == "carol"
        web.browser.wait("(id) => lanchat.shown.get(id)?.querySelector('.ack.done')",
                         from_page["id"])
        screen = term.wait_for(lambda s: "<carol> typed in the page 1/1 ✓" in s
                               or "✓ delivered to 1 of 1" in s, "the page's line in the shell")
        assert sum("<carol> typed in the page" in ln for ln in screen.splitlines()) == 1, screen
        term.type("typed in the shell")
        term.key("Enter")
        from_shell = web.alice.wait_event("message", since=mark, text="typed in the shell")
        web.wait_text("typed in the shell")
        web.browser.wait("(id) => lanchat.shown.get(id)?.querySelector('.ack.done')",
                         from_shell["id"])
        texts = web.texts()
        assert texts.count("typed in the page") == texts.count("typed in the shell") == 1, texts
        term.type("/quit")
        term.key("Enter")
        term.wait_for(lambda s: term.dead(), "the shell exiting")
        web.alice.wait_event("peer_left", peer={"nick": "carol"}, reason="bye")
    finally:
        term.close()
        web.browser.call("open", url=web.url.split("?", 1)[0])  # bob's page again


def test_screenshots_for_the_readme(web: Web, tmp_path: Path) -> None:
    """With LANCHAT_SCREENSHOTS=DIR: the web window, and the shell in tmux (its screen
    with colours, captured by tmux and shown by the same browser), as PNG files."""
    folder = os.environ.get("LANCHAT_SCREENSHOTS")
    if not folder:
        pytest.skip("set LANCHAT_SCREENSHOTS=DIR to write the README's screenshots")
    from rich.console import Console
    from rich.terminal_theme import MONOKAI
    from rich.text import Text
    from test_shell_tmux import TMUX, Tmux

    out = Path(folder).resolve()
    out.mkdir(parents=True, exist_ok=True)
    web.browser.call("open", url=web.url.split("?", 1)[0])  # fresh state, no test props
    key = f"peer:{web.alice_id}"
    web.open_conv(key)
    mark = web.bob.mark()
    web.alice.command("/msg bob Lunch at noon? The usual place.")
    web.bob.wait_event("message", since=mark, text="Lunch at noon? The usual place.")
    web.wait_text("Lunch at noon? The usual place.")
    web.browser.call("type", selector="#input", text="Yes! I'll bring the slides.")
    web.browser.call("press", selector="#input", key="Enter")
    web.wait_text("Yes! I'll bring the slides.")
    web.browser.call("screenshot", path=str(out / "web.png"))
    assert (out / "web.png").stat().st_size > 10_000
    if TMUX is None:
        pytest.skip("tmux is not installed: no shell screenshot")
    term = Tmux(tmp_path, width=100, height=24)
    try:
        carol_shell(web, term, tmp_path)
        web.alice.command("/all Slides are up: /file coming in a minute")
        term.wait_text("Slides are up")
        term.type("/list")
        term.key("Enter")
        term.wait_for(lambda s: "online" in s, "the peer list")
        term.type("hi all, carol here")
        term.wait_text("carol here")
        screen = term.tmux("capture-pane", "-p", "-e", "-t", "t")
    finally:
        term.close()
    console = Console(record=True, width=100, file=open(os.devnull, "w"))  # noqa: SIM115
    console.print(Text.from_ansi(screen), end="")
    html = console.export_html(inline_styles=True, theme=MONOKAI)
    web.browser.call("render", html=html, path=str(out / "shell.png"), width=900, height=470)
    assert (out / "shell.png").stat().st_size > 10_000
