"""The command line, the top face: `main` parses arguments into a Config (through
`settings`) and calls one function per subcommand; `completion` prints tab-completion
scripts; `send_file` is `send --file` with its progress bar. `entry` is the console
script."""

from lanchat.cli.main import build_parser, entry, main

__all__ = ["build_parser", "entry", "main"]
