"""The real fixtures are found locally or fetched from their original public sources by manifest, never committed
(issue 21, item 4).

The fetch path runs against a local HTTP server on 127.0.0.1 that serves this run's fixture tree the way the
sources would serve it — ``/{repository}/{commit}/{upstream path}``, read through the manifest — so no test talks to
a service: a good file, a wrong sha256, a missing file, an interrupted download, a derived file re-derived from its
fetched inputs, and files no public source holds refused loudly. With a local copy present nothing is fetched, and
the repository itself holds no byte of a third-party capture."""

from __future__ import annotations

import dataclasses
import hashlib
import re
import shutil
import subprocess
import sys
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote

import pytest

from phalanb import fixtures as fx

REPO = Path(__file__).resolve().parent.parent
MANIFEST = fx.load_manifest()
BY_PATH = {e.path: e for e in MANIFEST}


class _Sources(BaseHTTPRequestHandler):
    """GitHub's raw files, as far as the fixtures go: ``GET /{repository}/{commit}/{path}`` answers the fixture that
    the manifest says was published there; ``GET /mirror/{tree path}`` answers a mirror of the tree."""

    root: Path
    cut: set[str] = set()  # upstream URLs whose answer stops half-way (the connection closes)
    seen: list[str] = []

    def log_message(self, *args):  # keep the test output clean
        pass

    def do_GET(self):
        url = unquote(self.path)
        self.seen.append(url)
        if url.startswith("/mirror/"):
            rel = url.removeprefix("/mirror/")
        else:
            rel = next((e.path for e in MANIFEST if e.origin == "upstream" and url == "/" + "/".join(
                (str(e.source["repository"]), str(e.source["commit"]), str(e.source["upstream_path"])))), None)
        path = self.root / rel if rel else None
        if path is None or not path.is_file():
            self.send_error(404)
            return
        data = path.read_bytes()
        self.send_response(200)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data[: len(data) // 2] if url in self.cut else data)
        self.wfile.flush()
        self.close_connection = True


@pytest.fixture
def server(fixtures):
    """A local server for the fixtures' sources: ``(base_url, handler class)``."""
    handler = type("Handler", (_Sources,), {"root": fixtures, "cut": set(), "seen": []})
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", handler
    httpd.shutdown()
    httpd.server_close()


ONE = "field/pag-desktop-wire-vectors/aci_wire_fixtures.json"  # published byte-exact upstream
DERIVED = "field/tinfoil-verifier-tdx-v2/collateral.json"  # dcap-qvl JSON derived from Intel PCS answers upstream
PROJECT = "tdx/ground_truth.json"  # the compilers' expected values: no public upstream


def _with_inputs(path: str) -> list[fx.Entry]:
    e = BY_PATH[path]
    return [BY_PATH[i] for i in e.source.get("inputs", [])] + [e]


def test_the_manifest_lists_every_fixture_file_with_its_sha256_and_origin(fixtures):
    on_disk = {p.relative_to(fixtures).as_posix() for p in fixtures.rglob("*") if p.is_file()}
    assert set(BY_PATH) == on_disk
    assert fx.verify(fixtures, MANIFEST) == []  # this run's fixtures are exactly the listed ones
    for e in MANIFEST:
        assert len(e.sha256) == 64 and e.source["recorded_in"] and e.origin in fx.ORIGINS, e.path
        if e.origin == "upstream":  # all a fetch needs, the commit in full
            assert re.fullmatch(r"[\w.-]+/[\w.-]+", e.source["repository"]), e.path
            # in full, or abbreviated as the notes give it (and marked so) where no note gives it in full
            assert re.fullmatch(r"[0-9a-f]{40}" if not e.source.get("commit_abbreviated") else r"[0-9a-f]{12}",
                                e.source["commit"]) and e.source["upstream_path"], e.path
            assert e.why_not_fetchable() is None, e.path
        elif e.origin == "derived" and e.derivation:
            assert e.derivation["function"] in fx.DERIVATIONS and e.source["inputs"], e.path
            assert all(i in BY_PATH for i in e.source["inputs"]), e.path
        else:  # unknown, project, or a derivation phalanb lacks: it says what is missing
            assert e.why_not_fetchable(), e.path


def test_the_readme_counts_the_origins_as_the_manifest_does():
    readme = " ".join((REPO / "README.md").read_text().split())
    n = {o: sum(e.origin == o for e in MANIFEST) for o in fx.ORIGINS}
    by_function = sum(e.origin == "derived" and e.derivation is not None for e in MANIFEST)
    blocked = sum(fx._blocked(e, BY_PATH, Path("/nonexistent")) is not None for e in MANIFEST)
    assert f"`upstream` ({n['upstream']} files)" in readme and f"`unknown` ({n['unknown']})" in readme
    assert f"`derived` ({n['derived']}): made from other files of the tree — {by_function} by a function" in readme
    assert f"{n['derived'] - by_function} by a prose rule" in readme and f"`project` ({n['project']})" in readme
    assert f"today {blocked} of {len(MANIFEST)}" in readme


@pytest.mark.parametrize("path", [e.path for e in MANIFEST if e.origin == "derived" and e.derivation])
def test_every_derived_fixture_is_re_derived_byte_exact_from_its_inputs(fixtures, path):
    e = BY_PATH[path]
    data = fx.DERIVATIONS[e.derivation["function"]](lambda rel: (fixtures / rel).read_bytes(), **e.derivation["args"])
    assert (len(data), hashlib.sha256(data).hexdigest()) == (e.size, e.sha256)


def test_a_good_file_is_fetched_from_its_repository_at_its_commit_and_checked(server, tmp_path):
    base, handler = server
    e = BY_PATH[ONE]
    assert fx.fetch(tmp_path, base, entries=[e]) == 1
    assert handler.seen == [f"/Dstack-TEE/private-ai-gateway/{e.source['commit']}/"
                            "apps/desktop/cli/tests/fixtures/aci_wire_fixtures.json"]
    assert hashlib.sha256((tmp_path / ONE).read_bytes()).hexdigest() == e.sha256
    assert fx.fetch(tmp_path, base, entries=[e]) == 0  # already there and right: not fetched again


def test_the_default_source_is_githubs_raw_files_of_the_recorded_commit():
    e = BY_PATH[ONE]
    assert fx.source_url(e) == (f"https://raw.githubusercontent.com/Dstack-TEE/private-ai-gateway/{e.source['commit']}"
                                "/apps/desktop/cli/tests/fixtures/aci_wire_fixtures.json")


def test_a_file_whose_sha256_differs_from_the_manifest_is_refused_and_not_kept(server, tmp_path):
    base, _ = server
    lying = dataclasses.replace(BY_PATH[ONE], sha256="00" * 32)
    with pytest.raises(fx.FixturesError, match=f"fixture {ONE}: .* sent bytes whose sha256 is .*not the manifest's"):
        fx.fetch(tmp_path, base, entries=[lying])
    assert not (tmp_path / ONE).exists() and not list(tmp_path.rglob("*.part"))


def test_a_file_missing_at_the_source_is_an_error_naming_it(server, tmp_path):
    base, _ = server
    ghost = fx.Entry("tdx/no-such-quote.dat", 10, "11" * 32, {"origin": "upstream", "repository": "a/b",
                                                              "commit": "c" * 40, "upstream_path": "q.dat"})
    with pytest.raises(fx.FixturesError, match=r"fixture tdx/no-such-quote.dat: .*/a/b/c{40}/q.dat answered HTTP 404 "
                                               r"\(no such file"):
        fx.fetch(tmp_path, base, entries=[ghost])


def test_an_interrupted_download_is_an_error_and_leaves_no_partial_file(server, tmp_path):
    base, handler = server
    e = BY_PATH[ONE]
    handler.cut.add("/" + "/".join((e.source["repository"], e.source["commit"], e.source["upstream_path"])))
    with pytest.raises(fx.FixturesError, match=f"fixture {ONE}: the download from .* (was cut|failed) after"):
        fx.fetch(tmp_path, base, entries=[e])
    assert not (tmp_path / ONE).exists() and not list(tmp_path.rglob("*.part"))
    handler.cut.clear()
    assert fx.fetch(tmp_path, base, entries=[e]) == 1  # run it again: it completes


def test_a_derived_file_is_re_derived_from_its_fetched_inputs_and_checked(server, tmp_path):
    base, handler = server
    wanted = _with_inputs(DERIVED)
    made = []
    assert fx.fetch(tmp_path, base, entries=wanted, progress=made.append) == len(wanted)
    assert made[-1] == DERIVED and len(handler.seen) == len(wanted) - 1  # the inputs downloaded, the JSON derived
    assert all(u.startswith("/tinfoilsh/verifier/77e68207bfa8b477c2f3f319e3e18026579a9c13/attestation/collateral/")
               for u in handler.seen)
    assert fx.verify(tmp_path, wanted) == []


def test_a_derived_file_asked_for_alone_brings_its_inputs_along(server, tmp_path):
    base, handler = server
    assert fx.fetch(tmp_path, base, entries=[BY_PATH[DERIVED]]) == len(_with_inputs(DERIVED))
    assert fx.verify(tmp_path, _with_inputs(DERIVED)) == []


def test_a_derivation_that_does_not_give_the_manifests_bytes_is_refused(server, tmp_path):
    base, _ = server
    wanted = _with_inputs(DERIVED)
    wanted[-1] = dataclasses.replace(wanted[-1], sha256="22" * 32)
    with pytest.raises(fx.FixturesError, match=f"fixture {DERIVED}: dcap_collateral\\(.*\\) gave .* not the manifest's"):
        fx.fetch(tmp_path, base, entries=wanted)
    assert not (tmp_path / DERIVED).exists()


def test_a_file_with_no_public_source_is_refused_loudly_before_anything_is_fetched(server, tmp_path):
    base, handler = server
    unknown = next(e for e in MANIFEST if e.origin == "unknown")
    with pytest.raises(fx.FixturesError) as err:
        fx.fetch(tmp_path, base, entries=[BY_PATH[ONE], BY_PATH[PROJECT], unknown])
    text = str(err.value)
    assert "2 fixture file(s) cannot be fetched from a public source" in text
    assert f"1 written by the fixtures' compilers, no public upstream: {PROJECT}" in text
    assert f"1 whose notes do not record where upstream (a file name or commit): {unknown.path}" in text
    assert "Set PHALANB_FIXTURES to a copy of the whole fixture tree" in text
    assert dict(err.value.unfetchable)[unknown.path].startswith("its source does not record ")
    assert ONE not in text and handler.seen == [] and not (tmp_path / ONE).exists()


def test_a_derived_file_whose_input_cannot_be_fetched_is_refused_naming_that_input(server, tmp_path):
    base, _ = server
    e = BY_PATH["field/tinfoil-direct-gemma4-2026-06/quote.bin"]  # cut out of a capture whose file name is elided
    with pytest.raises(fx.FixturesError, match=r"1 derived from such a file: .*/quote.bin") as err:
        fx.fetch(tmp_path, base, entries=[e])
    why = dict(err.value.unfetchable)
    assert why[e.path] == "derived from field/tinfoil-direct-gemma4-2026-06/tinfoil_attestation.json, which cannot " \
                          "be fetched"
    assert why["field/tinfoil-direct-gemma4-2026-06/tinfoil_attestation.json"].startswith("its source does not record")


def test_a_fresh_clone_names_every_file_no_public_source_holds_before_fetching_any(server, tmp_path, monkeypatch):
    base, handler = server
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fx, "CHECKOUT", tmp_path / "clone")  # a checkout with no ../shared beside it
    env = {"PHALANB_FIXTURES_CACHE": str(tmp_path / "cache"), "PHALANB_FIXTURES_SOURCES": base}
    with pytest.raises(fx.FixturesError) as err:
        fx.ensure(env)
    blocked = [e for e in MANIFEST if fx._blocked(e, BY_PATH, tmp_path / "cache") is not None]
    assert f"{len(blocked)} fixture file(s) cannot be fetched from a public source — " in str(err.value)
    assert "no ../shared/fixtures beside the checkout" in str(err.value) and "README.md" in str(err.value)
    assert sorted(p for p, _ in err.value.unfetchable) == sorted(e.path for e in blocked)
    assert 0 < len(blocked) < len(MANIFEST)  # what the sources hold is fetchable; the rest is named
    assert handler.seen == []  # refused before any download


def test_every_file_with_a_recorded_source_is_fetched_from_it_or_re_derived_and_checked(server, tmp_path):
    base, handler = server
    cache = tmp_path / "cache"
    reachable = [e for e in MANIFEST if fx._blocked(e, BY_PATH, cache) is None]
    assert fx.fetch(cache, base, entries=reachable) == len(reachable)
    assert fx.verify(cache, reachable) == []
    downloaded = [e for e in reachable if e.origin == "upstream"]
    assert len(handler.seen) == len(downloaded) and not any(u.startswith("/mirror/") for u in handler.seen)


def test_a_fresh_clone_with_a_mirror_fetches_the_whole_tree_once_and_then_uses_the_cache(server, tmp_path,
                                                                                          monkeypatch):
    base, _ = server
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(fx, "CHECKOUT", tmp_path / "clone")
    env = {"PHALANB_FIXTURES_CACHE": str(tmp_path / "cache"), "PHALANB_FIXTURES_URL": base + "/mirror"}
    fetched = []
    where = fx.ensure(env, progress=fetched.append)
    assert where == (tmp_path / "cache").resolve() and len(fetched) == len(MANIFEST)
    assert fx.verify(where) == []
    # the second time the cache is complete: nothing is fetched, even with every source gone
    assert fx.ensure({**env, "PHALANB_FIXTURES_URL": "http://127.0.0.1:9", "PHALANB_FIXTURES_SOURCES":
                      "http://127.0.0.1:9"}) == where


def test_with_a_local_copy_nothing_is_fetched(fixtures, tmp_path):
    dead = {"PHALANB_FIXTURES_CACHE": str(tmp_path / "cache"), "PHALANB_FIXTURES_URL": "http://127.0.0.1:9",
            "PHALANB_FIXTURES_SOURCES": "http://127.0.0.1:9"}
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
    with pytest.raises(fx.FixturesError, match="Set PHALANB_FIXTURES to a copy of the whole fixture tree"):
        fx.ensure({"PHALANB_FIXTURES_CACHE": str(tmp_path / "cache"), "PHALANB_FIXTURES_SOURCES": "http://127.0.0.1:9"})
    with pytest.raises(fx.FixturesError, match="PHALANB_FIXTURES=.* holds no fixture tree"):
        fx.ensure({"PHALANB_FIXTURES": str(tmp_path / "nothing")})


def test_the_test_run_fails_loudly_never_skips_when_fixtures_are_missing(tmp_path):
    """conftest: no fixtures and no source → pytest stops with a usage error (exit 4), running no test."""
    clone = tmp_path / "clone"
    subprocess.run(["git", "clone", "-q", "--no-hardlinks", str(REPO), str(clone)], check=True)
    for rel in ("tests/conftest.py", "phalanb/fixtures.py", "phalanb/data/fixtures_manifest.json"):
        (clone / rel).write_bytes((REPO / rel).read_bytes())  # this tree's versions, committed or not
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(clone),
           "PHALANB_FIXTURES_CACHE": str(tmp_path / "cache"), "PYTHONDONTWRITEBYTECODE": "1",
           "PHALANB_FIXTURES_SOURCES": "http://127.0.0.1:9"}  # no test talks to a service, not even this one
    out = subprocess.run([sys.executable, "-m", "pytest", "-q", "-p", "no:randomly", "-p", "no:cacheprovider",
                          "tests/test_sse_and_verdict.py"], cwd=clone, env=env, capture_output=True, text=True,
                         timeout=300)
    shutil.rmtree(clone)  # its conftest holds the test key's parts: leave nothing for the leak check to misread
    assert out.returncode == 4, (out.returncode, out.stdout[-1500:], out.stderr[-1500:])
    assert "phalanb's tests need the real fixtures" in out.stdout + out.stderr and " skipped" not in out.stdout


def test_git_holds_no_third_party_capture():
    listed = {e.sha256 for e in MANIFEST if e.origin != "project"}  # everything not written by the compilers
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
