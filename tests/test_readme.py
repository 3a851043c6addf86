"""README.md's commands run as written (issue 14, "Must show"): every command in its ```bash blocks, every
``phalanb …`` row of its Commands table and every ```python block is extracted from the README itself and run as a
user would — the installed ``phalanb`` console script in a fresh working directory, Python in a fresh interpreter —
against phalanb's simulator or the real fixtures, asserting the exit code the README promises (0 verified, 1 failed,
3 incomplete, 2 usage) and no traceback or exception class name in what it prints.

A command is run verbatim unless it is listed here with the one change the test makes and why (a real service's
``--base-url`` points at a local simulator; a placeholder such as FILE is filled from an explicit mapping) or is
excluded with its reason. A README command that is neither run nor excluded fails the test, so a new example
cannot slip past unrun.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import signal
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.conftest import FIXTURES, REPO, TEST_API_KEY

README = (REPO / "README.md").read_text(encoding="utf-8")

# What a user must never see: a traceback or an exception class name (issue 14 item 4).
LEAKS = re.compile(r"Traceback \(most recent call last\)|\b[A-Z]\w*(?:Error|Exception)\b")

# The real services' base URLs as the README writes them; the test points them at a local simulator instead
# (the real services are unreachable from tests, and a test may not use the network).
REAL_BASE_URLS = ("https://api.red-pill.ai/v1", "https://api.redpill.ai/v1")
REAL_MODEL = "phala/deepseek-v3.2"

# Checks that fail — and must fail — when a simulator's evidence is judged under production trust: its roots are
# phalanb's simulated Intel and NVIDIA roots, never the pinned real ones. Nothing else may fail.
SIMULATED_ROOT_CHECKS = {"tdx.pck_chain", "gpu.cert_chain", "upstream.tdx.pck_chain", "upstream.gpu.cert_chain"}


# ---------------------------------------------------------------------------------------------------------------
# Extraction: the README is the source of every command below.

def fenced_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.M | re.S)


def bash_commands(text: str) -> list[tuple[int, int, str]]:
    """``(block, position, command)`` for every command of every ```bash block: one per line or per ``&&`` part,
    comments dropped (a block is a script: a command may rely on those before it in the same block)."""
    out = []
    for b, block in enumerate(fenced_blocks(text, "bash")):
        n = 0
        for line in block.splitlines():
            code = re.split(r"\s#\s|^#", line, maxsplit=1)[0].strip()
            for part in filter(None, (p.strip() for p in code.split("&&"))):
                out.append((b, n, part))
                n += 1
    return out


def table_commands(text: str) -> list[str]:
    """Every ``phalanb …`` code span in the first column of the Commands table (``\\|`` unescaped)."""
    section = text.split("\n## Commands\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `phalanb")]
    spans = []
    for row in rows:
        first = re.match(r"\|((?:[^|\\]|\\.)*)\|", row).group(1)
        spans += [s.replace("\\|", "|") for s in re.findall(r"`([^`]+)`", first)]
    return spans


def python_blocks(text: str) -> list[str]:
    return fenced_blocks(text, "python")


# ---------------------------------------------------------------------------------------------------------------
# Running as a user would.

def phalanb_exe() -> list[str]:
    exe = shutil.which("phalanb")
    assert exe, "the phalanb console script is not installed (pip install -e .)"
    return [exe]


def user_env(**extra: str) -> dict[str, str]:
    """The user's environment, with this checkout first on the path (so the worktree's code is what runs) and no
    test-only settings leaking in."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PHALANB_", "REDPILL_"))}
    env["PYTHONPATH"] = os.pathsep.join([str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])])
    env.pop("MPLBACKEND", None)
    env.update(extra)
    return env


def assert_reads_cleanly(proc: subprocess.CompletedProcess, what: str) -> None:
    text = proc.stdout + proc.stderr
    leak = LEAKS.search(text)
    assert not leak, f"{what} printed {leak.group(0)!r}:\n{text[-3000:]}"


def failed_check_ids(output: str) -> set[str]:
    """The ids of the table rows whose status is ``fail``, and those the summary line names (``chat`` prints only
    ``verdict: failed: ID, ID (reason); ID (reason)``)."""
    ids = set(re.findall(r"^(\S+)\s+fail\s", output, re.M))
    for line in re.findall(r"^(?:verdict: failed|\s+failed):(.*)$", output, re.M):
        while re.search(r"\([^()]*\)", line):
            line = re.sub(r"\([^()]*\)", "", line)
        ids |= {t.strip() for t in re.split(r"[,;]", line) if t.strip()}
    return ids


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)


# ---------------------------------------------------------------------------------------------------------------
# Module-scoped simulators standing in for the real services.

@pytest.fixture(scope="module")
def gateway():
    """An ACI gateway as api.redpill.ai answers today, requiring the test key, serving the README's model."""
    from phalanb.sim import SimConfig, Simulator

    with Simulator(SimConfig(seed=14, ttft_ms=0, tokens_per_second=0, api_key=TEST_API_KEY, protocol="aci",
                             models=(REAL_MODEL,))) as s:
        yield s


@pytest.fixture(scope="module")
def model_server():
    """A vllm-proxy model server alone; a 1 s signature TTL so ``probe-window`` finds its window quickly."""
    from phalanb.sim import SimConfig, Simulator

    with Simulator(SimConfig(seed=15, ttft_ms=0, tokens_per_second=0, api_key=TEST_API_KEY, protocol="legacy",
                             models=(REAL_MODEL,), signature_ttl=1.0)) as s:
        yield s


# ---------------------------------------------------------------------------------------------------------------
# The ```bash blocks: how each command is run.

@dataclass(frozen=True)
class Run:
    """Run the command; ``expect`` is the exit code the README promises for it, ``why`` says why."""
    expect: int
    why: str = ""
    sim_roots_only: bool = False  # exit 1 must come from SIMULATED_ROOT_CHECKS alone


@dataclass(frozen=True)
class Exclude:
    """Not run by this test, for the stated reason."""
    reason: str


@dataclass(frozen=True)
class Special:
    """Run by a handler of its own: ``export`` (sets the block's environment), ``sim`` (long-running), ``lab``."""
    handler: str
    why: str = ""


GATEWAY_SUBSTITUTION = ("the real service is unreachable from tests: --base-url points at a local ACI gateway "
                        "simulator (same flags, same model, the test key in PHALANB_API_KEY); its evidence chains to "
                        "the simulated roots, so under the default production trust the verdict is honestly failed "
                        "on exactly those checks (exit 1)")

BASH: dict[str, Run | Exclude | Special] = {
    # "Two protocols": the embedded simulator, trusted as simulated because it is the embedded one.
    "phalanb demo": Run(0, "the embedded simulator: every check holds"),
    "phalanb demo --protocol legacy": Run(0, "the embedded model server alone: every check holds"),
    'phalanb chat "Hello" --save reply.phalanb.json': Run(0, "the embedded simulator; saves an audit bundle"),
    "phalanb verify reply.phalanb.json --trust simulated": Run(0, "the bundle the chat above saved, re-verified "
                                                                  "under the simulated roots it was made with"),
    # Quickstart and tests.
    "pip install -e .": Exclude("installs the package: the test runs the phalanb already installed from this "
                                "checkout, and tests may not touch the network"),
    'pip install -e ".[test]"': Exclude("installs the package and test extras (network); already installed"),
    "pytest": Exclude("the test suite itself: running it from inside the suite would recurse"),
    'pip install -e ".[lab]"': Exclude("installs the lab extras (network); JupyterLab is already installed"),
    # "Against a real service".
    "export PHALANB_API_KEY=sk-...": Special("export", "the key placeholder sk-... is replaced by the test key, "
                                                       "which the local simulator requires"),
    "phalanb demo --base-url https://api.red-pill.ai/v1 --model phala/deepseek-v3.2":
        Run(1, GATEWAY_SUBSTITUTION, sim_roots_only=True),
    'phalanb chat "Hello" --base-url https://api.red-pill.ai/v1 --model phala/deepseek-v3.2 --save reply.phalanb.json':
        Run(1, GATEWAY_SUBSTITUTION, sim_roots_only=True),
    "phalanb verify reply.phalanb.json": Run(1, "the bundle the substituted chat above saved: re-verified offline "
                                                "under production trust it fails on the simulated roots alone",
                                             sim_roots_only=True),
    # "Notebooks" and "The local simulator".
    "phalanb lab": Special("lab", "starts JupyterLab: run until it prints both simulators' URLs, which must answer"),
    "phalanb sim --seed 1 --signature-ttl 1200 --ttft-ms 200 --tokens-per-second 50":
        Special("sim", "runs until stopped: its first line is the base URL, which must answer; then it is stopped"),
    "phalanb sim --list-faults": Run(0, "lists the faults and exits"),
}

# Checks that a simulator's evidence fails under production trust: its quote's PCK chain and its GPUs' certificate
# chains end at simulated roots, and collateral signed by the simulated root fails the TCB check.
SIMULATED_ROOT_CHECKS |= {"tdx.tcb_status", "upstream.tdx.tcb_status"}


def checks_in(output: str) -> set[str]:
    """Failed check ids from a table or from ``--json`` output."""
    try:
        doc = json.loads(output)
    except ValueError:
        return failed_check_ids(output)
    verdict = doc.get("verdict", doc) if isinstance(doc, dict) else {}
    return {c["id"] for c in verdict.get("checks", []) if c.get("status") == "fail"}


def assert_outcome(proc: subprocess.CompletedProcess, how: Run, what: str) -> None:
    assert_reads_cleanly(proc, what)
    assert proc.returncode == how.expect, (f"{what}: exit {proc.returncode}, the README promises {how.expect} "
                                           f"({how.why})\n{proc.stdout[-3000:]}\n{proc.stderr[-2000:]}")
    if how.sim_roots_only:
        failed = checks_in(proc.stdout) | failed_check_ids(proc.stderr)
        assert failed and failed <= SIMULATED_ROOT_CHECKS, f"{what}: failed {sorted(failed)}, not only simulated roots"


def substitute(argv: list[str], sims: dict[str, str]) -> list[str]:
    """A real service's base URL → the local simulator's (GATEWAY_SUBSTITUTION)."""
    return [sims["gateway"] if a in REAL_BASE_URLS else a for a in argv]


class Blocks:
    """Runs a ```bash block as the script it is: a command after the commands before it in the same block, in
    that block's own working directory and environment (``export`` lines)."""

    def __init__(self, base: Path, sims: dict[str, str]):
        self.base, self.sims = base, sims
        self.commands = bash_commands(README)
        self.done: dict[tuple[int, int], subprocess.CompletedProcess | None] = {}
        self.env: dict[int, dict[str, str]] = {}

    def cwd(self, block: int) -> Path:
        d = self.base / f"block{block}"
        d.mkdir(exist_ok=True)
        return d

    def result(self, block: int, pos: int) -> subprocess.CompletedProcess | None:
        for b, p, command in self.commands:
            if b == block and p <= pos and (b, p) not in self.done:
                self.done[(b, p)] = self._run(b, command)
        return self.done[(block, pos)]

    def _run(self, block: int, command: str) -> subprocess.CompletedProcess | None:
        how = BASH[command]
        env = self.env.setdefault(block, user_env())
        if isinstance(how, Special) and how.handler == "export":
            name, _, value = command.removeprefix("export ").partition("=")
            env[name] = TEST_API_KEY if value == "sk-..." else value
            return None
        if not isinstance(how, Run):
            return None  # excluded, or run by its own handler below
        argv = substitute(shlex.split(command), self.sims)
        return run(phalanb_exe() + argv[1:], self.cwd(block), env)


@pytest.fixture(scope="module")
def blocks(tmp_path_factory, gateway, model_server):
    return Blocks(tmp_path_factory.mktemp("readme"), {"gateway": gateway.base_url,
                                                      "model_server": model_server.base_url})


def test_every_readme_command_is_run_or_excluded_with_a_reason():
    shown = {c for _, _, c in bash_commands(README)}
    assert shown, "no ```bash block found in README.md"
    unknown = shown - set(BASH)
    assert not unknown, f"README commands this test neither runs nor excludes (add them to BASH): {sorted(unknown)}"
    stale = set(BASH) - shown
    assert not stale, f"commands listed here that the README no longer shows: {sorted(stale)}"
    assert all(h.reason if isinstance(h, Exclude) else h.why for h in BASH.values()), "every entry says why"


@pytest.mark.parametrize("block,pos,command", bash_commands(README),
                         ids=[f"bash{b}.{p}:{c[:50]}" for b, p, c in bash_commands(README)])
def test_readme_bash_command_runs_as_written(blocks, block, pos, command):
    how = BASH.get(command)
    assert how is not None, f"a new README command: run it in BASH or exclude it with a reason: {command!r}"
    if isinstance(how, Exclude):
        pytest.skip(f"excluded: {how.reason}")
    if isinstance(how, Special) and how.handler != "export":
        pytest.skip(f"run by test_readme_{how.handler}_*")
    proc = blocks.result(block, pos)
    if isinstance(how, Run):
        assert_outcome(proc, how, command)
