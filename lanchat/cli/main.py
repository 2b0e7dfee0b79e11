"""Command line: parse arguments into a Config, call one function per subcommand.

Exit codes: 0 done, 1 not done, 2 usage error.
"""

from __future__ import annotations

import argparse
import logging
import signal
import sys
from pathlib import Path

from lanchat.cli.completion import SHELLS
from lanchat.cli.settings import Settings, SettingsError, show_settings
from lanchat.cli.settings import build as build_settings
from lanchat.config import DEFAULT_PORT, Config
from lanchat.text import SafeLogFormatter


def _global_options(parser: argparse.ArgumentParser, *, suppress: bool) -> None:
    d = argparse.SUPPRESS if suppress else None
    parser.add_argument("--nick", default=d, help="your name as peers see it")
    parser.add_argument("--home", default=d, type=Path,
                        help="folder for all state (env LANCHAT_HOME)")
    parser.add_argument("--interface", action="append", default=d, metavar="IP",
                        help="announce, listen and multicast only here (repeatable)")
    parser.add_argument("--port", type=int, default=d,
                        help=f"TCP listen port (default {DEFAULT_PORT}; 0 = any free port)")
    parser.add_argument("--peer", action="append", default=d, metavar="[ID@]HOST[:PORT]",
                        help="a peer to reach by address (repeatable)")
    parser.add_argument("--no-mdns", action="store_true", default=d,
                        help="do not use mDNS/DNS-SD")
    parser.add_argument("--no-beacon", action="store_true", default=d,
                        help="do not use the multicast beacon")
    parser.add_argument("--no-localsend", action="store_true", default=d,
                        help="do not list LocalSend devices or answer them")
    parser.add_argument("--no-xmpp", action="store_true", default=d,
                        help="do not list Bonjour chat (XEP-0174) peers or announce to them")
    parser.add_argument("--downloads", type=Path, default=d,
                        help="where accepted files go (default: your Downloads folder)")
    parser.add_argument("--config", type=Path, default=d, metavar="PATH",
                        help="the config file (env LANCHAT_CONFIG; `lanchat config` shows it)")
    parser.add_argument("--log-level", default=d,
                        choices=["debug", "info", "warning", "error"], help="log detail")


class _Version(argparse.Action):
    """--version: the version is looked up only when asked (the lookup reads the installed
    packages' metadata, ~15 ms at every start otherwise)."""

    def __init__(self, option_strings: list[str], dest: str = argparse.SUPPRESS,
                 default: str = argparse.SUPPRESS,
                 help: str = "show program's version number and exit") -> None:
        super().__init__(option_strings, dest, nargs=0, default=default, help=help)

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace,
                 values: object, option_string: str | None = None) -> None:
        print(f"lanchat {_version()}")
        parser.exit()


def _version() -> str:
    """The installed version (the package's own when run from a source tree)."""
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("lanchat")
    except PackageNotFoundError:
        from lanchat import __version__

        return __version__


def build_parser() -> argparse.ArgumentParser:
    """The argument parser; global options work before or after the subcommand."""
    parser = argparse.ArgumentParser(
        prog="lanchat", description="Chat and share files with people on your local network.")
    _global_options(parser, suppress=False)
    parser.add_argument("--version", action=_Version)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")

    def add(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text, description=help_text)
        _global_options(p, suppress=True)
        return p

    p = add("run", "a node without the shell: commands on stdin, events on stdout")
    p.add_argument("--json", action="store_true", help="one JSON event per line")
    p = add("send", "send one message (or file) and wait until it is acknowledged")
    target = p.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="PEER", help="nick, list number or id")
    target.add_argument("--all", action="store_true", help="every known peer")
    p.add_argument("--file", type=Path, metavar="PATH",
                   help="offer a file or folder; exit 0 once the peer verified it")
    p.add_argument("--wait", type=float, default=None, metavar="S",
                   help="give up after S seconds (default 10; 600 with --file)")
    p.add_argument("--json", action="store_true",
                   help="every event as one JSON line on stdout, as `run --json` writes it")
    p.add_argument("text", nargs="*", help="the message")
    p = add("peers", "discover for a while, print who is here, exit")
    p.add_argument("--wait", type=float, default=2.0, metavar="S",
                   help="discover for S seconds (default 2)")
    p.add_argument("--json", action="store_true", help='one JSON object: {"peers": [...]}')
    p = add("id", "this node's nick, id and fingerprint")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: nick, id, short, fingerprint, home")
    p = add("plugins", "installed plugins, their hooks and commands")
    p.add_argument("--json", action="store_true", help='one JSON object: {"plugins": [...]}')
    p = add("doctor", "why a peer is or is not seen: per interface, what was sent and heard")
    p.add_argument("--wait", type=float, default=3.0, metavar="S",
                   help="listen for S seconds first (default 3)")
    p.add_argument("--json", action="store_true", help="the report as one JSON object")
    p = add("web", "a node with its chat window in the browser (served on 127.0.0.1 only)")
    p.add_argument("--web-port", type=int, default=0, metavar="N",
                   help="port of the web window on 127.0.0.1 (default: any free port)")
    p.add_argument("--no-browser", action="store_true", help="print the address only")
    p.add_argument("--json", action="store_true", help="one JSON event per line")
    p = add("config", "the config file's path and the settings in force, with their source")
    p.add_argument("--json", action="store_true",
                   help="one JSON object: config_file, exists, values, sources")
    p = add("completion", "print the tab-completion script for a shell")
    p.add_argument("shell", choices=SHELLS, help="bash, zsh or fish")
    add("shell", "the interactive shell (the default)")
    return parser


def make_settings(args: argparse.Namespace) -> Settings:
    """Parsed arguments over the environment, the config file and the defaults."""
    return build_settings({
        "home": args.home, "nick": args.nick, "port": args.port,
        "interfaces": args.interface, "peers": args.peer, "no_mdns": args.no_mdns,
        "no_beacon": args.no_beacon, "no_localsend": args.no_localsend,
        "no_xmpp": args.no_xmpp, "downloads": args.downloads,
        "log_level": args.log_level, "config": args.config})


def main(argv: list[str] | None = None) -> int:
    """Run lanchat; return the exit code."""
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return 0 if exc.code == 0 else 2
    if args.command == "completion":
        from lanchat.cli.completion import script

        sys.stdout.write(script(parser, args.shell))
        return 0
    try:
        settings = make_settings(args)
    except SettingsError as exc:
        print(f"lanchat: {exc}", file=sys.stderr)
        return 2
    config = settings.config
    from lanchat.nicks import NickError, check_nick

    try:
        config.nick = check_nick(config.nick)
    except NickError as exc:
        print(f"lanchat: --nick {config.nick!r}: {exc}; choose another", file=sys.stderr)
        return 2
    if not 0 <= config.port <= 65535:
        print("lanchat: --port takes 0..65535", file=sys.stderr)
        return 2
    from lanchat.targets import parse_targets

    try:
        parse_targets(config.peers)
    except ValueError as exc:
        print(f"lanchat: {exc}", file=sys.stderr)
        return 2
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(SafeLogFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    logging.basicConfig(level=config.log_level.upper(), handlers=[handler])
    signal.signal(signal.SIGTERM, _terminate)
    command = args.command or "shell"
    if command == "shell":
        return _shell(config)
    from lanchat import headless

    if command == "run":
        return headless.run(config, json_mode=args.json)
    if command == "send":
        if args.file is not None:
            if args.all or args.text:
                print("lanchat: --file goes to one peer (--to PEER) and takes no text",
                      file=sys.stderr)
                return 2
            from lanchat.cli.send_file import send_file

            return send_file(config, to=args.to, path=args.file,
                             wait_s=600.0 if args.wait is None else args.wait,
                             json_mode=args.json)
        text = " ".join(args.text)
        if not text:
            print("lanchat: nothing to send; give the message as arguments", file=sys.stderr)
            return 2
        return headless.send(config, to=None if args.all else args.to, text=text,
                             wait_s=10.0 if args.wait is None else args.wait,
                             json_mode=args.json)
    if command == "peers":
        return headless.peers(config, wait_s=args.wait, json_mode=args.json)
    if command == "id":
        return headless.show_id(config, json_mode=args.json)
    if command == "web":
        if not 0 <= args.web_port <= 65535:
            print("lanchat: --web-port takes 0..65535", file=sys.stderr)
            return 2
        from lanchat.web.run import web_window

        prepare = web_window(port=args.web_port, browser=not args.no_browser)
        if prepare is None:
            return 1
        return headless.run(config, json_mode=args.json, prepare=prepare,
                            stay_after_eof=True)
    if command == "doctor":
        return headless.doctor(config, wait_s=args.wait, json_mode=args.json)
    if command == "plugins":
        return headless.list_plugins(config, json_mode=args.json)
    return show_settings(settings, json_mode=args.json)  # "config", the one left


def _shell(config: Config) -> int:
    """The shell, or the headless text mode without a terminal (or without prompt-toolkit).
    Nothing of the node loads here: the shell draws its prompt first."""

    def text_mode(config: Config) -> int:
        from lanchat import headless

        return headless.run(config, json_mode=False)

    try:
        from lanchat.shell import run_shell
    except ImportError:
        return text_mode(config)
    return run_shell(config, text_mode)


def _terminate(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def entry() -> None:
    """Console-script entry point."""
    from lanchat.runtime import one_node_process

    one_node_process()
    try:
        code = main()
    except KeyboardInterrupt:  # a second Ctrl-C or SIGTERM while closing: stop at once
        code = 130
    sys.exit(code)
