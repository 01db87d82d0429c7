"""The ``memlab`` command: one entry point whose subcommands live beside the code they run.

Each module in ``COMMAND_MODULES`` has ``register(subparsers)`` that adds its
subcommands and sets ``func`` (returning an exit code). Those modules keep heavy imports
inside their functions so that ``memlab --help`` stays quick.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence

from memlab.errors import MemlabError

COMMAND_MODULES: tuple[str, ...] = (
    "memlab.memory.cli",
    "memlab.credentials",
    "memlab.strategies.cli",
    "memlab.training.cli",
    "memlab.trader.cli",
    "memlab.dashboard.cli",
    "memlab.demo",
    "memlab.evaluation.cli",
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="memlab",
        description="memlab: research and paper-trading workbench with a memory-driven agent.",
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log at DEBUG level")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    func = getattr(args, "func", None)
    if func is None:
        parser.print_help()
        return 2
    try:
        return int(func(args) or 0)
    except MemlabError as exc:
        print(f"memlab: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("memlab: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":  # pragma: no cover
    raise SystemExit(main())
