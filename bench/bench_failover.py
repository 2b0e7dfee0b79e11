"""Link failover: a pulled cable under a conversation between two-homed hosts.

    python -m bench.bench_failover            # 5 pulls per mode, as root (namespaces)
    python -m bench.bench_failover --quick    # 2 per mode (CI); reports, asserts nothing

Two hosts (namespaces h1, h2), each on two segments (br0, br1). Fresh nodes each round
(`--no-mdns`: the beacon finds both addresses). Alice writes `/msg bob pN` every PACE_S on
her stdin; after WARM_S the switch port of the cable that carries their session is taken
down (alice's or bob's, in turn). Figure: from the pull to bob's `message` event for the
first message alice wrote after the pull (it can only travel on the other link), from the
events' own timestamps (one clock: one machine). Baseline, in the same run: the same with
`LANCHAT_LINK_TIMEOUT_S=0`, i.e. only the session's dead timer (15 s) notices the loss.
Every round also checks that bob got every message once, in order.
"""

from __future__ import annotations

import argparse
import statistics
import threading
import time
from typing import Any

from bench.common import Figure, Lab, finish, lab_namespaces_of

PACE_S = 0.02  # one message every 20 ms: a lively conversation
WARM_S = 1.0  # talk this long before the pull
AFTER_S = 60.0  # give up on a round after this long without resumed delivery
MODES = {"lanchat": {}, "dead timer only": {"LANCHAT_LINK_TIMEOUT_S": "0"}}


def one_pull(lab: Lab, tag: str, env: dict[str, str], pulled_index: int) -> dict[str, Any]:
    """One fresh pair, one pull; return the seconds to resumed delivery and the checks."""
    h1, h2 = lab.hosts
    bob = h2.start_node("--no-mdns", nick="bob", home=lab.base_dir / f"bob-{tag}", env=env)
    alice = h1.start_node("--no-mdns", nick="alice", home=lab.base_dir / f"alice-{tag}",
                          env=env)
    bob_id = bob.wait_event("ready")["id"]
    both = {i.ip for i in h2.interfaces.values()}
    alice.wait_event(None, pred=lambda e: e["event"] in ("peer_joined", "peer_updated")
                     and e["peer"]["id"] == bob_id and set(e["peer"]["addresses"]) == both,
                     consume=False, timeout=15)
    sent = 0
    first_after = -1
    pulled_at = 0.0
    stop = threading.Event()

    def talk() -> None:
        nonlocal sent
        while not stop.is_set():
            alice.command(f"/msg bob p{sent}")
            sent += 1
            stop.wait(PACE_S)

    talker = threading.Thread(target=talk, daemon=True)
    talker.start()
    try:
        bob.wait_event("message", timeout=15)
        time.sleep(WARM_S)  # the conversation runs for a while before the cable goes
        pulled = lab.hosts[pulled_index]
        [iface] = pulled.session_interfaces(bob.port)
        pulled_at = time.time()
        lab.link_down(pulled, iface.segment)
        first_after = sent + 1  # written after the port went down
        got = bob.wait_event("message", text=f"p{first_after}", timeout=AFTER_S,
                             consume=False)
        resumed = got["ts"] - pulled_at
    finally:
        stop.set()
        talker.join(5)
    total = sent
    got_all = bob.wait_count("message", total, timeout=AFTER_S)
    in_order = [e["text"] for e in got_all] == [f"p{i}" for i in range(total)]
    lab.link_up(pulled, iface.segment)
    alice.stop()
    bob.stop()
    return {"resumed_s": resumed, "messages": total, "once_in_order": in_order,
            "pulled": f"{pulled.name}:{iface.name}"}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="2 pulls per mode")
    parser.add_argument("--runs", type=int, default=None, help="pulls per mode")
    parser.add_argument("--json", default="bench/out/failover.json")
    args = parser.parse_args()
    runs = args.runs or (2 if args.quick else 5)
    started = time.monotonic()
    results: dict[str, list[dict[str, Any]]] = {mode: [] for mode in MODES}
    with Lab(2, mode="netns") as lab:
        prefix = lab.prefix
        segment = lab.add_segment()
        for host in lab.hosts:
            host.add_interface(segment)
        for n in range(runs):
            for mode, env in MODES.items():
                tag = f"{mode.split()[0]}{n}"
                results[mode].append(one_pull(lab, tag, dict(env), n % 2))
    left = lab_namespaces_of(prefix)
    fast = [r["resumed_s"] for r in results["lanchat"]]
    slow = [r["resumed_s"] for r in results["dead timer only"]]
    figures = [
        Figure(f"cable pulled -> delivery resumed, median (n={len(fast)})",
               statistics.median(fast), statistics.median(slow), "s", goal="<= 5 s",
               baseline_name="dead timer only"),
        Figure("cable pulled -> delivery resumed, worst", max(fast), max(slow), "s",
               goal="<= 5 s", baseline_name="dead timer only"),
    ]
    checks = all(r["once_in_order"] for rs in results.values() for r in rs)
    notes = [f"every message once, in order, in every round: {checks}",
             "pulls alternate between alice's cable (the sender) and bob's (the receiver)",
             f"a message every {PACE_S * 1000:.0f} ms; the pull {WARM_S:g} s into the talk"]
    return finish("Failover: a pulled cable", quick=args.quick,
                  elapsed=time.monotonic() - started, figures=figures, notes=notes,
                  left=left, json_path=args.json, result={"rounds": results})


if __name__ == "__main__":
    raise SystemExit(main())
