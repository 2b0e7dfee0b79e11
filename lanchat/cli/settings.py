"""Where each setting comes from: the command line, the environment, the config file, or
the default, in that order of precedence.

The config file is TOML (read with the standard library's tomllib): `--config PATH`, else
env `LANCHAT_CONFIG`, else `<home>/config.toml` when a home is named (`--home` or
`LANCHAT_HOME`: such a home is self-contained), else `config.toml` in the platform's config
folder (`~/.config/lanchat/` on Linux). A file that cannot be read is an error naming the
line; an unknown key too, so a typo never goes unnoticed.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from lanchat.config import (
    APP_NAME,
    DEFAULT_PORT,
    SESSION_LINK_TIMEOUT_S,
    Config,
    default_nick,
    saved_nick,
)
from lanchat.events import json_line
from lanchat.protocol import SESSION_DEAD_AFTER_S, SESSION_PING_AFTER_S
from lanchat.text import safe_line

CONFIG_FILE = "config.toml"
CONFIG_ENV = "LANCHAT_CONFIG"
HOME_ENV = "LANCHAT_HOME"
NICK_ENV = "LANCHAT_NICK"
LIMIT_ENVS = {"heartbeat_s": "LANCHAT_HEARTBEAT_S", "dead_after_s": "LANCHAT_DEAD_AFTER_S",
              "link_timeout_s": "LANCHAT_LINK_TIMEOUT_S"}
_DEFAULTS = {"heartbeat_s": SESSION_PING_AFTER_S, "dead_after_s": SESSION_DEAD_AFTER_S,
             "link_timeout_s": SESSION_LINK_TIMEOUT_S}
NODE_ID = re.compile(r"^[a-z2-7]{52}$")


class SettingsError(ValueError):
    """The config file cannot be used; the message names the file, the line and the fix."""


def _text(value: Any) -> str:
    if not isinstance(value, str) or not value.strip():
        raise TypeError("a non-empty string")
    return value


def _nick(value: Any) -> str:
    from lanchat.nicks import nick_problem

    problem = nick_problem(value)
    if problem is not None:
        raise TypeError(f"a valid nick ({problem})")
    return str(value)


def _strings(value: Any) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise TypeError("a list of strings")
    return list(value)


def _port(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
        raise TypeError("a whole number from 0 to 65535")
    return value


def _node_ids(value: Any) -> list[str]:
    ids = _strings(value)
    for v in ids:
        if not NODE_ID.match(v):
            raise TypeError(f"node ids (52 characters, `lanchat id` shows them), not {v!r}")
    return ids


def _seconds(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value <= 0:
        raise TypeError("a positive number of seconds")
    return float(value)


def _seconds_or_off(value: Any) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or value < 0:
        raise TypeError("a number of seconds (0: off)")
    return float(value)


# Top-level keys of the file: name -> checker (returns the value or raises TypeError).
KEYS: dict[str, Callable[[Any], Any]] = {
    "nick": _nick,
    "downloads": _text,
    "interfaces": _strings,
    "port": _port,
    "peers": _strings,
    "auto_accept": _node_ids,
    "disabled_plugins": _strings,
}
# Keys of the [limits] table (other issues add theirs here, one line each).
LIMITS: dict[str, Callable[[Any], Any]] = {
    "heartbeat_s": _seconds,
    "dead_after_s": _seconds,
    "link_timeout_s": _seconds_or_off,
}


@dataclass(frozen=True)
class Settings:
    """The Config in force, where each value came from, and which file was read."""

    config: Config
    path: Path
    exists: bool
    sources: Mapping[str, str]

    def report(self) -> dict[str, Any]:
        """Paths and values in force, for `lanchat config [--json]`."""
        c = self.config
        values = {"home": str(c.home), "nick": c.nick, "downloads": str(c.downloads_dir),
                  "interfaces": c.interfaces, "port": c.port, "peers": c.peers,
                  "auto_accept": c.auto_accept, "disabled_plugins": c.disabled_plugins,
                  "limits": {"heartbeat_s": c.heartbeat_s, "dead_after_s": c.dead_after_s,
                             "link_timeout_s": c.link_timeout_s}}
        return {"config_file": str(self.path), "exists": self.exists,
                "values": values, "sources": dict(self.sources)}


def _line_of(text: str, key: str, table: str | None) -> int | None:
    """The line where `key` is set (inside `[table]` if given), for error messages."""
    current = None
    for n, line in enumerate(text.splitlines(), 1):
        stripped = line.strip()
        header = re.match(r"^\[\s*([A-Za-z0-9_.-]+)\s*\]", stripped)
        if header:
            current = header.group(1)
        elif current == table and re.match(rf"^\"?{re.escape(key)}\"?\s*=", stripped):
            return n
    return None


def read_file(path: Path) -> dict[str, Any]:
    """The checked contents of one config file; SettingsError names the line at fault."""
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise SettingsError(f"config file {path}: not UTF-8 text") from None
    except OSError as exc:
        raise SettingsError(f"config file {path}: {exc.strerror or exc}") from None
    try:
        raw = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:  # its message ends "(at line L, column C)"
        raise SettingsError(f"config file {path}: {exc}") from None
    out: dict[str, Any] = {}

    def check(table: Mapping[str, Any], known: dict[str, Callable[[Any], Any]],
              where: str | None) -> dict[str, Any]:
        checked = {}
        for key, value in table.items():
            line = _line_of(text, key, where)
            at = f"line {line}: " if line else ""
            name = f"{where}.{key}" if where else key
            if key not in known:
                raise SettingsError(f"config file {path}: {at}unknown key {name!r}; known: "
                                    f"{', '.join(sorted(known))}")
            try:
                checked[key] = known[key](value)
            except TypeError as exc:
                raise SettingsError(f"config file {path}: {at}{name} takes {exc}") from None
        return checked

    limits = raw.pop("limits", {})
    if not isinstance(limits, dict):
        line = _line_of(text, "limits", None)
        raise SettingsError(f"config file {path}: {f'line {line}: ' if line else ''}"
                            "limits is a table: write [limits] on a line of its own")
    out.update(check(raw, KEYS, None))
    out["limits"] = check(limits, LIMITS, "limits")
    return out


def config_path(cli_config: Path | None, named_home: Path | None,
                env: Mapping[str, str]) -> tuple[Path, bool]:
    """The config file to read, and whether it was asked for (then it must exist)."""
    if cli_config is not None:
        return cli_config.expanduser(), True
    if env.get(CONFIG_ENV):
        return Path(env[CONFIG_ENV]).expanduser(), True
    if named_home is not None:
        return named_home / CONFIG_FILE, False
    import platformdirs

    return platformdirs.user_config_path(APP_NAME) / CONFIG_FILE, False


def build(cli: Mapping[str, Any], env: Mapping[str, str] = os.environ) -> Settings:
    """Merge the command line (`cli`: option -> value, None when not given), the
    environment, the config file and the defaults into the Config in force."""
    sources: dict[str, str] = {}

    def pick(key: str, *candidates: tuple[str, Any]) -> Any:
        for source, value in candidates:
            if value is not None:
                sources[key] = source
                return value
        raise AssertionError(f"no default for {key}")

    named_home = (cli.get("home") or (Path(env[HOME_ENV]).expanduser()
                                      if env.get(HOME_ENV) else None))
    path, asked = config_path(cli.get("config"), named_home, env)
    exists = path.is_file()
    if asked and not exists:
        raise SettingsError(f"config file {path} does not exist; `lanchat config` shows "
                            "which file is read")
    file = read_file(path) if exists else {"limits": {}}
    limits = file["limits"]
    if named_home is not None:
        home = pick("home", ("cli" if cli.get("home") else "env", named_home))
    else:
        import platformdirs

        home = pick("home", ("default", Path(platformdirs.user_data_dir(APP_NAME))))
    # Without one in the file, the nick the home used last (/nick, saved) comes back.
    nick = pick("nick", ("cli", cli.get("nick")), ("env", env.get(NICK_ENV, "").strip() or None),
                ("file", file.get("nick")), ("saved", saved_nick(home)),
                ("default", default_nick()))
    port = pick("port", ("cli", cli.get("port")), ("file", file.get("port")),
                ("default", DEFAULT_PORT))
    interfaces = pick("interfaces", ("cli", cli.get("interfaces") or None),
                      ("file", file.get("interfaces")), ("default", []))
    peers = pick("peers", ("cli", cli.get("peers") or None), ("file", file.get("peers")),
                 ("default", []))
    if named_home is not None:
        own_downloads: Path = named_home / "downloads"
    else:
        import platformdirs

        own_downloads = Path(platformdirs.user_downloads_dir())
    downloads = pick("downloads", ("cli", cli.get("downloads")),
                     ("file", Path(file["downloads"]).expanduser()
                      if "downloads" in file else None),
                     ("default", own_downloads))
    timing = {}
    for key, var in LIMIT_ENVS.items():
        from_env = None
        if env.get(var):
            try:
                from_env = LIMITS[key](float(env[var]))
            except (TypeError, ValueError):
                raise SettingsError(f"{var}={env[var]!r}: give a number of seconds") from None
        timing[key] = pick(f"limits.{key}", ("env", from_env), ("file", limits.get(key)),
                           ("default", _DEFAULTS[key]))
    config = Config(
        home=home, nick=nick, port=port, interfaces=list(interfaces), peers=list(peers),
        mdns=not cli.get("no_mdns"), beacon=not cli.get("no_beacon"),
        localsend=not cli.get("no_localsend"), xmpp=not cli.get("no_xmpp"), downloads=downloads,
        log_level=cli.get("log_level") or "warning",
        auto_accept=pick("auto_accept", ("file", file.get("auto_accept")), ("default", [])),
        disabled_plugins=pick("disabled_plugins", ("file", file.get("disabled_plugins")),
                              ("default", [])),
        heartbeat_s=timing["heartbeat_s"], dead_after_s=timing["dead_after_s"],
        link_timeout_s=timing["link_timeout_s"])
    return Settings(config, path, exists, sources)


def show_settings(settings: Settings, *, json_mode: bool) -> int:
    """Print the config file's path and every setting in force with where it came from."""
    report = settings.report()
    if json_mode:
        print(json_line(report))
        return 0
    state = "" if report["exists"] else "  (not there: defaults in force)"
    rows = [("config file", safe_line(report["config_file"]) + state, "")]
    for key, value in report["values"].items():
        items = value.items() if key == "limits" else [(key, value)]
        for name, item in items:
            name = f"limits.{name}" if key == "limits" else name
            shown = ", ".join(item) if isinstance(item, list) else str(item)
            rows.append((name, safe_line(shown) or "-",
                         f"({report['sources'].get(name, 'default')})"))
    width = max(len(name) for name, _, _ in rows) + 2
    for name, shown, where in rows:
        print(f"{name + ':':<{width}}{shown:<40} {where}".rstrip())
    return 0
