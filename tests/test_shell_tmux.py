"""The shell end to end in a real terminal: tmux runs `lanchat` in a lab host, bob is headless."""

from __future__ import annotations

import os
import re
import shlex
import shutil
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from lab import Host, Lab, LanchatProc, free_port, skip_unless_required
from waiting import wait_until

TMUX = shutil.which("tmux") or ("/usr/bin/tmux" if os.access("/usr/bin/tmux", os.X_OK) else None)


@pytest.fixture(autouse=True)
def _needs_tmux() -> None:
    if TMUX is None:
        skip_unless_required("tmux is not installed")

REPO_ROOT = Path(__file__).resolve().parent.parent
ATTACK = "\x1b[2J\x1b]0;pwned\x07\x1b[31mRED"
BIG_FILE_MIB = (32, 256, 2048)
TMUX_CONF = "set -g remain-on-exit on\nset -g history-limit 5000\nset -g status off\n"


class Tmux:
    """One private tmux server (its own -L socket) with one pane; killed on close."""

    def __init__(self, base: Path, width: int = 110, height: int = 32) -> None:
        assert TMUX is not None
        self.socket = f"lanchat-test-{os.getpid()}-{time.monotonic_ns()}"
        self.width, self.height = width, height
        self.conf = base / "tmux.conf"
        self.conf.write_text(TMUX_CONF)
        self.started = False
        self.socket_path = ""

    def tmux(self, *args: str, check: bool = True) -> str:
        """Run one tmux command against this server; return its stdout."""
        assert TMUX is not None
        res = subprocess.run([TMUX, "-L", self.socket, "-f", str(self.conf), *args],
                             capture_output=True, text=True, timeout=10)
        if check and res.returncode != 0:
            raise AssertionError(f"tmux {' '.join(args)}: {res.stderr.strip()}")
        return res.stdout

    def start(self, argv: list[str], env: dict[str, str] | None = None,
              cwd: Path | None = None) -> None:
        """Start `argv` in a fresh pane (in `cwd`, if given)."""
        env_args = [a for k, v in (env or {}).items() for a in ("-e", f"{k}={v}")]
        cwd_args = ["-c", str(cwd)] if cwd is not None else []
        self.tmux("new-session", "-d", "-s", "t", "-x", str(self.width), "-y",
                  str(self.height), *cwd_args, *env_args, shlex.join(argv))
        self.started = True
        self.socket_path = self.tmux("display-message", "-p", "#{socket_path}").strip()

    def type(self, text: str) -> None:
        """Type `text` literally."""
        self.tmux("send-keys", "-t", "t", "-l", text)

    def key(self, *keys: str) -> None:
        """Press named keys (Enter, Escape, C-d...)."""
        self.tmux("send-keys", "-t", "t", *keys)

    def screen(self) -> str:
        """The visible pane as text."""
        return self.tmux("capture-pane", "-p", "-t", "t")

    def title(self) -> str:
        """The pane title (OSC 0/2 would change it)."""
        return self.tmux("display-message", "-p", "-t", "t", "#{pane_title}").strip()

    def dead(self) -> bool:
        """Whether the pane's program has exited."""
        return self.tmux("display-message", "-p", "-t", "t", "#{pane_dead}").strip() == "1"

    def wait_for(self, pred: Callable[[str], bool], what: str, timeout: float = 15.0,
                 poll: float = 0.005) -> str:
        """Poll the screen until `pred(screen)`; return that screen or fail with it."""
        screen = [""]

        def shows() -> bool:
            screen[0] = self.screen()
            return pred(screen[0])

        wait_until(shows, f"{what} on screen", timeout, poll=poll, state=lambda: screen[0])
        return screen[0]

    def wait_text(self, text: str, timeout: float = 15.0) -> str:
        """Wait until `text` is visible."""
        return self.wait_for(lambda s: text in s, repr(text), timeout)

    def close(self) -> None:
        """Kill this tmux server (only ours: it has its own socket)."""
        if self.started:
            self.tmux("kill-server", check=False)
            self.started = False
            if self.socket_path:
                Path(self.socket_path).unlink(missing_ok=True)


def shell_argv(host: Host, lab: Lab, home: Path, nick: str, *peers: str,
               repo: Path = REPO_ROOT) -> list[str]:
    """`python -m lanchat` (the shell, from `repo`) inside `host`, never on a real
    interface."""
    args = ["--home", str(home), "--nick", nick, "--no-mdns", "--no-beacon"]
    if lab.mode == "loopback":
        args += ["--interface", "127.0.0.1", "--port", str(free_port())]
    for peer in peers:
        args += ["--peer", peer]
    return host.wrap(["env", "-u", "LANCHAT_HOME", f"PYTHONPATH={repo}",
                      sys.executable, "-m", "lanchat", *args])


def prompt_line(screen: str) -> str:
    """The last line that shows the prompt."""
    lines = [ln for ln in screen.splitlines() if "> " in ln and "lanchat:" not in ln]
    return lines[-1] if lines else ""


@pytest.fixture
def alice_in_tmux(lab2: Lab, tmp_path: Path) -> Iterator[tuple[Tmux, LanchatProc]]:
    """Bob headless on h2; alice's shell in tmux on h1, naming bob by address."""
    h1, h2 = lab2.hosts[:2]
    bob = h2.start_node("--no-mdns", "--no-beacon", nick="bob")
    bob.wait_event("ready")
    term = Tmux(tmp_path)
    try:
        term.start(shell_argv(h1, lab2, tmp_path / "alice", "alice", f"{h2.ip}:{bob.port}"))
        term.wait_text("lanchat: you are alice")
        bob.wait_event("peer_joined", peer={"nick": "alice"}, timeout=15)
        term.wait_text("bob [1] is here")
        yield term, bob
    finally:
        term.close()


def toolbar(screen: str) -> str:
    """The toolbar's first line (the buffer list)."""
    lines = [ln for ln in screen.splitlines() if "online |" in ln]
    return lines[-1] if lines else ""


def test_buffers_live_progress_and_unread_across_a_restart(
        alice_in_tmux: tuple[Tmux, LanchatProc], lab2: Lab, tmp_path: Path) -> None:
    """Bob's direct line is unread in buffer 3 until Alt-3 shows it; #lunch gets buffer 4
    and alice's line there shows 1/1 stored; bob's file's progress bar moves with no key
    pressed; two more lines stay unread across a restart of alice's shell, and the line she
    read stays read."""
    term, bob = alice_in_tmux
    bob.command("/msg alice psst")
    term.wait_for(lambda s: "3:bob(1)" in toolbar(s), "bob's buffer with 1 unread")
    assert "psst" not in term.screen()
    term.key("M-3")
    term.wait_for(lambda s: "[3:bob]" in toolbar(s) and "<bob> psst" in s, "bob's buffer")
    # a room: its own buffer, a plain line reaches bob there, 1/1 stored it
    bob.command("/join #lunch")
    bob.wait_event("room_joined", room="#lunch")
    term.type("/join #lunch")
    term.key("Enter")
    term.wait_for(lambda s: "[4:#lunch]" in toolbar(s), "the room's buffer")
    term.type("hi room")
    term.key("Enter")
    bob.wait_event("message", text="hi room", room="#lunch")
    term.wait_for(lambda s: "<alice> hi room 1/1 ✓" in s or "✓ delivered to 1 of 1" in s,
                  "1/1 stored it")
    term.key("M-Left")
    term.wait_for(lambda s: "[3:bob]" in toolbar(s), "back to bob's buffer")
    # A sparse file (no disk to fill it), bigger each time until one moves for longer
    # than a progress interval on this machine: then the bar must move on its own.
    seen: set[int] = set()
    for size_mib in BIG_FILE_MIB:
        big = tmp_path / f"big{size_mib}.bin"
        with big.open("wb") as fh:
            fh.truncate(size_mib << 20)
        bob.command(f"/file alice {big}")
        term.wait_text(f"bob offers {big.name}")
        term.type("/accept")
        term.key("Enter")  # the last key pressed until the transfer ends
        bar = re.compile(rf"<- bob +{re.escape(big.name)} \[[#-]+\] +(\d+)%")

        def moving(screen: str, bar: re.Pattern[str] = bar, name: str = big.name) -> bool:
            seen.update(int(m) for m in bar.findall(screen) if 0 < int(m) < 100)
            return f"received {name}" in screen

        term.wait_for(moving, "the transfer to end", timeout=60)
        if seen:
            break
    assert seen, "the progress bar did not move on its own"
    term.key("M-2")
    term.wait_for(lambda s: "[2:all]" in toolbar(s), "back in all")
    bob.command("/msg alice one")
    bob.command("/msg alice two")
    term.wait_for(lambda s: "3:bob(2)" in toolbar(s), "two unread")
    term.type("/quit")
    term.key("Enter")
    term.wait_for(lambda s: term.dead(), "the shell exiting")
    bob.wait_event("peer_left", peer={"nick": "alice"}, reason="bye")
    term.close()
    again = Tmux(tmp_path)
    try:
        h1, h2 = lab2.hosts[:2]
        again.start(shell_argv(h1, lab2, tmp_path / "alice", "alice", f"{h2.ip}:{bob.port}"))
        again.wait_for(lambda s: "3:bob(2)" in toolbar(s), "two unread after the restart")
    finally:
        again.close()


def test_list_shows_bob_and_msg_reaches_him(alice_in_tmux: tuple[Tmux, LanchatProc]) -> None:
    """Alice lists peers, sees bob, sends him a line; he gets it; /quit closes cleanly."""
    term, bob = alice_in_tmux
    term.type("/list")
    term.key("Enter")
    term.wait_for(lambda s: any("bob" in ln and "online" in ln for ln in s.splitlines()),
                  "bob online in /list")
    term.type("/msg bob hi")
    term.key("Enter")
    bob.wait_event("message", text="hi", to="direct")
    term.wait_text("[alice -> bob] hi")
    term.type("/quit")
    term.key("Enter")
    term.wait_for(lambda s: term.dead(), "the shell exiting")
    bob.wait_event("peer_left", peer={"nick": "alice"}, reason="bye")


def test_incoming_message_leaves_half_typed_line_intact(
        alice_in_tmux: tuple[Tmux, LanchatProc]) -> None:
    """Bob's line appears above the prompt while 'half typed' stays on alice's prompt line."""
    term, bob = alice_in_tmux
    term.type("half typed")
    term.wait_for(lambda s: "half typed" in prompt_line(s), "half typed on the prompt")
    bob.command("/all hello from bob")
    screen = term.wait_for(lambda s: "hello from bob" in s and "half typed" in prompt_line(s),
                           "bob's message and the intact prompt line")
    lines = screen.splitlines()
    assert not any("half typed" in ln and "hello from bob" in ln for ln in lines), screen
    term.key("Enter")
    bob.wait_event("message", text="half typed", to="broadcast")


def test_peer_escape_sequences_leave_screen_and_title_alone(
        alice_in_tmux: tuple[Tmux, LanchatProc]) -> None:
    """Clear-screen, OSC 0 title and colour codes from bob show as ^[ text and do nothing."""
    term, bob = alice_in_tmux
    title = term.title()
    bob.command(f"/all before{ATTACK}after")
    screen = term.wait_text("after")
    assert "before^[[2J^[]0;pwned^G^[[31mREDafter" in screen, screen
    assert "lanchat: you are alice" in screen, "earlier lines were cleared:\n" + screen
    assert term.title() == title != "pwned"
    # control: the same bytes printed raw in this tmux do set the title
    term.tmux("new-window", "-d", "-t", "t:9", "printf '\\033]0;pwned\\007'; sleep 30")
    wait_until(lambda: term.tmux("display-message", "-p", "-t", "t:9",
                                 "#{pane_title}").strip() == "pwned",
               "control: raw OSC 0 sets the title", 5)


def test_look_alike_and_invisible_nicks_are_told_apart_on_screen(
        alice_in_tmux: tuple[Tmux, LanchatProc], lab2: Lab) -> None:
    """Alice verified bob. A stranger calling itself "bоb" (Cyrillic o) and one whose nick
    is only U+3164 write to her: on screen the look-alike and bob each carry an id suffix,
    bob his check mark, and the invisible one is `unnamed-<id>`."""
    term, bob = alice_in_tmux
    bob_id = next(e["id"] for e in bob.events if e.get("event") == "ready")
    term.type(f"/verify {bob_id} yes")
    term.key("Enter")
    term.wait_text("is now verified")
    h1, h2 = lab2.hosts[:2]
    port = "47800"
    argv = term.tmux("display-message", "-p", "-t", "t", "#{pane_start_command}")
    if lab2.mode == "loopback":
        port = argv.split("--port")[1].split()[0].strip("'\"")
    said = {}
    for nick, text in (("b\u043eb", "i am bob"), ("\u3164", "guess who")):
        out = h2.run([sys.executable, "tests/hostile.py", h1.ip, port, "say", "--nick", nick,
                      "--text", text], check=True, timeout=60)
        said[text] = out.stdout.strip().splitlines()[-1]
    fake_id = said["i am bob"].split('"id": "')[1][:52]
    ghost_id = said["guess who"].split('"id": "')[1][:52]
    bob.command("/msg alice the real one")
    term.wait_for(lambda s: f"b\u043eb#{fake_id[:4]}" in toolbar(s)
                  and f"unnamed-{ghost_id[:5]}" in toolbar(s)
                  and f"bob#{bob_id[:4]}\u2713" in toolbar(s), "the three buffers")
    term.key("M-3")  # the look-alike's buffer: its line under its own name
    term.wait_text(f"<b\u043eb#{fake_id[:4]}> i am bob")
    term.key("M-5")  # bob's, opened last
    screen = term.wait_text("the real one")
    assert f"<bob#{bob_id[:4]}\u2713> the real one" in screen, screen
    term.type("/list")
    term.key("Enter")
    screen = term.wait_text(f"unnamed-{ghost_id[:8]}")  # longer than the toolbar shows
    listing = [ln for ln in screen.splitlines() if re.match(r"\s+\d+  \S", ln)]
    assert any(f"b\u043eb#{fake_id[:4]}" in ln for ln in listing), screen
    assert any(f"bob#{bob_id[:4]}\u2713" in ln for ln in listing), screen


def test_a_start_failure_behind_the_drawn_prompt_exits_1_with_one_line(
        tmp_path: Path) -> None:
    """The prompt is drawn before the node starts; when the start fails (the home locked
    by another lanchat, then the port taken) the shell still ends with exit code 1 and one
    `lanchat: ...` line, and no prompt or toolbar is left on the screen. Loopback only: the
    node never gets as far as the network."""
    from lanchat.home import HomeLock

    home = tmp_path / "alice"
    taken = socket.socket()
    taken.bind(("127.0.0.1", 0))
    taken.listen()
    lock = HomeLock()
    lock.take(home)
    try:
        for case, port, want in (("locked home", free_port(), "is in use by another lanchat"),
                                 ("port taken", taken.getsockname()[1], "cannot listen")):
            if case == "port taken":
                lock.release()
            term = Tmux(tmp_path)
            err, code = tmp_path / f"{port}.err", tmp_path / f"{port}.code"
            try:  # stderr and the exit code to files: the screen must be clean of both
                term.start(["sh", "-c", f'"$@" 2>{err}; echo $? >{code}', "sh", "env", "-u",
                            "LANCHAT_HOME", f"PYTHONPATH={REPO_ROOT}", sys.executable, "-m",
                            "lanchat", "--home", str(home), "--nick", "alice", "--interface",
                            "127.0.0.1", "--port", str(port), "--no-mdns", "--no-beacon"])
                wait_until(term.dead, f"the shell ending ({case})", 15)
                screen = term.screen()
                said = err.read_text().splitlines()
                assert code.read_text().strip() == "1", (case, said, screen)
                assert len(said) == 1 and said[0].startswith("lanchat: "), (case, said)
                assert want in said[0], (case, said)
                assert "all>" not in screen and "starting" not in screen, (case, screen)
            finally:
                term.close()
    finally:
        lock.release()
        taken.close()
