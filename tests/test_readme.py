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
REAL_BASE_URLS = ("https://api.redpill.ai/v1",)
REAL_MODEL = "phala/deepseek-v3.2"

# Checks that fail — and must fail — when a simulator's evidence is judged under production trust: its roots are
# phalanb's simulated Intel and NVIDIA roots, never the pinned real ones. Nothing else may fail.
SIMULATED_ROOT_CHECKS = {"tdx.pck_chain", "gpu.cert_chain", "upstream.tdx.pck_chain", "upstream.gpu.cert_chain"}


# ---------------------------------------------------------------------------------------------------------------
# Extraction: the README is the source of every command below.

def fenced_blocks(text: str, lang: str) -> list[str]:
    return re.findall(rf"^```{lang}\n(.*?)^```", text, re.MULTILINE | re.DOTALL)


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
    ids = set(re.findall(r"^(\S+)\s+fail\s", output, re.MULTILINE))
    for line in re.findall(r"^(?:verdict: failed|\s+failed):(.*)$", output, re.MULTILINE):
        while re.search(r"\([^()]*\)", line):
            line = re.sub(r"\([^()]*\)", "", line)
        ids |= {t.strip() for t in re.split(r"[,;]", line) if t.strip()}
    return ids


def run(argv: list[str], cwd: Path, env: dict[str, str], timeout: float = 60) -> subprocess.CompletedProcess:
    return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False)


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
    """A vllm-proxy model server alone; a 2 s signature TTL so ``probe-window`` finds its window quickly."""
    from phalanb.sim import SimConfig, Simulator

    with Simulator(SimConfig(seed=15, ttft_ms=0, tokens_per_second=0, api_key=TEST_API_KEY, protocol="legacy",
                             models=(REAL_MODEL,), signature_ttl=2.0)) as s:
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
    # "Three revisions of ACI": the embedded simulator in each shape.
    "phalanb demo --aci-shape aug-2026": Run(0, "the embedded gateway in the August 2026 shape: every check holds"),
    "phalanb demo --aci-shape preview-2026-06": Run(3, "the June 2026 shape: its report publishes no app_compose, so "
                                                     "aci.provenance is skipped and the verdict is incomplete"),
    "phalanb demo --e2ee --aci-shape v3": Run(0, "the embedded v3 gateway with E2EE v3: every check holds"),
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
    "phalanb demo --base-url https://api.redpill.ai/v1 --model phala/deepseek-v3.2":
        Run(1, GATEWAY_SUBSTITUTION, sim_roots_only=True),
    'phalanb chat "Hello" --base-url https://api.redpill.ai/v1 --model phala/deepseek-v3.2 --save reply.phalanb.json':
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
# chains end at simulated roots, collateral signed by the simulated root fails the TCB check, and an NRAS token
# signed by the simulated NRAS key is not NVIDIA's.
SIMULATED_ROOT_CHECKS |= {"tdx.tcb_status", "upstream.tdx.tcb_status", "nras.token", "upstream.nras.token"}


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


def test_the_extraction_sees_every_command_a_block_shows():
    # The guard below is only as good as the extraction: `&&` chains, comments and a new block all count.
    text = "x\n```bash\nphalanb demo   # a comment\npip install -e . && phalanb new-thing --x 1\n```\n"
    assert [c for _, _, c in bash_commands(text)] == ["phalanb demo", "pip install -e .", "phalanb new-thing --x 1"]
    table = "x\n## Commands\n\n| command | what |\n|---|---|\n| `phalanb a [--r x\\|y]`, `phalanb b` | … |\n## Next\n"
    assert table_commands(table) == ["phalanb a [--r x|y]", "phalanb b"]
    assert prose_commands("see `phalanb session FILE\n--id ID` and ```bash\nphalanb x\n```") == [
        "phalanb session FILE --id ID"]


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
    if isinstance(how, Special):
        if how.handler == "export":
            pytest.skip(f"sets the environment of the commands after it in its block: {how.why}")
        pytest.skip(f"run by test_readme_{how.handler}_*")
    assert_outcome(blocks.result(block, pos), how, command)


def answers(base_url: str) -> bool:
    """``GET {base_url}/models`` answers 200: the printed URL is a live service."""
    with urllib.request.urlopen(f"{base_url}/models", timeout=10) as r:  # loopback only: the simulator's own URL
        return r.status == 200


def start(argv: list[str], cwd: Path) -> subprocess.Popen:
    # A session of its own, so that stopping it stops its children (JupyterLab) and nothing else.
    return subprocess.Popen(argv, cwd=cwd, env=user_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, start_new_session=True)


def stop(proc: subprocess.Popen) -> tuple[str, str]:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
    try:
        return proc.communicate(timeout=20)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)
        return proc.communicate()


def sim_commands() -> list[str]:
    return [c for c, h in BASH.items() if isinstance(h, Special) and h.handler == "sim"]


@pytest.mark.parametrize("command", list(sim_commands()))
def test_readme_sim_prints_its_base_url_first_and_serves_it(tmp_path, command):
    # `phalanb sim` runs until stopped (README: "prints its base URL as the first line"): read that line, ask the
    # service for its models, stop it.
    proc = start(phalanb_exe() + shlex.split(command)[1:], tmp_path)
    try:
        first = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/v1", first), f"{command}: first line {first!r}"
        assert answers(first)
    finally:
        out, err = stop(proc)
    assert not LEAKS.search(out + err), f"{command} printed:\n{out}\n{err}"


def test_readme_lab_starts_both_simulators_and_prints_their_urls(tmp_path):
    # `phalanb lab` starts JupyterLab and runs until stopped: read the line naming both simulators, check that
    # each answers, then stop the lab (and the JupyterLab it started). JupyterLab's own start-up is its business;
    # phalanb's part is the two simulators and the environment (tests/test_notebooks.py runs the notebooks).
    proc = start(phalanb_exe() + ["lab"], tmp_path)
    try:
        first = proc.stdout.readline().strip()
        urls = re.fullmatch(r"phalanb simulators \(simulated roots\): ACI gateway at (\S+), model server at (\S+); "
                            r"starting JupyterLab in .+", first)
        assert urls, f"phalanb lab's first line: {first!r}"
        assert all(answers(u) for u in urls.groups())
    finally:
        out, _ = stop(proc)
    assert not LEAKS.search(first + out), out  # JupyterLab's own log (stderr) is not phalanb's output


# ---------------------------------------------------------------------------------------------------------------
# The Commands table: placeholders filled from an explicit mapping; every row runs with the options it shows (so
# every option name in the table is one the command accepts), and also without them (options in [] dropped) where
# that changes the promised exit code, unless a ```bash block above already runs exactly that form.

VENICE = FIXTURES / "field" / "venice-qwen35-2026-06"  # a real capture with everything it was captured with
VENICE_AT = "1781056027"                                # its capture time (SOURCE.md)
NVTRUST = FIXTURES / "nvidia" / "nvtrust"               # a bare GPU evidence file and its PEM chain
LS10 = FIXTURES / "field" / "nvidia-sdk-nvswitch-ls10"  # an NVSwitch's evidence file and its PEM chain
TDX = FIXTURES / "tdx" / "dcap-qvl"                     # a TDX quote, its collateral and verification time


def venice_nonce() -> str:
    return (VENICE / "client_nonce.txt").read_text().strip()


def venice_address() -> str:
    return json.loads((VENICE / "attestation_report.json").read_text())["signing_address"]


@dataclass(frozen=True)
class Variant:
    """One way to run a table row: ``keep`` the bracketed groups starting with these options ("*": all of them),
    ``fill`` each placeholder (``(option, PLACEHOLDER)`` before a bare ``PLACEHOLDER``), exit ``expect`` because
    ``why``; ``base_url`` appends ``--base-url`` of a local simulator for commands that would otherwise take half a
    minute against the embedded one (its realistic latency and 10 s signature TTL)."""
    expect: int
    why: str
    keep: frozenset[str] | str = frozenset()
    fill: dict = field(default_factory=dict)
    base_url: str | None = None
    sim_roots_only: bool = False
    api_key: bool = False
    extra: tuple[str, ...] = ()  # what a prose fragment leaves to the reader (its input file), appended


def fill(template: str, variant: Variant, ctx: dict[str, str]) -> list[str]:
    """The table's command line with the kept ``[…]`` groups' brackets removed, the others dropped, and every
    placeholder replaced (one the mapping does not know fails the test)."""
    out: list[str] = []
    dropping = opening = False
    for tok in shlex.split(re.sub(r"([\[\]])", r" \1 ", template)):
        if tok in ("[", "]"):
            opening, dropping = tok == "[", False
            continue
        if opening:  # a group is kept or dropped by its first token (its option)
            opening, dropping = False, not (variant.keep == "*" or tok in variant.keep)
        if dropping:
            continue
        if re.fullmatch(r"[A-Z][A-Z_]*(\.png|\.\.\.)?|\w+(\|\w+)+", tok):
            value = variant.fill.get((out[-1] if out else None, tok), variant.fill.get(tok))
            assert value is not None, f"{template}: no value for the placeholder {tok} (after {out[-1]})"
            tok = value.format(**ctx)
        out.append(tok)
    return out


TABLE: dict[str, list[Variant] | Special] = {
    "phalanb demo [--base-url URL] [--save FILE] [--json] [--offline] [--no-nras] [--e2ee] [--protocol aci|legacy]": [
        # without options: the intro block's `phalanb demo`
        Variant(1, GATEWAY_SUBSTITUTION + " (URL = the local gateway)",
                keep=frozenset({"--base-url", "--save", "--json", "--offline", "--no-nras", "--protocol"}),
                api_key=True, sim_roots_only=True,
                fill={"URL": "{gateway}", "FILE": "demo.phalanb.json", "aci|legacy": "aci"}),
        Variant(2, GATEWAY_SUBSTITUTION + ", with --e2ee: under production trust the gateway's keyset (its quote "
                   "chains to the simulated root) is not established, so phalanb refuses to encrypt to it",
                keep=frozenset({"--base-url", "--e2ee"}), api_key=True, fill={"URL": "{gateway}"}),
        Variant(0, "the embedded gateway, E2EE: verified with the e2ee.* checks", keep=frozenset({"--e2ee"})),
    ],
    'phalanb chat "PROMPT" [--save FILE] [--e2ee]': [
        Variant(0, "the embedded simulator", fill={"PROMPT": "Hello"}),
        Variant(0, "the embedded simulator, sealed and saved: a bundle that verifies", keep="*",
                fill={"PROMPT": "Hello", "FILE": "sealed.phalanb.json"}),
        # with --save FILE: the intro block's `phalanb chat "Hello" --save reply.phalanb.json`
    ],
    "phalanb verify BUNDLE [--at UNIX_TIME] [--json]": [
        Variant(1, "a bundle of the embedded simulator judged under the auditor's production trust, at a time given "
                   "(now), as JSON: it fails on the simulated roots alone (the intro's `--trust simulated` verifies "
                   "it; the 'Against a real service' block runs the form without options)", keep="*",
                sim_roots_only=True,
                fill={"BUNDLE": "{bundle}", "UNIX_TIME": "now"}),
    ],
    "phalanb report FILE [--nonce HEX] [--signing-address ADDR] [--collateral FILE --at T] "
    "[--nras-response F --jwks F] [--service NAME]": [
        Variant(3, "a real capture alone: no nonce, no collateral, no NRAS answer — incomplete",
                fill={"FILE": str(VENICE / "attestation_report.json")}),
        Variant(0, "the same capture with its nonce, address, collateral, time, NRAS answer and NVIDIA's JWKS, "
                   "judged as the service it came from (--service venice)",
                keep="*", fill={"FILE": str(VENICE / "attestation_report.json"), "HEX": "{nonce}", "NAME": "venice",
                                "ADDR": "{address}", ("--collateral", "FILE"): str(VENICE / "collateral.json"),
                                "T": VENICE_AT, ("--nras-response", "F"): str(VENICE / "nras_response.json"),
                                ("--jwks", "F"): str(VENICE / "nras_jwks.json")}),
    ],
    "phalanb audit PATHS... [--workers N] [--csv FILE]": [
        Variant(1, "a folder holding a bundle of the embedded simulator, 2 workers, a CSV: under production trust "
                   "its row fails", keep="*",
                fill={"PATHS...": "{bundles}", "N": "2", "FILE": "audit.csv"}),
    ],
    "phalanb quote FILE [--collateral FILE --at T] [--root intel|sim|PEM] [--json]": [
        Variant(3, "a real quote without collateral: TCB status not checked", fill={"FILE": str(TDX / "tdx_quote")}),
        Variant(0, "with its collateral at its time, Intel's root, JSON", keep="*",
                fill={"FILE": str(TDX / "tdx_quote"),
                      ("--collateral", "FILE"): str(TDX / "tdx_quote_collateral.json"), "T": "1752919234",
                      "intel|sim|PEM": "intel"}),
    ],
    "phalanb gpu FILE [--chain PEM] [--nonce HEX] [--nras-response F --jwks F --at T] [--rims DIR]": [
        Variant(3, "bare evidence with its chain and nonce: verified offline, incomplete without an NRAS answer",
                keep=frozenset({"--chain", "--nonce"}),
                fill={"FILE": str(NVTRUST / "hopperAttestationReport.txt"), "PEM": str(NVTRUST / "hopperCertChain.txt"),
                      "HEX": "{nvtrust_nonce}"}),
        Variant(1, "the same evidence appraised against NVIDIA's RIMs judged now: the 550.90.07 RIM's signing "
                   "certificate expired on 2026-06-01, so gpu.measurements fails and says so",
                keep=frozenset({"--chain", "--nonce", "--rims"}),
                fill={"FILE": str(NVTRUST / "hopperAttestationReport.txt"), "PEM": str(NVTRUST / "hopperCertChain.txt"),
                      "HEX": "{nvtrust_nonce}", "DIR": str(FIXTURES / "nvidia" / "rims")}),
        Variant(3, "an NVSwitch's evidence (LS10) verified as a switch's, appraised against its switch RIM judged "
                   "now: signature, chain, nonce and 31 of 31 indices hold, revocation unknown (no OCSP answers)",
                keep=frozenset({"--chain", "--nonce", "--rims"}),
                fill={"FILE": str(LS10 / "switchAttestationReport.txt"), "PEM": str(LS10 / "switchCertChain.txt"),
                      "HEX": "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb",
                      "DIR": str(FIXTURES / "nvidia" / "rims")}),
        Variant(0, "a real report's 8 GPUs with the nonce, NRAS answer, NVIDIA's JWKS and the capture time",
                keep=frozenset({"--nonce", "--nras-response"}),
                fill={"FILE": str(VENICE / "attestation_report.json"), "HEX": "{nonce}",
                      ("--nras-response", "F"): str(VENICE / "nras_response.json"),
                      ("--jwks", "F"): str(VENICE / "nras_jwks.json"), "T": VENICE_AT}),
    ],
    "phalanb bench-latency --n 50 [--csv FILE] [--plot FILE.png]": [
        Variant(0, "50 chats, a CSV and a plot", keep="*", base_url="model_server", api_key=True,
                fill={"FILE": "bench.csv", "FILE.png": "bench.png"}),
    ],
    "phalanb probe-window [--horizon 1800] [--plot FILE.png]": [
        Variant(0, "finds the local model server's 2 s signature window", base_url="model_server", api_key=True,
                keep="*", fill={"FILE.png": "window.png"}),
    ],
    "phalanb sim [...]": Special("sim", "test_readme_sim_prints_its_base_url_first_and_serves_it (the README's "
                                        "`phalanb sim --seed 1 …` is this row with options)"),
    "phalanb lab": Special("lab", "test_readme_lab_starts_both_simulators_and_prints_their_urls"),
}

NVTRUST_NONCE = "931d8dd0add203ac3d8b4fbde75e115278eefcdceac5b87671a748f32364dfcb"


INTRO_CHAT = 'phalanb chat "Hello" --save reply.phalanb.json'


@pytest.fixture(scope="module")
def table_context(blocks, gateway, model_server):
    """Values the placeholders are filled with; BUNDLE is the one the README's intro block saves (in a folder of
    its own, for PATHS...)."""
    block, pos = next((b, p) for b, p, c in blocks.commands if c == INTRO_CHAT)
    assert blocks.result(block, pos).returncode == 0
    d = blocks.cwd(block) / "bundles"
    d.mkdir(exist_ok=True)
    shutil.copy(blocks.cwd(block) / "reply.phalanb.json", d)
    d = d / "reply.phalanb.json"
    return {"gateway": gateway.base_url, "model_server": model_server.base_url, "bundle": str(d),
            "bundles": str(d.parent), "nonce": venice_nonce(), "address": venice_address(),
            "nvtrust_nonce": NVTRUST_NONCE}


def test_every_commands_table_row_is_run_or_handled():
    shown = set(table_commands(README))
    assert shown, "no phalanb command found in README.md's Commands table"
    assert shown == set(TABLE), (f"not run here: {sorted(shown - set(TABLE))}; "
                                 f"no longer in the README: {sorted(set(TABLE) - shown)}")


def table_cases():
    for template in table_commands(README):
        how = TABLE.get(template)
        if isinstance(how, list):
            for i, v in enumerate(how):
                yield pytest.param(template, v, id=f"{template.split()[1]}-{i}")
        else:
            yield pytest.param(template, how, id=f"{template.split()[1]}-handled")


@pytest.mark.parametrize("template,variant", list(table_cases()))
def test_commands_table_row_runs_with_its_placeholders_filled(tmp_path, table_context, template, variant):
    assert variant is not None, f"a new Commands table row: run it in TABLE or handle it: {template!r}"
    if isinstance(variant, Special):
        pytest.skip(f"run by {variant.why}")
    argv = fill(template, variant, table_context)
    if variant.base_url:
        argv += ["--base-url", table_context[variant.base_url]]
    argv += [a.format(**table_context) for a in variant.extra]
    env = user_env(PHALANB_API_KEY=TEST_API_KEY) if variant.api_key else user_env()
    proc = run(phalanb_exe() + argv[1:], tmp_path, env)
    assert_outcome(proc, Run(variant.expect, variant.why, variant.sim_roots_only), shlex.join(argv))
    for out in (a for a in argv if a.endswith((".csv", ".png", ".phalanb.json"))):
        assert (tmp_path / out).stat().st_size > 0, f"{out} was not written"


# ---------------------------------------------------------------------------------------------------------------
# The ```python blocks ("From Python", E2EE): each run as a script in a fresh interpreter against a local simulator.
# Every change to the README's text is an exact substitution listed here (each must occur exactly once, so README
# drift fails instead of silently running something else), plus a prelude for names a fragment takes as given and
# an epilogue that reports the verdict as JSON for the assertions.

POLICY_IMPORT = "from phalanb.policy import Policy\n"
REPORT = ("\nimport json as _json\nprint('README-VERDICT', _json.dumps({{'status': verdict.status, "
          "'checks': {{c.id: c.status.value for c in verdict.checks}}}}))\n")  # a str.format template


@dataclass(frozen=True)
class PyExample:
    """``marker``: the block's first line; ``service``: the simulator it talks to; ``replace``: the substitutions;
    ``simulator_policy``: also run with ``policy=Policy.for_simulator()`` added to its verify call, which must then
    pass every check (production trust alone fails on the simulated roots, as it must)."""
    why: str
    service: str
    replace: tuple[tuple[str, str], ...] = ()
    prelude: str = ""
    epilogue: str = REPORT
    simulator_policy: tuple[str, str] | None = None


PYTHON: dict[str, PyExample] = {
    "from phalanb.gateway import verify_aci       # ACI with the deep audit of the upstream's evidence": PyExample(
        "the ACI example: the real gateway's URL → a local ACI gateway simulator", "gateway",
        replace=(('base_url="https://api.redpill.ai/v1"', 'base_url="{url}"'),),
        simulator_policy=('host="api.redpill.ai")', 'host="api.redpill.ai", policy=Policy.for_simulator())')),
    "import phalanb": PyExample(
        "the vllm-proxy example: the real service's URL → a local model server simulator", "model_server",
        replace=(('base_url="https://api.redpill.ai/v1"', 'base_url="{url}"'),),
        simulator_policy=("nonce=attestation.nonce)", "nonce=attestation.nonce, policy=Policy.for_simulator())")),
    "import openai": PyExample(
        "the OpenAI SDK example: its `...` placeholders filled (the local model server, the key from the "
        "environment, its model, one message); the epilogue verifies the recorded exchange 'exactly as above'",
        "model_server",
        replace=(("base_url=...", 'base_url="{url}"'), ("api_key=...", 'api_key=os.environ["PHALANB_API_KEY"]'),
                 ("model=...", f'model="{REAL_MODEL}"'),
                 ("messages=[...]", 'messages=[{{"role": "user", "content": "Hi"}}]')),
        prelude="import os\n",
        epilogue=("\n" + POLICY_IMPORT + "from phalanb.wire.client import Client\nfrom phalanb.vllm.verify import "
                  "verify_exchange\nfrom phalanb.vllm.signatures import fetch_signature\nassert exchange.complete and exchange.text == reply\n"
                  f'with Client(base_url="{{url}}", model="{REAL_MODEL}") as client:\n'
                  "    signature = fetch_signature(client, exchange.chat_id)\n    attestation = client.attestation()\n"
                  "verdict = verify_exchange(exchange, signature, attestation.report, nonce=attestation.nonce, "
                  "policy=Policy.for_simulator())\n" + REPORT)),
    "from phalanb.aci import AttestedE2EEKey, verify_aci_report": PyExample(
        "the E2EE fragment: the prelude gives it the `client` (a local ACI gateway) and `policy` (the simulator's) "
        "it takes as given", "gateway",
        prelude=(POLICY_IMPORT + "from phalanb.wire.client import Client\n"
                 f'client = Client(base_url="{{url}}", model="{REAL_MODEL}")\npolicy = Policy.for_simulator()\n')),
}


def python_script(block: str, example: PyExample, url: str, *, simulator_policy: bool) -> str:
    code = block
    for old, new in example.replace + ((example.simulator_policy,) if simulator_policy else ()):
        assert code.count(old) == 1, f"the README's example no longer contains {old!r} exactly once"
        code = code.replace(old, new.format(url=url))
    prelude = example.prelude.format(url=url) + (POLICY_IMPORT if simulator_policy else "")
    return prelude + code + example.epilogue.format(url=url)


def python_cases():
    for block in python_blocks(README):
        first = block.splitlines()[0]
        example = PYTHON.get(first)
        yield pytest.param(block, example, False, id=f"{first[:40]}-as-written")
        if example and example.simulator_policy:
            yield pytest.param(block, example, True, id=f"{first[:40]}-simulator-policy")


def test_every_python_block_is_run():
    firsts = [b.splitlines()[0] for b in python_blocks(README)]
    assert firsts and sorted(firsts) == sorted(PYTHON), f"README python blocks: {firsts}; run here: {list(PYTHON)}"


@pytest.mark.parametrize("block,example,simulator_policy", list(python_cases()))
def test_readme_python_example_runs(tmp_path, gateway, model_server, block, example, simulator_policy):
    assert example is not None, f"a new README python block: run it in PYTHON: {block.splitlines()[0]!r}"
    url = {"gateway": gateway, "model_server": model_server}[example.service].base_url
    script = tmp_path / "example.py"
    script.write_text(python_script(block, example, url, simulator_policy=simulator_policy))
    proc = run([sys.executable, str(script)], tmp_path, user_env(PHALANB_API_KEY=TEST_API_KEY))
    assert_reads_cleanly(proc, example.why)
    assert proc.returncode == 0, f"{example.why}:\n{proc.stdout[-2000:]}\n{proc.stderr[-3000:]}"
    line = re.search(r"^README-VERDICT (.*)$", proc.stdout, re.MULTILINE)
    assert line, proc.stdout[-2000:]
    result = json.loads(line.group(1))
    failed = {k for k, v in result["checks"].items() if v == "fail"}
    if example.simulator_policy and not simulator_policy:
        # Production trust: the simulator's evidence fails exactly where its roots are simulated, nowhere else.
        assert result["status"] == "failed" and failed and failed <= SIMULATED_ROOT_CHECKS, result
    else:
        assert not failed, result  # no collateral is fetched by these examples: incomplete at worst, never failed
        assert result["status"] in ("verified", "incomplete")
    if "AttestedE2EEKey" in block.splitlines()[0]:  # the E2EE fragment proves the round trip
        ids = (("e2ee.model_key", "e2ee.request_sealed", "e2ee.open") if "e2ee.model_key" in result["checks"]
               else ("e2ee.key_attested", "e2ee.request_encrypted", "e2ee.response_authenticated"))
        assert {result["checks"][c] for c in ids} == {"pass"}


# ---------------------------------------------------------------------------------------------------------------
# Commands named in the prose (inline code outside the blocks and the table): a full command line runs like a
# table row; a bare name is a mention of a command run above, and says where.

CHUTES = FIXTURES / "field" / "chutes-direct-glm5-2026-06"  # Chutes evidence with its /e2e/instances answer


@dataclass(frozen=True)
class Mention:
    where: str


def prose_commands(text: str) -> list[str]:
    text = re.sub(r"^```.*?^```", "", text, flags=re.MULTILINE | re.DOTALL)
    text = "\n".join(line for line in text.splitlines() if not line.startswith("| `phalanb"))
    return list(dict.fromkeys(" ".join(m.split()) for m in re.findall(r"`(phalanb\s[^`]+)`", text)))


ACI_FILES = {"RECEIPT": "{receipt}", "REPORT": "{report}", "HEX": "{aci_nonce}", ("--request", "FILE"): "{request}",
             ("--response", "FILE"): "{response}", ("--session", "FILE"): "{session}"}

PROSE: dict[str, list[Variant] | Mention] = {
    "phalanb demo": Mention("the intro and Quickstart blocks"),
    "phalanb sim": Mention("test_readme_sim_prints_its_base_url_first_and_serves_it"),
    "phalanb demo --save": Mention("the Commands table's demo row (run with --save FILE)"),
    "phalanb chat --save": Mention("the Commands table's chat row (run with --save FILE) and the intro block"),
    "phalanb report": Mention("the Commands table's report row"),
    "phalanb audit": Mention("the Commands table's audit row; tests/test_batch_frames.py audits .pbatch batches"),
    "phalanb gpu": Mention("the Commands table's gpu row (exit 3 without an NRAS answer, as this sentence says)"),
    "phalanb verify": Mention("the intro and 'Against a real service' blocks"),
    "phalanb demo --rims fetch": [
        Variant(0, "the embedded ACI gateway: the upstream model server's GPUs appraised against the RIMs and OCSP "
                   "answers fetched from the simulator's own RIM service and OCSP responder; every check holds"),
    ],
    "phalanb report FILE": Mention("the Commands table's report row without options"),
    "phalanb report --e2e-instances FILE": [
        Variant(3, "a real Chutes evidence answer (the report the fragment leaves to the reader) with its "
                   "/e2e/instances answer, nonce and collateral: bound and fresh; no NRAS answer and no event log "
                   "leave it incomplete", fill={"FILE": str(CHUTES / "e2e_instances.json")},
                extra=(str(CHUTES / "evidence.json"), "--nonce", "{chutes_nonce}",
                       "--collateral", str(CHUTES / "collateral.json"), "--at", "1782698845")),
    ],
    "phalanb receipt RECEIPT --report REPORT --nonce HEX --request FILE --response FILE --session FILE": [
        Variant(1, "a receipt, report, nonce, exact bytes and session saved from a local ACI gateway: under the "
                   "default production trust it fails on the simulated roots alone", fill=ACI_FILES,
                sim_roots_only=True),
        Variant(3, "the same under the simulator's roots (--trust simulated added): nothing fails; the command "
                   "gives no collateral, so the TCB status stays unchecked (incomplete)",
                fill=ACI_FILES, extra=("--trust", "simulated")),
    ],
    "phalanb session FILE --id ID": [
        Variant(1, "a session saved from a local ACI gateway, with the id its receipt cites: production trust "
                   "fails on the simulated roots alone", fill={"FILE": "{session}", "ID": "{session_id}"},
                sim_roots_only=True),
        Variant(3, "the same under the simulator's roots (--trust simulated added): nothing fails; without "
                   "--served-at and collateral the window and TCB status stay unchecked (incomplete)",
                fill={"FILE": "{session}", "ID": "{session_id}"}, extra=("--trust", "simulated")),
    ],
}


@pytest.fixture(scope="module")
def prose_context(table_context, gateway, tmp_path_factory):
    """Files a user saves from an ACI gateway for ``phalanb receipt``/``session``, byte-exact as fetched."""
    from phalanb.aci.receipt import parse_receipt
    from phalanb.wire.client import Client

    d = tmp_path_factory.mktemp("aci")
    with Client(base_url=gateway.base_url, model=REAL_MODEL, api_key=TEST_API_KEY) as client:
        exchange = client.chat("What is your model name?")
        attestation = client.aci_attestation()
        receipt = client.receipt(exchange.receipt_id)
        (sid,) = parse_receipt(receipt.document).cited_session_ids
        session = client.session(sid)
    files = {"receipt": receipt.raw, "report": attestation.raw, "request": exchange.request_bytes,
             "response": exchange.response_bytes, "session": session.raw}
    for name, raw in files.items():
        (d / name).write_bytes(raw)
    return {**table_context, **{k: str(d / k) for k in files}, "aci_nonce": attestation.nonce.hex(),
            "session_id": sid, "chutes_nonce": (CHUTES / "client_nonce.txt").read_text().strip()}


def test_every_prose_command_is_run_or_mentioned():
    shown = set(prose_commands(README))
    assert shown == set(PROSE), (f"not run here: {sorted(shown - set(PROSE))}; "
                                 f"no longer in the README: {sorted(set(PROSE) - shown)}")


def prose_cases():
    for command in prose_commands(README):
        how = PROSE.get(command)
        if isinstance(how, list):
            for i, v in enumerate(how):
                yield pytest.param(command, v, id=f"{command.split()[1]}-{i}")
        elif how is None:
            yield pytest.param(command, None, id=f"{command}-unknown")


@pytest.mark.parametrize("template,variant", list(prose_cases()))
def test_prose_command_runs_with_its_placeholders_filled(tmp_path, prose_context, template, variant):
    test_commands_table_row_runs_with_its_placeholders_filled(tmp_path, prose_context, template, variant)
