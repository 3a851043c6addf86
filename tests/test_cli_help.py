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
