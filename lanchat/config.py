"""Settings of one node, parsed by the CLI and passed down."""

from __future__ import annotations

import logging
import os
import socket
from dataclasses import dataclass, field
from pathlib import Path

from lanchat.home import write_atomic
from lanchat.protocol import SESSION_DEAD_AFTER_S, SESSION_PING_AFTER_S

log = logging.getLogger(__name__)

DEFAULT_PORT = 47800
APP_NAME = "lanchat"
# Data a session wrote that the peer's kernel has not acknowledged for this long means the
# path is gone (a pulled cable): the session closes and is dialled again, at another of the
# peer's addresses if it has one (TCP_USER_TIMEOUT; 0 leaves it to the dead timer).
SESSION_LINK_TIMEOUT_S = 2.5


def default_home() -> Path:
    """Return the home from LANCHAT_HOME or the platform's data folder."""
    env = os.environ.get("LANCHAT_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir(APP_NAME))


NICK_FILE = "nick"  # the nick in use, kept across restarts


def default_nick() -> str:
    """Return $LANCHAT_NICK, else the login name if it is a valid nick, else 'user'."""
    from lanchat.nicks import nick_problem

    for var in ("LANCHAT_NICK", "USER", "LOGNAME"):
        value = os.environ.get(var, "").strip()
        if value and nick_problem(value) is None:
            return value
    return "user"


def saved_nick(home: Path) -> str | None:
    """The nick this home used last (`/nick` or --nick), if it is still a valid one."""
    from lanchat.nicks import nick_problem

    try:
        value = (home / NICK_FILE).read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError):
        return None
    return value if value and nick_problem(value) is None else None


def save_nick(home: Path, nick: str) -> None:
    """Keep the nick in the home for the next start (best effort: the node goes on)."""
    path = home / NICK_FILE
    try:
        if path.exists() and path.read_text(encoding="utf-8").strip() == nick:
            return
        write_atomic(path, (nick + "\n").encode())
    except (OSError, UnicodeDecodeError) as exc:
        log.warning("could not keep the nick in %s: %s", path, exc)


def initial_nick(home: Path, given: str | None) -> str:
    """The nick to start with: --nick, else $LANCHAT_NICK, else the saved one, else the
    login name."""
    if given is not None:
        return given
    if os.environ.get("LANCHAT_NICK", "").strip():
        return default_nick()
    return saved_nick(home) or default_nick()


def _env_float(name: str, default: float) -> float:
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


@dataclass
class Config:
    """Everything a node needs to start."""

    home: Path = field(default_factory=default_home)
    nick: str = field(default_factory=default_nick)
    port: int = DEFAULT_PORT
    interfaces: list[str] = field(default_factory=list)
    peers: list[str] = field(default_factory=list)
    mdns: bool = True
    beacon: bool = True
    localsend: bool = True  # LocalSend devices as peers (lanchat/interop/localsend)
    xmpp: bool = True  # Bonjour chat (XEP-0174) peers (lanchat/interop/xmpp)
    downloads: Path | None = None
    # A one-shot run (`send`, `peers`, `doctor`): its beacons ask to be answered but not
    # listed, and it registers no mDNS name, so nobody keeps it as a peer.
    ephemeral: bool = False
    log_level: str = "warning"
    host: str = field(default_factory=socket.gethostname)
    # Session liveness; the environment may shorten them (tests, slow links).
    heartbeat_s: float = field(
        default_factory=lambda: _env_float("LANCHAT_HEARTBEAT_S", SESSION_PING_AFTER_S))
    dead_after_s: float = field(
        default_factory=lambda: _env_float("LANCHAT_DEAD_AFTER_S", SESSION_DEAD_AFTER_S))
    link_timeout_s: float = field(
        default_factory=lambda: _env_float("LANCHAT_LINK_TIMEOUT_S", SESSION_LINK_TIMEOUT_S))
    # Node ids whose files are accepted without asking (the config file's `auto_accept`,
    # added to the list `/autoaccept` keeps).
    auto_accept: list[str] = field(default_factory=list)
    # Plugins (entry-point names or plugin-file stems) that are not loaded.
    disabled_plugins: list[str] = field(default_factory=list)

    @property
    def downloads_dir(self) -> Path:
        """Where accepted files land."""
        return self.downloads if self.downloads is not None else self.home / "downloads"
