"""Tab completion for bash, zsh and fish, generated from the argument parser by shtab.

`lanchat completion SHELL` prints the script; INSTALL says where each shell looks for it.
"""

from __future__ import annotations

import argparse
from pathlib import Path

SHELLS = ("bash", "zsh", "fish")
# Where each shell finds completions for the current user (`lanchat completion SHELL > ...`).
INSTALL = {
    "bash": "~/.local/share/bash-completion/completions/lanchat",
    "zsh": "~/.zfunc/_lanchat  (with `fpath+=~/.zfunc; autoload -Uz compinit; compinit` "
           "in ~/.zshrc)",
    "fish": "~/.config/fish/completions/lanchat.fish",
}
FOLDER_OPTIONS = {"home", "downloads"}


def script(parser: argparse.ArgumentParser, shell: str) -> str:
    """The completion script for `shell`: options, subcommands, and paths where a path goes."""
    import shtab

    for action in _actions(parser):
        if action.type is Path:
            action.complete = (  # type: ignore[attr-defined]
                shtab.DIRECTORY if action.dest in FOLDER_OPTIONS else shtab.FILE)
    text: str = shtab.complete(parser, shell=shell)
    return text


def _actions(parser: argparse.ArgumentParser) -> list[argparse.Action]:
    """Every action of the parser and its subparsers."""
    found = []
    for action in parser._actions:
        found.append(action)
        if isinstance(action, argparse._SubParsersAction):
            for sub in set(action.choices.values()):
                found += _actions(sub)
    return found
