"""The ``phalanb`` command.

Exit codes, everywhere: 0 every check passed, 1 a check failed, 3 incomplete (something could not be checked),
2 usage or input errors. Each subcommand lives beside the code it drives and registers itself here.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from typing import Sequence

from .errors import PhalanbError

__all__ = ["main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INCOMPLETE"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3

# Modules exposing ``register(subparsers)``; each adds its subcommands with ``set_defaults(func=...)`` where
# ``func(args) -> int`` returns the exit code.
_COMMAND_MODULES = (
    "phalanb.commands",
    "phalanb.tdx.cli",
    "phalanb.gpu.cli",
    "phalanb.audit_cli",
    "phalanb.lab",
    "phalanb.timing_cli",
    "phalanb.aci.cli",
)


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 already; keep its message short and ours
        self.print_usage(sys.stderr)
        print(f"phalanb: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="phalanb", description="Verify confidential LLM inference: exact bytes, chat "
                     "signatures, Intel TDX quotes and NVIDIA GPU evidence.")
    from . import __version__
    parser.add_argument("--version", action="version", version=f"phalanb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    for name in _COMMAND_MODULES:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module must not be hidden
                raise
            continue
        module.register(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    try:
        return int(args.func(args))
    except PhalanbError as exc:
        # The message is written for a person; the class name is for programs (and reads like a crash).
        print(f"phalanb: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
