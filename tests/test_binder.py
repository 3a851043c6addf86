"""Binder and conda files, inspected the way repo2docker would read them (without building anything), and the
README's Binder badge."""

from __future__ import annotations

import os
import re
import stat
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parent.parent
BINDER = REPO / "binder"


def _deps(env: dict) -> tuple[list[str], list[str]]:
    conda = [d for d in env["dependencies"] if isinstance(d, str)]
    pip = [p for d in env["dependencies"] if isinstance(d, dict) for p in d.get("pip", [])]
    return conda, pip


def test_binder_environment_pins_python_311_with_pip_and_the_jupyter_stack():
    env = yaml.safe_load((BINDER / "environment.yml").read_text())
    conda, _ = _deps(env)
    names = {re.split(r"[<>=!]", d, maxsplit=1)[0] for d in conda}
    assert "python=3.11" in conda
    assert {"pip", "jupyterlab", "ipywidgets", "ipykernel", "jupytext"} <= names


def test_root_environment_installs_phalanb_with_pip():
    env = yaml.safe_load((REPO / "environment.yml").read_text())
    conda, pip = _deps(env)
    assert "pip" in conda and any(p.startswith(("-e .", '-e ".')) for p in pip)


def test_repo2docker_sees_one_environment_in_binder():
    # repo2docker picks the first build pack that matches; stray requirements.txt / runtime.txt beside
    # environment.yml would be ignored or conflict, so there are none.
    assert not (BINDER / "requirements.txt").exists() and not (BINDER / "runtime.txt").exists()


def test_postbuild_is_executable_and_installs_the_package_with_its_lab_extra(tmp_path):
    post = BINDER / "postBuild"
    assert post.stat().st_mode & stat.S_IXUSR and post.read_text().startswith("#!/usr/bin/env bash")
    # Run it from the repository root (as repo2docker does) with a stand-in python that records what it was asked.
    fake = tmp_path / "bin"
    fake.mkdir()
    log = tmp_path / "calls.txt"
    (fake / "python").write_text(f'#!/bin/sh\necho "$PWD|$*" >> "{log}"\n')
    (fake / "python").chmod(0o755)
    subprocess.run([str(post)], cwd=REPO, check=True, env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}"})
    cwd, args = log.read_text().strip().splitlines()[0].split("|")
    assert Path(cwd) == REPO and args.split()[:3] == ["-m", "pip", "install"] and '.[lab]' in args and "-e" in args
    # with a fixtures source named, the real fixtures are fetched (checked by sha256) during the build
    log.unlink()
    subprocess.run([str(post)], cwd=REPO, check=True, env={**os.environ, "PATH": f"{fake}:{os.environ['PATH']}",
                                                           "PHALANB_FIXTURES_URL": "http://127.0.0.1:9/"})
    assert log.read_text().strip().splitlines()[1] == f"{REPO}|-m phalanb.fixtures"
    assert re.search(r"^lab = \[", (REPO / "pyproject.toml").read_text(), re.MULTILINE), "pyproject has no 'lab' extra"


def test_readme_binder_badge_opens_an_existing_notebook_in_jupyterlab():
    readme = (REPO / "README.md").read_text()
    links = re.findall(r"\(https://mybinder\.org/v2/gh/[^/\s]+/[^/\s]+/[^?\s]+\?urlpath=lab/tree/([^)\s]+)\)",
                       readme)
    assert links, "no Binder badge in README.md"
    assert "https://mybinder.org/badge_logo.svg" in readme
    for target in links:
        assert target == "notebooks/00_start_here.ipynb" and (REPO / target).is_file()


def test_phalanb_lab_starts_jupyterlab_on_the_notebooks_with_the_simulator_url(monkeypatch):
    import argparse

    from phalanb.cli.lab import cmd_lab

    seen = {}

    class FakeLab:
        """Stands in for the JupyterLab process: records how it was started, checks the simulator is up."""

        def __init__(self, argv, env, cwd):
            seen.update(argv=argv, env=env, cwd=cwd)

        def wait(self, timeout=None):
            import httpx

            return 0 if httpx.get(seen["env"]["PHALANB_BASE_URL"] + "/models").status_code == 200 else 1

    args = argparse.Namespace(port=8899, no_browser=True, notebooks=None, seed=1)
    assert cmd_lab(args, popen=FakeLab) == 0
    assert seen["argv"][:3] == [sys.executable, "-m", "jupyterlab"] and "--port=8899" in seen["argv"]
    assert "--no-browser" in seen["argv"] and Path(seen["cwd"]) == REPO / "notebooks"
    assert seen["env"]["PHALANB_TRUST"] == "simulated" and seen["env"]["PHALANB_BASE_URL"].startswith("http://127.")


def test_phalanb_lab_is_a_cli_command():
    from phalanb.cli import build_parser

    args = build_parser().parse_args(["lab", "--no-browser", "--port", "9000"])
    assert args.no_browser and args.port == 9000 and callable(args.func)


def test_phalanb_lab_stopped_by_sigterm_leaves_no_jupyterlab_behind(tmp_path):
    """A service manager or `kill` sends SIGTERM: phalanb lab stops its JupyterLab (here a stand-in that records its
    pid and would run for a minute), then its simulators, and exits."""
    import signal
    import sys
    import time

    fake = tmp_path / "fake" / "jupyterlab"
    fake.mkdir(parents=True)
    pid_file = tmp_path / "jupyterlab.pid"
    (fake / "__init__.py").write_text("")
    (fake / "__main__.py").write_text(f"import os, time\nopen({str(pid_file)!r}, 'w').write(str(os.getpid()))\n"
                                      "time.sleep(60)\n")
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path / "fake"), str(REPO)])}
    lab = subprocess.Popen([sys.executable, "-m", "phalanb.cli", "lab", "--no-browser"], env=env,
                           stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (pid_file.is_file() and pid_file.read_text()) and time.monotonic() < deadline:
            time.sleep(0.1)
        child = int(pid_file.read_text())
        lab.send_signal(signal.SIGTERM)
        assert lab.wait(timeout=30) == 0
        for _ in range(50):  # the stand-in is gone (reaped by phalanb lab, so no zombie either)
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.1)
        else:
            raise AssertionError(f"JupyterLab (pid {child}) still runs after phalanb lab got SIGTERM")
    finally:
        if lab.poll() is None:
            lab.kill()
            lab.wait()
