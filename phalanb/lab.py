"""``phalanb lab``: the simulator and JupyterLab on the guided notebooks, in one command.

Two simulators run in this process (background threads), one per protocol: today's ACI gateway (in front of its
own simulated model server) and a model server alone. JupyterLab runs as a child process started in
``notebooks/`` with ``PHALANB_BASE_URL`` (the gateway), ``PHALANB_MODEL_SERVER_URL`` (the model server, for the
notebooks that open up its protocol) and ``PHALANB_TRUST=simulated`` in its environment, so every notebook's
``Settings.from_env(...)`` talks to one of them. Stopping JupyterLab (Ctrl-C) stops the simulators.

The command itself is :mod:`phalanb.cli.lab`; here is what it (and the notebooks) use: :func:`lab_command`, and
:func:`fixtures_path`, how the notebooks find the real captured fixtures.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Mapping
from pathlib import Path

from .errors import InputError

__all__ = ["fixtures_path", "lab_command", "notebooks_dir"]


def notebooks_dir() -> Path:
    """The guided notebooks beside the package (an editable install or a checkout)."""
    return Path(__file__).resolve().parent.parent / "notebooks"


def fixtures_path(environ: Mapping[str, str] | None = None, *, start: Path | None = None) -> Path | None:
    """The real fixtures, as the notebooks find them: ``$PHALANB_FIXTURES``, else ``../shared/fixtures`` beside the
    checkout, else a complete fetched cache (:mod:`phalanb.fixtures`; Binder's ``postBuild`` fills it). ``None``
    when none exists — the notebooks then say how to fetch them (``python -m phalanb.fixtures``)."""
    from . import fixtures

    found = fixtures.local_copy(environ, start=start or notebooks_dir())
    if found is not None:
        return found
    cache = fixtures.cache_dir(environ)
    return cache.resolve() if not fixtures.verify(cache) else None


def lab_command(base_url: str, *, model_server_url: str | None = None, port: int | None = None,
                open_browser: bool = True, notebooks: Path | None = None, environ: Mapping[str, str] | None = None
                ) -> tuple[list[str], dict[str, str], Path]:
    """The JupyterLab command line, environment and working directory for a simulated gateway at ``base_url`` (and
    a simulated model server at ``model_server_url``)."""
    where = notebooks or notebooks_dir()
    if not where.is_dir():
        raise InputError(f"no notebooks folder at {where} (run from a checkout, or pass --notebooks)")
    argv = [sys.executable, "-m", "jupyterlab", f"--ServerApp.root_dir={where}"]
    if port:
        argv.append(f"--port={port}")
    if not open_browser:
        argv.append("--no-browser")
    if hasattr(os, "geteuid") and os.geteuid() == 0:  # containers often run as root; JupyterLab refuses by default
        argv.append("--allow-root")
    from .trust import require_loopback_for_simulated

    # The notebooks trust the simulated roots: only ever for the simulator on this machine.
    require_loopback_for_simulated(base_url, trust="simulated", what="the lab's base URL")
    env = dict(os.environ if environ is None else environ)
    env.update(PHALANB_BASE_URL=base_url, PHALANB_TRUST="simulated")
    if model_server_url is not None:
        require_loopback_for_simulated(model_server_url, trust="simulated", what="the lab's model server URL")
        env["PHALANB_MODEL_SERVER_URL"] = model_server_url
    return argv, env, where
