"""The real fixtures are found locally or fetched by manifest, never committed (issue 21, item 4).

The fetch path runs against a local HTTP server that serves the fixture tree this run uses (no network): a good
file, a wrong sha256, a missing file, an interrupted download. With a local copy present nothing is fetched, and
the repository itself holds no byte of a third-party capture."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import shutil
import subprocess
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from phalanb import fixtures as fx

REPO = Path(__file__).resolve().parent.parent


class _Handler(SimpleHTTPRequestHandler):
    cut: set[str] = set()  # paths whose answer stops half-way (the connection closes)

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        rel = self.path.lstrip("/")
        if rel in self.cut:
            data = (Path(self.directory) / rel).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self.wfile.flush()
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def server(fixtures):
    """A local server for the fixture tree: ``(base_url, handler class)``."""
    handler = type("Handler", (_Handler,), {"cut": set()})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), functools.partial(handler, directory=str(fixtures)))
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


def _entry(path: str) -> fx.Entry:
    return next(e for e in fx.load_manifest() if e.path == path)


ONE = "signatures/phala-docs-2024/signature_vector.json"


def test_the_manifest_lists_every_fixture_file_with_its_sha256_and_source(fixtures):
    entries = fx.load_manifest()
    on_disk = {p.relative_to(fixtures).as_posix() for p in fixtures.rglob("*") if p.is_file()}
    assert {e.path for e in entries} == on_disk
    assert fx.verify(fixtures, entries) == []  # this run's fixtures are exactly the listed ones
    for e in entries:
        assert len(e.sha256) == 64 and e.source["recorded_in"]
        if e.source["kind"] == "third-party":
            assert e.source.get("repository") or e.source.get("repositories"), e.path
            assert e.source.get("commit") or e.source.get("repositories"), e.path


def test_a_good_file_is_fetched_and_checked(server, tmp_path):
    base, _ = server
    assert fx.fetch(tmp_path, base, entries=[_entry(ONE)]) == 1
    assert hashlib.sha256((tmp_path / ONE).read_bytes()).hexdigest() == _entry(ONE).sha256
    assert fx.fetch(tmp_path, base, entries=[_entry(ONE)]) == 0  # already there and right: not fetched again


def test_a_file_whose_sha256_differs_from_the_manifest_is_refused_and_not_kept(server, tmp_path):
    base, _ = server
    lying = dataclasses.replace(_entry(ONE), sha256="00" * 32)
    with pytest.raises(fx.FixturesError, match=f"fixture {ONE}: .* sent bytes whose sha256 is .*not the manifest's"):
        fx.fetch(tmp_path, base, entries=[lying])
    assert not (tmp_path / ONE).exists() and not list(tmp_path.rglob("*.part"))


def test_a_file_missing_at_the_source_is_an_error_naming_it(server, tmp_path):
    base, _ = server
    ghost = fx.Entry("tdx/no-such-quote.dat", 10, "11" * 32, {})
    with pytest.raises(fx.FixturesError, match=r"fixture tdx/no-such-quote.dat: .* answered HTTP 404 \(no such file"):
        fx.fetch(tmp_path, base, entries=[ghost])


def test_an_interrupted_download_is_an_error_and_leaves_no_partial_file(server, tmp_path):
    base, handler = server
    handler.cut.add(ONE)
    with pytest.raises(fx.FixturesError, match=f"fixture {ONE}: the download from .* (was cut|failed) after"):
        fx.fetch(tmp_path, base, entries=[_entry(ONE)])
    assert not (tmp_path / ONE).exists() and not list(tmp_path.rglob("*.part"))
    handler.cut.clear()
    assert fx.fetch(tmp_path, base, entries=[_entry(ONE)]) == 1  # run it again: it completes


def test_a_fresh_clone_fetches_the_whole_tree_once_and_then_uses_the_cache(server, tmp_path, monkeypatch):
    base, _ = server
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fx, "CHECKOUT", tmp_path / "clone")  # a checkout with no ../shared beside it
    env = {"PHALANB_FIXTURES_CACHE": str(tmp_path / "cache"), "PHALANB_FIXTURES_URL": base}
    fetched = []
    where = fx.ensure(env, progress=fetched.append)
    assert where == (tmp_path / "cache").resolve() and len(fetched) == len(fx.load_manifest())
    assert fx.verify(where) == []
    # the second time the cache is complete: nothing is fetched, even with the source gone
    assert fx.ensure({**env, "PHALANB_FIXTURES_URL": "http://127.0.0.1:9"}) == where


def test_with_a_local_copy_nothing_is_fetched(fixtures, tmp_path):
    dead = {"PHALANB_FIXTURES_CACHE": str(tmp_path / "cache"), "PHALANB_FIXTURES_URL": "http://127.0.0.1:9"}
    assert fx.ensure({**dead, "PHALANB_FIXTURES": str(fixtures)}) == fixtures.resolve()
    assert not (tmp_path / "cache").exists()


def test_the_shared_folder_beside_the_checkout_is_used_as_it_is(tmp_path, monkeypatch, fixtures):
    clone = tmp_path / "work" / "clone"
    clone.mkdir(parents=True)
    (tmp_path / "work" / "shared").mkdir()
    (tmp_path / "work" / "shared" / "fixtures").symlink_to(fixtures)
    monkeypatch.setattr(fx, "CHECKOUT", clone)
    monkeypatch.chdir(tmp_path)
    assert fx.ensure({"PHALANB_FIXTURES_CACHE": str(tmp_path / "cache")}) == fixtures.resolve()
    assert not (tmp_path / "cache").exists()


def test_with_no_copy_and_no_source_the_error_says_what_to_set(tmp_path, monkeypatch):
    monkeypatch.setattr(fx, "CHECKOUT", tmp_path / "clone")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(fx.FixturesError, match="set PHALANB_FIXTURES_URL .* or PHALANB_FIXTURES"):
        fx.ensure({"PHALANB_FIXTURES_CACHE": str(tmp_path / "cache")})
    with pytest.raises(fx.FixturesError, match="PHALANB_FIXTURES=.* holds no fixture tree"):
        fx.ensure({"PHALANB_FIXTURES": str(tmp_path / "nothing")})


def test_the_test_run_fails_loudly_never_skips_when_fixtures_are_missing(tmp_path):
    """conftest: no fixtures and no source → pytest stops with a usage error (exit 4), running no test."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True)
    for rel in ("tests/conftest.py", "phalanb/fixtures.py", "phalanb/data/fixtures_manifest.json"):
        (clone / rel).write_bytes((REPO / rel).read_bytes())  # this tree's versions, committed or not
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(clone),
           "PHALANB_FIXTURES_CACHE": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1"}
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                          "tests/test_sse_and_verdict.py"], cwd=clone, env=env, capture_output=True, text=True,
                         timeout=300)
    shutil.rmtree(clone)  # its conftest holds the test key's parts: leave nothing for the leak check to misread
    assert out.returncode == 4, (out.returncode, out.stdout[-1500:], out.stderr[-1500:])
    assert "phalanb's tests need the real fixtures" in out.stdout + out.stderr and " skipped" not in out.stdout


def test_git_holds_no_third_party_capture():
    listed = {e.sha256 for e in fx.load_manifest() if e.source["kind"] == "third-party"}
    # The package ships the public roots it pins (Intel's, NVIDIA's): trust anchors it must carry, not captures.
    anchors = {f"phalanb/roots/{p.name}" for p in (REPO / "phalanb" / "roots").iterdir()}
    tracked = subprocess.run(["git", "ls-files", "-z"], cwd=REPO, capture_output=True, check=True).stdout
    copies = []
    for name in filter(None, tracked.decode().split("\0")):
        path = REPO / name
        if name not in anchors and path.is_file() and hashlib.sha256(path.read_bytes()).hexdigest() in listed:
            copies.append(name)
    assert copies == [], f"third-party captures committed: {copies}"
    assert not (REPO / "notebooks" / "data" / "fixtures").exists()
