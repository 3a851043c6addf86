"""Every command's ``--help`` reads as plain text and explains every option (issue 14 item 5).

The parser is walked, not a list of commands: a command or option added later is checked too.
"""

from __future__ import annotations

import argparse
import re

import pytest

from phalanb.cli import build_parser

# reST that argparse prints verbatim: ``literal``, :class:`X` / :func: / :mod: roles, `link <url>`_ targets.
REST = re.compile(r"``|:[a-z]+:`|`_\b|\.\. [a-z]+::")


def _parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    """(command path, parser) for the top-level parser and every subparser, depth first."""
    out: list[tuple[str, argparse.ArgumentParser]] = []

    def walk(prefix: str, parser: argparse.ArgumentParser) -> None:
        out.append((prefix, parser))
        for action in parser._actions:
            if isinstance(action, argparse._SubParsersAction):
                for name, sub in action.choices.items():
                    if all(p is not sub for _, p in out):  # aliases point at the same parser
                        walk(f"{prefix} {name}", sub)

    walk("phalanb", build_parser())
    return out


PARSERS = _parsers()


def test_there_are_subcommands_to_walk():
    assert len(PARSERS) > 10


@pytest.mark.parametrize("path,parser", PARSERS, ids=[p for p, _ in PARSERS])
def test_every_option_has_help_text(path, parser):
    missing = [", ".join(a.option_strings) or a.dest for a in parser._actions
               if not isinstance(a, (argparse._HelpAction, argparse._SubParsersAction))
               and a.help != argparse.SUPPRESS and not (a.help or "").strip()]
    assert not missing, f"`{path}`: no help for {missing}"


@pytest.mark.parametrize("path,parser", PARSERS, ids=[p for p, _ in PARSERS])
def test_help_has_no_rest_markup(path, parser):
    text = parser.format_help()
    bad = [line.strip() for line in text.splitlines() if REST.search(line)]
    assert not bad, f"`{path} --help` shows reST markup: {bad[:3]}"


def test_subcommands_are_described_in_the_top_level_help():
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    undescribed = [c.dest for c in sub._choices_actions if not (c.help or "").strip()]
    assert not undescribed, f"commands without a one-line help in `phalanb --help`: {undescribed}"


# -- `phalanb --help` answers without importing the commands (issue 21, item 6) ----------------------------------
def test_the_top_level_help_lists_exactly_what_the_commands_register():
    from phalanb.cli import COMMANDS

    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    assert {c.dest: c.help for c in sub._choices_actions} == {name: h for name, (_m, h) in COMMANDS.items()}


def test_phalanb_help_imports_no_command_module_nor_their_libraries():
    """Measured by what is imported, not by a clock: the commands' imports (httpx, cryptography, the simulator's web
    stack, eth-account) are what made ``phalanb --help`` take most of a second. benchmarks/bench_cli_help.py times
    it."""
    import subprocess
    import sys

    code = ("import sys, contextlib, io\nfrom phalanb.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()) as out:\n    main(['--help'])\n"
            "assert 'probe-window' in out.getvalue()\n"
            "print(' '.join(sorted(m for m in sys.modules)))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    loaded = set(out.stdout.split())
    heavy = {"httpx", "cryptography", "uvicorn", "starlette", "eth_account", "coincurve", "phalanb.session",
             "phalanb.sim", "phalanb.cli.service", "phalanb.cli.audit", "phalanb.cli.quote"}
    assert not loaded & heavy, sorted(loaded & heavy)


def test_a_command_imports_only_its_own_module():
    import subprocess
    import sys

    code = ("import sys, contextlib, io\nfrom phalanb.cli import main\n"
            "with contextlib.redirect_stdout(io.StringIO()):\n"
            "    try:\n        main(['lab', '--help'])\n    except SystemExit:\n        pass\n"
            "print(' '.join(sorted(m for m in sys.modules if m.startswith('phalanb.cli.'))))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["phalanb.cli.lab"], (out.stdout, out.stderr)
