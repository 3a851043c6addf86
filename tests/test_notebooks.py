"""The guided notebooks: each runs top to bottom against a simulator this test session starts, each .ipynb is the
twin of its py:percent script and carries no outputs, and a notebook's teaching assertion fails when the thing it
teaches is broken.

The notebooks run in parallel kernels (two cores are enough for the whole set well under three minutes). Each
kernel gets PHALANB_BASE_URL / PHALANB_TRUST=simulated and the test API key in its environment; the executed
notebooks are written under tmp_path, where the session-wide leak check greps them for that key.
"""

from __future__ import annotations

import os
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import jupytext
import nbformat
import pytest
from nbclient import NotebookClient
from nbclient.exceptions import CellExecutionError

REPO = Path(__file__).resolve().parent.parent
NOTEBOOKS = REPO / "notebooks"
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
CELL_TIMEOUT = 120
WORKERS = 3


def execute(path: Path, env: dict[str, str], *, inject: str | None = None,
            edit: tuple[str, str] | None = None) -> tuple[nbformat.NotebookNode, float]:
    """Run a notebook in a fresh kernel (cwd = notebooks/). ``inject`` is code placed right after the cell tagged
    ``parameters`` (as papermill does); ``edit`` replaces one exact piece of code in the one cell holding it. Both
    exist to break what the notebook teaches."""
    nb = nbformat.read(path, as_version=4)
    if edit is not None:
        holders = [c for c in nb.cells if c.cell_type == "code" and edit[0] in c.source]
        assert len(holders) == 1, f"{path.name}: {edit[0]!r} is in {len(holders)} cells"
        holders[0].source = holders[0].source.replace(edit[0], edit[1])
    if inject is not None:
        at = next(i for i, c in enumerate(nb.cells) if "parameters" in c.get("metadata", {}).get("tags", []))
        nb.cells.insert(at + 1, nbformat.v4.new_code_cell(inject))
    client = NotebookClient(nb, timeout=CELL_TIMEOUT, kernel_name="python3",
                            resources={"metadata": {"path": str(NOTEBOOKS)}})
    start = time.perf_counter()
    client.execute(env=env)
    return nb, time.perf_counter() - start


@pytest.fixture(scope="session")
def kernel_env(api_key, fixtures, tmp_path_factory):
    from phalanb.sim import SimConfig, Simulator

    with Simulator(SimConfig(seed=2026, ttft_ms=0, tokens_per_second=0, api_key=api_key)) as sim:
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHALANB_", "REDPILL_"))}
        env.update(PHALANB_BASE_URL=sim.base_url, PHALANB_TRUST="simulated", PHALANB_API_KEY=api_key,
                   # the notebooks' own copy of the fixtures (what Binder has); test_fixture_copy_is_exact below
                   # proves it is the real evidence, byte for byte
                   PHALANB_FIXTURES=str(NOTEBOOKS / "data" / "fixtures"),
                   MPLBACKEND="module://matplotlib_inline.backend_inline",
                   PYDEVD_DISABLE_FILE_VALIDATION="1",
                   # temporary files the notebooks write (audit folders…) land where the key-leak check looks
                   TMPDIR=str(tmp_path_factory.mktemp("kernel-tmp")))
        yield env


@pytest.fixture(scope="session")
def executed(kernel_env, tmp_path_factory):
    """Every notebook, executed once, in parallel: name → (notebook or exception, seconds)."""
    out_dir = tmp_path_factory.mktemp("executed-notebooks")

    def run(name: str):
        try:
            nb, seconds = execute(NOTEBOOKS / f"{name}.ipynb", kernel_env)
        except Exception as exc:  # noqa: BLE001  (any failure is reported by the test of that notebook)
            return name, exc, 0.0
        nbformat.write(nb, out_dir / f"{name}.ipynb")
        return name, nb, seconds

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = {name: (nb, s) for name, nb, s in pool.map(run, NAMES)}
    results["_wall"] = (None, time.perf_counter() - start)
    return results


def test_there_are_eleven_notebooks_in_order():
    assert [n[:2] for n in NAMES] == [f"{i:02d}" for i in range(11)]


@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_top_to_bottom_against_the_simulator(executed, name):
    nb, _seconds = executed[name]
    if isinstance(nb, Exception):
        raise nb
    errors = [o for c in nb.cells if c.cell_type == "code" for o in c.get("outputs", []) if o.output_type == "error"]
    assert not errors, errors


def test_all_notebooks_together_take_under_three_minutes(executed):
    _, wall = executed["_wall"]
    each = ", ".join(f"{n[:2]} {s:.1f} s" for n, (_nb, s) in executed.items() if n != "_wall")
    print(f"\nnotebooks: {wall:.1f} s wall on {WORKERS} kernels ({each})")
    assert wall < 180, f"the notebooks took {wall:.0f} s ({each})"


@pytest.mark.parametrize("name", NAMES)
def test_ipynb_is_the_twin_of_its_py_percent_script_and_has_no_outputs(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.cell_type == "code":
            assert cell.outputs == [] and cell.execution_count is None, f"{name}: committed with outputs"
    assert "widgets" not in nb.metadata, f"{name}: committed with widget state"
    script = jupytext.read(NOTEBOOKS / f"{name}.py", fmt="py:percent")
    ours = [(c.cell_type, c.source.strip()) for c in nb.cells]
    theirs = [(c.cell_type, c.source.strip()) for c in script.cells]
    assert ours == theirs, f"{name}.ipynb and {name}.py differ: run `jupytext --sync notebooks/{name}.ipynb`"


@pytest.mark.parametrize("name", NAMES)
def test_notebook_has_navigation_learning_goals_and_a_closing_check(name):
    nb = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    first = nb.cells[0].source
    assert "Index" in first and ("Next" in first or name == NAMES[-1]), f"{name}: no Index/Next links on top"
    if not name.startswith("00"):
        assert "Back" in first and "00_start_here.ipynb" in first
    text = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    assert "What you will learn" in text and "Check yourself" in text
    for target in __import__("re").findall(r"\]\(([0-9][0-9]_[a-z_]+\.ipynb)\)", text):
        assert (NOTEBOOKS / target).is_file(), f"{name}: link to a missing notebook {target}"
    code = "\n".join(c.source for c in nb.cells if c.cell_type == "code")
    assert "assert " in code


# What each notebook teaches, broken on purpose: a parameter override (placed after the "parameters" cell) or a
# (old, new) edit of one cell. Each must make that notebook's own assertion fail.
BROKEN = {
    # hash rebuilt SSE lines instead of the bytes as received
    "01_chat_and_exact_bytes": 'HASH_OVER = "rebuilt lines"',
    # read the request body with one extra newline: "the same JSON", other bytes
    "02_hashing_and_signatures": ('request_bytes = (vector_dir / "request_body.json").read_bytes()',
                                  'request_bytes = (vector_dir / "request_body.json").read_bytes() + b"\\n"'),
    # check the simulator's quote against Intel's root instead of the root the policy pins
    "03_attestation_and_tdx_quote": ("root = tdx_root(session.policy)",
                                     "from phalanb.policy import Policy\nroot = tdx_root(Policy())"),
    # forget to compare the GPUs' nonce with ours
    "05_gpu_evidence": ("expected_nonce=result.attestation.nonce)", "expected_nonce=None)"),
    # build the ACI statement from a nonce we did not send
    "09_aci_gateway": ("ours = att.nonce.hex()", 'ours = "00" * 32'),
    # hash the session document as Python prints it instead of its canonical (JCS) bytes
    "10_reseller_chain": ("computed = hashlib.sha256(canonicalize(session_doc)).hexdigest()",
                          "computed = hashlib.sha256(json.dumps(session_doc).encode()).hexdigest()"),
}


def _break(name: str) -> tuple[str | None, tuple[str, str] | None]:
    how = BROKEN[name]
    return (how, None) if isinstance(how, str) else (None, how)


@pytest.mark.parametrize("name", sorted(BROKEN))
def test_teaching_assertion_fails_when_the_taught_thing_is_broken(kernel_env, name):
    inject, edit = _break(name)
    with pytest.raises(CellExecutionError) as info:
        execute(NOTEBOOKS / f"{name}.ipynb", kernel_env, inject=inject, edit=edit)
    assert "AssertionError" in str(info.value)


def test_fixture_copy_is_exact(fixtures):
    """notebooks/data/fixtures is a byte-for-byte copy of part of ../shared/fixtures, never an edited one."""
    copy = NOTEBOOKS / "data" / "fixtures"
    files = [p for p in copy.rglob("*") if p.is_file()]
    assert len(files) > 50 and (copy / "README.md").is_file()
    for p in files:
        original = fixtures / p.relative_to(copy)
        assert original.is_file(), f"{p} has no original in the shared fixtures"
        assert p.read_bytes() == original.read_bytes(), f"{p} differs from {original}"


def test_fixtures_are_found_without_the_shared_folder(tmp_path):
    from phalanb.lab import fixtures_path

    found = fixtures_path(environ={}, start=NOTEBOOKS)
    assert found is not None
    # Where ../../shared is absent (Binder), the notebooks' copy is used.
    import shutil
    nb = tmp_path / "repo" / "notebooks"
    shutil.copytree(NOTEBOOKS / "data" / "fixtures", nb / "data" / "fixtures")
    assert fixtures_path(environ={}, start=nb) == (nb / "data" / "fixtures").resolve()
