"""The ``phalanb`` command.

Exit codes, everywhere: 0 every check passed, 1 a check failed, 3 incomplete (something could not be checked),
2 usage or input errors. Every command lives in this package, one module per command group (listed in
``_COMMAND_MODULES``); each module registers its subcommands, and this is the only place argparse is used.
"""

from __future__ import annotations

import argparse
import importlib
import os
import sys
from typing import Any, Sequence

from ..errors import PhalanbError

__all__ = ["main", "EXIT_OK", "EXIT_FAILED", "EXIT_USAGE", "EXIT_INCOMPLETE"]

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INCOMPLETE = 0, 1, 2, 3

# Modules exposing ``register(subparsers)``; each adds its subcommands with ``set_defaults(func=...)`` where
# ``func(args) -> int`` returns the exit code.
_COMMAND_MODULES = (
    "phalanb.cli.service",   # sim, demo, chat
    "phalanb.cli.quote",     # quote (Intel TDX)
    "phalanb.cli.gpu",       # gpu (NVIDIA evidence)
    "phalanb.cli.audit",     # verify, report, audit
    "phalanb.cli.aci",       # receipt, session (ACI)
    "phalanb.cli.lab",       # lab
    "phalanb.cli.timing",    # bench-latency, probe-window
)


#: Every command: the module that registers it and the one line ``phalanb --help`` shows for it. ``phalanb
#: --help`` (and ``phalanb`` alone) is answered from this table without importing any command module — their
#: imports (cryptography, httpx, the simulator's web stack) take most of a second; ``phalanb COMMAND`` imports
#: only its own. tests/test_cli_help.py checks that each module registers exactly this help line.
COMMANDS: dict[str, tuple[str, str]] = {
    "sim": ("phalanb.cli.service", "run the local simulated service (an ACI gateway by default) in the foreground"),
    "demo": ("phalanb.cli.service", "chat once and verify everything phalanb can verify (ACI: receipt, report, "
             "session, the upstream's evidence)"),
    "chat": ("phalanb.cli.service", "send one chat request and keep the exact bytes (--save: verify it and write "
             "its audit bundle)"),
    "quote": ("phalanb.cli.quote", "decode and verify an Intel TDX quote (offline chain, TCB status with "
              "collateral)"),
    "gpu": ("phalanb.cli.gpu", "decode and verify NVIDIA GPU evidence offline (SPDM, chain, FWID, NRAS tokens)"),
    "verify": ("phalanb.cli.audit", "re-verify an audit bundle offline"),
    "report": ("phalanb.cli.audit", "check a saved attestation report on its own"),
    "audit": ("phalanb.cli.audit", "verify many bundles or batches (.jsonl, .pbatch) offline"),
    "receipt": ("phalanb.cli.aci", "verify a saved ACI receipt (with its report, bytes and sessions)"),
    "session": ("phalanb.cli.aci", "verify a saved ACI attested session"),
    "lab": ("phalanb.cli.lab", "start the simulators and JupyterLab on the guided notebooks"),
    "bench-latency": ("phalanb.cli.timing", "measure time to first token, tokens/s, receipt or signature and "
                      "attestation fetch times over N chats"),
    "probe-window": ("phalanb.cli.timing", "measure how long a reply's receipt (ACI) or signature (a model server) "
                     "stays retrievable"),
}

_DESCRIPTION = ("Verify confidential LLM inference: exact bytes, ACI receipts and chat signatures, Intel TDX quotes "
                "and NVIDIA GPU evidence.")


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # argparse exits 2 already; keep its message short and ours
        self.print_usage(sys.stderr)
        print(f"phalanb: error: {message}", file=sys.stderr)
        raise SystemExit(EXIT_USAGE)


def build_parser(only: str | None = None) -> argparse.ArgumentParser:
    """The whole command line; ``only="verify"`` imports that command's module alone (the others are listed by
    their help line, as ``phalanb --help`` shows them, and cannot be run from this parser)."""
    parser = _Parser(prog="phalanb", description=_DESCRIPTION)
    from .. import __version__
    parser.add_argument("--version", action="version", version=f"phalanb {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    wanted = _COMMAND_MODULES if only is None else (COMMANDS[only][0],) if only in COMMANDS else ()
    registered: set[str] = set()
    for name in wanted:
        try:
            module = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:  # a real import error inside the module must not be hidden
                raise
            continue
        module.register(sub)
        registered |= {c for c, (m, _h) in COMMANDS.items() if m == name}
    if only is not None:
        for command, (_module, help_line) in COMMANDS.items():
            if command not in registered:
                sub.add_parser(command, help=help_line)
        # keep the listing in the table's order
        sub._choices_actions.sort(key=lambda a: list(COMMANDS).index(a.dest) if a.dest in COMMANDS else 99)
    return parser


def _command_of(argv: Sequence[str]) -> str:
    """The command named in ``argv`` ("" when none: ``phalanb``, ``phalanb --help``, ``phalanb --version``)."""
    for arg in argv:
        if not arg.startswith("-"):
            return arg
    return ""


class _QuietStdout:
    """stdout that goes quiet when the reader closes the pipe (``phalanb report … | head -1``): the rest of the
    output is dropped, the command finishes, and its exit code is still the verdict's."""

    def __init__(self, stream: Any):
        self._stream = stream
        self.pipe_closed = False

    def _silence(self) -> None:
        self.pipe_closed = True
        # Point the descriptor at /dev/null so that the interpreter's own flush at exit cannot fail again.
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, self._stream.fileno())
        finally:
            os.close(devnull)

    def write(self, text: str) -> int:
        if not self.pipe_closed:
            try:
                return self._stream.write(text)
            except BrokenPipeError:
                self._silence()
        return len(text)

    def flush(self) -> None:
        if not self.pipe_closed:
            try:
                self._stream.flush()
            except BrokenPipeError:
                self._silence()

    def __getattr__(self, name: str) -> Any:  # encoding, isatty, fileno, buffer… exactly as the real stdout's
        return getattr(self._stream, name)


def _has_fd(stream: Any) -> bool:
    try:
        stream.fileno()
    except (AttributeError, OSError, ValueError):
        return False
    return True


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(only=_command_of(argv))
    args = parser.parse_args(argv)
    if not getattr(args, "func", None):
        parser.print_help()
        return EXIT_USAGE
    original = sys.stdout
    quiet = _QuietStdout(original) if _has_fd(original) else None
    if quiet is not None:
        sys.stdout = quiet
    try:
        code = int(args.func(args))
        sys.stdout.flush()
        return code
    except PhalanbError as exc:
        # The message is written for a person; the class name is for programs (and reads like a crash).
        print(f"phalanb: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # Written past the wrapper (e.g. raw bytes): the reader is gone; leave quietly.
        if quiet is not None:
            quiet._silence()
        return EXIT_OK
    finally:
        if quiet is not None:
            sys.stdout = original


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
