"""The web window's server without a browser: the guard, the feed, the API (in-process
nodes on 127.0.0.1). The browser tests are in test_web_browser.py."""

from __future__ import annotations

import http.client
import json
import re
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

pytest.importorskip("aiohttp")

from lanchat.web import server_of, start_on  # noqa: E402
from lanchat.web.live import Feed  # noqa: E402
from lanchat.web.security import content_disposition  # noqa: E402
from nodes import Peers  # noqa: E402
from transfer_peers import Peer, open_pair, random_file  # noqa: E402


class Browserless:
    """Plain HTTP to the web server, with full control of Host, Origin and cookies."""

    def __init__(self, url: str) -> None:
        m = re.match(r"http://(127\.0\.0\.1):(\d+)/\?token=(\S+)$", url)
        assert m, url
        self.host, self.port, self.token = m.group(1), int(m.group(2)), m.group(3)
        self.cookie = ""

    def request(self, method: str, path: str, *, host: str | None = None,
                origin: str | None = None, cookie: bool = True, body: bytes | None = None,
                headers: dict[str, str] | None = None) -> http.client.HTTPResponse:
        conn = http.client.HTTPConnection(self.host, self.port, timeout=10)
        h = {"Host": host or f"{self.host}:{self.port}", **(headers or {})}
        if origin is not None:
            h["Origin"] = origin
        if cookie and self.cookie:
            h["Cookie"] = self.cookie
        conn.request(method, path, body=body, headers=h)
        res = conn.getresponse()
        res.read_body = res.read()  # type: ignore[attr-defined]
        conn.close()
        return res

    @property
    def origin(self) -> str:
        return f"http://{self.host}:{self.port}"

    def login(self) -> http.client.HTTPResponse:
        res = self.request("GET", f"/?token={self.token}", cookie=False)
        self.cookie = res.getheader("Set-Cookie", "").split(";", 1)[0]
        return res

    def json(self, method: str, path: str, data: Any = None) -> tuple[int, Any]:
        body = json.dumps(data).encode() if data is not None else None
        res = self.request(method, path, origin=self.origin, body=body,
                           headers={"Content-Type": "application/json"})
        raw = res.read_body  # type: ignore[attr-defined]
        try:
            return res.status, json.loads(raw)
        except ValueError:
            return res.status, raw.decode()


@pytest.fixture
def pair(tmp_path: Path) -> Iterator[tuple[Peer, Peer, Browserless]]:
    """bob runs the web window; alice is his peer, both with file transfer (the shared
    two-node fixture's pair)."""
    made: list[Peer] = []
    try:
        alice, bob = open_pair(tmp_path, made, {}, {})
        yield alice, bob, Browserless(start_on(bob.node).url)
    finally:
        for peer in reversed(made):
            peer.close()


def test_the_token_becomes_a_strict_httponly_cookie_and_leaves_the_url(
        pair: tuple[Peer, Peer, Browserless]) -> None:
    """Opening the printed URL sets the cookie and redirects to an address without the key."""
    _, bob, web = pair
    ready = bob.log.wait("web_ready")[0]
    assert ready["url"].startswith("http://127.0.0.1:")
    res = web.login()
    assert res.status == 303 and res.getheader("Location") == "/"
    cookie = res.getheader("Set-Cookie", "")
    assert "HttpOnly" in cookie and "SameSite=Strict" in cookie and "Path=/" in cookie
    assert web.token not in cookie
    page = web.request("GET", "/")
    assert page.status == 200
    html = page.read_body.decode()  # type: ignore[attr-defined]
    csp = page.getheader("Content-Security-Policy", "")
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert "default-src 'none'" in csp
    scripts = re.findall(r"<script\b[^>]*>(.*?)</script>", html, re.S)
    assert scripts and all(body.strip() == "" for body in scripts)  # no inline script
    assert all("src=" in tag for tag in re.findall(r"<script\b[^>]*>", html))
    assert " on" not in re.sub(r"<script.*?</script>", "", html).lower().replace(
        " one", "")  # no inline handlers (onclick=...)


def test_requests_without_the_cookie_or_with_a_wrong_token_are_refused(
        pair: tuple[Peer, Peer, Browserless]) -> None:
    _, bob, web = pair
    for path in ("/", "/api/state", "/static/app.js", "/api/history?conv=all", "/ws"):
        assert web.request("GET", path, cookie=False).status == 403, path
    assert web.request("GET", "/?token=wrong" + web.token[:8], cookie=False).status == 403
    web.login()
    assert web.request("GET", "/api/state").status == 200
    assert server_of(bob.node).stats()["counters"]["refused_cookie"] >= 5


def test_a_foreign_host_header_is_refused_even_with_the_cookie(
        pair: tuple[Peer, Peer, Browserless]) -> None:
    """DNS rebinding: a page of evil.example resolved to 127.0.0.1 sends its own Host."""
    _, _, web = pair
    web.login()
    for host in (f"evil.example:{web.port}", f"localhost:{web.port}", "127.0.0.1",
                 f"127.0.0.1:{web.port + 1}"):
        res = web.request("GET", "/api/state", host=host)
        assert res.status == 421, host
    assert web.request("GET", "/api/state").status == 200


def test_writes_and_sockets_from_another_origin_are_refused(
        pair: tuple[Peer, Peer, Browserless]) -> None:
    alice, _, web = pair
    web.login()
    body = json.dumps({"conv": "all", "text": "forged"}).encode()
    for origin in ("http://evil.example", "null", None):
        res = web.request("POST", "/api/send", origin=origin, body=body,
                          headers={"Content-Type": "application/json"})
        assert res.status == 403, origin
    upgrade = {"Connection": "Upgrade", "Upgrade": "websocket", "Sec-WebSocket-Version": "13",
               "Sec-WebSocket-Key": "dGhlIHNhbXBsZSBub25jZQ=="}
    assert web.request("GET", "/ws", origin="http://evil.example", headers=upgrade).status == 403
    assert web.request("GET", "/ws", headers=upgrade).status == 403  # no Origin at all
    assert web.request("GET", "/ws", origin=web.origin, headers=upgrade).status == 101
    status, sent = web.json("POST", "/api/send", {"conv": "all", "text": "from the page"})
    assert status == 200, sent
    got = alice.log.wait("message", lambda e: e["id"] == sent["id"])[0]
    assert got["text"] == "from the page" and got["to"] == "broadcast"
    assert not [e for e in alice.log.named("message") if e["text"] == "forged"]


def test_history_pages_back_with_the_before_cursor(pair: tuple[Peer, Peer, Browserless]) -> None:
    """A direct conversation pages back through the store; message events carry the seq."""
    alice, bob, web = pair
    web.login()
    ids = [alice.node.send("bob", f"m{i}") for i in range(12)]
    events = bob.log.wait("message", lambda e: e["id"] in ids, count=12)
    assert all(isinstance(e["seq"], int) and e["seq"] > 0 for e in events)
    conv = f"peer:{alice.node.node_id}"
    status, page = web.json("GET", f"/api/history?conv={conv}&limit=5")
    assert status == 200 and [m["text"] for m in page["messages"]] == [f"m{i}" for i in
                                                                        range(7, 12)]
    before = page["messages"][0]["seq"]
    status, older = web.json("GET", f"/api/history?conv={conv}&limit=5&before={before}")
    assert [m["text"] for m in older["messages"]] == [f"m{i}" for i in range(2, 7)]
    status, everyone = web.json("GET", "/api/history?conv=all")
    assert everyone["messages"] == []  # direct messages are not in the everyone view
    status, found = web.json("GET", "/api/search?q=m11")
    assert [(m["text"], m["broadcast"]) for m in found["messages"]] == [("m11", False)]


def test_downloads_only_finished_verified_files_with_a_safe_name(
        pair: tuple[Peer, Peer, Browserless], tmp_path: Path) -> None:
    """The download route serves a verified file from the downloads folder, nothing else."""
    alice, bob, web = pair
    web.login()
    src = random_file(tmp_path / 'we"ird näme;.bin', 50_000)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer", lambda e: e["transfer"] == t.id)
    assert web.request("GET", f"/api/download/{t.id}").status == 404  # not accepted yet
    status, answer = web.json("POST", f"/api/transfers/{t.id}/accept")
    assert status == 200, answer
    done = bob.log.wait("file_done", lambda e: e["transfer"] == t.id)[0]
    res = web.request("GET", f"/api/download/{t.id}")
    assert res.status == 200 and res.read_body == src.read_bytes()  # type: ignore[attr-defined]
    disposition = res.getheader("Content-Disposition", "")
    assert disposition == ("attachment; filename=\"we_ird n_me_.bin\"; "
                           "filename*=UTF-8''we_ird%20n%C3%A4me%3B.bin")
    assert res.getheader("Content-Type") == "application/octet-stream"
    assert done["digest"] and Path(done["path"]).read_bytes() == src.read_bytes()
    for tid in ("../../etc/passwd", "nope", t.id[:4]):
        assert web.request("GET", f"/api/download/{tid}").status == 404
    # a verified file moved out of the downloads folder is not served
    Path(done["path"]).rename(tmp_path / "moved.bin")
    Path(done["path"]).symlink_to(tmp_path / "moved.bin")
    assert web.request("GET", f"/api/download/{t.id}").status == 404


def test_a_file_put_by_the_page_is_offered_and_arrives_verified(
        pair: tuple[Peer, Peer, Browserless], tmp_path: Path) -> None:
    alice, bob, web = pair
    web.login()
    data = bytes(range(256)) * 1000
    res = web.request("PUT", f"/api/upload?to={alice.node.node_id}&name=..%2F..%2Fx.bin",
                      origin=web.origin, body=data)
    assert res.status == 200, res.read_body  # type: ignore[attr-defined]
    sent = json.loads(res.read_body)  # type: ignore[attr-defined]
    assert "/" not in sent["name"] and sent["size"] == len(data)
    offer = alice.log.wait("file_offer", lambda e: e["transfer"] == sent["transfer"])[0]
    alice.files.accept(offer["transfer"])
    done = alice.log.wait("file_done", lambda e: e["transfer"] == sent["transfer"])[0]
    assert Path(done["path"]).read_bytes() == data
    bob.log.wait("file_done", lambda e: e["transfer"] == sent["transfer"])


def test_the_feed_replays_after_a_drop_and_says_when_it_cannot() -> None:
    """Events after the last one a page saw come back in order; too old means reset."""
    import asyncio

    loop = asyncio.new_event_loop()
    try:
        feed = Feed(loop, ring=5)
        for i in range(3):
            feed.publish("message", {"text": f"t{i}"}, 0.0)
        assert [json.loads(e)["text"] for e in feed.since(1) or []] == ["t1", "t2"]
        assert feed.since(3) == []
        assert feed.can_resume(feed.epoch, 1) and not feed.can_resume("other", 1)
        for i in range(3, 10):
            feed.publish("message", {"text": f"t{i}"}, 0.0)
        assert feed.since(2) is None and not feed.can_resume(feed.epoch, 2)
        assert [json.loads(e)["n"] for e in feed.since(5) or []] == [6, 7, 8, 9, 10]
    finally:
        loop.close()


def test_content_disposition_keeps_quotes_and_controls_out_of_the_header() -> None:
    header = content_disposition('a"b\r\nSet-Cookie: x=1;\x1b[31m.txt')
    assert "\r" not in header and "\n" not in header and "\x1b" not in header
    assert header.startswith('attachment; filename="a_b__Set-Cookie: x=1__[31m.txt"')
    assert header.endswith("filename*=UTF-8''a%22b%0D%0ASet-Cookie%3A%20x%3D1%3B%1B%5B31m.txt")
    assert content_disposition("..") == 'attachment; filename="download"; filename*=UTF-8\'\'..'


def test_slash_web_opens_the_same_window_for_the_running_node(tmp_path: Path) -> None:
    """/web starts the server once on a running node and answers its address."""
    from lanchat.commands import CommandError, Context, build_registry, execute
    from lanchat.plugins import Plugins

    peer = Peer(tmp_path / "carol", "carol", [])
    plugins = Plugins(None, entry_points=False)
    try:
        ctx = Context(peer.node, build_registry(plugins), plugins)
        first = execute(ctx, "/web --no-browser")
        again = execute(ctx, "/web --no-browser")
        assert first is not None and again is not None
        assert first.data["url"] == again.data["url"] == server_of(peer.node).url
        assert first.text == f"lanchat web: {first.data['url']}"
        assert peer.log.wait("web_ready")[0]["url"] == first.data["url"]
        web = Browserless(first.data["url"])
        assert web.login().status == 303 and web.request("GET", "/api/state").status == 200
        with pytest.raises(CommandError):
            execute(ctx, "/web please")
    finally:
        plugins.close()
        peer.close()


def test_lanchat_web_refuses_a_bad_port() -> None:
    from lanchat.cli import main

    assert main(["web", "--web-port", "70000", "--no-browser"]) == 2


def test_slash_commands_typed_in_the_page_run_like_in_the_shell(
        pair: tuple[Peer, Peer, Browserless]) -> None:
    alice, bob, web = pair
    web.login()
    status, out = web.json("POST", "/api/command", {"line": "/whois alice"})
    assert status == 200 and "fingerprint" in out["text"]
    assert out["data"]["id"] == alice.node.node_id
    status, out = web.json("POST", "/api/command", {"line": "/msg alice via a command"})
    assert status == 200
    alice.log.wait("message", lambda e: e["text"] == "via a command")
    assert web.json("POST", "/api/command", {"line": "/quit"})[0] == 400
    assert web.json("POST", "/api/command", {"line": "/nosuch"})[0] == 400
    assert web.json("POST", "/api/command", {"line": "hello"})[0] == 400


def test_the_first_line_to_an_unencrypted_peer_is_held_once_as_in_the_shell(
        pair: tuple[Peer, Peer, Browserless]) -> None:
    """A Bonjour chat peer gets text in the clear: the page's first line to it is held with
    the shell's words, and goes when sent again."""
    _, bob, web = pair
    web.login()
    carol = "c" * 52
    bob.node.call(lambda: bob.node.presence.seen(carol, "xmpp", time.time(), nick="carol",
                                                 address="127.0.0.9", port=5298, kind="xmpp"))
    status, held = web.json("POST", "/api/send", {"conv": f"peer:{carol}", "text": "psst"})
    assert status == 200 and held["sent"] is False and held["confirm"] == "unencrypted"
    assert "not encrypted" in held["text"]
    status, sent = web.json("POST", "/api/send", {"conv": f"peer:{carol}", "text": "psst"})
    assert status == 200 and sent["text"] == "psst" and sent.get("id")


def test_a_room_is_a_conversation_of_the_page(peers: Peers) -> None:
    """Joined from the page's command line, posted to as `room:#name`, its history and
    the state list it (with the rooms extension, when it is there)."""
    pytest.importorskip("lanchat.rooms")
    from lanchat import rooms, transfer

    assembled = {"extensions": {"files": transfer.attach, "rooms": rooms.attach}}
    a, b = peers.pair(alice=assembled, bob=assembled)
    alice, alice_log, bob, bob_log = a.node, a.log, b.node, b.log
    web = Browserless(start_on(bob).url)
    web.login()
    bob_log.wait("peer_joined")
    assert web.json("POST", "/api/command", {"line": "/join #ops"})[0] == 200
    bob_log.wait("room_joined", lambda e: e["room"] == "#ops")
    from lanchat.rooms import rooms_of

    rooms_of(alice).join("#ops")
    bob_log.wait("member_joined", lambda e: e["room"] == "#ops")
    status, sent = web.json("POST", "/api/send", {"conv": "room:#ops", "text": "hi room"})
    assert status == 200, sent
    got = alice_log.wait("message", lambda e: e["id"] == sent["id"])[0]
    assert got["room"] == "#ops" and got["text"] == "hi room"
    status, page = web.json("GET", "/api/history?conv=room:%23ops")
    assert [m["text"] for m in page["messages"]] == ["hi room"]
    status, state = web.json("GET", "/api/state")
    assert [r["room"] for r in state["rooms"]] == ["#ops"]


def test_lanchat_web_prints_its_address_and_quits_on_quit(tmp_path: Path) -> None:
    """`lanchat web --no-browser` in text mode: one line with the address; /quit ends it
    (the end of stdin alone does not)."""
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "lanchat", "--interface", "127.0.0.1", "--port", "0",
         "--no-mdns", "--no-beacon", "--home", str(tmp_path / "home"), "--nick", "dan",
         "web", "--no-browser"], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    try:
        assert proc.stdout is not None and proc.stdin is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.startswith("lanchat web: "):
                break
        assert re.fullmatch(r"lanchat web: http://127\.0\.0\.1:\d+/\?token=\S+\n", lines[-1])
        proc.stdin.write("/quit\n")
        proc.stdin.flush()
        assert proc.wait(20) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_a_symlink_swapped_in_after_the_check_is_not_followed(
        pair: tuple[Peer, Peer, Browserless], tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The file is checked, then replaced by a link to a secret before it is opened: the
    route must serve what it checked or nothing, never the link's target."""
    from lanchat.web import files

    alice, bob, web = pair
    web.login()
    src = random_file(tmp_path / "plain.bin", 20_000)
    t = alice.files.offer("bob", src)
    bob.log.wait("file_offer", lambda e: e["transfer"] == t.id)
    assert web.json("POST", f"/api/transfers/{t.id}/accept")[0] == 200
    done = bob.log.wait("file_done", lambda e: e["transfer"] == t.id)[0]
    secret = tmp_path / "secret.txt"
    secret.write_bytes(b"private key material")
    checked = files.finished_file

    def check_then_swap(node: Any, tid: str) -> Path | None:
        path = checked(node, tid)
        if path is not None:
            path.unlink()
            path.symlink_to(secret)
        return path

    monkeypatch.setattr(files, "finished_file", check_then_swap)
    res = web.request("GET", f"/api/download/{t.id}")
    assert b"private key material" not in res.read_body  # type: ignore[attr-defined]
    assert res.status == 404
    assert Path(done["path"]).is_symlink()


def test_an_upload_without_a_length_stops_at_the_disk_bound(
        pair: tuple[Peer, Peer, Browserless], monkeypatch: pytest.MonkeyPatch) -> None:
    """A chunked PUT says no size up front: it is cut off once it would leave less than
    the spare space free, its partial copy removed and nothing offered."""
    import shutil as shutil_module

    from lanchat.web import files

    alice, bob, web = pair
    web.login()
    real = shutil_module.disk_usage
    room = 100_000

    def tight(path: Any) -> Any:
        usage = real(path)
        return usage._replace(free=files.UPLOAD_SPARE_BYTES + room)

    monkeypatch.setattr(files.shutil, "disk_usage", tight)
    chunks = [b"x" * 50_000] * 6  # 300 kB > room
    conn = http.client.HTTPConnection(web.host, web.port, timeout=10)
    conn.request("PUT", f"/api/upload?to={alice.node.node_id}&name=big.bin",
                 body=iter(chunks), encode_chunked=True,
                 headers={"Host": f"{web.host}:{web.port}", "Origin": web.origin,
                          "Cookie": web.cookie, "Transfer-Encoding": "chunked"})
    res = conn.getresponse()
    body = res.read()
    conn.close()
    assert res.status == 507, body
    uploads = bob.node.config.home / files.UPLOADS_DIR
    assert [p for p in uploads.rglob("*") if p.is_file()] == []
    status, _ = web.json("GET", "/api/state")
    assert status == 200
    assert not any(r["name"] == "big.bin" for r in bob.files.transfers())


def test_the_feed_ring_is_bounded_in_bytes_not_only_in_events() -> None:
    """A peer's longest messages (16 K astral characters, 12 bytes each once escaped to
    JSON) must not grow the replay ring to gigabytes (20,000 of them would be 3.9 GB): it
    keeps at most 64 MiB, and a page further behind than that is told to reload."""
    import asyncio
    import tracemalloc

    from lanchat.protocol import MAX_TEXT_CHARS

    limit = 64 << 20
    text = "\U0001f600" * MAX_TEXT_CHARS
    count = 2 * limit // (12 * MAX_TEXT_CHARS)
    loop = asyncio.new_event_loop()
    tracemalloc.start()
    try:
        feed = Feed(loop)
        for _ in range(count):
            feed.publish("message", {"text": text}, 0.0)
        held, _ = tracemalloc.get_traced_memory()
        assert held < limit + (4 << 20), held
        assert feed.since(0) is None and not feed.can_resume(feed.epoch, 0)
        assert feed.can_resume(feed.epoch, count - 10)
        assert [json.loads(e)["n"] for e in feed.since(count - 2) or []] == [count - 1, count]
    finally:
        tracemalloc.stop()
        loop.close()


def test_a_frame_holds_at_most_a_mebibyte_of_events_unless_one_is_bigger() -> None:
    """A page catching up on large messages gets them in frames of about 1 MiB, not one
    frame of 2,000 of them (400 MB for the browser to parse at once), and none is lost."""
    import asyncio

    from lanchat.protocol import MAX_TEXT_CHARS

    loop = asyncio.new_event_loop()
    try:
        feed = Feed(loop)
        for i in range(12):
            feed.publish("message", {"text": f"{i:02}" + "\u00e9" * MAX_TEXT_CHARS}, 0.0)
        feed.publish("message", {"text": "\U0001f600" * (8 * MAX_TEXT_CHARS)}, 0.0)
        last, frames = 0, []
        while batch := feed.since(last):
            frames.append(batch)
            last += len(batch)
        assert all(sum(map(len, f)) <= 1 << 20 or len(f) == 1 for f in frames)
        assert [json.loads(e)["n"] for f in frames for e in f] == list(range(1, 14))
        assert len(frames) > 2
    finally:
        loop.close()
