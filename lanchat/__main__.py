"""`python -m lanchat` runs the command line."""

from lanchat.cli import entry

entry()
