"""A browser under remote control, for the web tests and benchmarks: Debian's Chromium,
driven by Playwright, inside a lab namespace (it refuses to start anywhere else).

Reads one JSON command per line on stdin and answers one JSON line on stdout:
{"op": "open", "url": U} | {"op": "eval", "js": F, "arg": A} | {"op": "wait", "js": F,
"arg": A, "timeout": S} | {"op": "click"|"fill"|"press", "selector": S, ...} |
{"op": "drop", "selector": S, "name": N, "data": BASE64} | {"op": "screenshot", "path": P} |
{"op": "metrics"} | {"op": "page", "url": U, "html": H} (a page at another origin) |
{"op": "quit"}. Answers: {"ok": true, "value": ...} or {"ok": false, "error": ...}.
"""

from __future__ import annotations

import json
import os
import sys
import tempfile
from typing import Any

CHROMIUM = "/usr/bin/chromium"
NETNS_DIR = "/run/netns"
LAB_PREFIX = "lcl"
FLAGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
         "--disable-background-networking", "--disable-component-update", "--disable-sync",
         "--headless", "--enable-precise-memory-info",
         "--host-resolver-rules=MAP rebind.test 127.0.0.1, MAP evil.test 127.0.0.1"]


def in_lab_namespace() -> bool:
    """True when this process runs in a namespace tests/lab.py made (named `lcl...`)."""
    try:
        own = os.stat("/proc/self/ns/net")
        for entry in os.scandir(NETNS_DIR):
            if entry.name.startswith(LAB_PREFIX):
                st = os.stat(entry.path)
                if (st.st_dev, st.st_ino) == (own.st_dev, own.st_ino):
                    return True
    except OSError:
        return False
    return False


class Driver:
    """One browser, one context, one page (plus pages at other origins when asked)."""

    def __init__(self) -> None:
        from playwright.sync_api import sync_playwright

        self.pw = sync_playwright().start()
        self.profile = tempfile.mkdtemp(prefix="lanchat-chromium-")
        self.context = self.pw.chromium.launch_persistent_context(
            self.profile, executable_path=CHROMIUM, headless=True, args=FLAGS,
            viewport={"width": 1100, "height": 700}, accept_downloads=True)
        self.page = self.context.pages[0] if self.context.pages else self.context.new_page()
        self.cdp: Any = None

    def handle(self, cmd: dict[str, Any]) -> Any:
        op = cmd["op"]
        page = self.page
        timeout_ms = float(cmd.get("timeout", 15)) * 1000
        if op == "open":
            res = page.goto(cmd["url"], timeout=timeout_ms)
            if cmd.get("ready", True):
                page.wait_for_selector("body[data-ready]", timeout=timeout_ms, state="attached")
            return {"status": res.status if res else None, "url": page.url,
                    "headers": res.all_headers() if res else {}}
        if op == "eval":
            return page.evaluate(cmd["js"], cmd.get("arg"))
        if op == "wait":
            page.wait_for_function(cmd["js"], arg=cmd.get("arg"), timeout=timeout_ms,
                                   polling=cmd.get("polling", "raf"))
            return page.evaluate(cmd["js"], cmd.get("arg"))
        if op == "click":
            page.click(cmd["selector"], timeout=timeout_ms)
            return None
        if op == "fill":
            page.fill(cmd["selector"], cmd["text"], timeout=timeout_ms)
            return None
        if op == "press":
            page.press(cmd["selector"], cmd["key"], timeout=timeout_ms)
            return None
        if op == "type":
            page.type(cmd["selector"], cmd["text"], delay=cmd.get("delay", 0),
                      timeout=timeout_ms)
            return None
        if op == "drop":
            data = page.evaluate_handle(
                """([name, b64]) => {
                    const bytes = Uint8Array.from(atob(b64), (c) => c.charCodeAt(0));
                    const dt = new DataTransfer();
                    dt.items.add(new File([bytes], name));
                    return dt; }""", [cmd["name"], cmd["data"]])
            page.dispatch_event(cmd["selector"], "dragenter", {"dataTransfer": data})
            page.dispatch_event(cmd["selector"], "drop", {"dataTransfer": data})
            return None
        if op == "screenshot":
            page.screenshot(path=cmd["path"], full_page=False)
            return cmd["path"]
        if op == "render":  # show HTML as a page of its own (the shell's screenshot)
            other = self.context.new_page()
            other.set_viewport_size({"width": cmd.get("width", 1100),
                                     "height": cmd.get("height", 700)})
            other.set_content(cmd["html"])
            other.screenshot(path=cmd["path"])
            other.close()
            return cmd["path"]
        if op == "metrics":
            if self.cdp is None:
                self.cdp = self.context.new_cdp_session(page)
                self.cdp.send("Performance.enable")
            self.cdp.send("HeapProfiler.collectGarbage")
            got = self.cdp.send("Performance.getMetrics")
            return {m["name"]: m["value"] for m in got["metrics"]}
        if op == "page":
            # A page at another origin (served by Playwright itself, no server): what a
            # hostile site open in the same browser could do; returns what `js` returns.
            other = self.context.new_page()
            other.route(cmd["url"], lambda route: route.fulfill(
                status=200, content_type="text/html", body=cmd.get("html", "<p>evil</p>")))
            other.goto(cmd["url"], timeout=timeout_ms)
            try:
                return other.evaluate(cmd["js"], cmd.get("arg"))
            finally:
                other.close()
        raise ValueError(f"unknown op {op!r}")

    def close(self) -> None:
        self.context.close()
        self.pw.stop()


def main() -> int:
    if not in_lab_namespace():
        print(json.dumps({"ok": False, "error": "refusing to run a browser outside a lab "
                                                "network namespace"}), flush=True)
        return 2
    driver = Driver()
    print(json.dumps({"ok": True, "value": "ready"}), flush=True)
    try:
        for line in sys.stdin:
            if not line.strip():
                continue
            cmd = json.loads(line)
            if cmd.get("op") == "quit":
                break
            try:
                answer = {"ok": True, "value": driver.handle(cmd)}
            except Exception as exc:  # noqa: BLE001 - the test reads the error
                answer = {"ok": False, "error": f"{type(exc).__name__}: {exc}"}
            print(json.dumps(answer, default=str), flush=True)
    finally:
        driver.close()
    return 0


if __name__ == "__main__":
    sys.exit(main())
