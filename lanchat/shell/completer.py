"""Tab completion: commands, peers (nicks and list numbers) and paths for file arguments.

Reads only the registry and the peer snapshot the event thread replaces; never the network.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import TYPE_CHECKING

from prompt_toolkit.completion import CompleteEvent, Completer, Completion, PathCompleter
from prompt_toolkit.document import Document

from lanchat.naming import NameIndex
from lanchat.shell.buffers import BufferView, Kind
from lanchat.shell.state import PeerView
from lanchat.text import safe_line

if TYPE_CHECKING:  # the commands load with the node, after the prompt is drawn
    from lanchat.commands import CommandRegistry

PATH_WORDS = ("PATH", "FILE")
# Argument kinds of commands whose usage text does not say (or that may come later).
KNOWN_ARGS = {"file": ("PEER", "PATH"), "msg": ("PEER",), "chat": ("PEER|all",),
              "whois": ("PEER",), "history": ("PEER",), "buffer": ("BUFFER",)}


class ShellCompleter(Completer):
    """Completes the word before the cursor from in-memory snapshots."""

    def __init__(self, registry: CommandRegistry | Callable[[], CommandRegistry | None],
                 peers: Callable[[], Iterable[PeerView]],
                 buffers: Callable[[], Iterable[BufferView]] = tuple) -> None:
        # a function while the node starts: no commands to complete until it is up
        self._registry = registry if callable(registry) else lambda: registry
        self.peers = peers
        self.buffers = buffers
        self.paths = PathCompleter(expanduser=True)

    def get_completions(self, document: Document,
                        complete_event: CompleteEvent) -> Iterable[Completion]:
        """Completions for the word before the cursor."""
        text = document.text_before_cursor
        if "\n" in text:
            yield from self._peer_words(text.rsplit("\n", 1)[1].split(" ")[-1], (),
                                        numbers=False)
            return
        if not text.startswith("/") or text.startswith("//"):
            yield from self._peer_words(text.split(" ")[-1], (), numbers=False)
            return
        words = text.split(" ")
        if len(words) == 1:
            yield from self._commands(words[0][1:])
            return
        kinds = self._arg_kinds(words[0][1:])
        index = len([w for w in words[1:-1] if w])
        kind = kinds[index] if index < len(kinds) else ""
        if any(w in kind for w in PATH_WORDS):
            path_text = text.split(" ", index + 1)[-1].lstrip()
            yield from self.paths.get_completions(Document(path_text, len(path_text)),
                                                  complete_event)
        elif kind == "BUFFER":
            yield from self._buffer_words(words[-1])
        elif "PEER" in kind:
            extra = tuple(k for k in kind.split("|") if k.islower())
            if index == 0:  # a room is a place to send to, like a peer
                extra += tuple(v.name for v in self.buffers() if v.kind is Kind.ROOM)
            yield from self._peer_words(words[-1], extra)

    def _commands(self, prefix: str) -> Iterable[Completion]:
        registry = self._registry()
        if registry is None:
            return
        for name in registry.names():
            if name.startswith(prefix.lower()):
                command = registry.get(name)
                yield Completion("/" + name, start_position=-len(prefix) - 1,
                                 display_meta=command.help if command else "")

    def _buffer_words(self, word: str) -> Iterable[Completion]:
        low = word.lower()
        for view in self.buffers():
            shown = safe_line(view.name)
            if _typeable(view.name) and view.name.lower().startswith(low):
                yield Completion(view.name, start_position=-len(word),
                                 display_meta=f"{view.number} {view.kind.value}")
            elif str(view.number).startswith(word):
                yield Completion(str(view.number), start_position=-len(word),
                                 display=f"{view.number} {shown}",
                                 display_meta=view.kind.value)

    def _arg_kinds(self, name: str) -> tuple[str, ...]:
        registry = self._registry()
        command = registry.get(name) if registry is not None else None
        if command is None:
            return KNOWN_ARGS.get(name.lower(), ())
        kinds = tuple(w.strip("[]") for w in command.usage.split()[1:])
        if command.name in KNOWN_ARGS and command.plugin == "shell":
            return KNOWN_ARGS[command.name]
        return kinds if any("PEER" in k or k in PATH_WORDS for k in kinds) else \
            KNOWN_ARGS.get(command.name, kinds)

    def _peer_words(self, word: str, extra: tuple[str, ...], *,
                    numbers: bool = True) -> Iterable[Completion]:
        low = word.lower()
        for name in extra:
            if name.startswith(low):
                yield Completion(name, start_position=-len(word))
        peers = list(self.peers())
        names = NameIndex(peers)
        for peer in peers:
            shown = names.display(peer)
            status = "" if peer.online else " (offline)"
            handle = names.handle(peer)  # nick#id when the nick is shared or looks alike
            if _typeable(handle) and handle.lower().startswith(low):
                yield Completion(handle, start_position=-len(word), display=shown,
                                 display_meta=f"[{peer.number}]{status}")
            elif not numbers:
                continue
            elif word and str(peer.number).startswith(word):
                yield Completion(str(peer.number), start_position=-len(word),
                                 display=str(peer.number), display_meta=shown + status)
            elif not word or (not _typeable(peer.nick) and shown.lower().startswith(low)):
                yield Completion(str(peer.number), start_position=-len(word),
                                 display=f"{peer.number} {shown}", display_meta=status.strip())


def _typeable(nick: str) -> bool:
    """A nick that can go on the line as it is: printable, no spaces or quotes."""
    return safe_line(nick) == nick and not any(c in nick for c in " \t\"'")
