"""The interactive shell (prompt-toolkit), imported only when the shell runs."""

from lanchat.shell.app import run_shell

__all__ = ["run_shell"]
