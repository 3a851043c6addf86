"""``phalanb lab``: the simulators (an ACI gateway and a model server) and JupyterLab on the guided notebooks."""

from __future__ import annotations

import argparse
import signal
import subprocess
import threading
from pathlib import Path

from ..errors import InputError
from ..lab import lab_command

__all__ = ["cmd_lab", "register"]


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("lab", help="start the simulators and JupyterLab on the guided notebooks",
                       description="Start phalanb's simulators (an ACI gateway and a model server) and JupyterLab on "
                       "notebooks/, with PHALANB_BASE_URL, PHALANB_MODEL_SERVER_URL and PHALANB_TRUST=simulated set "
                       "for every notebook. Ctrl-C stops them all.")
    p.add_argument("--port", type=int, default=None, help="JupyterLab's port (default: its own choice, 8888)")
    p.add_argument("--no-browser", action="store_true", help="do not open a browser")
    p.add_argument("--notebooks", type=Path, default=None, help="folder to open (default: the checkout's notebooks/)")
    p.add_argument("--seed", type=int, default=1, help="simulator seed (default 1)")
    p.set_defaults(func=cmd_lab)


def cmd_lab(args: argparse.Namespace, *, popen=subprocess.Popen) -> int:
    from ..sim import SimConfig, Simulator

    with Simulator(SimConfig(seed=args.seed, protocol="aci")) as sim, \
            Simulator(SimConfig(seed=args.seed, protocol="legacy")) as model_server:
        argv, env, cwd = lab_command(sim.base_url, model_server_url=model_server.base_url, port=args.port,
                                     open_browser=not args.no_browser, notebooks=args.notebooks)
        print(f"phalanb simulators (simulated roots): ACI gateway at {sim.base_url}, model server at "
              f"{model_server.base_url}; starting JupyterLab in {cwd}", flush=True)
        try:
            proc = popen(argv, env=env, cwd=str(cwd))
        except FileNotFoundError as exc:
            raise InputError(f"cannot start JupyterLab: {exc}") from None
        previous = _stop_on_sigterm()
        try:
            return int(proc.wait() or 0)
        except (KeyboardInterrupt, _Terminated):
            # JupyterLab would ask "Shutdown this Jupyter server?" on the first Ctrl-C; stop it for good instead,
            # before the simulator it talks to goes away. A SIGTERM (a service manager, `kill`) does the same:
            # without this the default handler would end this process at once and leave JupyterLab running.
            proc.terminate()
            try:
                proc.wait(timeout=20)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
            return 0
        finally:
            if previous is not None:
                signal.signal(signal.SIGTERM, previous)


class _Terminated(Exception):
    """SIGTERM arrived while JupyterLab ran."""


def _stop_on_sigterm():
    """Turn SIGTERM into :class:`_Terminated` (main thread only); returns the handler to restore, or None."""
    if threading.current_thread() is not threading.main_thread():
        return None

    def raise_terminated(_signum, _frame):
        raise _Terminated()

    return signal.signal(signal.SIGTERM, raise_terminated)
