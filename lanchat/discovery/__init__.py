"""Presence: the multicast beacon and mDNS/DNS-SD, feeding the node's peer table.

`attach(node)` adds a `Discovery` extension; it runs on the node's loop, turns sightings
into peer-table changes, and expires peers whose beacons stopped (crash or cable).
"""

from __future__ import annotations

import asyncio
import logging
import time
from typing import TYPE_CHECKING, Any

from lanchat.api import NodeHost, PeerSession
from lanchat.discovery.beacon import STALE_S, Beacon
from lanchat.discovery.interfaces import Interface, usable_interfaces
from lanchat.discovery.sighting import Sighting
from lanchat.protocol import Message

if TYPE_CHECKING:
    from lanchat.node import Node

log = logging.getLogger(__name__)

EXPIRE_EVERY_S = 0.25
MDNS_AFTER_BYE_S = 5.0  # mDNS answers still in flight after a beacon bye are stale
MAX_PEERS = 2048  # offline discovery-only peers beyond this are forgotten, oldest first


class Discovery:
    """Node extension: beacon and mDNS on the chosen interfaces."""

    def __init__(self) -> None:
        self.node: NodeHost | None = None
        self.interfaces: list[Interface] = []
        self.beacon: Beacon | None = None
        self.mdns: Any = None
        self.errors: list[str] = []
        self._timer: asyncio.TimerHandle | None = None
        self._mdns_start: asyncio.Future[None] | None = None
        self.heard: dict[str, dict[str, Any]] = {}
        self._bye_at: dict[str, float] = {}
        # node id -> (instance, address, last heard) of the beacon that speaks for it
        self._claims: dict[str, tuple[str, str, float]] = {}
        self.conflicts = 0
        self._due = 0.0
        self.max_lateness = 0.0

    async def start(self, node: NodeHost) -> None:
        """Choose interfaces, start the beacon now and mDNS in the background."""
        from lanchat.errors import NodeError

        self.node = node
        config = node.config
        try:
            self.interfaces = usable_interfaces(config.interfaces)
        except ValueError as exc:
            raise NodeError(f"{exc}; check --interface") from None
        node.set_addresses([i.ip for i in self.interfaces])
        loop = asyncio.get_running_loop()
        if config.beacon:
            try:
                self.beacon = Beacon(node_id=node.node_id, nick=node.nick,
                                     host=config.host[:253] or "host", port=node.port,
                                     interfaces=self.interfaces, on_seen=self._seen,
                                     on_bye=self._bye, ephemeral=config.ephemeral)
                await self.beacon.start()
            except (OSError, ValueError) as exc:
                self.errors.append(f"beacon: {exc}")
                log.warning("beacon off: %s", exc)
                self.beacon = None
        if config.mdns:
            try:
                from lanchat.discovery.mdns import MdnsService

                self.mdns = MdnsService(
                    node_id=node.node_id, nick=node.nick, host=config.host, port=node.port,
                    interfaces=[i.ip for i in self.interfaces],
                    on_seen=lambda s: loop.call_soon_threadsafe(self._seen, s),
                    on_gone=lambda pid: loop.call_soon_threadsafe(self._gone, pid),
                    announce=not config.ephemeral)
                self._mdns_start = loop.run_in_executor(None, self.mdns.start)
            except (OSError, ValueError, ImportError) as exc:
                self.errors.append(f"mdns: {exc}")
                log.warning("mDNS off: %s", exc)
                self.mdns = None
        self._timer = loop.call_later(EXPIRE_EVERY_S, self._expire)

    async def stop(self) -> None:
        """Say goodbye on every source."""
        if self._timer is not None:
            self._timer.cancel()
        if self.beacon is not None:
            await self.beacon.stop()
        if self.mdns is not None:
            loop = asyncio.get_running_loop()
            if self._mdns_start is not None:
                try:
                    await asyncio.wait_for(asyncio.shield(self._mdns_start), 3)
                except Exception as exc:  # noqa: BLE001 - going away anyway
                    log.info("mDNS start did not finish: %s", exc)
            await loop.run_in_executor(None, self.mdns.stop)

    def set_nick(self, nick: str) -> None:
        """Announce the new nick."""
        if self.beacon is not None:
            self.beacon.set_nick(nick)
        if self.mdns is not None:
            loop = asyncio.get_running_loop()
            loop.run_in_executor(None, self.mdns.set_nick, nick)

    def on_message(self, session: PeerSession, message: Message) -> bool:
        """Discovery takes no session messages."""
        return False

    def stats(self) -> dict[str, Any]:
        """What doctor reports."""
        return {
            "interfaces": [{"name": i.name, "ip": i.ip, "prefixlen": i.prefixlen}
                           for i in self.interfaces],
            "errors": list(self.errors),
            "beacon": self.beacon.stats() if self.beacon is not None else None,
            "mdns": self.mdns.stats() if self.mdns is not None else None,
            "heard": {k: dict(v) for k, v in self.heard.items()},
            "conflicts": self.conflicts,
            "max_timer_lateness_s": round(self.max_lateness, 3),
        }

    def _seen(self, s: Sighting) -> None:
        node = self.node
        if node is None:
            return
        now = time.time()
        if s.via == "beacon":
            claim = self._claims.get(s.node_id)
            if (claim is not None and claim[0] != s.instance and claim[1] != s.address
                    and now - claim[2] < STALE_S):
                # A second live node claims this id from elsewhere: a forgery or a copied
                # home. Keep the first; TLS decides who is real when we connect.
                self.conflicts += 1
                if self.conflicts == 1 or self.conflicts % 100 == 0:
                    log.warning("beacon for %s from %s conflicts with %s; ignored",
                                s.node_id[:16], s.address, claim[1])
                return
            self._claims[s.node_id] = (s.instance, s.address, now)
            self._bye_at.pop(s.node_id, None)
        elif now - self._bye_at.get(s.node_id, 0.0) < MDNS_AFTER_BYE_S:
            return
        record = self.heard.setdefault(s.node_id, {})
        record[s.via] = {"at": now, "address": s.address, "interface": s.interface}
        node.presence.seen(s.node_id, s.via, now, nick=s.nick, host=s.host,
                           address=s.address, port=s.port)

    def _bye(self, node_id: str, address: str) -> None:
        claim = self._claims.get(node_id)
        if claim is not None and claim[1] != address:
            self.conflicts += 1
            return
        self._claims.pop(node_id, None)
        self._bye_at[node_id] = time.time()
        if self.node is not None:
            self.node.presence.lost(node_id, "beacon", "bye", time.time())

    def _gone(self, node_id: str) -> None:
        if self.node is not None:
            self.node.presence.lost(node_id, "mdns", "bye", time.time())

    def _expire(self) -> None:
        node = self.node
        assert node is not None
        presence = node.presence
        now = time.time()
        loop = asyncio.get_running_loop()
        # If this timer ran late, our own loop was starved (a loaded machine): beacons may
        # sit unread in the socket, so give peers that much longer before calling them gone.
        late = max(0.0, loop.time() - self._due) if self._due else 0.0
        self.max_lateness = max(self.max_lateness, late)
        for peer_id in presence.table.stale("beacon", now - STALE_S - late):
            presence.lost(peer_id, "beacon", "timeout", now)
        if len(presence.table) > MAX_PEERS:
            dropped = presence.prune(MAX_PEERS)
            for peer_id in [k for k in self.heard if presence.table.get(k) is None]:
                self.heard.pop(peer_id, None)
                self._claims.pop(peer_id, None)
                self._bye_at.pop(peer_id, None)
            log.info("peer table full: forgot %d offline peers", dropped)
        self._due = loop.time() + EXPIRE_EVERY_S
        self._timer = loop.call_at(self._due, self._expire)


def attach(node: Node) -> Discovery:
    """Add discovery to a node that is not started yet."""
    discovery = Discovery()
    node.add_extension(discovery)
    return discovery
