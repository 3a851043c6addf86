"""The real fixtures (captured third-party evidence) the tests and notebooks read: found locally, else fetched by
manifest and checked by sha256.

The repository holds no copy of them. ``phalanb/data/fixtures_manifest.json`` lists every file of the fixture tree
with its size, its sha256 and where it comes from (public repository, commit, and the note in the tree that records
its upstream path or the rule that extracted or derived it). :func:`ensure` answers, in order:

1. ``$PHALANB_FIXTURES``, when set (it must hold the tree: a wrong path is an error, never a silent fallback);
2. ``../shared/fixtures`` beside the checkout (CI, the development machines): used as it is, nothing is fetched;
3. a cache (``$PHALANB_FIXTURES_CACHE``, else ``$XDG_CACHE_HOME/phalanb/fixtures``, else ``~/.cache/...``) made
   complete from ``$PHALANB_FIXTURES_URL``, a base address laid out like the tree (``{base}/tdx/ground_truth.json``).
   Each file is downloaded to a temporary name, its size and sha256 compared with the manifest, and only then
   renamed into place; a file already cached is re-hashed and kept when it matches.

Fetching is setup (``python -m phalanb.fixtures``, run by Binder's ``postBuild`` and by ``tests/conftest.py`` on a
fresh clone), never part of a test. A missing, wrong or cut file is a :class:`FixturesError` naming it.
"""

from __future__ import annotations

import hashlib
import json
import os
import sys
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from .errors import PhalanbError

__all__ = ["Entry", "FixturesError", "cache_dir", "ensure", "fetch", "load_manifest", "local_copy", "verify"]

MANIFEST = Path(__file__).resolve().parent / "data" / "fixtures_manifest.json"
#: The package's checkout, when installed editable or run from a clone: ``../shared`` is looked for beside it.
CHECKOUT = Path(__file__).resolve().parent.parent


class FixturesError(PhalanbError):
    """The fixtures are missing and could not be fetched, or a fetched file is not the one the manifest names."""


@dataclass(frozen=True)
class Entry:
    path: str  # relative, POSIX
    size: int
    sha256: str
    source: Mapping[str, object]


def load_manifest(path: Path = MANIFEST) -> list[Entry]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for f in doc["files"]:
        rel = f["path"]
        # a manifest names files inside the tree only: no absolute paths, no way up
        if rel.startswith("/") or ".." in rel.split("/"):
            raise FixturesError(f"fixture manifest {path}: path {rel!r} leaves the fixture tree")
        out.append(Entry(rel, int(f["size"]), f["sha256"].lower(),
                         {k: v for k, v in f.items() if k not in ("path", "size", "sha256")}))
    return out


def _complete(root: Path) -> bool:
    return (root / "README.md").is_file()


def local_copy(environ: Mapping[str, str] | None = None, *, start: Path | None = None) -> Path | None:
    """``$PHALANB_FIXTURES`` (which must then exist) or ``../shared/fixtures`` beside the checkout; else None."""
    env = os.environ if environ is None else environ
    if env.get("PHALANB_FIXTURES"):
        given = Path(env["PHALANB_FIXTURES"])
        if not _complete(given):
            raise FixturesError(f"PHALANB_FIXTURES={given} holds no fixture tree (no README.md there): point it at "
                                "the fixtures, or unset it to use ../shared/fixtures or fetch them")
        return given.resolve()
    for base in ([start] if start else []) + [CHECKOUT, Path.cwd()]:
        for up in (base, *base.parents[:2]):
            candidate = up.parent / "shared" / "fixtures"
            if _complete(candidate):
                return candidate.resolve()
    return None


def cache_dir(environ: Mapping[str, str] | None = None) -> Path:
    env = os.environ if environ is None else environ
    if env.get("PHALANB_FIXTURES_CACHE"):
        return Path(env["PHALANB_FIXTURES_CACHE"])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path.home() / ".cache"
    return base / "phalanb" / "fixtures"


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def verify(root: Path, entries: Iterable[Entry] | None = None) -> list[str]:
    """Files under ``root`` that are missing or differ from the manifest (empty: the tree is the one listed)."""
    bad = []
    for e in load_manifest() if entries is None else entries:
        p = root / e.path
        if not p.is_file() or p.stat().st_size != e.size or _sha256(p) != e.sha256:
            bad.append(e.path)
    return bad


def fetch(dest: Path, base_url: str, *, entries: Iterable[Entry] | None = None, timeout: float = 60.0,
          progress=None) -> int:
    """Make ``dest`` hold every manifest file, downloading from ``base_url`` what is missing or wrong.

    Returns how many files were downloaded. Raises :class:`FixturesError` on the first file that cannot be had or
    does not match; nothing that failed its check is left under its real name.
    """
    import httpx

    entries = list(load_manifest() if entries is None else entries)
    base = base_url.rstrip("/")
    fetched = 0
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for e in entries:
            target = dest / e.path
            if target.is_file() and target.stat().st_size == e.size and _sha256(target) == e.sha256:
                continue
            url = f"{base}/{quote(e.path)}"
            target.parent.mkdir(parents=True, exist_ok=True)
            part = target.with_name(target.name + ".part")
            h = hashlib.sha256()
            got = 0
            try:
                with client.stream("GET", url) as resp:
                    if resp.status_code != 200:
                        raise FixturesError(f"fixture {e.path}: {url} answered HTTP {resp.status_code}"
                                            + (" (no such file there)" if resp.status_code == 404 else ""))
                    with part.open("wb") as out:
                        for chunk in resp.iter_bytes():
                            got += len(chunk)
                            if got > e.size:
                                raise FixturesError(f"fixture {e.path}: {url} sent more than the {e.size} bytes "
                                                    "the manifest lists")
                            h.update(chunk)
                            out.write(chunk)
                if got != e.size:
                    raise FixturesError(f"fixture {e.path}: the download from {url} was cut after {got} of "
                                        f"{e.size} bytes; run it again")
                if h.hexdigest() != e.sha256:
                    raise FixturesError(f"fixture {e.path}: {url} sent bytes whose sha256 is {h.hexdigest()}, not "
                                        f"the manifest's {e.sha256}: not the evidence phalanb is tested against")
                os.replace(part, target)
                fetched += 1
                if progress:
                    progress(e.path)
            except httpx.HTTPError as exc:
                raise FixturesError(f"fixture {e.path}: the download from {url} failed after {got} of {e.size} "
                                    f"bytes ({type(exc).__name__}: {exc}); run it again") from None
            finally:
                part.unlink(missing_ok=True)
    return fetched


def ensure(environ: Mapping[str, str] | None = None, *, start: Path | None = None, progress=None) -> Path:
    """The fixture tree: a local copy if there is one (nothing fetched), else the cache, completed from
    ``$PHALANB_FIXTURES_URL``. Raises :class:`FixturesError` saying what to set when neither works."""
    env = os.environ if environ is None else environ
    found = local_copy(env, start=start)
    if found is not None:
        return found
    cache = cache_dir(env)
    entries = load_manifest()
    if not verify(cache, entries):
        return cache.resolve()
    base = env.get("PHALANB_FIXTURES_URL")
    if not base:
        raise FixturesError(
            "phalanb's real fixtures were not found (no $PHALANB_FIXTURES, no ../shared/fixtures beside the "
            f"checkout, no complete cache at {cache}) and there is nowhere to fetch them from: set "
            "PHALANB_FIXTURES_URL to a copy of the fixture tree (its files are listed, with their sources and "
            "sha256, in phalanb/data/fixtures_manifest.json), or PHALANB_FIXTURES to a local one")
    fetch(cache, base, entries=entries, progress=progress)
    return cache.resolve()


def main(argv: list[str] | None = None) -> int:
    """``python -m phalanb.fixtures``: find or fetch the fixtures and print where they are (exit 2 if impossible)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m phalanb.fixtures", description=__doc__.split("\n\n")[0])
    p.add_argument("--base-url", help="fetch from here (default: $PHALANB_FIXTURES_URL)")
    args = p.parse_args(argv)
    env = dict(os.environ)
    if args.base_url:
        env["PHALANB_FIXTURES_URL"] = args.base_url
    try:
        where = ensure(env, progress=lambda path: print(f"fetched {path}", file=sys.stderr))
    except FixturesError as exc:
        print(f"phalanb: {exc}", file=sys.stderr)
        return 2
    print(where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
