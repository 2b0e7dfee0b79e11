"""Keys: Enter sends, Esc-Enter / Alt-Enter adds a line, Ctrl-C clears, Ctrl-D leaves."""

from __future__ import annotations

from collections.abc import Callable

from prompt_toolkit.enums import DEFAULT_BUFFER
from prompt_toolkit.filters import has_focus
from prompt_toolkit.key_binding import KeyBindings, KeyPressEvent


def shell_bindings(submit: Callable[[str], None]) -> KeyBindings:
    """The shell's own keys, on top of prompt-toolkit's emacs defaults.

    Enter hands the line to `submit` and clears the buffer; the prompt itself never ends,
    so no keys are echoed by the terminal between lines.
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
        submit(text)

    @kb.add("escape", "enter", filter=editing)
    def _newline(event: KeyPressEvent) -> None:
        """Insert a newline (Esc-Enter or Alt-Enter)."""
        event.current_buffer.insert_text("\n")

    @kb.add("c-c", filter=editing)
    def _clear(event: KeyPressEvent) -> None:
        """Clear the line."""
        event.current_buffer.reset()

    return kb
