"""`lanchat doctor` and `/doctor`: why a peer is or is not seen, in plain words."""

from __future__ import annotations

import time
from typing import Any

from lanchat.config import Config
from lanchat.text import safe_line

CONTAINER_PREFIXES = ("docker", "br-", "virbr", "veth", "vboxnet", "vmnet", "cni", "podman",
                      "lxcbr", "lxdbr", "flannel")


def collect(node: Any) -> dict[str, Any]:
    """Gather what the node knows about its interfaces, sources and peers."""
    stats = node.stats()
    disc = stats["extensions"].get("Discovery") or {}
    report: dict[str, Any] = {
        "node": node.info(),
        "interfaces": [],
        "beacon": disc.get("beacon"),
        "mdns": disc.get("mdns"),
        "errors": disc.get("errors", []),
        "peers": [],
        "counters": stats["counters"],
        "warnings": [n.public() for n in node.warnings.notices.outstanding(time.time())],
    }
    beacon_ifaces = (disc.get("beacon") or {}).get("interfaces", {})
    for iface in disc.get("interfaces", []):
        b = beacon_ifaces.get(iface["ip"], {})
        report["interfaces"].append({
            "name": iface["name"], "ip": iface["ip"],
            "multicast_joined": b.get("joined"), "beacon_error": b.get("error"),
            "beacons_sent": b.get("sent", 0), "beacons_received": b.get("received", 0),
            "beacons_accepted": b.get("accepted", 0),
            "tcp_port_reachable": node.probe_port(iface["ip"]),
        })
    heard = disc.get("heard", {})
    for peer in node.peers():
        via = heard.get(peer["id"], {})
        report["peers"].append({
            "id": peer["id"], "nick": peer["nick"], "online": peer["online"],
            "addresses": peer["addresses"], "via": peer["via"],
            "last_heard": {src: round(time.time() - v["at"], 1) for src, v in via.items()},
            "heard_on": sorted({v["interface"] for v in via.values() if v.get("interface")}),
        })
    report["localsend"] = _localsend(stats["extensions"].get("LocalSendKind"))
    report["xmpp"] = _xmpp(stats["extensions"].get("XmppKind"))
    report["hints"] = hints(report, node.config)
    return report


def _localsend(s: dict[str, Any] | None) -> dict[str, Any] | None:
    """Per interface: whether LocalSend's multicast is joined, what was heard, the port."""
    if s is None:
        return None
    multicast = s.get("multicast") or {"interfaces": [], "errors": {}, "heard": {}}
    ips = sorted(set(multicast["interfaces"]) | set(multicast["errors"]))
    return {"port": s["port"], "fingerprint": s["fingerprint"], "errors": s["errors"],
            "devices": s["devices"], "counters": {**s["counters"], **s["server"]},
            "interfaces": [{"ip": ip, "joined": ip in multicast["interfaces"],
                            "error": multicast["errors"].get(ip),
                            "heard": multicast["heard"].get(ip, 0)} for ip in ips]}


def _xmpp(s: dict[str, Any] | None) -> dict[str, Any] | None:
    """Per interface: our XEP-0174 announcement and the Bonjour chat peers seen there."""
    if s is None:
        return None
    presence = s.get("presence") or {}
    return {"instance": s["instance"], "port": s["port"],
            "announced": bool(presence.get("announced")),
            "errors": [*s["errors"], *([presence["error"]] if presence.get("error") else [])],
            "refused": s["refused"],
            "interfaces": [{"ip": ip, "peers": n} for ip, n in s["interfaces"].items()]}


def hints(report: dict[str, Any], config: Config) -> list[str]:
    """Plain-words advice for the usual causes of 'nobody found'."""
    out: list[str] = []
    ifaces = report["interfaces"]
    if not ifaces or all(i["ip"].startswith("127.") for i in ifaces):
        if not config.interfaces:
            out.append("No LAN interface is up: only this computer can be reached. Connect to "
                       "a network, or name one with --interface IP.")
    for i in ifaces:
        name = i["name"]
        if any(name.startswith(p) for p in CONTAINER_PREFIXES):
            out.append(f"{name} looks like a container or VM bridge; peers on your LAN are "
                       "not there. Choose the LAN with --interface IP.")
        err = i.get("beacon_error") or ""
        if "No such device" in err or "unreachable" in err.lower():
            out.append(f"{name} ({i['ip']}) has no multicast route: beacons cannot be sent. "
                       f"Add one (ip route add 224.0.0.0/4 dev {name}) or use another "
                       "interface; mDNS and --peer still work.")
        elif err:
            out.append(f"beacon on {name} ({i['ip']}): {err}")
        if not i["tcp_port_reachable"]:
            out.append(f"the chat port is not reachable on {i['ip']}: a local firewall may "
                       "block it.")
    mdns = report.get("mdns") or {}
    if mdns.get("error"):
        if "in use" in str(mdns["error"]).lower() or "5353" in str(mdns["error"]):
            out.append("Another mDNS stack (e.g. Avahi) holds UDP port 5353: lanchat goes on "
                       "with the beacon alone, which finds other lanchat nodes just as well.")
        else:
            out.append(f"mDNS is off: {mdns['error']}")
    sent = sum(i["beacons_sent"] for i in ifaces)
    heard_any = any(p["last_heard"] for p in report["peers"])
    if sent and not heard_any:
        out.append("Beacons go out but nothing is heard from other nodes. Either nobody else "
                   "runs lanchat on this network, or a firewall drops UDP 47812 and 5353, or "
                   "the Wi-Fi isolates clients (guest networks often do). Ask a peer to run "
                   "`lanchat id`, then reach them with --peer HOST.")
    if not config.beacon and not config.mdns and not config.peers:
        out.append("--no-mdns and --no-beacon are both set: only --peer addresses are used.")
    return out


def format_text(report: dict[str, Any]) -> str:
    """The report as lines for a person."""
    lines = [f"node {safe_line(report['node']['nick'])} port {report['node']['port']}"]
    for i in report["interfaces"]:
        joined = {True: "joined", False: "NOT joined", None: "beacon off"}[i["multicast_joined"]]
        lines.append(f"  {i['name']:<10} {i['ip']:<16} multicast {joined}; beacons sent "
                     f"{i['beacons_sent']}, heard {i['beacons_accepted']}; tcp port "
                     f"{'reachable' if i['tcp_port_reachable'] else 'NOT reachable'}")
    mdns = report.get("mdns")
    if mdns is None:
        lines.append("  mdns       off")
    else:
        lines.append(f"  mdns       {'on' if mdns.get('enabled') else 'OFF'}; services seen "
                     f"{mdns.get('services_seen', 0)}" + (f"; error: {mdns['error']}"
                                                          if mdns.get("error") else ""))
    lines += _protocol_lines(report)
    if report["peers"]:
        lines.append("peers:")
    for p in report["peers"]:
        heard = ", ".join(f"{src} {age}s ago" for src, age in p["last_heard"].items()) or "-"
        lines.append(f"  {safe_line(p['nick']):<16} {'online' if p['online'] else 'offline':<8}"
                     f" heard: {heard}; on {', '.join(p['heard_on']) or '-'}")
    if report["warnings"]:
        lines.append("outstanding warnings:")
        lines += [f"  - {safe_line(w['message'])} (x{w['count']}, last "
                  f"{time.strftime('%H:%M', time.localtime(w['last']))})"
                  for w in report["warnings"]]
    if report["hints"]:
        lines.append("hints:")
        lines += [f"  - {h}" for h in report["hints"]]
    return "\n".join(lines)


def _protocol_lines(report: dict[str, Any]) -> list[str]:
    lines = []
    ls = report.get("localsend")
    if ls is None:
        lines.append("  localsend  off")
    else:
        for i in ls["interfaces"]:
            state = "joined" if i["joined"] else f"NOT joined ({i['error']})"
            lines.append(f"  localsend  {i['ip']:<16} multicast {state}; devices heard "
                         f"{i['heard']}; HTTPS port {ls['port']}")
        lines += [f"  localsend  error: {e}" for e in ls["errors"]]
        if ls["devices"]:
            lines.append("  localsend  listed: " + ", ".join(
                f"{safe_line(a)} ({ip})" for a, ip in ls["devices"].items()))
    xm = report.get("xmpp")
    if xm is None:
        lines.append("  xmpp       off")
    else:
        announced = "announced" if xm["announced"] else "NOT announced"
        for i in xm["interfaces"]:
            lines.append(f"  xmpp       {i['ip']:<16} {announced} {safe_line(xm['instance'])} "
                         f"port {xm['port']}; Bonjour chat peers {i['peers']}")
        lines += [f"  xmpp       error: {safe_line(e)}" for e in xm["errors"]]
        if xm["refused"]:
            lines.append("  xmpp       streams refused: " + ", ".join(
                f"{k} {v}" for k, v in sorted(xm["refused"].items())))
    return lines
