"""The end-of-session secret scan (conftest.no_key_in_anything_written) really fails a run that leaks the key."""

import os
import shutil
import subprocess
import sys
from pathlib import Path

SCRATCH_TEST = '''
def test_writes_the_key_somewhere(tmp_path, api_key):
    (tmp_path / "log.txt").write_text("debug: Authorization: Bearer " + api_key)
'''


def test_planting_the_key_in_an_artifact_fails_the_run(tmp_path, fixtures):
    scratch = tmp_path / "scratch"
    scratch.mkdir()
    shutil.copy(Path(__file__).with_name("conftest.py"), scratch / "conftest.py")
    (scratch / "test_leak.py").write_text(SCRATCH_TEST)
    env = {**os.environ, "PHALANB_FIXTURES": str(fixtures)}
    proc = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", str(scratch),
                           "--basetemp", str(tmp_path / "inner"), "--rootdir", str(scratch)],
                          capture_output=True, text=True, timeout=120, env=env, cwd=scratch)
    out = proc.stdout + proc.stderr
    assert proc.returncode != 0, out
    assert "the API key was written to" in out and "log.txt" in out
    # The inner run's leaked file must not trip *this* run's scan: remove it once it has served as proof.
    shutil.rmtree(tmp_path / "inner")
