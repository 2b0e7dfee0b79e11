"""Multi-host test lab for lanchat: network namespaces, one bridge per segment, veth pairs.

Layout of one lab (every name starts with ``lcl<creator pid>x<counter>-``)::

    <prefix>sw        switch namespace: bridge br0 (segment 0), br1 (segment 1), ...
                      switch-side veth ends p<i> (segment 0) and p<i>s<seg> (later segments)
    <prefix>h1..hN    host namespaces: lo up, eth0 = 10.77.<k>.<i>/24, route 224.0.0.0/4 dev eth0

Network safety: nothing is created in the root namespace except the namespaces themselves;
the bridges live in the switch namespace, so no packet can reach a real interface.
Teardown kills every process the lab started (by pid), then deletes its namespaces by
name. Namespaces left behind by a dead creator are swept on the next run.

Where namespaces are impossible (not root, no ``ip``, ``ip netns add`` fails) or when
``LANCHAT_LAB_MODE=loopback`` / ``Lab(mode="loopback")``, the lab runs in "loopback mode":
every host is the root namespace with address 127.0.0.1, nodes get ``--interface 127.0.0.1``
and distinct free ports, and partitions / extra segments skip the test.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import json
import logging
import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
import weakref
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import TracebackType
from typing import Any

import pytest

from contract import violations
from waiting import EventStream

log = logging.getLogger("lanchat.lab")

NO_DISCOVERY = ("--no-mdns", "--no-beacon")  # nodes that only dial the peers they are given
# liveness fast enough for a test to see a peer go and come back in seconds
FAST_LIVENESS = {"LANCHAT_HEARTBEAT_S": "0.5", "LANCHAT_DEAD_AFTER_S": "2"}

REPO_ROOT = Path(__file__).resolve().parent.parent
NS_PREFIX = "lcl"
_NS_RE = re.compile(rf"^{NS_PREFIX}(\d+)x(\d+)-")
DEFAULT_PORT = 47800
LOOPBACK_IP = "127.0.0.1"
MODE_ENV = "LANCHAT_LAB_MODE"  # "auto" (default), "netns" or "loopback"
KEEP_ENV = "LANCHAT_LAB_KEEP"  # set to keep node homes after teardown (namespaces still go)

_counter = itertools.count()
_live_labs: weakref.WeakSet[Lab] = weakref.WeakSet()
_atexit_registered = False
_swept_once = False


# --------------------------------------------------------------------------- helpers


def _ip_bin() -> str | None:
    candidates = ("/usr/sbin/ip", "/sbin/ip", "/usr/bin/ip", "/bin/ip")
    return shutil.which("ip") or next((p for p in candidates if os.access(p, os.X_OK)), None)


def _run(cmd: Sequence[str], *, check: bool = True, timeout: float = 30.0,
         input: str | None = None) -> subprocess.CompletedProcess[str]:
    res = subprocess.run(list(cmd), capture_output=True, text=True, timeout=timeout, input=input)
    if check and res.returncode != 0:
        raise LabError(f"command failed ({res.returncode}): {' '.join(cmd)}: {res.stderr.strip()}")
    return res


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def list_namespaces() -> list[str]:
    """Names of all network namespaces known to ``ip netns`` (empty if ``ip`` is missing)."""
    ip = _ip_bin()
    if ip is None:
        return []
    res = _run([ip, "netns", "list"], check=False)
    return [line.split()[0] for line in res.stdout.splitlines() if line.strip()]


def lab_namespaces() -> list[str]:
    """Namespaces that carry the lab prefix (ours or stale ones from earlier runs)."""
    return [n for n in list_namespaces() if _NS_RE.match(n)]


def sweep_stale_namespaces() -> list[str]:
    """Delete lab namespaces whose creating process is dead. Returns the names deleted.

    Processes still running inside such a namespace are left alone (they were not started
    by this process); they are only logged.
    """
    ip = _ip_bin()
    if ip is None:
        return []
    removed: list[str] = []
    for name in lab_namespaces():
        m = _NS_RE.match(name)
        assert m is not None
        pid = int(m.group(1))
        if pid == os.getpid() or _pid_alive(pid):
            continue
        pids = _run([ip, "netns", "pids", name], check=False).stdout.split()
        if pids:
            log.warning("stale namespace %s still has processes %s (not killed)", name, pids)
        if _run([ip, "netns", "del", name], check=False).returncode == 0:
            removed.append(name)
    if removed:
        log.info("swept stale lab namespaces: %s", removed)
    return removed


def cleanup_all_labs() -> None:
    """Close every live lab of this process (atexit / session end)."""
    for lab in list(_live_labs):
        with contextlib.suppress(Exception):
            lab.close()


def _ensure_atexit() -> None:
    global _atexit_registered
    if not _atexit_registered:
        atexit.register(cleanup_all_labs)
        _atexit_registered = True


def free_port(host: str = LOOPBACK_IP, exclude: set[int] | None = None) -> int:
    """A currently free TCP port on ``host`` (and not in ``exclude``)."""
    for _ in range(100):
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.bind((host, 0))
            port = int(s.getsockname()[1])
        if not exclude or port not in exclude:
            return port
    raise LabError("no free port found")


def required() -> bool:
    """True where CI says the lab must work (``LANCHAT_LAB_MODE=netns``, set by .ci/run as
    root with `ip`): a missing capability is then a failure, not a skip."""
    return os.environ.get(MODE_ENV, "").lower() == "netns"


def skip_unless_required(reason: str) -> None:
    """Skip a test that needs something this machine lacks, or fail it where it is required
    (see `required`), so CI cannot pass with the lab tests silently skipped."""
    if required():
        pytest.fail(f"{reason} (required here: {MODE_ENV}=netns)", pytrace=False)
    pytest.skip(reason)


class LabError(RuntimeError):
    """The lab could not be built or a lab command failed."""


# --------------------------------------------------------------------------- processes

class LanchatProc(EventStream[dict[str, Any]]):
    """One ``lanchat run --json`` process, with its stdout parsed into ``events``: the
    tests' one event wait (tests/waiting.py) over its JSON events, a failure showing the
    last events and stderr; the wait fails at once when the process ends.

    ``wait_event`` never returns the same event twice (unless ``consume=False``): each
    returned event is marked consumed. ``since`` (e.g. from ``mark()``) limits the search
    to events received after that point.
    """

    def __init__(self, host: Host, argv: list[str], *, nick: str, home: Path, port: int,
                 extra_args: tuple[str, ...], env: Mapping[str, str] | None) -> None:
        super().__init__()
        self.host = host
        self.argv = argv
        self.nick = nick
        self.home = home
        self.port = port
        self.extra_args = extra_args
        self.env_overrides = dict(env) if env else None
        # what stdout carried that the headless contract (docs/HEADLESS.md) does not allow
        # is checked for lanchat itself (not for the stand-ins tests/test_lab.py runs)
        self.signals: list[int] = []  # what kill() sent, stop()'s SIGTERM/SIGKILL among them
        self._check = _runs_lanchat(argv)
        self.generation = host._lab._next_generation()
        self.stderr_path = home / f"lab-stderr.{self.generation}.log"

        full_env = dict(os.environ)
        full_env.pop("LANCHAT_HOME", None)
        full_env["PYTHONUNBUFFERED"] = "1"
        full_env["PYTHONPATH"] = os.pathsep.join(
            p for p in (str(REPO_ROOT), os.environ.get("PYTHONPATH", "")) if p)
        if env:
            full_env.update(env)
        home.mkdir(parents=True, exist_ok=True)
        # the child writes straight to the file; our copy of the descriptor is closed at once
        with open(self.stderr_path, "wb") as err:
            self.popen: subprocess.Popen[str] = subprocess.Popen(
                argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err,
                text=True, bufsize=1, encoding="utf-8", errors="replace", env=full_env,
                cwd=str(REPO_ROOT), start_new_session=True)
        self.started_at = time.monotonic()
        self._reader = threading.Thread(target=self._read_loop, daemon=True,
                                        name=f"lab-reader-{host.name}-{nick}-{self.pid}")
        self._reader.start()

    # -- state
    @property
    def pid(self) -> int:
        return self.popen.pid

    @property
    def returncode(self) -> int | None:
        return self.popen.poll()

    @property
    def alive(self) -> bool:
        return self.popen.poll() is None

    def __repr__(self) -> str:
        return f"<LanchatProc {self.nick}@{self.host.name} pid={self.pid} rc={self.returncode}>"

    # -- output
    def _read_loop(self) -> None:
        assert self.popen.stdout is not None
        try:
            for line in self.popen.stdout:
                line = line.rstrip("\r\n")
                if not line.strip():
                    continue
                try:
                    ev = json.loads(line)
                    if not isinstance(ev, dict) or "event" not in ev:
                        ev = {"event": "_nonjson", "line": line}
                except ValueError:
                    ev = {"event": "_nonjson", "line": line}
                wrong = ([] if not self._check else [f"not a JSON event: {line[:200]!r}"]
                         if ev["event"] == "_nonjson" else violations(ev))
                self.add(ev, wrong)
        except (OSError, ValueError):
            pass
        finally:
            # a moment for the process to be reaped, so its exit code shows in a failure
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(0.2)
            self.end(f"process ended (rc={self.popen.poll()})")

    def wait_count(self, name: str, count: int, timeout: float = 30.0,
                   pred: Callable[[dict[str, Any]], bool] | None = None) -> list[dict[str, Any]]:
        """The first ``count`` events named ``name`` (matching ``pred``), not consumed."""
        return self.wait(name, pred, timeout, count=count)

    def events_named(self, name: str) -> list[dict[str, Any]]:
        return self.named(name)

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            return ""

    def describe(self, n_events: int = 30, n_stderr: int = 40) -> str:
        evs = self.snapshot()[-n_events:]
        err = self.stderr_text().splitlines()[-n_stderr:]
        return (f"{self!r}\n--- last {len(evs)} events:\n"
                + "\n".join(json.dumps(e, default=str) for e in evs)
                + f"\n--- stderr tail ({self.stderr_path}):\n" + "\n".join(err))

    def wait_events(self, name: str, count: int, timeout: float = 10.0,
                    **kw: Any) -> list[dict[str, Any]]:
        """``count`` distinct matching events (same matching rules as ``wait_event``)."""
        return self.wait(name, kw.pop("pred", None), timeout, count=count,
                         consume=kw.pop("consume", True), **kw)

    # -- input / lifecycle
    def command(self, line: str) -> None:
        """Write one command line to the node's stdin and flush."""
        if "\n" in line:
            raise ValueError("one command per call, without newlines")
        assert self.popen.stdin is not None
        self.popen.stdin.write(line + "\n")
        self.popen.stdin.flush()

    def wait_exit(self, timeout: float = 10.0) -> int:
        """Wait for the process to exit; returns its exit code (AssertionError on timeout)."""
        try:
            rc = self.popen.wait(timeout)
        except subprocess.TimeoutExpired:
            raise AssertionError(f"process did not exit within {timeout}s\n"
                                 f"{self.describe()}") from None
        self._reader.join(2.0)
        return rc

    def kill(self, sig: int = signal.SIGKILL) -> None:
        """Send ``sig`` to the node (by pid; no-op once it has been reaped)."""
        if self.popen.returncode is None:
            self.signals.append(sig)
        self.popen.send_signal(sig)

    def stop(self, timeout: float = 10.0, term_grace: float = 3.0) -> int:
        """``/quit`` and wait ``timeout``; then SIGTERM and wait ``term_grace``; then
        SIGKILL. Returns the exit code (negative signal number if killed)."""
        if self.alive:
            with contextlib.suppress(OSError, ValueError):
                self.command("/quit")
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(timeout)
        for sig, grace in ((signal.SIGTERM, term_grace), (signal.SIGKILL, 5.0)):
            if not self.alive:
                break
            self.kill(sig)
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.popen.wait(grace)
        self._close_pipes()
        return self.popen.wait()

    def restart(self, timeout: float = 10.0) -> LanchatProc:
        """Stop this process if it still runs, start a new one with the same host, nick,
        home, port, args and env, and return the new one (with a fresh event list)."""
        if self.alive:
            self.stop(timeout)
        else:
            self.popen.wait()
            self._close_pipes()
        return self.host.start_node(*self.extra_args, nick=self.nick, home=self.home,
                                    port=self.port, env=self.env_overrides,
                                    _raw_extra=True)

    def _close_pipes(self) -> None:
        if self.popen.stdin is not None:
            with contextlib.suppress(OSError, ValueError):
                self.popen.stdin.close()
        self._reader.join(2.0)

    def _teardown(self) -> None:
        """Lab teardown: SIGKILL by pid, reap, close pipes."""
        if self.alive:
            with contextlib.suppress(OSError):
                self.kill(signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.popen.wait(5.0)
        if self.popen.stdout is not None:
            with contextlib.suppress(OSError, ValueError):
                self._close_pipes()


# --------------------------------------------------------------------------- topology


@dataclass
class Segment:
    """One L2 segment: a bridge in the switch namespace and a private /24."""

    index: int
    bridge: str
    subnet: str  # "10.77.<k>" (without the last octet)

    @property
    def cidr(self) -> str:
        return f"{self.subnet}.0/24"

    def address(self, host_index: int) -> str:
        return f"{self.subnet}.{host_index}"


@dataclass
class Interface:
    name: str  # inside the host namespace
    ip: str
    prefixlen: int
    segment: Segment | None  # None for dummy interfaces
    switch_port: str | None  # veth end in the switch namespace

    @property
    def cidr(self) -> str:
        return f"{self.ip}/{self.prefixlen}"


@dataclass
class Host:
    """One host. In netns mode ``ns`` is its namespace; in loopback mode ``ns`` is None."""

    _lab: Lab = field(repr=False)
    index: int
    name: str  # "h1", "h2", ...
    ns: str | None
    ip: str
    interfaces: dict[str, Interface] = field(default_factory=dict)
    nodes: list[LanchatProc] = field(default_factory=list, repr=False)
    _ports: dict[str, int] = field(default_factory=dict, repr=False)

    def __repr__(self) -> str:
        return f"<Host {self.name} ns={self.ns} ip={self.ip}>"

    # -- commands
    def wrap(self, cmd: Sequence[str]) -> list[str]:
        """``cmd`` prefixed so that it runs in this host's namespace.

        Without a namespace (loopback mode) a lanchat command must be held to 127.0.0.1:
        one that is not is refused here (network safety), not run on the real interface."""
        if self.ns is None:
            cmd = list(cmd)
            if _runs_lanchat(cmd) and not _on_loopback(cmd):
                raise LabError(f"loopback mode: {cmd!r} lacks --interface {LOOPBACK_IP} "
                               "(network safety); build it with host.lanchat(...)")
            return cmd
        return [self._lab._ip, "netns", "exec", self.ns, *cmd]

    def lanchat(self, *args: str) -> list[str]:
        """``python -m lanchat ARGS`` for this host (held to 127.0.0.1 in loopback mode)."""
        held = ("--interface", LOOPBACK_IP) if self.ns is None else ()
        return [sys.executable, "-m", "lanchat", *held, *args]

    def run(self, cmd: Sequence[str], *, check: bool = False, timeout: float = 30.0,
            input: str | None = None) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` inside the host's namespace and wait for it (text output captured)."""
        res = subprocess.run(self.wrap(cmd), capture_output=True, text=True, timeout=timeout,
                             input=input, cwd=str(REPO_ROOT))
        if check and res.returncode != 0:
            raise LabError(f"{self.name}: {cmd!r} failed ({res.returncode}): "
                           f"{res.stdout}{res.stderr}")
        return res

    def python(self, code: str, *args: str, timeout: float = 30.0,
               check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run a Python snippet (``sys.executable -c``) inside the host's namespace."""
        return self.run([sys.executable, "-c", code, *args], timeout=timeout, check=check)

    def popen(self, cmd: Sequence[str], **kw: Any) -> subprocess.Popen[str]:
        """Start a background command in the namespace; the lab kills it at teardown."""
        kw.setdefault("text", True)
        kw.setdefault("cwd", str(REPO_ROOT))
        p: subprocess.Popen[str] = subprocess.Popen(self.wrap(cmd), **kw)
        self._lab._procs.append(p)
        return p

    def reachable(self, ip: str, timeout: float = 1.0) -> bool:
        """Whether ``ip`` answers from this host: ``ping`` if present, else a TCP connect
        to a closed port (a refusal proves the path works)."""
        ping = shutil.which("ping")
        if ping:
            w = str(max(1, round(timeout)))
            return self.run([ping, "-c1", "-W", w, "-n", ip],
                            timeout=timeout + 5).returncode == 0
        code = (
            "import socket,sys\n"
            "s=socket.socket();s.settimeout(float(sys.argv[2]))\n"
            "try:\n s.connect((sys.argv[1],9))\n"
            "except (ConnectionRefusedError,ConnectionResetError):\n sys.exit(0)\n"
            "except OSError:\n sys.exit(1)\n"
            "sys.exit(0)\n")
        return self.python(code, ip, str(timeout), timeout=timeout + 10).returncode == 0

    def session_interfaces(self, port: int) -> list[Interface]:
        """The interfaces of this host that carry an established TCP connection to or from
        ``port`` (lanchat sessions), read from the kernel's socket table (``ss``); one
        being closed may still be listed."""
        out = self.run(["ss", "-Htn", "state", "established"], check=True).stdout
        found: list[Interface] = []
        for line in out.splitlines():
            local, remote = line.split()[-2:]
            if local.endswith(f":{port}") or remote.endswith(f":{port}"):
                ip = local.rsplit(":", 1)[0]
                found += [i for i in self.interfaces.values() if i.ip == ip and i not in found]
        return found

    # -- interfaces
    def add_interface(self, segment: Segment | int) -> Interface:
        """Attach this host to another segment with a new veth ``eth<n>`` (multi-homing)."""
        return self._lab._attach(self, self._lab._segment(segment))

    def add_dummy_interface(self, name: str, cidr: str) -> Interface:
        """An interface with an address but no peers and no multicast route.

        A ``dummy`` link where the kernel has the module; otherwise a veth whose other end
        sits, up but attached to nothing, in the switch namespace (``Interface.switch_port``
        stays None, so link_down/link_up leave it alone).
        """
        self._lab._require_netns("dummy interfaces")
        assert self.ns is not None
        ip, _, plen = cidr.partition("/")
        lab = self._lab
        try:
            lab._ipn(self.ns, "link", "add", name, "type", "dummy")
        except LabError:
            peer = f"d{self.index}{name}"[:15]
            lab._ipn(lab.switch_ns, "link", "add", peer, "type", "veth",
                     "peer", "name", name, "netns", self.ns)
            lab._ipn(lab.switch_ns, "link", "set", peer, "up")
        lab._ipn(self.ns, "addr", "add", cidr, "dev", name)
        lab._ipn(self.ns, "link", "set", name, "up")
        iface = Interface(name, ip, int(plen or 32), None, None)
        self.interfaces[name] = iface
        return iface

    # -- lanchat
    def start_node(self, *extra_args: str, nick: str | None = None, home: Path | str | None = None,
                   port: int | None = None, env: Mapping[str, str] | None = None,
                   command: Sequence[str] = ("run", "--json"),
                   _raw_extra: bool = False) -> LanchatProc:
        """Start ``python -m lanchat --home H --nick N --port P *extra_args run --json`` in
        this host (another subcommand with ``command``, e.g. ``("web", "--json")``).
        ``home`` defaults to a per host+nick directory that survives restarts;
        ``port`` defaults to 47800 (netns) or a free port per host+nick (loopback)."""
        lab = self._lab
        nick = nick or f"{self.name}"
        home_p = Path(home) if home is not None else lab.base_dir / f"{self.name}-{nick}"
        args = tuple(extra_args)
        if lab.mode == "loopback" and not _raw_extra:
            for i, a in enumerate(args):
                val = a.split("=", 1)[1] if a.startswith("--interface=") else (
                    args[i + 1] if a == "--interface" and i + 1 < len(args) else None)
                if val is not None and val != LOOPBACK_IP:
                    raise LabError(f"loopback mode allows only --interface {LOOPBACK_IP}, "
                                   f"got {val!r} (network safety)")
            args = ("--interface", LOOPBACK_IP, *args)
        if port is None:
            if lab.mode == "loopback":
                port = self._ports.get(nick) or lab._alloc_port()
                self._ports[nick] = port
            else:
                port = DEFAULT_PORT
        argv = self.wrap([*lab.lanchat_cmd, "--home", str(home_p),
                          "--nick", nick, "--port", str(port), *args, *command])
        proc = LanchatProc(self, argv, nick=nick, home=home_p, port=port, extra_args=args,
                           env=env)
        self.nodes.append(proc)
        lab._nodes.append(proc)
        return proc


@dataclass
class Trunk:
    """The one link between the two halves of a split lab."""

    _lab: Lab = field(repr=False)
    port: str  # veth end in the switch namespace

    def down(self) -> None:
        """Partition: the halves no longer hear each other."""
        self._lab._ipn(self._lab.switch_ns, "link", "set", self.port, "down")

    def up(self) -> None:
        """Heal the partition."""
        self._lab._ipn(self._lab.switch_ns, "link", "set", self.port, "up")


def _runs_lanchat(cmd: Sequence[str]) -> bool:
    """True if ``cmd`` starts lanchat (``-m lanchat`` or a ``lanchat`` script)."""
    return any(a == "lanchat" and i > 0 and cmd[i - 1] == "-m" for i, a in enumerate(cmd)) or (
        any(Path(a).name == "lanchat" for a in cmd[:3]))


def _on_loopback(cmd: Sequence[str]) -> bool:
    """True if every ``--interface`` in ``cmd`` is 127.0.0.1 and there is at least one."""
    values = [cmd[i + 1] for i, a in enumerate(cmd[:-1]) if a == "--interface"]
    values += [a.split("=", 1)[1] for a in cmd if a.startswith("--interface=")]
    return bool(values) and all(v == LOOPBACK_IP for v in values)


# --------------------------------------------------------------------------- the lab


class Lab:
    """N hosts on one (or more) bridged segments. Use as a context manager."""

    def __init__(self, n: int = 2, *, segments: int = 1, mode: str | None = None,
                 base_dir: Path | str | None = None, mcast_snooping: bool = False,
                 lanchat_cmd: Sequence[str] | None = None) -> None:
        if n < 1 or segments < 1:
            raise ValueError("need at least one host and one segment")
        _ensure_atexit()
        global _swept_once
        self.counter = next(_counter)
        self.prefix = f"{NS_PREFIX}{os.getpid()}x{self.counter}-"
        self.switch_ns = f"{self.prefix}sw"
        self.hosts: list[Host] = []
        self.segments: list[Segment] = []
        self.namespaces: list[str] = []
        self.mcast_snooping = mcast_snooping
        # what start_node runs before its arguments (swap in a fake node for self-tests)
        self.lanchat_cmd: list[str] = list(lanchat_cmd or [sys.executable, "-m", "lanchat"])
        self.fallback_reason: str | None = None
        self._nodes: list[LanchatProc] = []
        self._procs: list[subprocess.Popen[str]] = []
        self._ports_used: set[int] = set()
        self._trunks: list[Trunk] = []
        self._gen = itertools.count(1)
        self._closed = False
        self._own_base = base_dir is None
        self.base_dir = Path(base_dir) if base_dir is not None else Path(
            tempfile.mkdtemp(prefix=f"lanchat-lab-{self.prefix}"))
        self.base_dir.mkdir(parents=True, exist_ok=True)
        ip = _ip_bin()
        self._ip = ip or "ip"
        # third octet base: a multiple of 8 per lab, so one lab has room for 8 segments
        self._k_base = ((os.getpid() % 32) * 8 + self.counter * 8) % 256

        want = (mode or os.environ.get(MODE_ENV) or "auto").lower()
        if want not in ("auto", "netns", "loopback"):
            raise ValueError(f"mode must be auto, netns or loopback, not {want!r}")
        reason = None
        if want == "loopback":
            reason = "loopback mode requested"
        elif os.geteuid() != 0:
            reason = "not root"
        elif ip is None:
            reason = "`ip` (iproute2) not found"
        if reason is not None and want == "netns":
            raise LabError(f"{MODE_ENV}=netns but the namespace lab cannot be built: {reason}")
        if reason is None:
            if not _swept_once:
                _swept_once = True
                with contextlib.suppress(Exception):
                    sweep_stale_namespaces()
            _live_labs.add(self)
            try:
                self._build(n, segments)
                self.mode = "netns"
            except Exception as e:  # partial build: remove what exists, then fall back
                self._delete_namespaces()
                self.hosts.clear()
                self.segments.clear()
                if want == "netns":
                    _live_labs.discard(self)
                    raise
                reason = f"namespace setup failed: {e}"
        if reason is not None:
            self.mode = "loopback"
            self.fallback_reason = reason
            if want != "loopback":
                log.warning("lab: using loopback mode: %s", reason)
            else:
                log.info("lab: loopback mode (requested)")
            _live_labs.add(self)
            self.hosts = [Host(self, i, f"h{i}", None, LOOPBACK_IP) for i in range(1, n + 1)]

    # -- context manager / access
    def __enter__(self) -> Lab:
        return self

    def __exit__(self, et: type[BaseException] | None, ev: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()

    def __getitem__(self, i: int) -> Host:
        return self.hosts[i]

    def start_pair(self, *extra_args: str, env: Mapping[str, str] | None = None
                   ) -> tuple[LanchatProc, LanchatProc]:
        """The lab's two-node pair (on `lab2`): bob listens on the second host, alice on the
        first names him by address, no discovery; returns (alice, bob) once each has seen
        the other join."""
        h1, h2 = self.hosts[:2]
        bob = h2.start_node(*NO_DISCOVERY, *extra_args, nick="bob", env=env)
        bob.wait_event("ready")
        alice = h1.start_node(*NO_DISCOVERY, *extra_args, "--peer", f"{h2.ip}:{bob.port}",
                              nick="alice", env=env)
        alice.wait_event("peer_joined", peer={"nick": "bob"})
        bob.wait_event("peer_joined", peer={"nick": "alice"})
        return alice, bob

    def __iter__(self) -> Iterator[Host]:
        return iter(self.hosts)

    def __len__(self) -> int:
        return len(self.hosts)

    def __repr__(self) -> str:
        return f"<Lab {self.prefix} mode={self.mode} hosts={len(self.hosts)}>"

    def host(self, name: str) -> Host:
        return next(h for h in self.hosts if h.name == name)

    @property
    def nodes(self) -> list[LanchatProc]:
        return list(self._nodes)

    def _next_generation(self) -> int:
        return next(self._gen)

    def _alloc_port(self) -> int:
        port = free_port(LOOPBACK_IP, self._ports_used)
        self._ports_used.add(port)
        return port

    # -- ip plumbing
    def _ipn(self, ns: str, *args: str) -> None:
        _run([self._ip, "-n", ns, *args])

    def _add_ns(self, name: str) -> None:
        self.namespaces.append(name)  # record first: a half-made namespace is still deleted
        _run([self._ip, "netns", "add", name])

    def _require_netns(self, what: str) -> None:
        if self.mode != "netns":
            pytest.skip(f"{what} need network namespaces (lab in loopback mode: "
                        f"{self.fallback_reason})")

    def _build(self, n: int, segments: int) -> None:
        self._add_ns(self.switch_ns)
        # the switch stays silent: no IPv6 link-local addresses, no router solicitations
        _run([self._ip, "netns", "exec", self.switch_ns, "sh", "-c",
              "for k in all default; do echo 1 > /proc/sys/net/ipv6/conf/$k/disable_ipv6; "
              "done 2>/dev/null; true"], check=False)
        for _ in range(segments):
            self._new_segment()
        for i in range(1, n + 1):
            ns = f"{self.prefix}h{i}"
            self._add_ns(ns)
            host = Host(self, i, f"h{i}", ns, self.segments[0].address(i))
            self.hosts.append(host)
            self._ipn(ns, "link", "set", "lo", "up")
            self._attach(host, self.segments[0])
            self._ipn(ns, "route", "add", "224.0.0.0/4", "dev", "eth0")

    def _new_segment(self) -> Segment:
        idx = len(self.segments)
        if idx >= 8:
            raise LabError("at most 8 segments per lab")
        seg = Segment(idx, f"br{idx}", f"10.77.{(self._k_base + idx) % 256}")
        snoop = "1" if self.mcast_snooping else "0"
        self._ipn(self.switch_ns, "link", "add", seg.bridge, "type", "bridge",
                  "mcast_snooping", snoop)
        self._ipn(self.switch_ns, "link", "set", seg.bridge, "up")
        self.segments.append(seg)
        return seg

    def _segment(self, seg: Segment | int) -> Segment:
        self._require_netns("extra segments")
        if isinstance(seg, Segment):
            return seg
        while len(self.segments) <= seg:
            self._new_segment()
        return self.segments[seg]

    def add_segment(self) -> Segment:
        """A new bridge ``br<n>`` in the switch namespace with its own /24."""
        self._require_netns("extra segments")
        return self._new_segment()

    def _attach(self, host: Host, seg: Segment) -> Interface:
        assert host.ns is not None
        for iface in host.interfaces.values():
            if iface.segment is seg:
                raise LabError(f"{host.name} is already on segment {seg.index}")
        n_eth = sum(1 for name in host.interfaces if name.startswith("eth"))
        name = f"eth{n_eth}"
        port = f"p{host.index}" if seg.index == 0 else f"p{host.index}s{seg.index}"
        ip = seg.address(host.index)
        # created inside the switch namespace, the peer goes straight into the host:
        # nothing ever exists in the root namespace
        self._ipn(self.switch_ns, "link", "add", port, "type", "veth",
                  "peer", "name", name, "netns", host.ns)
        self._ipn(self.switch_ns, "link", "set", port, "master", seg.bridge)
        self._ipn(self.switch_ns, "link", "set", port, "up")
        self._ipn(host.ns, "addr", "add", f"{ip}/24", "dev", name)
        self._ipn(host.ns, "link", "set", name, "up")
        iface = Interface(name, ip, 24, seg, port)
        host.interfaces[name] = iface
        return iface

    # -- partitions
    def _ports_of(self, host: Host, segment: Segment | int | None) -> list[str]:
        self._require_netns("link_down/link_up")
        seg = None if segment is None else self._segment(segment)
        return [i.switch_port for i in host.interfaces.values()
                if i.switch_port and (seg is None or i.segment is seg)]

    def link_down(self, host: Host, segment: Segment | int | None = None) -> None:
        """Cut ``host`` off (switch-side veth end down), on one segment or all of them."""
        for port in self._ports_of(host, segment):
            self._ipn(self.switch_ns, "link", "set", port, "down")

    def link_up(self, host: Host, segment: Segment | int | None = None) -> None:
        """Reconnect ``host`` (switch-side veth end up)."""
        for port in self._ports_of(host, segment):
            self._ipn(self.switch_ns, "link", "set", port, "up")

    def split(self, hosts: Sequence[Host]) -> Trunk:
        """Move ``hosts`` (segment 0) to a bridge of their own, joined to the others by one
        link: ``Trunk.down()`` cuts the LAN in two halves that each still work, ``up()``
        heals it. Addresses stay in the one /24."""
        self._require_netns("split")
        n = len(self._trunks)
        bridge, here, there = f"bs{n}", f"t{n}a", f"t{n}b"
        snoop = "1" if self.mcast_snooping else "0"
        sw = self.switch_ns
        self._ipn(sw, "link", "add", bridge, "type", "bridge", "mcast_snooping", snoop)
        self._ipn(sw, "link", "set", bridge, "up")
        self._ipn(sw, "link", "add", here, "type", "veth", "peer", "name", there)
        self._ipn(sw, "link", "set", here, "master", self.segments[0].bridge)
        self._ipn(sw, "link", "set", there, "master", bridge)
        for end in (here, there):
            self._ipn(sw, "link", "set", end, "up")
        for host in hosts:
            for iface in host.interfaces.values():
                if iface.segment is self.segments[0] and iface.switch_port:
                    self._ipn(sw, "link", "set", iface.switch_port, "master", bridge)
        trunk = Trunk(self, here)
        self._trunks.append(trunk)
        return trunk

    # -- teardown
    def _delete_namespaces(self) -> None:
        while self.namespaces:
            name = self.namespaces[-1]
            res = _run([self._ip, "netns", "del", name], check=False)
            if res.returncode != 0 and name in list_namespaces():
                log.error("could not delete namespace %s: %s", name, res.stderr.strip())
            self.namespaces.pop()

    def close(self) -> None:
        """Kill every process this lab started (by pid), then delete its namespaces.

        Idempotent; SIGINT/SIGTERM/SIGHUP are held back while it runs (main thread), so an
        impatient second Ctrl-C cannot leave half a lab behind.
        """
        if self._closed:
            return
        held = {signal.SIGINT, signal.SIGTERM, signal.SIGHUP}
        masked = threading.current_thread() is threading.main_thread()
        if masked:
            signal.pthread_sigmask(signal.SIG_BLOCK, held)
        try:
            for proc in self._nodes:
                with contextlib.suppress(Exception):
                    proc._teardown()
            for p in self._procs:
                with contextlib.suppress(Exception):
                    if p.poll() is None:
                        p.kill()
                    p.wait(5.0)
            self._delete_namespaces()
            self._closed = True
            _live_labs.discard(self)
            if self._own_base and not os.environ.get(KEEP_ENV):
                shutil.rmtree(self.base_dir, ignore_errors=True)
        finally:
            if masked:
                signal.pthread_sigmask(signal.SIG_UNBLOCK, held)
