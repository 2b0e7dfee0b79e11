"""A scripted LocalSend v2 device for the lab, to send what a real app never would.

Run inside a lab host: ``python tests/localsend_peer.py --ip IP --dir DIR --alias mal``.
It serves HTTPS with its own certificate (so a receiver can verify it by `register`), and
takes JSON commands on stdin, answering one JSON line each on stdout:

    {"cmd": "prepare", "to": [IP, PORT, FINGERPRINT], "files": [[ID, NAME, SIZE], ...]}
        -> {"status": 200, "body": {...}} (waits for the receiver's decision)
    {"cmd": "upload", "to": [...], "session": S, "file": ID, "token": T, "bytes": N}
        -> {"status": ...}   N bytes of "x" as the body, whatever was offered
    {"cmd": "quit"}
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import urllib.parse
from pathlib import Path
from typing import Any, BinaryIO

from lanchat.interop.localsend.cert import LocalSendCert, fingerprint_of
from lanchat.interop.localsend.messages import API, DeviceInfo, PrepareUpload
from lanchat.interop.localsend.server import open_server


class _Device:
    """Answers register and info; takes no files."""

    def __init__(self, info: DeviceInfo) -> None:
        self.info = info

    def device(self) -> DeviceInfo:
        return self.info

    def on_register(self, info: DeviceInfo, address: str) -> None:
        return None

    def on_prepare(self, request: PrepareUpload, address: str,
                   pin: str | None) -> tuple[int, dict[str, Any] | None]:
        return 403, None

    def on_upload(self, session_id: str, file_id: str, token: str, address: str,
                  body: BinaryIO, length: int) -> tuple[int, str]:
        return 403, "no"

    def on_cancel(self, session_id: str, address: str) -> None:
        return None


def post(cert: LocalSendCert, to: list[Any], path: str, body: bytes,
         query: dict[str, str] | None = None) -> tuple[int, Any]:
    conn = http.client.HTTPSConnection(to[0], int(to[1]), context=cert.client_context(),
                                       timeout=120)
    conn.connect()
    assert conn.sock is not None
    if fingerprint_of(conn.sock.getpeercert(binary_form=True) or b"") != to[2]:
        return 0, "certificate mismatch"
    url = API + path + ("?" + urllib.parse.urlencode(query) if query else "")
    try:
        conn.request("POST", url, body=body, headers={"Content-Length": str(len(body))})
        response = conn.getresponse()
        data = response.read()
    except (OSError, http.client.HTTPException) as exc:
        return -1, str(exc)
    finally:
        conn.close()
    try:
        return response.status, json.loads(data) if data else None
    except ValueError:
        return response.status, data.decode(errors="replace")


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--ip", required=True)
    ap.add_argument("--dir", required=True, type=Path)
    ap.add_argument("--alias", default="mal")
    args = ap.parse_args()
    cert = LocalSendCert.load_or_create(args.dir)
    info = DeviceInfo(alias=args.alias, fingerprint=cert.fingerprint, port=53317)
    server = open_server(args.ip, (53317,), _Device(info), cert.server_context())
    threading.Thread(target=server.serve_forever, daemon=True).start()
    print(json.dumps({"event": "ready", "fingerprint": cert.fingerprint}), flush=True)
    for line in sys.stdin:
        cmd = json.loads(line)
        if cmd["cmd"] == "prepare":
            files = [{"id": i, "fileName": n, "size": s, "fileType": "text/plain"}
                     for i, n, s in cmd["files"]]
            body = json.dumps({"info": info.to_json(), "files": {f["id"]: f for f in files}})
            status, answer = post(cert, cmd["to"], "/prepare-upload", body.encode())
        elif cmd["cmd"] == "upload":
            status, answer = post(cert, cmd["to"], "/upload", b"x" * int(cmd["bytes"]),
                                  {"sessionId": cmd["session"], "fileId": cmd["file"],
                                   "token": cmd["token"]})
        else:
            server.shutdown()
            return
        print(json.dumps({"event": "result", "status": status, "body": answer}), flush=True)


if __name__ == "__main__":
    main()
