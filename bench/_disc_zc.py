"""Bare python-zeroconf announce -> browse latency, the floor under lanchat's mDNS source.

    python -m bench._disc_zc browse --ip IP        # prints {"kind":"added"|"removed",...}
    python -m bench._disc_zc register --ip IP --n N

Run inside lab hosts only: Zeroconf(interfaces=[IP]) keeps all traffic on that interface.
Uses its own service type (`_lcbench._tcp.local.`), so lanchat nodes never see it. The
registrar uses the same settings as lanchat (probing: cooperating_responders=False) and
prints time.time() before register_service() and unregister_service(); the browser prints
time.time() when its handler fires (all lab namespaces share one clock).
"""

from __future__ import annotations

import argparse
import json
import sys
import time

from zeroconf import IPVersion, ServiceBrowser, ServiceInfo, ServiceStateChange, Zeroconf

TYPE = "_lcbench._tcp.local."


def emit(obj: dict) -> None:
    print(json.dumps(obj), flush=True)


def browse(ip: str) -> None:
    zc = Zeroconf(interfaces=[ip], ip_version=IPVersion.V4Only)

    def handler(zeroconf: Zeroconf, service_type: str, name: str,
                state_change: ServiceStateChange) -> None:
        now = time.time()
        kind = {ServiceStateChange.Added: "added",
                ServiceStateChange.Removed: "removed"}.get(state_change)
        if kind:
            emit({"kind": kind, "name": name, "ts": now})

    ServiceBrowser(zc, TYPE, handlers=[handler])
    emit({"kind": "ready"})
    try:
        sys.stdin.read()  # until the orchestrator closes stdin
    finally:
        zc.close()


def register(ip: str, n: int, hold: float) -> None:
    emit({"kind": "ready"})
    for i in range(n):
        # a fresh responder per sample, as each joining lanchat node has its own
        zc = Zeroconf(interfaces=[ip], ip_version=IPVersion.V4Only)
        name = f"bench{i}-{int(time.time() * 1000) % 100000}.{TYPE}"
        info = ServiceInfo(TYPE, name, port=40000 + i, properties={"v": "1"},
                           server=f"lcbench-{i}.local.", parsed_addresses=[ip])
        t0 = time.time()
        zc.register_service(info, cooperating_responders=False)
        t1 = time.time()
        time.sleep(hold)
        t2 = time.time()
        zc.unregister_service(info)
        t3 = time.time()
        emit({"kind": "sample", "name": name, "register_t0": t0, "register_returned": t1,
              "unregister_t0": t2, "unregister_returned": t3})
        zc.close()
        time.sleep(0.2)
    emit({"kind": "done"})


def main() -> int:
    ap = argparse.ArgumentParser()
    ap.add_argument("mode", choices=("browse", "register"))
    ap.add_argument("--ip", required=True)
    ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--hold", type=float, default=0.3)
    a = ap.parse_args()
    if a.mode == "browse":
        browse(a.ip)
    else:
        register(a.ip, a.n, a.hold)
    return 0


if __name__ == "__main__":
    sys.exit(main())
