"""The plugin manager: built-in plugins, entry points of group `lanchat`, and single files
from `<home>/plugins/`. A plugin that fails at import or inside a hook is reported once
and disabled; the node goes on.

All plugin code (hooks, and the commands plugins register) runs on one thread,
`lanchat-plugins`, in the order it was asked for, so two plugins never race each other.
Hooks are called through pluggy's own hook caller (`pm.hook.NAME(...)`), so hook wrappers
run and pluggy's tracing sees every call: `LANCHAT_TRACE_HOOKS=1` logs them.
"""

from __future__ import annotations

import importlib.util
import logging
import os
import queue
import sys
import threading
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from dataclasses import dataclass
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any, TypeVar

import pluggy

from lanchat import hookspecs

log = logging.getLogger(__name__)
trace_log = logging.getLogger("lanchat.hooks")
T = TypeVar("T")
ENTRY_POINT_GROUP = "lanchat"
DEFAULT_PLUGINS = ("lanchat.commands", "lanchat.doctor.commands", "lanchat.transfer.commands",
                   "lanchat.web.commands", "lanchat.rooms.commands", "lanchat.interop.commands")
TRACE_ENV = "LANCHAT_TRACE_HOOKS"
IDLE_EXIT_S = 0.5  # the plugin thread ends after this long with nothing to do
CLOSE_WAIT_S = 5.0  # how long close() waits for queued plugin calls


class PluginThread:
    """The one thread that runs plugin code, in submission order.

    It starts on the first call and ends after `IDLE_EXIT_S` without work (or at
    `close()`), so a manager nobody closes leaves no thread behind."""

    def __init__(self, name: str = "lanchat-plugins") -> None:
        self.name = name
        self._queue: queue.SimpleQueue[tuple[Callable[..., Any], tuple[Any, ...],
                                             Future[Any]]] = queue.SimpleQueue()
        self._lock = threading.Lock()
        self._thread: threading.Thread | None = None

    def on_thread(self) -> bool:
        """True when called from the plugin thread."""
        return threading.current_thread() is self._thread

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue `fn(*args)`; its result or exception arrives in the future."""
        future: Future[T] = Future()
        if self.on_thread():  # plugin code asking for plugin code: run it now, in order
            _run_into(future, fn, args)
            return future
        with self._lock:
            self._queue.put((fn, args, future))
            if self._thread is None:
                self._thread = threading.Thread(target=self._work, name=self.name,
                                                daemon=True)
                self._thread.start()
        return future

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run `fn(*args)` on the plugin thread and return its result (or raise)."""
        if self.on_thread():
            return fn(*args)
        return self.submit(fn, *args).result()

    def close(self, timeout: float = CLOSE_WAIT_S) -> None:
        """Wait for queued calls (up to `timeout`)."""
        with self._lock:
            thread = self._thread
        if thread is None or thread is threading.current_thread():
            return
        done: Future[None] = self.submit(lambda: None)
        try:
            done.result(timeout)
        except TimeoutError:
            log.warning("plugins still busy after %.0f s; going on without them", timeout)

    def _work(self) -> None:
        while True:
            try:
                fn, args, future = self._queue.get(timeout=IDLE_EXIT_S)
            except queue.Empty:
                with self._lock:
                    if self._queue.empty():
                        self._thread = None
                        return
                continue
            if future.set_running_or_notify_cancel():
                _run_into(future, fn, args)


def _run_into(future: Future[T], fn: Callable[..., T], args: tuple[Any, ...]) -> None:
    try:
        result = fn(*args)
    except BaseException as exc:  # noqa: BLE001 - handed to the waiting caller
        future.set_exception(exc)
    else:
        future.set_result(result)


@dataclass(frozen=True)
class PluginFailure:
    """A plugin that was disabled, and why."""

    name: str
    where: str
    error: str


class Plugins:
    """One pluggy manager with failure isolation around every hook call."""

    def __init__(self, home: Path | None = None, *, entry_points: bool = True,
                 extra: Iterable[object] = (), disabled: Iterable[str] = ()) -> None:
        self.pm = pluggy.PluginManager("lanchat")
        # Names the config file's `disabled_plugins` lists (entry-point names, plugin-file
        # stems): never imported nor registered. Built-ins cannot be disabled.
        self.disabled = set(disabled) - set(DEFAULT_PLUGINS)
        self.pm.add_hookspecs(hookspecs)
        self.failures: list[PluginFailure] = []
        self.sources: dict[str, str] = {}
        self.thread = PluginThread()
        self._failure_listeners: list[Callable[[PluginFailure], None]] = []
        self._tracing = os.environ.get(TRACE_ENV, "") not in ("", "0")
        if self._tracing:
            trace_log.setLevel(logging.INFO)
            self.pm.trace.root.setwriter(_trace_writer)
            self.pm.enable_tracing()
        for name in DEFAULT_PLUGINS:
            self._register(importlib.import_module(name), name, "builtin")
        if entry_points:
            from importlib import metadata  # ~15 ms: only when scanning

            for ep in metadata.entry_points(group=ENTRY_POINT_GROUP):
                if ep.name in self.disabled:
                    continue
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
                    if path.stem not in self.disabled:
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
        failure = PluginFailure(name, where, message)
        self.failures.append(failure)
        for listener in list(self._failure_listeners):
            listener(failure)

    def on_failure(self, listener: Callable[[PluginFailure], None]) -> None:
        """Call `listener(failure)` whenever a plugin is disabled from now on."""
        self._failure_listeners.append(listener)

    # -- calling plugin code (any thread; runs on the plugin thread) ------------------

    def run(self, fn: Callable[..., T], *args: Any) -> T:
        """Run plugin code (a command) on the plugin thread; return its result."""
        return self.thread.run(fn, *args)

    def submit(self, fn: Callable[..., T], *args: Any) -> Future[T]:
        """Queue plugin code on the plugin thread; do not wait."""
        return self.thread.submit(fn, *args)

    def call(self, hook: str, **kwargs: Any) -> list[Any]:
        """Call `hook` through pluggy on the plugin thread and wait; a plugin that raises is
        reported and unregistered, and the plugins after it still run."""
        return self.thread.run(self._call, hook, kwargs)

    def post(self, hook: str, **kwargs: Any) -> None:
        """Call `hook` on the plugin thread without waiting (events). A hook no plugin
        implements is not queued at all (unless hook calls are traced): a flood of
        messages costs the event thread nothing per message when nobody listens."""
        if not self._tracing and not getattr(self.pm.hook, hook).get_hookimpls():
            return
        self.thread.submit(self._call, hook, kwargs)

    def drain(self) -> None:
        """Wait until every plugin call queued so far has run (bounded)."""
        self.thread.close()

    def close(self) -> None:
        """Let queued hook calls finish (bounded); the thread then ends when idle."""
        self.thread.close()

    def _call(self, hook: str, kwargs: dict[str, Any]) -> list[Any]:
        caller = getattr(self.pm.hook, hook)
        ran: list[object] = []  # plugins already called in this round, or failed
        results: list[Any] = []
        while True:
            order = [impl for impl in reversed(caller.get_hookimpls())
                     if not impl.hookwrapper and not impl.wrapper]
            todo = [impl for impl in order if impl.plugin not in ran]
            if ran and not todo:
                return results
            call = (self.pm.subset_hook_caller(hook, ran) if ran else caller)
            try:
                results.extend(call(**kwargs))
                return results
            except Exception as exc:  # noqa: BLE001 - find the plugin, disable it, go on
                culprit = _culprit(exc.__traceback__, caller.get_hookimpls())
                if culprit is None:
                    self._fail("?", hook, exc)
                    return results
                name = self.pm.get_name(culprit.plugin) or repr(culprit.plugin)
                self._fail(name, hook, exc)
                # Implementations called before the culprit are done: do not call them again.
                if culprit in todo:
                    ran.extend(i.plugin for i in todo[:todo.index(culprit)])
                self.pm.unregister(culprit.plugin)

    def filter_outgoing(self, node: Any, to: str, text: str) -> str | None:
        """Run `lanchat_message_outgoing` as a chain: each plugin sees the text as the one
        before left it; return the final text, or None if a plugin vetoed the message."""
        return self.thread.run(self._filter_outgoing, node, to, text)

    def _filter_outgoing(self, node: Any, to: str, text: str) -> str | None:
        name = "lanchat_message_outgoing"
        for impl in reversed(getattr(self.pm.hook, name).get_hookimpls()):
            if impl.hookwrapper or impl.wrapper:
                continue
            others = [i.plugin for i in getattr(self.pm.hook, name).get_hookimpls()
                      if i.plugin is not impl.plugin]
            try:
                answers = self.pm.subset_hook_caller(name, others)(
                    node=node, message={"to": to, "text": text})
            except Exception as exc:  # noqa: BLE001
                self._fail(self.pm.get_name(impl.plugin) or repr(impl.plugin), name, exc)
                self.pm.unregister(impl.plugin)
                continue
            for result in answers:
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
        for name in sorted(self.disabled):
            out.append({"name": name, "source": "config", "hooks": [], "enabled": False,
                        "error": "disabled in the config file (disabled_plugins)"})
        return out


def _culprit(tb: TracebackType | None, impls: list[Any]) -> Any:
    """The hook implementation whose code raised (the outermost of them in the traceback)."""
    codes = {getattr(impl.function, "__code__", None): impl for impl in impls}
    while tb is not None:
        impl = codes.get(tb.tb_frame.f_code)
        if impl is not None:
            return impl
        tb = tb.tb_next
    return None


def _trace_writer(text: str) -> None:
    trace_log.info("%s", text.rstrip())


def module_name(plugin: ModuleType | object) -> str:
    """A readable name for a plugin object."""
    return getattr(plugin, "__name__", type(plugin).__name__)
