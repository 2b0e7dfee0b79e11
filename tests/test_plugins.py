"""The plugin manager, the documented hooks and example, and the plugin CLI, with real nodes
on 127.0.0.1."""

from __future__ import annotations

import functools
import inspect
import io
import json
import logging
import re
import signal
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lanchat import hookspecs
from lanchat.cli import main
from lanchat.commands import Context, Output, build_registry
from lanchat.config import Config
from lanchat.headless import run
from lanchat.hookspecs import hookimpl
from lanchat.plugins import Plugins
from tests.nodes import Peer, Peers

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "PLUGINS.md"
HOOKS = sorted(name for name, f in vars(hookspecs).items()
               if name.startswith("lanchat_") and inspect.isfunction(f))


def texts_from(peer: Peer, other: Peer) -> list[str]:
    """Texts `peer` received from `other`, in arrival order."""
    return [e["text"] for e in peer.log.named("message") if e["from"]["id"] == other.id]


@pytest.fixture
def keep_signals() -> Iterator[None]:
    """lanchat.cli.main installs a SIGTERM handler; put pytest's back afterwards."""
    old = signal.getsignal(signal.SIGTERM)
    yield
    signal.signal(signal.SIGTERM, old)


def doc_blocks() -> tuple[str, str]:
    """The example plugin's code and the transcript after it, from docs/PLUGINS.md."""
    section = DOC.read_text(encoding="utf-8").split("## A complete example", 1)[1]
    blocks = re.findall(r"```(\w*)\n(.*?)```", section, re.DOTALL)
    assert blocks[0][0] == "python" and blocks[1][0] == ""
    return blocks[0][1], blocks[1][1]


def test_every_hook_is_documented_with_its_arguments() -> None:
    """Each hookspec has a row `name(args)` in the hooks table, and no row is stale."""
    doc = DOC.read_text(encoding="utf-8")
    rows = set(re.findall(r"^\| `(lanchat_\w+\([^)]*\))` \|", doc, re.MULTILINE))
    expected = {f"{name}({', '.join(inspect.signature(getattr(hookspecs, name)).parameters)})"
                for name in HOOKS}
    assert len(HOOKS) >= 8
    assert expected - rows == set(), "hooks missing from docs/PLUGINS.md"
    assert rows - expected == set(), "docs/PLUGINS.md documents hooks that do not exist"


def test_the_documented_example_works_as_written(
        peers: Peers, tmp_path: Path) -> None:
    """The example plugin, dropped into <home>/plugins/, gives exactly the documented output."""
    code, transcript = doc_blocks()
    folder = tmp_path / "bob" / "plugins"
    folder.mkdir(parents=True)
    (folder / "counter.py").write_text(code, encoding="utf-8")
    plugins = Plugins(tmp_path / "bob", entry_points=False)
    assert plugins.failures == [] and plugins.sources["counter"] == str(folder / "counter.py")
    alice, bob = peers.pair(bob={"plugins": plugins})
    ids = [alice.node.send("bob", "hi"), alice.node.send("bob", "you there?")]
    bob.log.wait("message", lambda e: e["id"] in ids, count=2)
    token = object()
    bob.node.emit("test_probe", token=token)
    bob.log.wait("test_probe", lambda e: e["token"] is token)
    steps = re.split(r"^(/.*)$", transcript, flags=re.MULTILINE)[1:]
    assert len(steps) == 6
    for command, expected in zip(steps[::2], steps[1::2], strict=True):
        out = bob.run(command)
        assert out is not None and out.text == expected.strip("\n"), command
    shrug = "\u00af\\_(\u30c4)_/\u00af"
    alice.log.wait("message", lambda e: e["text"] == shrug)
    assert texts_from(alice, bob) == [shrug]
    assert plugins.failures == []


class Recorder:
    """Implements every hook and records each call."""

    def __init__(self) -> None:
        self.calls: list[str] = []

    @hookimpl
    def lanchat_register_commands(self, registry: Any) -> None:
        self.calls.append("lanchat_register_commands")

    @hookimpl
    def lanchat_startup(self, node: Any) -> None:
        self.calls.append("lanchat_startup")

    @hookimpl
    def lanchat_shutdown(self, node: Any) -> None:
        self.calls.append("lanchat_shutdown")

    @hookimpl
    def lanchat_peer_joined(self, node: Any, peer: dict[str, Any]) -> None:
        self.calls.append("lanchat_peer_joined")

    @hookimpl
    def lanchat_peer_left(self, node: Any, peer: dict[str, Any], reason: str) -> None:
        self.calls.append("lanchat_peer_left")

    @hookimpl
    def lanchat_message_received(self, node: Any, message: dict[str, Any]) -> None:
        self.calls.append("lanchat_message_received")

    @hookimpl
    def lanchat_message_outgoing(self, node: Any, message: dict[str, Any]) -> None:
        self.calls.append("lanchat_message_outgoing")

    @hookimpl
    def lanchat_file_received(self, node: Any, transfer: dict[str, Any]) -> None:
        self.calls.append("lanchat_file_received")

    @hookimpl
    def lanchat_room_joined(self, node: Any, room: dict[str, Any]) -> None:
        self.calls.append("lanchat_room_joined")


def broken_in(hook: str) -> Recorder:
    """A plugin whose `hook` raises and whose other hooks record calls."""
    recorded = getattr(Recorder, hook)

    @functools.wraps(recorded)
    def boom(self: Recorder, *args: Any) -> None:
        raise RuntimeError(f"broken {hook}")

    broken: type[Recorder] = type(f"BrokenIn_{hook}", (Recorder,), {hook: boom})
    return broken()


def call_twice(plugins: Plugins, hook: str) -> None:
    """Call `hook` twice, the way lanchat does."""
    args: dict[str, Any] = {"registry": None, "node": None, "peer": {}, "reason": "bye",
                            "message": {}, "transfer": {}, "room": {}}
    for _ in range(2):
        if hook == "lanchat_register_commands":
            build_registry(plugins)
        else:
            params = inspect.signature(getattr(hookspecs, hook)).parameters
            plugins.call(hook, **{p: args[p] for p in params})


@pytest.mark.parametrize("hook", HOOKS)
def test_a_plugin_that_raises_is_reported_once_and_disabled(hook: str) -> None:
    """A plugin raising in one hook is reported once and unregistered; the others still run."""
    broken, good = broken_in(hook), Recorder()
    plugins = Plugins(None, entry_points=False, extra=[broken, good])
    call_twice(plugins, hook)
    assert [(f.where, f.error) for f in plugins.failures] == [
        (hook, f"RuntimeError: broken {hook}")]
    assert good.calls.count(hook) == 2
    assert not plugins.pm.is_registered(broken)
    other = next(h for h in HOOKS if h != hook)
    call_twice(plugins, other)
    assert other not in broken.calls
    disabled = [p for p in plugins.listing() if not p["enabled"]]
    assert [p["error"] for p in disabled] == [f"RuntimeError: broken {hook}"]


def test_a_hook_failure_on_a_live_node_leaves_messages_flowing(
        peers: Peers) -> None:
    """Bob's broken message hook is dropped at the first message; delivery and others go on."""
    broken, good = broken_in("lanchat_message_received"), Recorder()
    plugins = Plugins(None, entry_points=False, extra=[broken, good])
    alice, bob = peers.pair(bob={"plugins": plugins})
    ids = [alice.node.send("bob", f"m{i}") for i in range(3)]
    bob.log.wait("message", lambda e: e["id"] in ids, count=3)
    reply = bob.run("/msg alice still here")
    assert reply is not None
    alice.log.wait("message", lambda e: e["text"] == "still here")
    assert good.calls.count("lanchat_message_received") == 3
    assert [f.where for f in plugins.failures] == ["lanchat_message_received"]


def test_plugin_files_that_fail_to_import_are_reported_and_the_node_starts(
        tmp_path: Path) -> None:
    """A SyntaxError and an ImportError are error events; the good plugin and node run."""
    folder = tmp_path / "home" / "plugins"
    folder.mkdir(parents=True)
    (folder / "bad_syntax.py").write_text("def broken(:\n")
    (folder / "bad_import.py").write_text("import lanchat_no_such_module_here\n")
    (folder / "good.py").write_text(
        "from lanchat.hookspecs import hookimpl\n\n\n@hookimpl\n"
        "def lanchat_startup(node):\n    node.emit('good_started', nick=node.info()['nick'])\n")
    config = Config(home=tmp_path / "home", nick="bob", port=0, interfaces=["127.0.0.1"],
                    mdns=False, beacon=False)
    out = io.StringIO()
    assert run(config, json_mode=True, stdin=io.StringIO("/plugins\n/quit\n"), stdout=out) == 0
    events = [json.loads(line) for line in out.getvalue().splitlines()]
    errors = {e["message"].split()[1]: e["message"] for e in events
              if e["event"] == "error" and e["code"] == "plugin_failed"}
    assert sorted(errors) == ["bad_import", "bad_syntax"]
    assert "SyntaxError" in errors["bad_syntax"]
    assert "ModuleNotFoundError" in errors["bad_import"]
    names = [e["event"] for e in events]
    assert "ready" in names and {"event": "good_started", "nick": "bob"} in [
        {k: v for k, v in e.items() if k != "ts"} for e in events]
    listing = next(e for e in events if e["event"] == "output" and e["command"] == "/plugins")
    state = {p["name"]: p["enabled"] for p in listing["data"]}
    assert state["good"] is True and state["bad_syntax"] is False
    assert state["bad_import"] is False and state["lanchat.commands"] is True


def test_cli_plugins_json_lists_plugins_hooks_and_commands(
        tmp_path: Path, capsys: pytest.CaptureFixture[str], keep_signals: None) -> None:
    """`lanchat plugins --json` shows the built-ins, the example with its hooks and /count,
    and a broken file as disabled."""
    code, _ = doc_blocks()
    folder = tmp_path / "plugins"
    folder.mkdir()
    (folder / "counter.py").write_text(code, encoding="utf-8")
    (folder / "broken.py").write_text("raise RuntimeError('no config')\n")
    assert main(["--home", str(tmp_path), "plugins", "--json"]) == 0
    listing = {p["name"]: p for p in json.loads(capsys.readouterr().out)["plugins"]}
    counter = listing["counter"]
    assert counter["enabled"] is True and counter["source"] == str(folder / "counter.py")
    assert counter["hooks"] == ["lanchat_message_outgoing", "lanchat_message_received",
                                "lanchat_register_commands"]
    assert counter["commands"] == ["count"]
    builtin = listing["lanchat.commands"]
    assert builtin["source"] == "builtin" and {"msg", "help", "plugins"} <= set(
        builtin["commands"])
    assert listing["broken"]["enabled"] is False
    assert listing["broken"]["error"] == "RuntimeError: no config"


class Shouter:
    """Uppercases outgoing text; vetoes anything that starts with 'secret'."""

    @hookimpl
    def lanchat_message_outgoing(self, node: Any, message: dict[str, Any]) -> str | bool:
        if message["text"].startswith("secret"):
            return False
        return str(message["text"]).upper()


def test_the_outgoing_hook_changes_and_vetoes_what_the_peer_receives(
        peers: Peers) -> None:
    """Alice receives bob's messages uppercased, and never the vetoed ones."""
    alice, bob = peers.pair(bob={"plugins": Plugins(None, entry_points=False, extra=[Shouter()])})
    sent = bob.ctx.queue_text("alice", "hello")
    assert sent.text == "-> alice: HELLO"
    vetoed = bob.ctx.queue_text("alice", "secret plan")
    assert vetoed == Output("message vetoed by a plugin", {"vetoed": True})
    assert bob.ctx.queue_text("all", "secret to all").data == {"vetoed": True}
    last = bob.ctx.queue_text("all", "bye")
    alice.log.wait("message", lambda e: e["id"] == last.data["id"])
    bob.log.wait("delivered", lambda e: e["id"] == last.data["id"])  # bob's commit too
    assert texts_from(alice, bob) == ["HELLO", "BYE"]
    assert [h["text"] for h in bob.node.history("alice", 10)] == ["HELLO"]


def test_first_party_plugins_are_complete_packages() -> None:
    """Each plugins/<name> has a pyproject with a `lanchat` entry point, a README and tests."""
    import tomllib

    packages = sorted(p for p in (ROOT / "plugins").iterdir() if p.is_dir()
                      and (p / "pyproject.toml").exists())
    assert [p.name for p in packages] == ["lanchat-away", "lanchat-export", "lanchat-notify"]
    for package in packages:
        meta = tomllib.loads((package / "pyproject.toml").read_text())
        assert meta["project"]["entry-points"]["lanchat"], package.name
        assert (package / "README.md").read_text().startswith(f"# {package.name}\n")
        assert list((package / "tests").glob("test_*.py")), package.name


class _ThreadSpy:
    """Records which thread ran each hook and command, and wraps every hook call."""

    def __init__(self) -> None:
        self.threads: list[tuple[str, str]] = []
        self.wrapped: list[str] = []

    @hookimpl
    def lanchat_register_commands(self, registry: Any) -> None:
        def where(ctx: Context, args: str) -> Output:
            self.threads.append(("/where", threading.current_thread().name))
            return Output("here")
        registry.add("where", where)

    @hookimpl
    def lanchat_peer_joined(self, node: Any, peer: dict[str, Any]) -> None:
        self.threads.append(("peer_joined", threading.current_thread().name))

    @hookimpl
    def lanchat_startup(self, node: Any) -> None:
        self.threads.append(("startup", threading.current_thread().name))

    @hookimpl(wrapper=True)
    def lanchat_peer_left(self, node: Any, peer: dict[str, Any], reason: str) -> Any:
        self.wrapped.append(reason)
        return (yield)


def test_plugin_code_runs_on_one_thread_through_pluggys_caller(
        peers: Peers, caplog: pytest.LogCaptureFixture,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """Commands, startup and event hooks all run on `lanchat-plugins`; a hook wrapper runs
    around the call (pluggy's own caller); LANCHAT_TRACE_HOOKS logs every call."""
    monkeypatch.setenv("LANCHAT_TRACE_HOOKS", "1")
    caplog.set_level(logging.INFO, logger="lanchat.hooks")
    spy = _ThreadSpy()
    plugins = Plugins(None, entry_points=False, extra=[spy])
    alice, bob = peers.pair(bob={"plugins": plugins})
    plugins.call("lanchat_startup", node=bob.node)
    assert bob.run("/where") is not None
    plugins.call("lanchat_peer_left", node=bob.node, peer={}, reason="bye")
    plugins.drain()
    assert {name for _, name in spy.threads} == {"lanchat-plugins"}
    assert {what for what, _ in spy.threads} >= {"/where", "peer_joined", "startup"}
    assert spy.wrapped == ["bye"]
    assert any("lanchat_startup" in r.getMessage() for r in caplog.records
               if r.name == "lanchat.hooks")


def test_a_raising_plugin_does_not_rerun_the_ones_before_it() -> None:
    """Through pluggy's caller, the implementations called before the one that raised are
    not called twice, and the ones after it still run."""
    first, second = Recorder(), type("Second", (Recorder,), {})()
    broken = broken_in("lanchat_peer_joined")
    plugins = Plugins(None, entry_points=False, extra=[first, broken, second])
    plugins.call("lanchat_peer_joined", node=None, peer={})
    assert first.calls.count("lanchat_peer_joined") == 1
    assert second.calls.count("lanchat_peer_joined") == 1
    assert [f.where for f in plugins.failures] == ["lanchat_peer_joined"]
