"""The headless contract as a script sees it: every line is a JSON event the schema allows
(tests/lab.py checks each against lanchat/headless/schema.json), and the subcommands that
print have `--json`."""

from __future__ import annotations

import json
import os
import pty
import subprocess
import threading
from pathlib import Path

from contract import violations
from lab import Lab


def json_lines(stdout: str) -> list[dict[str, object]]:
    """Each stdout line as JSON, every one an event the schema allows."""
    events = [json.loads(line) for line in stdout.splitlines()]
    wrong = [v for e in events for v in violations(e)]
    assert not wrong, wrong
    return events


def test_every_event_matches_the_contract(lab2: Lab, tmp_path: Path) -> None:
    """Join, talk, err, send from scripts and leave; every line printed fits the schema."""
    h1, h2 = lab2.hosts
    bob = h2.start_node(nick="bob")
    alice = h1.start_node(nick="alice")
    alice.wait_event("peer_joined", peer={"nick": "bob"})
    bob.wait_event("peer_joined", peer={"nick": "alice"})
    alice.command("/msg bob hello")
    got = bob.wait_event("message", text="hello")
    # the line comes back as `sent` (every face of alice's node draws it from that), then ✓
    sent = alice.wait_event("sent", id=got["id"])
    bob_id = bob.events_named("ready")[0]["id"]
    assert (sent["to"], sent["room"], sent["text"], sent["recipients"], sent["from"]["nick"]
            ) == ("direct", None, "hello", [{"id": bob_id, "nick": "bob"}], "alice")
    delivered = alice.wait_event("delivered", id=got["id"])
    assert alice.snapshot().index(sent) < alice.snapshot().index(delivered)
    bob.command("/all hi all")
    alice.wait_event("message", text="hi all", to="broadcast")
    everyone = bob.wait_event("sent", to="broadcast", text="hi all")  # one, naming all
    assert [r["nick"] for r in everyone["recipients"]] == ["alice"]
    alice.command("/msg nobody hi")
    alice.command("/frobnicate")
    alice.command('/msg "unclosed')
    assert alice.wait_event("error", command="/frobnicate")["code"] == "command"
    alice.command("/list")
    listing = alice.wait_event("output", command="/list")
    assert listing["data"][0]["nick"] == "bob"

    # A script on h1 sends with `send --json`: its node's events, `delivered` among them.
    script = ("--home", str(tmp_path / "script"), "--nick", "script", "--port", "0",
              "--no-mdns", "--no-beacon", "--peer", f"{h2.ip}:{bob.port}")
    sent = h1.run(h1.lanchat(*script, "send", "--json", "--to", "bob", "from a script"),
                  timeout=60)
    assert sent.returncode == 0, sent.stderr
    events = json_lines(sent.stdout)
    got = bob.wait_event("message", text="from a script")
    assert any(e["event"] == "delivered" and e["id"] == got["id"] for e in events)
    assert [(e["id"], e["to"], e["text"], [r["nick"] for r in e["recipients"]])
            for e in events if e["event"] == "sent"] == [
        (got["id"], "direct", "from a script", ["bob"])]

    # ... and a file with `send --file --json`: progress events, then verified.
    bob.command("/autoaccept on script")
    bob.wait_event("output", command="/autoaccept on script")
    payload = tmp_path / "payload.bin"
    payload.write_bytes(bytes(range(256)) * 4096)
    sent = h1.run(h1.lanchat(*script, "send", "--json", "--to", "bob", "--file",
                             str(payload), "--wait", "60"), timeout=90)
    assert sent.returncode == 0, sent.stderr
    names = [e["event"] for e in json_lines(sent.stdout)]
    assert "file_progress" in names and names.index("file_progress") < names.index("file_done")
    assert sent.stderr == "", "no bar and no words besides the JSON lines"

    # On a terminal: a bar on stderr, the outcome in words. Bob says no, and why.
    bob.command("/autoaccept off script")
    bob.wait_event("output", command="/autoaccept off script")
    since = bob.mark()
    declined = Terminal(h1.wrap(h1.lanchat(*script, "send", "--to", "bob", "--file",
                                           str(payload))))
    offer = bob.wait_event("file_offer", match={"from": {"nick": "script"}}, timeout=30,
                           since=since)
    bob.command(f"/decline {offer['transfer']} no room here")
    rc, out, screen = declined.finish()
    assert rc == 1 and out == ""
    assert "bob declined payload.bin: no room here" in screen
    # Accepted: the bar was drawn (and erased), the words go to stdout.
    bob.command("/autoaccept on script")
    bob.wait_event("output", command="/autoaccept on script")
    rc, out, screen = Terminal(h1.wrap(h1.lanchat(*script, "send", "--to", "bob", "--file",
                                                  str(payload)))).finish()
    assert rc == 0 and out.startswith("sent payload.bin to bob: 1.0 MiB, BLAKE3 verified")
    assert "\x1b[Kpayload.bin -> bob [" in screen and "100%" in screen

    ident = h1.run(h1.lanchat(*script, "id", "--json"))
    assert json.loads(ident.stdout)["nick"] == "script"

    bob.stop()
    assert alice.wait_event("peer_left")["reason"] == "bye"
    alice.command("/quit")
    assert alice.wait_exit(10) == 0
    events = alice.snapshot()
    assert all(isinstance(e["ts"], float) for e in events)
    names = {e["event"] for e in events}
    assert {"ready", "peer_joined", "message", "sent", "delivered", "output", "error",
            "peer_left"} <= names
    errors = [e for e in events if e["event"] == "error"]
    assert len(errors) == 3, "each bad line is one error event and the node goes on"


class Terminal:
    """A command whose stderr is a terminal (a pty) and whose stdout is a pipe."""

    def __init__(self, cmd: list[str]) -> None:
        self.master, slave = pty.openpty()
        self.proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=slave, text=True)
        os.close(slave)
        self.screen = bytearray()
        self.reader = threading.Thread(target=self._drain, daemon=True)
        self.reader.start()

    def _drain(self) -> None:
        while True:
            try:
                chunk = os.read(self.master, 4096)
            except OSError:
                return
            if not chunk:
                return
            self.screen += chunk

    def finish(self, timeout: float = 60.0) -> tuple[int, str, str]:
        """Wait for the exit; return the exit code, stdout and what the terminal got."""
        out, _ = self.proc.communicate(timeout=timeout)
        self.reader.join(10)
        os.close(self.master)
        return self.proc.returncode, out, self.screen.decode(errors="replace")
