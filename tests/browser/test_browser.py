"""The notebooks and widgets as a user meets them: JupyterLab and Voila in headless Chromium (Debian's
``/usr/bin/chromium``, driven by Playwright; never a downloaded browser).

Each test saves a screenshot to ``test-artifacts/`` when it fails. The whole module runs in well under 3 minutes.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import shutil
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest

pytestmark = pytest.mark.browser

REPO = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO / "test-artifacts"
CHROMIUM = "/usr/bin/chromium"
# Flags the machine needs: no sandbox as root, and no background calls to Google's hosts on a closed network.
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run", "--disable-sync",
                 "--disable-background-networking", "--disable-component-update"]

SCRATCH = """
import os
from phalanb.tdx import parse_quote
from phalanb.widgets import QuoteExplorer
raw = (__import__("pathlib").Path(os.environ["PHALANB_FIXTURES"]) / "tdx/dcap-qvl/tdx_quote").read_bytes()
explorer = QuoteExplorer(parse_quote(raw))
explorer
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_http(url: str, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{log.read_text()[-3000:]}")
        try:
            if httpx.get(url, timeout=2).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer in {timeout} s:\n{log.read_text()[-3000:]}")


def _wait_port(port: int, proc: subprocess.Popen, log: Path, timeout: float = 90) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"the server exited early:\n{log.read_text()[-3000:]}")
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        time.sleep(0.3)
    raise RuntimeError(f"port {port} did not open in {timeout} s:\n{log.read_text()[-3000:]}")


@pytest.fixture(scope="module")
def browser():
    if not Path(CHROMIUM).exists():
        pytest.fail(f"{CHROMIUM} is missing: install Debian's chromium (.ci/run does: apt-get install chromium)")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield b
        b.close()


@pytest.fixture(scope="module")
def sim_for_browser():
    from phalanb.sim import SimConfig, Simulator

    # As `phalanb lab` runs: today's ACI gateway at PHALANB_BASE_URL (notebook 00), a model server for 01-07.
    with Simulator(SimConfig(seed=31, ttft_ms=20, tokens_per_second=200, protocol="aci")) as sim:
        yield sim


@pytest.fixture(scope="module")
def model_server_for_browser():
    from phalanb.sim import SimConfig, Simulator

    with Simulator(SimConfig(seed=32, ttft_ms=20, tokens_per_second=200, protocol="legacy")) as sim:
        yield sim


@pytest.fixture(scope="module")
def workdir(tmp_path_factory, fixtures):
    """A copy of the notebooks (the browser saves and runs them; the repository's copies stay clean)."""
    d = tmp_path_factory.mktemp("lab")
    shutil.copytree(REPO / "notebooks", d / "notebooks")
    import nbformat

    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(SCRATCH)]
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    nbformat.write(nb, d / "notebooks" / "browser_checks.ipynb")
    return d / "notebooks"


def _env(sim, model_server, fixtures) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PHALANB_API_KEY", "REDPILL_API_KEY")}
    env.update(PHALANB_BASE_URL=sim.base_url, PHALANB_MODEL_SERVER_URL=model_server.base_url,
               PHALANB_TRUST="simulated", PHALANB_FIXTURES=str(fixtures), JUPYTER_PLATFORM_DIRS="1")
    return env


@pytest.fixture(scope="module")
def lab(workdir, sim_for_browser, model_server_for_browser, fixtures, tmp_path_factory):
    port, token = _free_port(), secrets.token_hex(16)
    log = tmp_path_factory.mktemp("lablog") / "lab.log"
    cmd = [sys.executable, "-m", "jupyter", "lab", "--no-browser", f"--ServerApp.port={port}",
           "--ServerApp.ip=127.0.0.1", f"--IdentityProvider.token={token}", f"--ServerApp.root_dir={workdir}",
           "--LabApp.expose_app_in_browser=True", "--ServerApp.open_browser=False", "--allow-root",
           "--LabServerApp.workspaces_dir=" + str(workdir.parent / "workspaces")]
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir,
                                env=_env(sim_for_browser, model_server_for_browser, fixtures))
    try:
        _wait_http(f"http://127.0.0.1:{port}/api/status?token={token}", proc, log)
        yield f"http://127.0.0.1:{port}", token
    finally:
        _stop(proc)


@pytest.fixture
def page(browser, request):
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    pg = context.new_page()
    dialogs: list[str] = []
    pg.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    pg.dialogs = dialogs  # type: ignore[attr-defined]
    yield pg
    if getattr(request.node, "rep_call", None) is not None and request.node.rep_call.failed:
        ARTIFACTS.mkdir(exist_ok=True)
        pg.screenshot(path=str(ARTIFACTS / f"{request.node.name}.png"), full_page=True)
    context.close()


def _open_and_run_all(page, lab, name: str, timeout_s: float = 120, *, opened_clean: bool = False) -> None:
    url, token = lab
    # A workspace of its own, reset: no tab from an earlier test is open (or receives the commands).
    page.goto(f"{url}/lab/workspaces/t{secrets.token_hex(4)}/tree/{name}?reset&token={token}")
    idle = ("() => { const w = window.jupyterapp && window.jupyterapp.shell.currentWidget;"
            f" if (!w || !w.context || !w.context.path.endsWith({json.dumps(name)})) return false;"
            " const k = w.sessionContext && w.sessionContext.session && w.sessionContext.session.kernel;"
            " return !!k && k.connectionStatus === 'connected' && k.status === 'idle'; }")
    page.wait_for_function(idle, timeout=60_000)
    if opened_clean:
        # Opening a notebook and starting its kernel must not make it "modified" (the dot on its tab): the committed
        # file already holds what JupyterLab would write into it.
        page.wait_for_timeout(1000)
        assert page.evaluate("window.jupyterapp.shell.currentWidget.context.model.dirty") is False, \
            f"{name} is marked modified just by opening it"
    page.evaluate("window.jupyterapp.commands.execute('notebook:run-all-cells')")
    # Done when no cell is queued or running ("[*]") and the kernel is idle again.
    done = ("() => { const w = window.jupyterapp.shell.currentWidget;"
            " const busy = [...document.querySelectorAll('.jp-InputPrompt')].some(p => p.textContent.includes('*'));"
            " return !busy && w?.sessionContext?.session?.kernel?.status === 'idle'; }")
    page.wait_for_timeout(500)
    page.wait_for_function(done, timeout=timeout_s * 1000, polling=500)


def _errors_in(page) -> list[str]:
    return page.locator(".jp-OutputArea-output[data-mime-type='application/vnd.jupyter.stderr']").all_inner_texts()


def _badge(page, status_symbol: str, check_id: str):
    return page.locator("button.widget-button", has_text=re.compile(rf"^\s*{re.escape(status_symbol)} "
                                                                   rf"{re.escape(check_id)}\s*$"))


def test_start_here_runs_and_the_chat_panel_verifies_then_fails_on_a_fault(page, lab, sim_for_browser):
    _open_and_run_all(page, lab, "00_start_here.ipynb")
    tracebacks = page.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    assert tracebacks.count() == 0, tracebacks.all_inner_texts()[:1]
    send = page.locator("button.widget-button", has_text="Send and verify").last
    send.scroll_into_view_if_needed()
    assert _badge(page, "✓", "receipt.request_hash").count() == 0  # no badge before the panel has been used
    send.click()
    # The reply streams in, then every badge of the verdict appears; the key links of today's gateway pass.
    for check in ("receipt.request_hash", "receipt.response_hash", "receipt.signature", "aci.report_data",
                  "tdx.quote_signature", "upstream.gpu.cert_chain"):
        _badge(page, "✓", check).last.wait_for(timeout=60_000)
    # over plain http the optional channel.tls_spki is skipped: the summary says so, never "all … checks held"
    summary = page.get_by_text(re.compile(r"verified — verified: \d+ of \d+ checks held")).last
    assert summary.is_visible() and "channel.tls_spki" in summary.inner_text()
    # Now a man in the middle changes the reply after the gateway signed its receipt: the response-hash badge
    # turns red, and only that link is blamed.
    sim_for_browser.set_faults(["aci_tamper_response"])
    try:
        send.click()
        _badge(page, "✗", "receipt.response_hash").last.wait_for(timeout=60_000)
        _badge(page, "✓", "receipt.request_hash").last.wait_for(timeout=10_000)
        failed = page.locator("button.widget-button", has_text=re.compile(r"^\s*✗ ")).all_inner_texts()
        assert [t.strip() for t in failed[-1:]] == ["✗ receipt.response_hash"]
    finally:
        sim_for_browser.set_faults([])


def test_model_markup_is_shown_as_text_and_never_runs(page, lab, sim_for_browser):
    payload = '<img src=x onerror=alert(1)> <script>alert(2)</script>'
    sim_for_browser.config.reply = payload
    try:
        _open_and_run_all(page, lab, "00_start_here.ipynb")
        send = page.locator("button.widget-button", has_text="Send and verify").last
        assert _badge(page, "✓", "receipt.response_hash").count() == 0
        send.click()
        _badge(page, "✓", "receipt.response_hash").last.wait_for(timeout=60_000)
        reply = page.get_by_text("<img src=x onerror=alert(1)>", exact=False).last
        assert reply.is_visible()
        page.wait_for_timeout(500)
        assert page.dialogs == []  # type: ignore[attr-defined]
        assert page.locator(".jp-OutputArea img[src='x']").count() == 0
    finally:
        sim_for_browser.config.reply = None


def test_quote_explorer_highlights_the_selected_field(page, lab):
    _open_and_run_all(page, lab, "browser_checks.ipynb", timeout_s=60)
    select = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden) .widget-dropdown select").first
    select.wait_for(timeout=30_000)
    option = select.locator("option", has_text="report_data").first.get_attribute("value")
    select.select_option(option)
    marked = page.locator("pre span[style*='background:#ffd33d']")
    page.wait_for_function("() => document.body.innerText.includes('report_data — bytes 568..632')",
                           timeout=20_000)
    assert marked.count() == 64 * 2  # 64 bytes: each highlighted in the hex column and the text column


def _stop(proc: subprocess.Popen) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=20)
    except subprocess.TimeoutExpired:
        proc.kill()


@contextlib.contextmanager
def _voila_page(browser, workdir: Path, notebook: str, env: dict[str, str], log: Path, shot: str):
    """Voilà serving ``notebook`` and a browser page for it: (page, port, process). On a failure the page is kept
    as test-artifacts/``shot``; the page and the server are closed either way."""
    port = _free_port()
    cmd = [sys.executable, "-m", "voila", "--no-browser", f"--port={port}", "--Voila.ip=127.0.0.1",
           "--ServerApp.token=", "--ServerApp.allow_root=True", str(workdir / notebook)]
    with log.open("w") as fh:
        proc = subprocess.Popen(cmd, stdout=fh, stderr=subprocess.STDOUT, cwd=workdir, env=env)
    context = browser.new_context(viewport={"width": 1400, "height": 1000})
    page = context.new_page()
    try:
        yield page, port, proc
    except Exception:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / shot), full_page=True)
        raise
    finally:
        context.close()
        _stop(proc)


def test_voila_renders_the_start_here_dashboard(browser, workdir, sim_for_browser, model_server_for_browser, fixtures,
                                                tmp_path):
    log = tmp_path / "voila.log"
    env = _env(sim_for_browser, model_server_for_browser, fixtures)
    with _voila_page(browser, workdir, "00_start_here.ipynb", env, log, "voila.png") as (page, port, proc):
        _wait_http(f"http://127.0.0.1:{port}/", proc, log)
        page.goto(f"http://127.0.0.1:{port}/", timeout=120_000)
        send = page.locator("button.widget-button", has_text="Send and verify").last
        send.wait_for(timeout=120_000)
        send.click()
        _badge(page, "✓", "receipt.signature").last.wait_for(timeout=60_000)
    assert json.dumps(log.read_text()).count("Traceback") == 0, log.read_text()[-3000:]


# Notebooks with figures (and the start page), after Run All, as a reader sees them: every figure an image, no output
# a bare "<Figure size …>". A screenshot of the first figure (or the top) is kept in the test's tmp folder, and in
# test-artifacts/ when the test fails.
FIGURES = {"00_start_here.ipynb": 0, "03_attestation_and_tdx_quote.ipynb": 1, "05_gpu_evidence.ipynb": 0,
           "06_timing.ipynb": 3}


@pytest.mark.parametrize("name", sorted(FIGURES))
def test_after_run_all_every_figure_is_an_image(page, lab, name, tmp_path):
    _open_and_run_all(page, lab, name, timeout_s=180, opened_clean=True)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    as_text = panel.locator(".jp-OutputArea-output").filter(has_text=re.compile(r"^\s*<Figure size"))
    assert as_text.count() == 0, as_text.all_inner_texts()[:3]
    images = panel.locator(".jp-OutputArea-output.jp-RenderedImage img")
    assert images.count() >= FIGURES[name], f"{name}: {images.count()} figures rendered as images"
    for i in range(images.count()):  # decoded, with a real size (not a broken-image icon)
        assert images.nth(i).evaluate("img => img.complete && img.naturalWidth > 200"), f"figure {i} is broken"
    tracebacks = panel.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.stderr']")
    assert all("Traceback" not in t for t in tracebacks.all_inner_texts())
    if images.count():
        images.first.scroll_into_view_if_needed()
        page.wait_for_timeout(500)  # JupyterLab paints the cells now in view (content-visibility) before the shot
    shot = tmp_path / f"{name}.png"
    page.screenshot(path=str(shot))
    print(f"screenshot: {shot}")


def test_voila_shows_the_timing_figures_as_images(browser, workdir, sim_for_browser, model_server_for_browser,
                                                 fixtures, tmp_path):
    log = tmp_path / "voila.log"
    env = {k: v for k, v in _env(sim_for_browser, model_server_for_browser, fixtures).items() if k != "MPLBACKEND"}
    with _voila_page(browser, workdir, "06_timing.ipynb", env, log, "voila-06.png") as (page, port, proc):
        # Wait for the port, not for "/": each GET of "/" executes the whole notebook in a new kernel.
        _wait_port(port, proc, log)
        page.goto(f"http://127.0.0.1:{port}/", timeout=180_000)
        page.locator(".jp-RenderedImage img").nth(2).wait_for(timeout=180_000)
        assert page.get_by_text(re.compile(r"<Figure size")).count() == 0
        assert page.locator(".jp-RenderedImage img").count() >= 3


# -- what the pictures and tables say (issue 21): screenshots kept in test-artifacts/ and read back here ----------
def _shot(page, locator, name: str) -> Path:
    ARTIFACTS.mkdir(exist_ok=True)
    locator.scroll_into_view_if_needed()
    page.wait_for_timeout(500)  # JupyterLab paints the cells now in view before the shot
    path = ARTIFACTS / name
    locator.screenshot(path=str(path))
    print(f"screenshot: {path}")
    return path


def test_start_here_draws_the_skipped_tls_link_as_not_shown(page, lab):
    _open_and_run_all(page, lab, "00_start_here.ipynb", timeout_s=180)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    _show_output(page, "chain = TrustChainView(verdict)")
    chain = panel.locator("div:has(> div[data-link='request'])").first  # the first picture: the verified reply
    channel = chain.locator("div[data-link='channel']")
    assert channel.get_attribute("data-status") == "skipped"
    text = channel.text_content()
    assert "TLS key ∈ keyset" in text and "(not shown)" in text and "✓" not in text
    assert "channel.tls_spki skipped (optional)" in text and "no TLS key observed" in text
    # every other link of the verified reply held, and is drawn so
    others = chain.locator("div[data-link]:not([data-link='channel'])")
    assert set(others.evaluate_all("els => els.map(e => e.dataset.status)")) <= {"pass", "warning"}
    assert "verified" in chain.text_content() and "channel.tls_spki" in chain.text_content()
    _shot(page, chain, "nb00-trust-chain.png")


def _show_output(page, needle: str) -> None:
    """Scroll the notebook to the first cell whose source or output holds ``needle``: JupyterLab 4 keeps only the
    cells near the viewport in the page, so what is read must be brought into view first."""
    found = page.evaluate("""async (needle) => {
        const nb = window.jupyterapp.shell.currentWidget.content;
        const i = nb.widgets.findIndex(c => c.model.type === 'code' &&
            (c.model.sharedModel.source.includes(needle) || JSON.stringify(c.model.outputs.toJSON()).includes(needle)));
        if (i < 0) return -1;
        nb.activeCellIndex = i;
        await nb.scrollToItem(i, 'start');
        return i; }""", needle)
    assert found >= 0, f"no output holds {needle!r}"
    page.wait_for_timeout(800)


def _rendered_table(panel, caption: str) -> list[list[str]]:
    table = panel.locator("table", has=panel.page.locator("caption", has_text=caption)).last
    table.wait_for(timeout=60_000)
    return [[c.strip() for c in row] for row in
            table.locator("tbody tr").evaluate_all("rows => rows.map(r => [...r.cells].map(c => c.textContent))")]


def test_the_failure_gallery_shows_every_evidence_fault_failed_against_its_own_protocol(page, lab):
    _open_and_run_all(page, lab, "08_failure_gallery.ipynb", timeout_s=240)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    tracebacks = panel.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    assert tracebacks.count() == 0, tracebacks.all_inner_texts()[:1]
    caption = "Every fault, against its own protocol, and the verdict it earns"
    _show_output(page, caption)
    rows = {r[0]: r for r in _rendered_table(panel, caption)}
    aci = {name: r for name, r in rows.items() if name.startswith("aci_")}
    assert len(aci) == 10 and all(r[1].startswith("ACI") for r in aci.values())
    for name, (_f, _proto, outcome, says) in aci.items():
        if name == "aci_rewrite_request":
            assert outcome == "verified" and says == "receipt.rewrite warning"
        else:
            assert outcome == "failed", (name, outcome)
    assert rows["aci_tamper_response"][3] == "receipt.response_hash fail"
    for name in ("tamper_response", "tamper_request", "wrong_signing_key", "ignore_nonce", "stale_quote",
                 "debug_td", "wrong_compose_hash", "gpu_nonce_mismatch"):
        assert rows[name][1] == "vllm-proxy" and rows[name][2] == "failed", rows[name]
    table = panel.locator("table", has=page.locator("caption", has_text=caption)).last
    _shot(page, table, "nb08-gallery.png")


def test_the_aci_notebook_names_what_was_skipped_beside_verified(page, lab):
    _open_and_run_all(page, lab, "09_aci_gateway.ipynb", timeout_s=180)
    panel = page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")
    tracebacks = panel.locator(".jp-RenderedText[data-mime-type='application/vnd.jupyter.error']")
    assert tracebacks.count() == 0, tracebacks.all_inner_texts()[:1]
    _show_output(page, "every required one among them")
    summary = panel.locator(".jp-OutputArea-output", has_text=re.compile(r"verified: \d+ of \d+ checks held")).last
    text = summary.text_content()
    assert "all" not in text.split(":")[1].split("(")[0]  # never "all N checks held" with a check skipped
    assert "skipped, optional (does not decide the verdict): channel.tls_spki" in text
    _shot(page, summary, "nb09-verdict.png")
