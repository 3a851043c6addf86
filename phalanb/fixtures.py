"""The real fixtures (captured third-party evidence) the tests and notebooks read: found locally, else fetched from
their original public sources by manifest, every file checked by sha256.

The repository holds no copy of them. ``phalanb/data/fixtures_manifest.json`` lists every file of the fixture tree
with its size, sha256 and *origin*, as the tree's own notes record it:

- ``upstream``: published at ``repository`` @ ``commit``, ``upstream_path``; fetched from
  ``{sources}/{repository}/{commit}/{upstream_path}`` — ``$PHALANB_FIXTURES_SOURCES``, by default
  ``https://raw.githubusercontent.com`` (GitHub's raw files of that commit);
- ``derived``: re-made from other files of the tree by the function of :data:`DERIVATIONS` the entry names (a
  collateral JSON from Intel PCS answers, a quote cut out of a report), after its inputs are there;
- ``unknown``: the notes do not record all a fetch needs (``unrecorded`` says what: a file name, a commit), and
  ``derived`` with no ``derivation`` (a prose rule phalanb does not implement); ``project``: written by the people
  who compiled the fixtures, no public upstream. None of these can be fetched: :func:`fetch` refuses them loudly,
  naming each, and says to point ``$PHALANB_FIXTURES`` at a copy of the tree.

:func:`ensure` answers, in order:

1. ``$PHALANB_FIXTURES``, when set (it must hold the tree: a wrong path is an error, never a silent fallback);
2. ``../shared/fixtures`` beside the checkout (CI, the development machines): used as it is, nothing is fetched;
3. a cache (``$PHALANB_FIXTURES_CACHE``, else ``$XDG_CACHE_HOME/phalanb/fixtures``, else ``~/.cache/...``) made
   complete from the sources (or, when ``$PHALANB_FIXTURES_URL`` names one, from a mirror laid out like the tree:
   ``{mirror}/tdx/ground_truth.json``). Each file is downloaded or derived to a temporary name, its size and sha256
   compared with the manifest, and only then renamed into place; a file already cached is re-hashed and kept when
   it matches.

Fetching is setup (``python -m phalanb.fixtures``, run by Binder's ``postBuild`` and by ``tests/conftest.py`` on a
fresh clone), never part of a test. A missing, wrong, cut or unfetchable file is a :class:`FixturesError` naming it.
"""

from __future__ import annotations

import base64
import gzip
import hashlib
import json
import os
import sys
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote

from .errors import PhalanbError

__all__ = ["DEFAULT_SOURCES", "DERIVATIONS", "Entry", "FixturesError", "cache_dir", "ensure", "fetch",
           "load_manifest", "local_copy", "source_url", "verify"]

MANIFEST = Path(__file__).resolve().parent / "data" / "fixtures_manifest.json"
#: The package's checkout, when installed editable or run from a clone: ``../shared`` is looked for beside it.
CHECKOUT = Path(__file__).resolve().parent.parent
#: Where an ``upstream`` file is fetched from by default: ``{base}/{repository}/{commit}/{path}`` is GitHub's raw file.
DEFAULT_SOURCES = "https://raw.githubusercontent.com"
ORIGINS = ("upstream", "derived", "unknown", "project")


class FixturesError(PhalanbError):
    """The fixtures are missing and could not be fetched, or a fetched file is not the one the manifest names."""


@dataclass(frozen=True)
class Entry:
    path: str  # relative, POSIX
    size: int
    sha256: str
    source: Mapping[str, object] = field(default_factory=dict)  # origin and what it needs (see the module doc)

    @property
    def origin(self) -> str:
        return str(self.source.get("origin", "unknown"))

    @property
    def derivation(self) -> Mapping[str, object] | None:
        d = self.source.get("derivation")
        return d if isinstance(d, Mapping) else None

    def why_not_fetchable(self) -> str | None:
        """None when a fetch can make this file; else why not, in words that name what is missing."""
        if self.origin == "upstream":
            missing = [k for k in ("repository", "commit", "upstream_path") if not self.source.get(k)]
            return f"its {', '.join(missing)} is not recorded" if missing else None
        if self.origin == "derived":
            if self.derivation and self.derivation.get("function") in DERIVATIONS:
                return None
            return "derived by a rule phalanb does not implement (" + ", ".join(
                map(str, self.source.get("unrecorded") or ["no derivation named"])) + ")"
        if self.origin == "project":
            return "written by the fixtures' compilers; it has no public upstream"
        return "its source does not record " + ", ".join(map(str, self.source.get("unrecorded") or ["its origin"]))


def load_manifest(path: Path = MANIFEST) -> list[Entry]:
    doc = json.loads(path.read_text(encoding="utf-8"))
    out = []
    for f in doc["files"]:
        rel = f["path"]
        # a manifest names files inside the tree only: no absolute paths, no way up (nor in a derivation's inputs)
        for p in [rel, *f.get("inputs", [])]:
            if p.startswith("/") or ".." in p.split("/"):
                raise FixturesError(f"fixture manifest {path}: path {p!r} leaves the fixture tree")
        if f.get("origin") not in ORIGINS:
            raise FixturesError(f"fixture manifest {path}: {rel} has origin {f.get('origin')!r}, not one of {ORIGINS}")
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


# --- derivations: how a derived fixture is re-made from files of the tree (each returns the file's bytes) ---------
# ``read(path)`` gives the bytes of another file of the tree (already fetched and checked). The result is checked
# against the manifest's sha256 like any download: a derivation that drifts is an error, never a silent new fixture.

Read = Callable[[str], bytes]


def _member(read: Read, source: str, member: str) -> object:
    value: object = json.loads(read(source))
    for key in member.split("."):
        value = value[int(key)] if isinstance(value, list) else value[key]  # type: ignore[index]
    return value


def base64_member(read: Read, *, source: str, member: str) -> bytes:
    """A base64 string inside a JSON file, decoded (a quote inside a report, a request body inside a capture)."""
    return base64.b64decode(str(_member(read, source, member)), validate=True)


def gzip_base64_member(read: Read, *, source: str, member: str) -> bytes:
    """gzip(base64) inside a JSON file, unpacked (Tinfoil's ``tdx-guest/v2`` document body)."""
    return gzip.decompress(base64_member(read, source=source, member=member))


def text_member(read: Read, *, source: str, member: str) -> bytes:
    """A string member of a JSON file, as the file's whole text (a nonce from a capture's manifest)."""
    return str(_member(read, source, member)).encode()


def json_member(read: Read, *, source: str, member: str) -> bytes:
    """A member of a JSON file re-serialised by ``json.dumps`` with its defaults (values unchanged)."""
    return json.dumps(_member(read, source, member)).encode()


def json_text_member(read: Read, *, source: str, member: str) -> bytes:
    """A member holding JSON *text* (an event log shipped as a string), parsed and written with a one-space indent."""
    return json.dumps(json.loads(str(_member(read, source, member))), indent=1).encode()


def base64_file(read: Read, *, source: str) -> bytes:
    """A whole file of base64 text, decoded (OCSP answers kept as ``.dat``, a RIM kept as ``.b64``)."""
    return base64.b64decode(b"".join(read(source).split()), validate=True)


def dcap_collateral(read: Read, *, tcb_info: str, tcb_info_chain: str, qe_identity: str, qe_identity_chain: str,
                    pck_crl: str, pck_crl_chain: str, root_ca_crl: str) -> bytes:
    """dcap-qvl's collateral JSON built from Intel PCS answers: ``tcb_info`` / ``qe_identity`` are the signed JSON
    text inside each PCS body (the bytes Intel signed, not a re-serialisation), signatures from the same bodies,
    issuer chains URL-decoded (from a chain file, or ``file#Header`` of a capture's headers), CRLs as hex."""

    def signed(path: str, key: str) -> tuple[str, str]:
        text = read(path).decode()
        head, tail = '{"%s":' % key, ',"signature":"'
        if not text.startswith(head) or tail not in text:
            raise FixturesError(f"fixture derivation: {path} is not a PCS body with {key!r} then a signature")
        return text[len(head):text.rindex(tail)], str(json.loads(text)["signature"])

    def chain(ref: str) -> str:
        path, _, header = ref.partition("#")
        if not header:  # a chain file as fetched from PCS: URL-encoded text, ended by the file's own newline
            return unquote(read(path).decode().removesuffix("\n"))
        meta = json.loads(read(path))
        headers = meta.get("headers", meta)
        value = next((v for k, v in headers.items() if k.lower() == header.lower()), None)
        if value is None:
            raise FixturesError(f"fixture derivation: {path} has no {header} header")
        return unquote(value[0] if isinstance(value, list) else value)

    tcb, tcb_sig = signed(tcb_info, "tcbInfo")
    qe, qe_sig = signed(qe_identity, "enclaveIdentity")
    doc = {"pck_crl_issuer_chain": chain(pck_crl_chain), "root_ca_crl": read(root_ca_crl).hex(),
           "pck_crl": read(pck_crl).hex(), "tcb_info_issuer_chain": chain(tcb_info_chain), "tcb_info": tcb,
           "tcb_info_signature": tcb_sig, "qe_identity_issuer_chain": chain(qe_identity_chain), "qe_identity": qe,
           "qe_identity_signature": qe_sig}
    return json.dumps(doc, indent=1).encode()


#: The derivations a manifest may name: a name outside this table is never run (a manifest is data, not code).
DERIVATIONS: dict[str, Callable[..., bytes]] = {
    f.__name__: f for f in (base64_member, gzip_base64_member, text_member, json_member, json_text_member,
                             base64_file, dcap_collateral)}


# --- fetching ------------------------------------------------------------------------------------------------------

def source_url(entry: Entry, sources: str = DEFAULT_SOURCES) -> str:
    """Where an ``upstream`` file is published: ``{sources}/{repository}/{commit}/{upstream_path}``."""
    s = entry.source
    return f"{sources.rstrip('/')}/{s['repository']}/{s['commit']}/{quote(str(s['upstream_path']))}"


def _good(path: Path, e: Entry) -> bool:
    return path.is_file() and path.stat().st_size == e.size and _sha256(path) == e.sha256


def _put(target: Path, e: Entry, data: bytes, where: str) -> None:
    """Check bytes made by a derivation against the manifest, then move them into place."""
    if len(data) != e.size or hashlib.sha256(data).hexdigest() != e.sha256:
        raise FixturesError(f"fixture {e.path}: {where} gave {len(data)} bytes whose sha256 is "
                            f"{hashlib.sha256(data).hexdigest()}, not the manifest's {e.size} bytes {e.sha256}: "
                            "not the evidence phalanb is tested against")
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    try:
        part.write_bytes(data)
        os.replace(part, target)
    finally:
        part.unlink(missing_ok=True)


def _refuse(cannot: list[tuple[Entry, str]]) -> FixturesError:
    """One error for every file no public source can give, grouped by why, naming the first few of each group."""
    groups: dict[str, list[str]] = {}
    for e, why in cannot:
        kind = ("written by the fixtures' compilers, no public upstream" if e.origin == "project" else
                "whose notes do not record where upstream (a file name or commit)" if e.origin == "unknown" else
                "derived by a rule phalanb does not implement" if "does not implement" in why else
                "derived from such a file" if e.origin == "derived" else why)
        groups.setdefault(kind, []).append(e.path)
    parts = [f"{len(paths)} {kind}: " + ", ".join(paths[:4]) + (f" and {len(paths) - 4} more" if len(paths) > 4 else "")
             for kind, paths in groups.items()]
    err = FixturesError(
        f"{len(cannot)} fixture file(s) cannot be fetched from a public source — " + "; ".join(parts)
        + " (each with its reason: python -m phalanb.fixtures --unfetchable). Set PHALANB_FIXTURES to a copy of the "
        "whole fixture tree (on the project's machines: ../shared/fixtures), or PHALANB_FIXTURES_URL to a mirror of it")
    err.unfetchable = [(e.path, why) for e, why in cannot]  # type: ignore[attr-defined]
    return err


def fetch(dest: Path, sources: str = DEFAULT_SOURCES, *, entries: Iterable[Entry] | None = None,
          mirror: str | None = None, timeout: float = 60.0, progress=None) -> int:
    """Make ``dest`` hold every listed file: downloaded from its upstream (``sources``), re-derived from its inputs,
    or, with ``mirror``, downloaded from a copy of the tree. Returns how many files were made.

    Files no public source can give (``project``, ``unknown``, a derivation phalanb lacks, or a derived file whose
    input is one of those) are refused *before* anything is downloaded: one :class:`FixturesError` names them all.
    A download that fails, is cut or differs from the manifest's sha256 raises naming the file; nothing that failed
    its check is left under its real name.
    """
    import httpx

    entries = list(load_manifest() if entries is None else entries)
    by_path = {e.path: e for e in (load_manifest() if mirror is None else [])}
    by_path.update({e.path: e for e in entries})
    if mirror is None:  # a derived file brings its inputs along (and theirs)
        wanted = {e.path: e for e in entries}
        stack = list(entries)
        while stack:
            for rel in _inputs(stack.pop()):
                if rel not in wanted and rel in by_path:
                    wanted[rel] = by_path[rel]
                    stack.append(by_path[rel])
        entries = list(wanted.values())
    todo = [e for e in entries if not _good(dest / e.path, e)]
    if not todo:
        return 0
    if mirror is None:
        cannot = [(e, why) for e in todo if (why := _blocked(e, by_path, dest)) is not None]
        if cannot:
            raise _refuse(cannot)
    made = 0
    downloads = todo if mirror is not None else [e for e in todo if e.origin == "upstream"]
    with httpx.Client(timeout=timeout, follow_redirects=True) as client:
        for e in downloads:
            url = f"{mirror.rstrip('/')}/{quote(e.path)}" if mirror is not None else source_url(e, sources)
            _download(client, url, dest / e.path, e)
            made += 1
            if progress:
                progress(e.path)
    # derived files, each once its inputs are in place (an input may itself be derived)
    pending = [e for e in todo if mirror is None and e.origin == "derived"]
    while pending:
        ready = [e for e in pending if all(_good(dest / i, by_path[i]) for i in _inputs(e))]
        if not ready:
            raise FixturesError("fixtures " + ", ".join(e.path for e in pending) + ": their inputs could not be made")
        for e in ready:
            d = e.derivation or {}
            fn = DERIVATIONS[str(d["function"])]
            try:
                data = fn(_reader(dest, e), **dict(d.get("args") or {}))
            except FixturesError:
                raise
            except (ValueError, KeyError, IndexError, TypeError, OSError) as exc:
                raise FixturesError(f"fixture {e.path}: {d['function']} could not re-derive it from "
                                    f"{', '.join(_inputs(e))} ({type(exc).__name__}: {exc})") from None
            _put(dest / e.path, e, data, f"{d['function']}({', '.join(_inputs(e))})")
            made += 1
            if progress:
                progress(e.path)
        pending = [e for e in pending if e not in ready]
    return made


def _reader(dest: Path, e: Entry) -> Read:
    """A derivation reads the inputs its entry lists, and nothing else."""
    allowed = set(_inputs(e))

    def read(rel: str) -> bytes:
        if rel not in allowed:
            raise FixturesError(f"fixture {e.path}: its derivation asks for {rel}, which is not among its inputs")
        return (dest / rel).read_bytes()

    return read


def _inputs(e: Entry) -> list[str]:
    return [str(i) for i in e.source.get("inputs", [])]


def _blocked(e: Entry, by_path: Mapping[str, Entry], dest: Path, seen: frozenset[str] = frozenset()) -> str | None:
    """Why no public source can make ``e`` (None: it can), following a derived file's inputs."""
    why = e.why_not_fetchable()
    if why is not None or e.origin != "derived":
        return why
    for rel in _inputs(e):
        i = by_path.get(rel)
        if i is None:
            return f"its input {rel} is not in the manifest"
        if rel in seen or _good(dest / rel, i):
            continue
        if _blocked(i, by_path, dest, seen | {e.path}) is not None:
            return f"derived from {rel}, which cannot be fetched"
    return None


def _download(client, url: str, target: Path, e: Entry) -> None:
    import httpx

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
                        raise FixturesError(f"fixture {e.path}: {url} sent more than the {e.size} bytes the "
                                            "manifest lists")
                    h.update(chunk)
                    out.write(chunk)
        if got != e.size:
            raise FixturesError(f"fixture {e.path}: the download from {url} was cut after {got} of {e.size} bytes; "
                                "run it again")
        if h.hexdigest() != e.sha256:
            raise FixturesError(f"fixture {e.path}: {url} sent bytes whose sha256 is {h.hexdigest()}, not the "
                                f"manifest's {e.sha256}: not the evidence phalanb is tested against")
        os.replace(part, target)
    except httpx.HTTPError as exc:
        raise FixturesError(f"fixture {e.path}: the download from {url} failed after {got} of {e.size} bytes "
                            f"({type(exc).__name__}: {exc}); run it again") from None
    finally:
        part.unlink(missing_ok=True)


def ensure(environ: Mapping[str, str] | None = None, *, start: Path | None = None, progress=None) -> Path:
    """The fixture tree: a local copy if there is one (nothing fetched), else the cache, completed from the
    sources (``$PHALANB_FIXTURES_SOURCES``, default GitHub's raw files) or a mirror (``$PHALANB_FIXTURES_URL``).
    Raises :class:`FixturesError` naming what cannot be had and what to set."""
    env = os.environ if environ is None else environ
    found = local_copy(env, start=start)
    if found is not None:
        return found
    cache = cache_dir(env)
    entries = load_manifest()
    if not verify(cache, entries):
        return cache.resolve()
    try:
        fetch(cache, env.get("PHALANB_FIXTURES_SOURCES") or DEFAULT_SOURCES, entries=entries,
              mirror=env.get("PHALANB_FIXTURES_URL") or None, progress=progress)
    except FixturesError as exc:
        err = FixturesError(f"phalanb's real fixtures were not found (no $PHALANB_FIXTURES, no ../shared/fixtures "
                            f"beside the checkout, no complete cache at {cache}) and fetching them failed: {exc}")
        err.unfetchable = getattr(exc, "unfetchable", [])  # type: ignore[attr-defined]
        raise err from None
    return cache.resolve()


def main(argv: list[str] | None = None) -> int:
    """``python -m phalanb.fixtures``: find or fetch the fixtures and print where they are (exit 2 if impossible)."""
    import argparse

    p = argparse.ArgumentParser(prog="python -m phalanb.fixtures", description=__doc__.split("\n\n")[0])
    p.add_argument("--sources", help="fetch upstream files from here: {sources}/{repository}/{commit}/{path} "
                                     f"(default: $PHALANB_FIXTURES_SOURCES, else {DEFAULT_SOURCES})")
    p.add_argument("--mirror", help="fetch every file from a copy of the tree instead (default: $PHALANB_FIXTURES_URL)")
    p.add_argument("--origins", action="store_true", help="print how many files have each origin, and exit")
    p.add_argument("--unfetchable", action="store_true",
                   help="print every file no public source can give, and why, and exit")
    args = p.parse_args(argv)
    if args.unfetchable:
        entries = load_manifest()
        by_path = {e.path: e for e in entries}
        nowhere = Path(os.devnull) / "nothing"  # judge every file as missing
        for e in entries:
            if (why := _blocked(e, by_path, nowhere)) is not None:
                print(f"{e.path}\t{why}")
        return 0
    if args.origins:
        counts: dict[str, int] = {}
        for e in load_manifest():
            key = e.origin + ("" if e.origin != "derived" else
                              " (re-derivable)" if e.why_not_fetchable() is None else " (no derivation)")
            counts[key] = counts.get(key, 0) + 1
        for key, n in sorted(counts.items()):
            print(f"{n:4d} {key}")
        return 0
    env = dict(os.environ)
    if args.sources:
        env["PHALANB_FIXTURES_SOURCES"] = args.sources
    if args.mirror:
        env["PHALANB_FIXTURES_URL"] = args.mirror
    try:
        where = ensure(env, progress=lambda path: print(f"fetched {path}", file=sys.stderr))
    except FixturesError as exc:
        print(f"phalanb: {exc}", file=sys.stderr)
        return 2
    print(where)
    return 0


if __name__ == "__main__":
    sys.exit(main())
