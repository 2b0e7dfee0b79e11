"""The web window in the lab: a `lanchat web` node, a peer, and a browser beside the node
(same namespace), for the browser tests and the benchmarks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
from pathlib import Path
from typing import Any

from lab import NO_DISCOVERY, Host, Lab, LanchatProc

DRIVER = Path(__file__).resolve().parent / "web_driver.py"
CHROMIUM = "/usr/bin/chromium"


def browser_missing() -> str | None:
    """Why the browser tests cannot run here, or None."""
    if not os.path.exists(CHROMIUM):
        return f"no {CHROMIUM} (apt-get install chromium)"
    try:
        import aiohttp  # noqa: F401
        import playwright  # noqa: F401
    except ImportError as exc:
        return f"{exc.name} is not installed (pip install -e '.[test]')"
    return None


class Browser:
    """A web_driver.py process in a lab host; `call` sends one command and waits."""

    def __init__(self, host: Host, timeout: float = 60.0) -> None:
        self.proc: subprocess.Popen[str] = host.popen(
            [sys.executable, str(DRIVER)], stdin=subprocess.PIPE, stdout=subprocess.PIPE,
            stderr=subprocess.PIPE, bufsize=1)
        self._lock = threading.Lock()
        self.read(timeout)

    def read(self, timeout: float) -> Any:
        assert self.proc.stdout is not None
        result: list[str] = []
        reader = threading.Thread(target=lambda: result.append(self.proc.stdout.readline()),
                                  daemon=True)  # type: ignore[union-attr]
        reader.start()
        reader.join(timeout)
        if not result or not result[0]:
            err = ""
            if self.proc.poll() is not None and self.proc.stderr is not None:
                err = self.proc.stderr.read()[-3000:]
            raise AssertionError(f"browser driver gave no answer in {timeout} s {err}")
        answer = json.loads(result[0])
        if not answer["ok"]:
            raise AssertionError(f"browser: {answer['error']}")
        return answer["value"]

    def call(self, op: str, timeout: float = 30.0, **fields: Any) -> Any:
        """Run one driver command (see web_driver.py) and return its value."""
        with self._lock:
            assert self.proc.stdin is not None
            self.proc.stdin.write(json.dumps({"op": op, "timeout": timeout - 2, **fields})
                                  + "\n")
            self.proc.stdin.flush()
            return self.read(timeout)

    def wait(self, js: str, arg: Any = None, timeout: float = 20.0) -> Any:
        """Wait until `js` (a function of `arg`) returns something truthy in the page."""
        return self.call("wait", js=js, arg=arg, timeout=timeout)

    def eval(self, js: str, arg: Any = None) -> Any:
        return self.call("eval", js=js, arg=arg)

    def close(self) -> None:
        if self.proc.poll() is None:
            try:
                assert self.proc.stdin is not None
                self.proc.stdin.write('{"op": "quit"}\n')
                self.proc.stdin.flush()
                self.proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self.proc.kill()
                self.proc.wait(5)


def start_web_node(lab: Lab, *, nick: str = "bob", peers: list[LanchatProc] = (),  # type: ignore[assignment]
                   extra: tuple[str, ...] = (), env: dict[str, str] | None = None
                   ) -> tuple[LanchatProc, str]:
    """`lanchat web --json --no-browser` in host 0, given the peers by address; returns
    the process and the URL from its `web_ready` event."""
    host = lab[0]
    args = [*NO_DISCOVERY, *extra]
    for p in peers:
        args += ["--peer", f"{p.host.ip}:{p.port}"]
    node = host.start_node(*args, nick=nick, env=env,
                           command=("web", "--json", "--no-browser"))
    ready = node.wait_event("web_ready", timeout=20)
    return node, str(ready["url"])
