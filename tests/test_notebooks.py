"""The guided notebooks: each runs top to bottom against a simulator this test session starts, each .ipynb is the
twin of its py:percent script (in notebooks/py/) and carries no outputs, and a notebook's teaching assertion fails
when the thing it teaches is broken.

The notebooks run as a user runs them: in a plain kernel, with no ``MPLBACKEND`` set by the test (ipykernel's own
default applies), and every figure must arrive as an image, never as ``<Figure size …>`` text. After Run All, each
notebook with a "Check yourself" solution gets one more cell, ``solution()``, as the reader would type it.

The notebooks run in parallel kernels (two cores are enough for the whole set well under three minutes). Each
kernel gets PHALANB_BASE_URL / PHALANB_TRUST=simulated and the test API key in its environment; the executed
notebooks are written under tmp_path, where the session-wide leak check greps them for that key.
"""

from __future__ import annotations

import ast
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
SCRIPTS = NOTEBOOKS / "py"  # the Jupytext twins, out of the notebook folder's listing
NAMES = sorted(p.stem for p in NOTEBOOKS.glob("[0-9][0-9]_*.ipynb"))
SOLVE = "solution()"  # what the reader types after Run All to see a worked answer
CELL_TIMEOUT = 120
WORKERS = 3


def solution_cells(nb: nbformat.NotebookNode) -> list[nbformat.NotebookNode]:
    return [c for c in nb.cells if "solution" in c.get("metadata", {}).get("tags", [])]


def execute(path: Path, env: dict[str, str], *, inject: str | None = None, edit: tuple[str, str] | None = None,
            then: str | None = None) -> tuple[nbformat.NotebookNode, float]:
    """Run a notebook in a fresh kernel (cwd = notebooks/). ``inject`` is code placed right after the cell tagged
    ``parameters`` (as papermill does); ``edit`` replaces one exact piece of code in the one cell holding it. Both
    exist to break what the notebook teaches. ``then`` is a cell appended at the end: what a reader types after
    Run All."""
    nb = nbformat.read(path, as_version=4)
    if then is not None:
        nb.cells.append(nbformat.v4.new_code_cell(then, metadata={"tags": ["typed-after-run-all"]}))
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

    # As `phalanb lab` runs them: today's ACI gateway at PHALANB_BASE_URL, a model server for 01-07.
    with Simulator(SimConfig(seed=2026, ttft_ms=0, tokens_per_second=0, api_key=api_key, protocol="aci")) as sim, \
            Simulator(SimConfig(seed=2026, ttft_ms=0, tokens_per_second=0, api_key=api_key,
                                protocol="legacy")) as model_server:
        # No MPLBACKEND: a user's kernel has none, and a figure must not need one to show as an image.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("PHALANB_", "REDPILL_", "MPLBACKEND"))}
        env.update(PHALANB_BASE_URL=sim.base_url, PHALANB_MODEL_SERVER_URL=model_server.base_url,
                   PHALANB_TRUST="simulated", PHALANB_API_KEY=api_key,
                   # the real fixtures this run uses (../shared/fixtures, or the cache fetched and checked by sha256)
                   PHALANB_FIXTURES=str(fixtures),
                   PYDEVD_DISABLE_FILE_VALIDATION="1",
                   # temporary files the notebooks write (audit folders…) land where the key-leak check looks
                   TMPDIR=str(tmp_path_factory.mktemp("kernel-tmp")))
        yield env


@pytest.fixture(scope="session")
def executed(kernel_env, tmp_path_factory):
    """Every notebook, executed once, in parallel: name → (notebook or exception, seconds)."""
    out_dir = tmp_path_factory.mktemp("executed-notebooks")

    def run(name: str):
        path = NOTEBOOKS / f"{name}.ipynb"
        then = SOLVE if solution_cells(nbformat.read(path, as_version=4)) else None
        try:
            nb, seconds = execute(path, kernel_env, then=then)
        except Exception as exc:  # noqa: BLE001  (any failure is reported by the test of that notebook)
            return name, exc, 0.0
        nbformat.write(nb, out_dir / f"{name}.ipynb")
        return name, nb, seconds

    start = time.perf_counter()
    with ThreadPoolExecutor(max_workers=WORKERS) as pool:
        results = {name: (nb, s) for name, nb, s in pool.map(run, NAMES)}
    results["_wall"] = (None, time.perf_counter() - start)
    return results


def test_there_are_twelve_notebooks_in_order():
    assert [n[:2] for n in NAMES] == [f"{i:02d}" for i in range(12)]


def test_jupyterlab_lists_each_notebook_once():
    # The py:percent twins live in notebooks/py/, so the notebook folder holds one file per notebook.
    assert not list(NOTEBOOKS.glob("[0-9][0-9]_*.py")), "a Jupytext twin is beside its notebook again"
    assert sorted(p.stem for p in SCRIPTS.glob("[0-9][0-9]_*.py")) == NAMES
    assert 'formats = "ipynb,py//py:percent"' in (NOTEBOOKS / "jupytext.toml").read_text()


def _figures_shown_as_text(nb: nbformat.NotebookNode) -> list[str]:
    """Outputs a reader would see as ``<Figure size 800x400 with 1 Axes>``: a figure with no image beside it."""
    bad = []
    for i, cell in enumerate(nb.cells):
        for out in cell.get("outputs", []):
            data = out.get("data", {})
            text = data.get("text/plain", "")
            text = "".join(text) if isinstance(text, list) else text
            if text.lstrip().startswith("<Figure") and not ({"image/png", "image/svg+xml"} & set(data)):
                bad.append(f"cell {i}: {text.strip()[:60]}")
            if out.get("output_type") == "stream" and "<Figure size" in out.get("text", ""):
                bad.append(f"cell {i} printed {out['text'].strip()[:60]}")
    return bad


def _images(nb: nbformat.NotebookNode) -> int:
    return sum("image/png" in o.get("data", {}) or "image/svg+xml" in o.get("data", {})
               for c in nb.cells for o in c.get("outputs", []))


@pytest.mark.parametrize("name", NAMES)
def test_every_figure_is_shown_as_an_image_in_a_plain_kernel(executed, name):
    nb, _seconds = executed[name]
    if isinstance(nb, Exception):
        raise nb
    assert not _figures_shown_as_text(nb), _figures_shown_as_text(nb)


def test_the_figure_notebooks_really_show_images(executed):
    # 03: the quote's byte map; 06: token timeline, latency histograms, signature window, and the solution's window
    for name, at_least in (("03_attestation_and_tdx_quote", 1), ("06_timing", 4)):
        nb, _ = executed[name]
        if isinstance(nb, Exception):
            raise nb
        assert _images(nb) >= at_least, f"{name}: {_images(nb)} images"


def test_figures_are_images_even_with_mplbackend_agg(kernel_env):
    # A user whose shell exports MPLBACKEND=agg (common on servers) still sees every figure of the timing notebook.
    # (Without MPLBACKEND, ipykernel picks the inline backend: that is the run of every notebook above.)
    nb, _ = execute(NOTEBOOKS / "06_timing.ipynb", {**kernel_env, "MPLBACKEND": "agg"})
    assert not _figures_shown_as_text(nb) and _images(nb) >= 3


@pytest.mark.parametrize("name", NAMES)
def test_check_yourself_never_answers_itself_on_run_all(executed, name):
    """A solution cell is tagged, collapsed, and only *defines* ``solution()``: Run All prints and shows nothing
    from it. Typed after Run All, ``solution()`` runs without error (its own assertions hold)."""
    source = nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4)
    cells = solution_cells(source)
    text = "\n".join(c.source for c in source.cells if c.cell_type == "markdown")
    if not cells:
        return
    assert len(cells) == 1 and SOLVE[:-2] in text, f"{name}: the Check yourself text must say to type {SOLVE}"
    cell = cells[0]
    assert cell.metadata.get("jupyter", {}).get("source_hidden") is True, f"{name}: the solution is not collapsed"
    tree = ast.parse(cell.source)
    assert [type(n).__name__ for n in tree.body] == ["FunctionDef"] and tree.body[0].name == "solution"
    nb, _ = executed[name]
    if isinstance(nb, Exception):
        raise nb
    ran = solution_cells(nb)[0]
    assert ran.outputs == [], f"{name}: Run All showed something from the solution cell"
    typed = nb.cells[-1]
    assert typed.source == SOLVE and typed.outputs and not [o for o in typed.outputs if o.output_type == "error"]


@pytest.mark.parametrize("name", NAMES)
def test_opening_a_notebook_does_not_mark_it_modified(name):
    """The committed file is byte for byte what Jupyter saves (nbformat's writer, same minor version, a trailing
    newline), and it already holds the language_info the kernel announces, which JupyterLab would otherwise write
    into the notebook on opening (marking it modified)."""
    from ipykernel.ipkernel import IPythonKernel

    path = NOTEBOOKS / f"{name}.ipynb"
    raw = path.read_bytes()
    nb = nbformat.reads(raw.decode("utf-8"), as_version=nbformat.NO_CONVERT)
    again = nbformat.writes(nb, version=nbformat.NO_CONVERT)
    again += "" if again.endswith("\n") else "\n"
    assert again.encode("utf-8") == raw, f"{name}: Jupyter would save other bytes (re-write it with nbformat)"
    assert (nb.nbformat, nb.nbformat_minor) == (nbformat.current_nbformat, nbformat.current_nbformat_minor)
    assert all("id" in c for c in nb.cells)
    kernel_says = dict(IPythonKernel.language_info)
    committed = dict(nb.metadata.get("language_info", {}))
    # The patch version is the one Python the kernel runs; Binder and the tests pin 3.11.
    assert committed.pop("version", "").rsplit(".", 1)[0] == kernel_says.pop("version").rsplit(".", 1)[0]
    assert committed == kernel_says


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
    script = jupytext.read(SCRIPTS / f"{name}.py", fmt="py:percent")
    ours = [(c.cell_type, c.source.strip()) for c in nb.cells]
    theirs = [(c.cell_type, c.source.strip()) for c in script.cells]
    assert ours == theirs, f"{name}.ipynb and py/{name}.py differ: run `jupytext --sync notebooks/{name}.ipynb`"
    # Byte for byte what Jupytext writes from the notebook: JupyterLab's Jupytext refuses to open a notebook
    # that is newer than a twin that differs (and a git checkout gives both files arbitrary times).
    rendered = jupytext.writes(jupytext.read(NOTEBOOKS / f"{name}.ipynb"), fmt="py:percent")
    assert rendered == (SCRIPTS / f"{name}.py").read_text(), f"touch notebooks/{name}.ipynb, then jupytext --sync it"


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
    # run every fault against the model server, whatever protocol it belongs to (what the gallery once did)
    "08_failure_gallery": ('return "ACI over HTTPS" if need.get("https") else "ACI" if need.get("protocol") == "aci" '
                           'else "vllm-proxy"', 'return "vllm-proxy"'),
    # build the ACI statement from a nonce we did not send
    "09_aci_gateway": ("ours = att.nonce.hex()", 'ours = "00" * 32'),
    # hash the session document as Python prints it instead of its canonical (JCS) bytes
    "10_reseller_chain": ("computed = hashlib.sha256(canonicalize(session_doc)).hexdigest()",
                          "computed = hashlib.sha256(json.dumps(session_doc).encode()).hexdigest()"),
    # build the request AAD with the response's purpose: the hand-built AAD no longer equals phalanb's
    "11_what_the_wire_sees": ('aad_by_hand = json.dumps({"purpose": "aci.e2ee.request.v2"',
                              'aad_by_hand = json.dumps({"purpose": "aci.e2ee.response.v2"'),
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


def test_the_failure_gallery_shows_every_evidence_fault_of_both_protocols_failed(executed):
    """Read the gallery as rendered: every fault that changes evidence ends failed, each against its own protocol;
    only the declared rewrite and transport faults may end otherwise."""
    from phalanb.sim import FAULTS

    nb, _ = executed["08_failure_gallery"]
    assert not isinstance(nb, Exception), nb
    shown = "\n".join(o.get("data", {}).get("text/plain", "") for c in nb.cells for o in c.get("outputs", []))
    table = shown[shown.index("Every fault, against its own protocol"):]
    rows = {m.group(1): (m.group(2), m.group(3)) for m in
            __import__("re").finditer(r"^(\w+)\s+(vllm-proxy|ACI over HTTPS|ACI)\s+(\w+)", table, flags=8)}
    assert set(rows) == set(FAULTS)
    transport = {"chat_500", "signature_500", "attestation_500", "cut_stream", "signature_missing", "rate_limit",
                 "flaky_503", "hang", "truncated_json", "slow_drip"}
    for fault, (protocol, outcome) in rows.items():
        assert (protocol != "vllm-proxy") == fault.startswith("aci_"), (fault, protocol)
        if fault == "aci_rewrite_request":
            assert outcome == "verified"
        elif fault in transport:
            assert outcome in ("verified", "error"), (fault, outcome)
        else:
            assert outcome == "failed", (fault, outcome)


def test_notebooks_find_the_fetched_cache_without_the_shared_folder(tmp_path, monkeypatch, fixtures):
    """Where ../shared is absent (Binder, a fresh clone) the notebooks read the cache phalanb.fixtures filled, and
    only once it is complete and every file matches the manifest."""
    import shutil

    from phalanb.lab import fixtures_path

    monkeypatch.chdir(tmp_path)  # fixtures_path also looks beside the working directory: keep that out of it
    monkeypatch.setattr("phalanb.fixtures.CHECKOUT", tmp_path / "clone")
    nb = tmp_path / "clone" / "notebooks"
    nb.mkdir(parents=True)
    cache = tmp_path / "cache"
    env = {"PHALANB_FIXTURES_CACHE": str(cache)}
    assert fixtures_path(environ=env, start=nb) is None  # nothing there: the notebook says how to fetch them
    shutil.copytree(fixtures, cache)
    assert fixtures_path(environ=env, start=nb) == cache.resolve()
    (cache / "tdx" / "ground_truth.json").write_text("{}")  # one edited file: not the evidence any more
    assert fixtures_path(environ=env, start=nb) is None


def test_no_notebook_points_at_a_folder_the_repository_does_not_have():
    for script in sorted(SCRIPTS.glob("*.py")):
        text = script.read_text()
        assert "../shared" not in text and "data/fixtures" not in text, script.name


# -- notebooks teach without giving answers away (issue 21, item 7) ----------------------------------------------
def _cells(name: str) -> list:
    return nbformat.read(NOTEBOOKS / f"{name}.ipynb", as_version=4).cells


@pytest.mark.parametrize("name", NAMES)
def test_every_check_yourself_has_its_collapsed_solution(name):
    cells = _cells(name)
    if any("Check yourself" in c.source for c in cells if c.cell_type == "markdown"):
        assert len(solution_cells(nbformat.v4.new_notebook(cells=cells))) == 1, f"{name}: no solution() cell"


@pytest.mark.parametrize("name", NAMES)
def test_an_edit_this_cell_exercise_does_not_hold_its_answer(name):
    """The code cell a question asks the reader to edit asserts nothing: its answer is solution()'s."""
    cells = [c for c in _cells(name) if "solution" not in c.get("metadata", {}).get("tags", [])]
    for i, cell in enumerate(cells):
        if cell.cell_type == "markdown" and __import__("re").search(r"(?i)edit (the|this) cell below|the cell below "
                                                                    r"after editing", cell.source):
            exercise = next(c for c in cells[i + 1:] if c.cell_type == "code")
            assert "assert" not in exercise.source, f"{name}: the cell to edit already asserts the answer"


@pytest.mark.parametrize("name", NAMES)
def test_section_references_point_at_the_section_they_mean(name):
    import re

    text = "\n".join(c.source for c in _cells(name) if c.cell_type == "markdown")
    headers = dict(re.findall(r"^## (\d+)\. (.+)$", text, flags=re.MULTILINE))
    for number in re.findall(r"\bsections? (\d+)\b", text):
        assert number in headers, f"{name}: 'section {number}' has no '## {number}.' header"
    for number in re.findall(r"real capture in section (\d+)", text):
        assert "real capture" in headers[number].lower(), (name, number, headers[number])


JARGON = {  # term → words that must explain it where it first appears in the notebook
    "JCS": "Canonicalization", "u64::MAX": "largest unsigned 64-bit integer", "custody": "key management service",
    "preview": "two *shapes*",
}


def test_jargon_is_explained_where_it_first_appears():
    script = (SCRIPTS / "09_aci_gateway.py").read_text()
    for term, explanation in JARGON.items():
        first = script.index(term)
        assert explanation in script[max(0, first - 400):first + 400], f"{term!r} is not explained where it appears"


def test_one_hostname_per_service_and_left_aligned_tables():
    texts = [(p, p.read_text()) for p in [REPO / "README.md", *SCRIPTS.glob("*.py"), *(REPO / "phalanb").rglob("*.py")]]
    assert not [p.name for p, t in texts if "red-pill.ai" in t]  # api.redpill.ai, as ACI.md names it
    for name in ("09_aci_gateway", "10_reseller_chain", "11_what_the_wire_sees"):
        # pandas' HTML right-aligns text and cuts it at 50 characters; phalanb.widgets.table wraps it in full
        assert "pd.DataFrame(" not in (SCRIPTS / f"{name}.py").read_text(), name
