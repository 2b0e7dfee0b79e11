"""Raw one-way multicast datagram latency, the floor under the beacon (run inside a lab host).

    python -m bench._disc_mcast recv --ip IP [--n N] [--timeout S]
    python -m bench._disc_mcast send --ip IP [--n N] [--gap S]

Same kind of socket as lanchat's beacon (TTL 1, IP_MULTICAST_IF, membership on one
interface, IP_MULTICAST_ALL 0) but a different group and port, so no node hears it. The
sender puts time.time() into each small JSON datagram; the receiver subtracts it from its
own time.time() on arrival (all lab namespaces share one clock). Output: JSON lines with
"kind" ("ready", "done", "result").
"""

from __future__ import annotations

import argparse
import json
import socket
import sys
import time

GROUP = "239.255.77.78"
PORT = 47813


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def recv(ip: str, n: int, timeout: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.setsockopt(socket.IPPROTO_IP, getattr(socket, "IP_MULTICAST_ALL", 49), 0)
    s.bind((GROUP, PORT))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP,
                 socket.inet_aton(GROUP) + socket.inet_aton(ip))
    s.settimeout(timeout)
    emit({"kind": "ready"})
    samples: list[float] = []
    try:
        while len(samples) < n:
            data = s.recv(2048)
            now = time.time()
            samples.append(now - json.loads(data)["ts"])
    except TimeoutError:
        pass
    emit({"kind": "result", "samples_s": samples})


def send(ip: str, n: int, gap: float) -> None:
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM, socket.IPPROTO_UDP)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ip))
    pad = "x" * 200  # about the size of a beacon
    for seq in range(n):
        s.sendto(json.dumps({"seq": seq, "pad": pad, "ts": time.time()}).encode(),
                 (GROUP, PORT))
        time.sleep(gap)
    emit({"kind": "done", "sent": n})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("recv", "send"))
    ap.add_argument("--ip", required=True)
    ap.add_argument("--n", type=int, default=200)
    ap.add_argument("--gap", type=float, default=0.005)
    ap.add_argument("--timeout", type=float, default=5.0)
    a = ap.parse_args()
    if a.mode == "recv":
        recv(a.ip, a.n, a.timeout)
    else:
        send(a.ip, a.n, a.gap)
    return 0


if __name__ == "__main__":
    sys.exit(main())
