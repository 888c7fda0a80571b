"""The `ufo` command: one parser above the science (`ufo`), the model store and the service, each of which
registers its own subcommands, so neither side imports the other. A subcommand's handler is named as
"module:function" and imported only when it runs: `ufo --help` stays fast and a command never loads what it
does not use."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

from model_store import commands as store_commands
from service import commands as service_commands
from ufo import commands as ufo_commands


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="ufo", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default: all cores, 1 when the machine is busy; env UFO_THREADS)")
    sub = parser.add_subparsers(dest="command", required=True)
    for package in (ufo_commands, store_commands, service_commands):
        package.register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    if args.threads is not None or args.command in ufo_commands.TORCH_COMMANDS:
        from ufo.threads import configure_threads

        configure_threads(args.threads)
    module_name, func_name = args._target.split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    try:
        return int(func(args) or 0)
    except (ValueError, FileNotFoundError) as exc:  # our typed errors derive from these: no traceback
        print(f"ufo {args.command}: error: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
