"""Helpers for the interop lab tests: a scripted XEP-0174 peer process, and waiting on JSON
lines from third-party helpers."""

from __future__ import annotations

import json
import os
import queue
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from lab import REPO_ROOT, Host
from waiting import wait_until

SCRIPT = str(REPO_ROOT / "tests" / "xmpp_peer.py")


class ScriptedXmppPeer:
    """tests/xmpp_peer.py in a lab host: commands in, JSON events out."""

    def __init__(self, host: Host, name: str, *, silent: bool = False,
                 echo: bool = False) -> None:
        args = [sys.executable, SCRIPT, "--ip", host.ip, "--name", name]
        args += ["--echo"] if echo else []
        self.name = name
        self.proc = host.popen(args + (["--silent"] if silent else []),
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               stderr=subprocess.PIPE)
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.seen: list[dict[str, Any]] = []
        threading.Thread(target=self._read, daemon=True).start()
        self.wait("ready")

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                self.events.put(json.loads(line))
            except ValueError:
                continue

    def wait(self, event: str, timeout: float = 20.0, **match: Any) -> dict[str, Any]:
        """The first event of this name whose fields include `match` (seen ones count)."""
        for e in self.seen:
            if e["event"] == event and all(e.get(k) == v for k, v in match.items()):
                self.seen.remove(e)
                return e
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{self.name}: no {event} {match} in {timeout} s; "
                                     f"seen {self.seen[-10:]}")
            try:
                e = self.events.get(timeout=left)
            except queue.Empty:
                continue
            if e["event"] == event and all(e.get(k) == v for k, v in match.items()):
                return e
            self.seen.append(e)

    def command(self, **cmd: Any) -> None:
        """Send one command."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()

    def stop(self) -> None:
        """Quit cleanly (goodbye and stream ends), else kill."""
        if self.proc.poll() is None:
            try:
                self.command(cmd="quit")
                self.proc.wait(5)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


# -- localsendd (LocalSend v2 daemon from PyPI, in its own venv) -------------------------------

LOCALSENDD_VERSION = "0.1.1"
LOCALSENDD_VENV_ENV = "LANCHAT_LOCALSENDD_VENV"
FATAL_LOG = "multicast unavailable"  # it would then scan the /24 over HTTP: stop it at once


def localsendd_venv() -> Path | None:
    """A venv with localsendd (env LANCHAT_LOCALSENDD_VENV, else .cache/ in the repo, made
    on first use with pip); None when it cannot be had."""
    import venv

    path = Path(os.environ.get(LOCALSENDD_VENV_ENV)
                or REPO_ROOT / ".cache" / f"localsendd-{LOCALSENDD_VERSION}")
    exe = path / "bin" / "localsendd"
    if exe.exists():
        return path
    try:
        venv.create(path, with_pip=True, clear=True)
        subprocess.run([str(path / "bin" / "pip"), "install", "-q",
                        f"localsendd=={LOCALSENDD_VERSION}"], check=True, timeout=300,
                       capture_output=True)
    except (OSError, subprocess.SubprocessError):
        return None
    return path if exe.exists() else None


class LocalSendD:
    """One localsendd in a lab host, with its own HOME, XDG dirs and control socket."""

    def __init__(self, host: Host, venv_dir: Path, base: Path, alias: str,
                 *extra: str) -> None:
        self.host = host
        self.alias = alias
        self.venv = venv_dir
        self.dir = base / f"lsd-{alias}"
        for sub in ("config", "state", "run", "data", "cache", "dl"):
            (self.dir / sub).mkdir(parents=True, exist_ok=True)
        (self.dir / "run").chmod(0o700)
        self.downloads = self.dir / "dl"
        self.env = {"HOME": str(self.dir), "XDG_CONFIG_HOME": str(self.dir / "config"),
                    "XDG_STATE_HOME": str(self.dir / "state"),
                    "XDG_RUNTIME_DIR": str(self.dir / "run"),
                    "XDG_DATA_HOME": str(self.dir / "data"),
                    "XDG_CACHE_HOME": str(self.dir / "cache")}
        envs = [f"{k}={v}" for k, v in self.env.items()]
        self.log: list[str] = []
        self.fatal = False
        self.proc = host.popen(
            ["env", "-u", "LOCALSEND_ALIAS", "-u", "LOCALSEND_PIN", "-u", "LOCALSENDD_SOCKET",
             *envs, str(venv_dir / "bin" / "localsendd"), "--alias", alias, "--unattended",
             "--download-dir", str(self.downloads), "--log-level", "debug", "--no-log-time",
             *extra], stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
        threading.Thread(target=self._watch, daemon=True).start()
        # polling a file the daemon creates; no event to wait on
        wait_until(lambda: (self.dir / "run" / "localsendd.sock").exists()
                   or self.proc.poll() is not None, f"localsendd {alias} started", 15,
                   poll=0.05, state=lambda: str(self.log[-10:]))
        if self.proc.poll() is not None:
            raise AssertionError(f"localsendd {alias} did not start: {self.log[-10:]}")

    def _watch(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.log.append(line.rstrip())
            if FATAL_LOG in line:
                self.fatal = True
                self.proc.kill()  # never let it scan the subnet

    def ctl(self, *args: str, timeout: float = 30.0) -> subprocess.CompletedProcess[str]:
        """Run localsendctl against this daemon."""
        envs = [f"{k}={v}" for k, v in self.env.items()]
        return self.host.run(["env", *envs, str(self.venv / "bin" / "localsendctl"), *args],
                             timeout=timeout)

    def status(self) -> dict[str, Any]:
        """`localsendctl status --json`."""
        return dict(json.loads(self.ctl("status", "--json").stdout))

    def devices(self) -> list[dict[str, Any]]:
        """`localsendctl devices --json`: the peers it lists."""
        out = json.loads(self.ctl("devices", "--json").stdout or "[]")
        return list(out.get("devices", out) if isinstance(out, dict) else out)

    def wait_device(self, alias: str, timeout: float = 20.0) -> dict[str, Any]:
        """Wait until it lists a device of this alias."""
        found: list[dict[str, Any]] = []

        def listed() -> bool:
            found[:] = [d for d in self.devices() if d.get("alias") == alias]
            return bool(found)

        # localsendctl has no wait for a device
        wait_until(listed, f"{self.alias} lists {alias}", timeout, poll=0.3,
                   state=lambda: str(self.log[-15:]))
        return found[0]

    def stop(self) -> None:
        """End it by pid."""
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)


class ScriptedLocalSend:
    """tests/localsend_peer.py in a lab host: a LocalSend device that sends what we tell it."""

    def __init__(self, host: Host, base: Path, alias: str) -> None:
        self.events: queue.SimpleQueue[dict[str, Any]] = queue.SimpleQueue()
        self.proc = host.popen([sys.executable, str(REPO_ROOT / "tests" / "localsend_peer.py"),
                                "--ip", host.ip, "--dir", str(base / f"ls-{alias}"),
                                "--alias", alias],
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                               env={**os.environ, "PYTHONPATH": str(REPO_ROOT)})
        threading.Thread(target=self._read, daemon=True).start()
        self.fingerprint = self.next(20)["fingerprint"]

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.events.put(json.loads(line))

    def next(self, timeout: float = 30.0) -> dict[str, Any]:
        """The next answer."""
        try:
            return self.events.get(timeout=timeout)
        except queue.Empty:
            raise AssertionError("the scripted LocalSend device did not answer") from None

    def command(self, **cmd: Any) -> None:
        """Send one command (its answer comes with next())."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(json.dumps(cmd) + "\n")
        self.proc.stdin.flush()


# -- finch (libpurple Bonjour chat) with its own avahi, D-Bus buses and tmux -------------------

FINCH_TOOLS = ("finch", "purple-send", "avahi-daemon", "dbus-daemon", "tmux")


def finch_missing() -> list[str]:
    """The programs the finch test needs that are not installed."""
    import shutil

    return [tool for tool in FINCH_TOOLS if shutil.which(tool) is None
            and not Path("/usr/sbin", tool).exists()]


DBUS_CONF = """<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig><type>system</type><listen>unix:path={d}/sys.bus</listen><auth>EXTERNAL</auth>
<policy context="default"><allow user="*"/><allow own="*"/><allow send_destination="*"/>
<allow receive_sender="*"/></policy></busconfig>
"""
ACCOUNTS = """<?xml version='1.0' encoding='UTF-8' ?><account version='1.0'><account>
<protocol>prpl-bonjour</protocol><name>{account}</name><settings>
<setting name='first' type='string'>{first}</setting>
<setting name='last' type='string'>Finch</setting></settings>
<settings ui='gnt-purple'><setting name='auto-login' type='bool'>1</setting></settings>
</account></account>
"""
PREFS = """<?xml version='1.0' encoding='UTF-8' ?><pref version='1' name='/'><pref name='purple'>
<pref name='away'><pref name='idle_reporting' type='string' value='none'/>
<pref name='away_when_idle' type='bool' value='0'/>
<pref name='auto_reply' type='string' value='never'/></pref>
<pref name='logging'><pref name='log_ims' type='bool' value='1'/>
<pref name='format' type='string' value='txt'/></pref></pref></pref>
"""


class Finch:
    """finch in a lab host: a private /run with avahi on its own system bus, a session bus
    for purple-send, and finch itself in tmux. Every process is the lab's to end."""

    def __init__(self, host: Host, base: Path, user: str = "carol") -> None:
        self.host = host
        self.dir = d = base / f"finch-{host.name}"
        self.account = f"{user}@{host.name}"
        for sub in ("run", "cfg", "home"):
            (d / sub).mkdir(parents=True, exist_ok=True)
        (d / "dbus.conf").write_text(DBUS_CONF.format(d=d))
        (d / "avahi.conf").write_text(
            f"[server]\nhost-name={host.name}\nuse-ipv4=yes\nuse-ipv6=no\nallow-interfaces=eth0\n"
            "enable-dbus=yes\n[wide-area]\nenable-wide-area=no\n"
            "[publish]\npublish-workstation=no\npublish-hinfo=no\n")
        (d / "cfg" / "accounts.xml").write_text(ACCOUNTS.format(account=self.account,
                                                                first=user.title()))
        (d / "cfg" / "prefs.xml").write_text(PREFS)
        (d / "cfg" / "tmux.conf").write_text("set -g default-terminal screen\n")
        self.avahi = host.popen(
            ["unshare", "--mount", "--propagation", "private", "sh", "-c",
             'mount --bind "$1/run" /run && mkdir -p /run/avahi-daemon /run/dbus && '
             'dbus-daemon --config-file="$1/dbus.conf" --fork --nopidfile --print-pid '
             '>"$1/sys.pid" && DBUS_SYSTEM_BUS_ADDRESS=unix:path=$1/sys.bus exec avahi-daemon '
             '-f "$1/avahi.conf" --no-drop-root --no-chroot --no-rlimits', "sh", str(d)],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.session = host.run(["dbus-daemon", "--session", "--fork",
                                 f"--address=unix:path={d}/ses.bus", "--print-pid"],
                                check=True).stdout.split()[0]
        self.env = [f"HOME={d}/home", f"DBUS_SYSTEM_BUS_ADDRESS=unix:path={d}/sys.bus",
                    f"DBUS_SESSION_BUS_ADDRESS=unix:path={d}/ses.bus"]
        self.tmux = str(d / "tmux.sock")
        host.run(["env", *self.env, "tmux", "-S", self.tmux, "-f", str(d / "cfg/tmux.conf"),
                  "new-session", "-d", "-s", "finch", "-x", "130", "-y", "40",
                  f"finch -c {d}/cfg 2>{d}/finch.err"], check=True)

    def pids(self) -> list[int]:
        """Every process this finch host runs (the lab ends them by pid)."""
        return [int(p) for p in self.host.run(["ip", "netns", "pids", str(self.host.ns)])
                .stdout.split()]

    def purple(self, method: str, *args: str) -> str:
        """Call libpurple over finch's session bus; return the first int32 (or '')."""
        res = self.host.run(["env", *self.env, "purple-send", method, *args], timeout=15)
        for line in res.stdout.splitlines():
            parts = line.split()
            if parts and parts[0] == "int32":
                return parts[1]
        return ""

    def account_id(self, timeout: float = 20.0) -> str:
        """finch's account id, once finch answers on D-Bus."""
        acc = [""]

        def answers() -> bool:
            acc[0] = self.purple("PurpleAccountsFind", f"string:{self.account}",
                                 "string:prpl-bonjour")
            return bool(acc[0]) and acc[0] != "0"

        # finch registers on D-Bus a moment after it starts
        wait_until(answers, "finch answers on D-Bus", timeout, poll=0.3, state=self.errors)
        return acc[0]

    def send(self, buddy: str, html: str) -> None:
        """Send an IM (the text is HTML, as libpurple takes it)."""
        acc = self.account_id()
        conv = self.purple("PurpleConversationNew", "int32:1", f"int32:{acc}",
                           f"string:{buddy}")
        im = self.purple("PurpleConvIm", f"int32:{conv}")
        self.purple("PurpleConvImSend", f"int32:{im}", f"string:{html}")

    def received(self, buddy: str) -> list[str]:
        """Lines of finch's log of IMs with `buddy` (`(HH:MM:SS) name: text`)."""
        logs = self.dir / "cfg" / "logs" / "bonjour" / self.account / buddy
        return [line for f in sorted(logs.glob("*.txt")) for line in
                f.read_text(errors="replace").splitlines()] if logs.exists() else []

    def errors(self) -> str:
        """finch's stderr."""
        path = self.dir / "finch.err"
        return path.read_text(errors="replace")[-2000:] if path.exists() else ""

    def quit(self) -> None:
        """Quit finch (M-q): it closes its streams and withdraws its service."""
        self.host.run(["tmux", "-S", self.tmux, "send-keys", "-t", "finch", "M-q"])

    def stop(self) -> None:
        """End finch's tmux, its buses and avahi by pid."""
        import os
        import signal

        self.host.run(["tmux", "-S", self.tmux, "kill-server"])
        for pid in self.pids():
            try:
                os.kill(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
