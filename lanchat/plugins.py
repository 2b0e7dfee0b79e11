"""The plugin manager: built-in plugins, entry points of group `lanchat`, and single files
from `<home>/plugins/`. A plugin that fails at import or inside a hook is reported once
and disabled; the node goes on.
"""

from __future__ import annotations

import importlib.util
import logging
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from importlib import metadata
from pathlib import Path
from types import ModuleType
from typing import Any

import pluggy

from lanchat import hookspecs

log = logging.getLogger(__name__)
ENTRY_POINT_GROUP = "lanchat"
DEFAULT_PLUGINS = ("lanchat.commands", "lanchat.transfer.commands")


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was disabled, and why."""

    name: str
    where: str
    error: str


class Plugins:
    """One pluggy manager with failure isolation around every hook call."""

    def __init__(self, home: Path | None = None, *, entry_points: bool = True,
                 extra: Iterable[object] = ()) -> None:
        self.pm = pluggy.PluginManager("lanchat")
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.sources: dict[str, str] = {}
        for name in DEFAULT_PLUGINS:
            self._register(importlib.import_module(name), name, "builtin")
        if entry_points:
            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
                try:
                    plugin = ep.load()
                except Exception as exc:  # noqa: BLE001 - a broken plugin never stops us
                    self._fail(ep.name, "import", exc)
                    continue
                self._register(plugin, ep.name, f"entry point {ep.value}")
        if home is not None:
            folder = home / "plugins"
            if folder.is_dir():
                for path in sorted(folder.glob("*.py")):
                    self._load_file(path)
        for plugin in extra:
            self._register(plugin, getattr(plugin, "__name__", type(plugin).__name__), "test")

    def _load_file(self, path: Path) -> None:
        name = f"lanchat_plugin_{path.stem}"
        try:
            spec = importlib.util.spec_from_file_location(name, path)
            if spec is None or spec.loader is None:
                raise ImportError(f"cannot load {path}")
            module = importlib.util.module_from_spec(spec)
            sys.modules[name] = module
            spec.loader.exec_module(module)
        except Exception as exc:  # noqa: BLE001
            sys.modules.pop(name, None)
            self._fail(path.stem, "import", exc)
            return
        self._register(module, path.stem, str(path))

    def _register(self, plugin: object, name: str, source: str) -> None:
        try:
            self.pm.register(plugin, name=name)
        except Exception as exc:  # noqa: BLE001 - e.g. a hook that is not in the specs
            self._fail(name, "register", exc)
            return
        self.sources[name] = source

    def _fail(self, name: str, where: str, exc: BaseException) -> None:
        message = f"{type(exc).__name__}: {exc}"
        log.warning("plugin %s disabled (%s): %s", name, where, message)
        self.failures.append(PluginFailure(name, where, message))

    def call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call every implementation of `hook`; one that raises is reported and unregistered."""
        caller = getattr(self.pm.hook, hook)
        results = []
        for impl in reversed(caller.get_hookimpls()):
            try:
                result = impl.function(*[kwargs[arg] for arg in impl.argnames])
            except Exception as exc:  # noqa: BLE001
                name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
                self._fail(name, hook, exc)
                self.pm.unregister(impl.plugin)
                continue
            if result is not None:
                results.append(result)
        return results

    def filter_outgoing(self, node: Any, to: str, text: str) -> str | None:
        """Run `lanchat_message_outgoing` as a chain: each plugin sees the text as the one
        before left it; return the final text, or None if a plugin vetoed the message."""
        hook = self.pm.hook.lanchat_message_outgoing
        for impl in reversed(hook.get_hookimpls()):
            message = {"to": to, "text": text}
            try:
                result = impl.function(*[{"node": node, "message": message}[a]
                                         for a in impl.argnames])
            except Exception as exc:  # noqa: BLE001
                name = self.pm.get_name(impl.plugin) or repr(impl.plugin)
                self._fail(name, "lanchat_message_outgoing", exc)
                self.pm.unregister(impl.plugin)
                continue
            if result is False:
                return None
            if isinstance(result, str) and result:
                text = result
        return text

    def listing(self) -> list[dict[str, Any]]:
        """Plugins with their source and hooks, for `lanchat plugins` and /plugins."""
        out = []
        for name, plugin in self.pm.list_name_plugin():
            hooks = sorted(h.name for h in self.pm.get_hookcallers(plugin) or [])
            out.append({"name": name, "source": self.sources.get(name, ""), "hooks": hooks,
                        "enabled": True})
        for failure in self.failures:
            out.append({"name": failure.name, "source": failure.where, "hooks": [],
                        "enabled": False, "error": failure.error})
        return out


def module_name(plugin: ModuleType | object) -> str:
    """A readable name for a plugin object."""
    return getattr(plugin, "__name__", type(plugin).__name__)
