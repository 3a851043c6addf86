"""``phalanb lab``: the simulator and JupyterLab on the guided notebooks, in one command.

The simulator runs in this process (a background thread); JupyterLab runs as a child process started in
``notebooks/`` with ``PHALANB_BASE_URL`` (the simulator's URL) and ``PHALANB_TRUST=simulated`` in its environment,
so every notebook's ``Settings.from_env()`` talks to it. Stopping JupyterLab (Ctrl-C) stops the simulator.

Also here: :func:`fixtures_path`, how the notebooks find the real captured fixtures.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

from .errors import InputError

__all__ = ["cmd_lab", "fixtures_path", "lab_command", "notebooks_dir", "register"]


def notebooks_dir() -> Path:
    """The guided notebooks beside the package (an editable install or a checkout)."""
    return Path(__file__).resolve().parent.parent / "notebooks"


def fixtures_path(environ: Mapping[str, str] | None = None, *, start: Path | None = None) -> Path | None:
    """The real fixtures: ``$PHALANB_FIXTURES``, else ``../../shared/fixtures`` from the notebooks folder (the
    checkout's sibling ``shared/``), else the notebooks' own copy of the part they read
    (``notebooks/data/fixtures``, for Binder). ``None`` when none exists."""
    env = os.environ if environ is None else environ
    candidates = []
    if env.get("PHALANB_FIXTURES"):
        candidates.append(Path(env["PHALANB_FIXTURES"]))
    base = start or notebooks_dir()
    candidates += [base / ".." / ".." / "shared" / "fixtures", Path.cwd() / ".." / ".." / "shared" / "fixtures",
                   base / "data" / "fixtures"]
    for c in candidates:
        if (c / "README.md").is_file():
            return c.resolve()
    return None


def lab_command(base_url: str, *, port: int | None = None, open_browser: bool = True,
                notebooks: Path | None = None, environ: Mapping[str, str] | None = None
                ) -> tuple[list[str], dict[str, str], Path]:
    """The JupyterLab command line, environment and working directory for a simulator at ``base_url``."""
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
    return argv, env, where


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="start the simulator and JupyterLab on the guided notebooks",
                       description="Start phalanb's simulator and JupyterLab on notebooks/, with PHALANB_BASE_URL "
                       "and PHALANB_TRUST=simulated set for every notebook. Ctrl-C stops both.")
    p.add_argument("--port", type=int, default=None, help="JupyterLab's port (default: its own choice, 8888)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--notebooks", type=Path, default=None, help="folder to open (default: the checkout's notebooks/)")
    p.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    p.set_defaults(func=cmd_lab)


def cmd_lab(args: argparse.Namespace, *, popen=subprocess.Popen) -> int:
    from .sim import SimConfig, Simulator

    with Simulator(SimConfig(seed=args.seed)) as sim:
        argv, env, cwd = lab_command(sim.base_url, port=args.port, open_browser=not args.no_browser,
                                     notebooks=args.notebooks)
        print(f"phalanb simulator at {sim.base_url} (simulated roots); starting JupyterLab in {cwd}", flush=True)
        try:
            proc = popen(argv, env=env, cwd=str(cwd))
        except FileNotFoundError as exc:
            raise InputError(f"cannot start JupyterLab: {exc}") from None
        try:
            return int(proc.wait() or 0)
        except KeyboardInterrupt:
            # JupyterLab would ask "Shutdown this Jupyter server?" on the first Ctrl-C; stop it for good instead,
            # before the simulator it talks to goes away.
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
            return 0
