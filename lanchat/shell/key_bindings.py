"""Keys: Enter sends, Esc-Enter / Alt-Enter adds a line, Ctrl-C clears, Ctrl-D leaves,
Alt-1..9 / Alt-Left / Alt-Right / Alt-A switch buffers, a paste is checked for size."""

from __future__ import annotations

from typing import Protocol

from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import has_focus
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent
from prompt_toolkit.keys import Keys


class Actions(Protocol):
    """What the keys ask the shell to do."""

    max_input_chars: int

    def submit(self, line: str) -> None:
        """Run one input line."""

    def switch(self, ref: str) -> None:
        """Go to a buffer by number or name."""

    def step(self, delta: int) -> None:
        """Go to the next (1) or previous (-1) buffer."""

    def jump_active(self) -> None:
        """Go to the buffer with the most pressing unread activity."""

    def paste_refused(self, chars: int) -> None:
        """Say that a paste was too long."""


def shell_bindings(actions: Actions) -> KeyBindings:
    """The shell's own keys, on top of prompt-toolkit's emacs defaults.

    Enter hands the line to `actions.submit` and clears the buffer; the prompt itself never
    ends, so no keys are echoed by the terminal between lines.
    """
    kb = KeyBindings()
    editing = has_focus(DEFAULT_BUFFER)

    @kb.add("enter", filter=editing)
    def _send(event: KeyPressEvent) -> None:
        """Run the line (the completion menu, if open, takes the highlighted item)."""
        buffer = event.current_buffer
        if buffer.complete_state is not None and buffer.complete_state.current_completion:
            buffer.apply_completion(buffer.complete_state.current_completion)
            return
        text = buffer.text
        buffer.append_to_history()
        buffer.reset()
        actions.submit(text)

    @kb.add("escape", "enter", filter=editing)
    def _newline(event: KeyPressEvent) -> None:
        """Insert a newline (Esc-Enter or Alt-Enter)."""
        event.current_buffer.insert_text("\n")

    @kb.add("c-c", filter=editing)
    def _clear(event: KeyPressEvent) -> None:
        """Clear the line."""
        event.current_buffer.reset()

    for digit in "123456789":
        @kb.add("escape", digit)
        def _buffer_n(event: KeyPressEvent) -> None:
            """Alt-N: go to buffer N."""
            actions.switch(event.key_sequence[-1].data)

    @kb.add("escape", "left")
    def _previous(event: KeyPressEvent) -> None:
        """Alt-Left: the buffer before this one."""
        actions.step(-1)

    @kb.add("escape", "right")
    def _next(event: KeyPressEvent) -> None:
        """Alt-Right: the buffer after this one."""
        actions.step(1)

    @kb.add("escape", "a")
    def _active(event: KeyPressEvent) -> None:
        """Alt-A: the buffer with unread messages (mentions and direct ones first)."""
        actions.jump_active()

    @kb.add(Keys.BracketedPaste, filter=editing)
    def _paste(event: KeyPressEvent) -> None:
        """Insert a paste, or refuse it at once if the line would be too long to send."""
        data = event.data.replace("\r\n", "\n").replace("\r", "\n")
        buffer = event.current_buffer
        if len(buffer.text) + len(data) > actions.max_input_chars:
            actions.paste_refused(len(data))
            return
        buffer.insert_text(data)

    return kb
