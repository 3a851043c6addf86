"""GPU measurements judged against NVIDIA's signed reference values (RIMs), offline, as NVIDIA's verifiers do.

For each GPU (or NVSwitch):

1. the RIM ids come from the evidence's *signed* opaque data (:func:`phalanb.gpu.rim.rim_ids`); the RIMs are looked
   up by id in a :class:`RimStore` (a ``--rims`` folder, a bundle, NVIDIA's RIM service through
   :mod:`phalanb.gpu.rim_fetch`) — where they came from is never trusted, only what :mod:`.rim_verify` shows;
2. each RIM must verify (signature, chain to the pinned root at the judged time, version and product);
3. every *active* reference index of the driver and VBIOS RIMs (merged; an index active in both fails) is compared
   with the measurement block of runtime index = block number − 1, against any of its alternatives; an index with
   no block is a mismatch; index 35 is skipped when NVDEC0 is disabled (opaque NVDEC0_STATUS 0x55), judged when
   enabled (0xAA), and any other status fails;
4. revocation: saved OCSP answers for the RIM chains and the device chain (:mod:`.ocsp`).

The outcome is the ``gpu.measurements`` check (pass only when every needed RIM is present, trusted and every index
matches; a missing RIM is named and leaves it skipped; anything else fails, naming each index with both values),
``gpu.revocation``, and per GPU a table (:meth:`GpuAppraisal.table`) a notebook can show.

>>> store = RimStore.from_dir("rims/")                                                  # doctest: +SKIP
>>> result = appraise_payload(payload, store, at=capture_time)                          # doctest: +SKIP
>>> result.check("gpu.measurements").reason                                             # doctest: +SKIP
'measurements: all 1 GPU(s) pass; GPU-0: 33 of 33 active indices match …'
"""

from __future__ import annotations

import base64
import binascii
import datetime as _dt
import hashlib
import json
import re
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Iterable, Sequence

from cryptography import x509

from ..errors import InputError, ParseError, PhalanbError, UnsupportedError
from ..verdict import Check, Verdict
from .ocsp import chain_status, load_ocsp, load_ocsp_answers
from .payload import GpuPayload
from .rim import Rim, nvdec0_enabled, parse_rim, rim_ids
from .rim_verify import (RimVerification, missing_rim, nvidia_rim_root, rim_certificates, verify_rim,
                         verify_rim_binding)
from .spdm import SpdmEvidence
from .verify import StepResult, TrustRoot, _aggregate, _at, _cn

__all__ = ["RimStore", "IndexRow", "GpuAppraisal", "MeasurementAppraisal", "compare_measurements",
           "appraise_evidence", "appraise_payload", "rim_id_of_file", "needed_rims", "NVDEC0_INDEX"]

#: The measurement index NVIDIA skips when the GPU's video decoder NVDEC0 is disabled.
NVDEC0_INDEX = 35
_ROLE_LABEL = {"driver": "driver", "vbios": "VBIOS", "switch": "switch BIOS"}


# --- where RIMs come from ------------------------------------------------------------------------------------

_ID_IN_NAME = re.compile(r"(NV_(?:GPU|SWITCH)_[A-Z0-9_.]+?)(?:@[0-9a-f]+)?\.(?:xml|swidtag)$", re.I)
_NVTRUST_NAME = re.compile(r"^([0-9A-Za-z]{4}_[0-9A-Za-z]{4}_[0-9A-Za-z]{3}_[0-9A-Fa-f]{10})_PROD\.swidtag$")


def rim_id_of_file(name: str) -> str | None:
    """The RIM id a file name claims (``NV_GPU_DRIVER_GH100_550.90.07.xml``, nvtrust's
    ``1010_0200_882_96005E0001_PROD.swidtag``, ``switchVBIOSRim_NV_SWITCH_BIOS_….xml``). Only a lookup key: the
    RIM's own signed version and product decide whether it applies."""
    m = _ID_IN_NAME.search(name)
    if m:
        return m.group(1)
    m = _NVTRUST_NAME.match(name)
    if m:
        return "NV_GPU_VBIOS_" + m.group(1).upper()
    return None


@dataclass
class RimStore:
    """RIM documents by id (bytes as obtained, and where from) plus saved OCSP answers. A store holds claims:
    :func:`appraise_evidence` verifies whatever it hands out."""

    rims: dict[str, list[tuple[bytes, str]]] = field(default_factory=dict)
    ocsp: list[Any] = field(default_factory=list)
    ocsp_raw: list[bytes] = field(default_factory=list, repr=False)

    def add(self, rim_id: str, data: bytes, source: str) -> None:
        """Another candidate for ``rim_id`` (NVIDIA re-signs RIMs: a folder may hold several signings of one id)."""
        entry = (bytes(data), source)
        held = self.rims.setdefault(rim_id, [])
        if entry[0] not in (b for b, _ in held):
            held.append(entry)

    def add_ocsp(self, der: bytes, source: str = "OCSP answer") -> None:
        self.ocsp.append(load_ocsp(der, source=source))
        self.ocsp_raw.append(bytes(der))

    def get(self, rim_id: str) -> list[tuple[bytes, str]]:
        return list(self.rims.get(rim_id, ()))

    def __len__(self) -> int:
        return len(self.rims)

    @classmethod
    def from_dir(cls, folder: str | Path) -> "RimStore":
        """RIMs named as NVIDIA files them (``*.xml`` / ``*.swidtag``), service answers (``*.json``:
        ``{"id", "rim": base64}``) and OCSP answers in ``ocsp/`` (or ``*.der`` beside the RIMs)."""
        folder = Path(folder)
        if not folder.is_dir():
            raise InputError(f"--rims {folder}: not a folder of RIMs")
        store = cls()
        for path in sorted(folder.iterdir()):
            if not path.is_file():
                continue
            if path.suffix.lower() == ".json":
                store._add_service_answer(path.read_bytes(), path.name)
                continue
            rim_id = rim_id_of_file(path.name)
            if rim_id is not None:
                store.add(rim_id, path.read_bytes(), str(path.name))
        for sub in (folder / "ocsp", folder):
            if sub.is_dir():
                for resp, raw in zip(load_ocsp_answers(sub), _raw_answers(sub)):
                    store.ocsp.append(resp)
                    store.ocsp_raw.append(raw)
        return store

    def _add_service_answer(self, data: bytes, source: str) -> None:
        try:
            doc = json.loads(data)
        except ValueError:
            return  # not JSON: not ours to read (a folder may hold notes)
        if not isinstance(doc, dict) or "rim" not in doc:
            return  # some other JSON (an index, a manifest): ignored
        try:
            rim_id, rim = doc["id"], base64.b64decode(doc["rim"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error):
            raise ParseError("not a RIM service answer {id, rim: base64}", field=source) from None
        self.add(str(rim_id), rim, source)

    def digest(self) -> str:
        """SHA-256 over every RIM (id, bytes) and OCSP answer held: two stores with equal digests judge alike."""
        h = hashlib.sha256()
        for rim_id in sorted(self.rims):
            for data, _ in self.rims[rim_id]:
                h.update(rim_id.encode() + b"\0" + hashlib.sha256(data).digest())
        for raw in sorted(self.ocsp_raw):
            h.update(b"ocsp\0" + hashlib.sha256(raw).digest())
        return h.hexdigest()

    def __reduce__(self) -> tuple:
        # Process pools ship stores between workers: as bytes (the parsed OCSP objects do not pickle).
        return (RimStore.from_dict, (self.to_dict(),))

    def to_dict(self) -> dict[str, Any]:
        """For audit bundles: the bytes as base64, so the same appraisal re-runs offline."""
        return {"rims": {k: [{"source": s, "rim": base64.b64encode(b).decode(), "sha256": hashlib.sha256(b).hexdigest()}
                             for b, s in v] for k, v in self.rims.items()},
                "ocsp": [base64.b64encode(r).decode() for r in self.ocsp_raw]}

    @classmethod
    def from_dict(cls, d: Any) -> "RimStore":
        if not isinstance(d, dict):
            raise ParseError("a bundle's RIM store is an object {rims, ocsp}", field="rims")
        store = cls()
        rims = d.get("rims") or {}
        if not isinstance(rims, dict):
            raise ParseError("rims is an object: id → list of {source, rim}", field="rims")
        for rim_id, items in rims.items():
            try:
                for item in items:
                    store.add(str(rim_id), base64.b64decode(item["rim"], validate=True),
                              str(item.get("source", "bundle")))
            except (KeyError, TypeError, binascii.Error, ValueError):
                raise ParseError(f"RIM {rim_id!r:.60}: each entry is {{source, rim: base64}}", field="rims") from None
        for i, text in enumerate(d.get("ocsp") or []):
            try:
                store.add_ocsp(base64.b64decode(text, validate=True), f"bundle OCSP answer {i}")
            except (binascii.Error, ValueError, TypeError):
                raise ParseError(f"OCSP answer {i} is not base64", field="rims.ocsp") from None
        return store


def _raw_answers(folder: Path) -> list[bytes]:
    out = []
    for path in sorted(folder.glob("*")):
        if path.suffix not in (".der", ".dat", ".ocsp") or not path.is_file():
            continue
        if path.suffix == ".dat" and path.with_suffix(".der").exists():
            continue
        raw = path.read_bytes()
        out.append(raw if raw[:1] == b"\x30" else base64.b64decode(b"".join(raw.split())))
    return out


# --- comparing -----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class IndexRow:
    """One reference index: who owns it, what it may be, what the GPU measured, and the judgement."""

    index: int  # runtime index = SPDM block number − 1
    owner: str  # "driver", "vbios", "switch", or "driver+vbios" for a conflict
    expected: tuple[str, ...]
    measured: str | None
    match: bool | None  # None: not judged (NVDEC0 disabled)
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "owner": self.owner, "expected": list(self.expected),
                "measured": self.measured, "match": self.match, "note": self.note}


def compare_measurements(spdm: SpdmEvidence, rims: Sequence[tuple[str, Rim]]) -> list[IndexRow]:
    """Every active reference index of ``rims`` (role, RIM) against the evidence's measurement blocks."""
    runtime = {block - 1: value for block, value in spdm.measurements.items()}
    owners: dict[int, list[tuple[str, Any]]] = {}
    for role, rim in rims:
        for index, ref in rim.active.items():
            owners.setdefault(index, []).append((role, ref))
    nvdec0 = nvdec0_enabled(spdm)
    nvdec0_field = spdm.opaque.get("NVDEC0_STATUS")
    rows = []
    for index in sorted(owners):
        entries = owners[index]
        measured = runtime.get(index)
        shown = measured.hex() if measured is not None else None
        expected = tuple(a.hex() for _, ref in entries for a in ref.alternatives)
        owner = "+".join(role for role, _ in entries)
        if len(entries) > 1:
            rows.append(IndexRow(index, owner, expected, shown, False,
                                 "active in more than one RIM: which one owns it is ambiguous"))
            continue
        role, ref = entries[0]
        if index == NVDEC0_INDEX and nvdec0 is False:
            rows.append(IndexRow(index, owner, expected, shown, None, "NVDEC0 disabled (0x55): not judged"))
            continue
        if index == NVDEC0_INDEX and nvdec0 is None and nvdec0_field is not None:
            rows.append(IndexRow(index, owner, expected, shown, False,
                                 f"NVDEC0_STATUS is 0x{nvdec0_field.value.hex()}, neither enabled (0xaa) nor "
                                 "disabled (0x55)"))
            continue
        if measured is None:
            rows.append(IndexRow(index, owner, expected, None, False, f"no measurement block {index + 1} in the "
                                 "evidence"))
            continue
        if len(measured) != ref.size:
            rows.append(IndexRow(index, owner, expected, shown, False,
                                 f"{len(measured)}-byte measurement, the reference is {ref.size} bytes"))
            continue
        hit = measured in ref.alternatives
        rows.append(IndexRow(index, owner, expected, shown, hit,
                             (f"alternative {ref.alternatives.index(measured)}" if len(ref.alternatives) > 1
                              else "") if hit else "not among the reference values"))
    return rows


# --- one device ----------------------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuAppraisal:
    """One GPU's (or switch's) appraisal: the RIMs it needed and how each was judged, the rows, the outcome."""

    index: int
    arch: str | None
    rims: tuple[RimVerification, ...]
    rows: tuple[IndexRow, ...]
    measurements: StepResult
    revocation: StepResult
    at: _dt.datetime

    @property
    def mismatches(self) -> list[IndexRow]:
        return [r for r in self.rows if r.match is False]

    def table(self) -> list[dict[str, Any]]:
        """Rows for a notebook: index, owner, expected alternatives, measured, match (``None``: not judged)."""
        return [r.to_dict() for r in self.rows]

    def frame(self) -> Any:
        """The table as a pandas DataFrame (values shortened to 16 hex digits for reading)."""
        import pandas as pd

        short = lambda h: (h[:16] + "…") if h else h  # noqa: E731
        return pd.DataFrame([{"index": r.index, "owner": r.owner,
                              "expected": ", ".join(short(e) for e in r.expected), "measured": short(r.measured),
                              "match": {True: "✔", False: "✘", None: "–"}[r.match], "note": r.note}
                             for r in self.rows])

    def to_dict(self) -> dict[str, Any]:
        return {"index": self.index, "arch": self.arch, "at": self.at.isoformat(),
                "rims": [r.to_dict() for r in self.rims], "rows": self.table(),
                "measurements": self.measurements.to_dict(), "revocation": self.revocation.to_dict()}


def _candidates(store: RimStore, rim_id: str, memo: dict) -> list[Rim | StepResult]:
    out: list[Rim | StepResult] = []
    for data, source in store.get(rim_id):
        key = ("parsed", data, source)
        if key not in memo:
            try:
                memo[key] = parse_rim(data, source=source)
            except (ParseError, UnsupportedError) as exc:
                memo[key] = StepResult(False, f"the RIM {source} cannot be read: {exc}")
        out.append(memo[key])
    return out


def _signed_from(rim: Rim) -> _dt.datetime:
    certs = rim_certificates(rim)
    return certs[0].not_valid_before_utc if not isinstance(certs, StepResult) and certs else \
        _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)


def _judge(rims: list[RimVerification], rows: list[IndexRow]) -> StepResult:
    detail = {"rims": {r.role: r.rim_id for r in rims},
              "mismatches": [r.to_dict() for r in rows if r.match is False]}
    for r in rims:
        if r.trusted is False:
            problem = r.first_problem()
            return StepResult(False, f"{_ROLE_LABEL[r.role]} RIM {r.rim_id}: {problem.reason}", detail)
    bad = [r for r in rows if r.match is False]
    if bad:
        listed = "; ".join(f"index {r.index} ({r.owner}): measured {(r.measured or 'nothing')[:16]}…, expected "
                           f"{' or '.join(e[:16] + '…' for e in r.expected)}" + (f" — {r.note}" if r.note and
                                                                                   not r.note.startswith("not among")
                                                                                   else "")
                           for r in bad)
        return StepResult(False, f"{len(bad)} of {len([r for r in rows if r.match is not None])} judged indices "
                          f"do not match: {listed}", detail)
    judged = [r for r in rows if r.match is not None]
    skipped = [r for r in rows if r.match is None]
    counted = (f"{len(rows)} active indices, all {len(judged)} judged match"
               + (f" (index {', '.join(str(r.index) for r in skipped)}: {skipped[0].note})" if skipped else "")
               if skipped else f"{len(judged)} of {len(judged)} active indices match")
    missing = [r for r in rims if r.rim is None]
    if missing:
        names = "; ".join(f"{_ROLE_LABEL[r.role]} RIM {r.rim_id}: {r.signature.reason}" for r in missing)
        held = [r for r in rims if r.rim is not None]
        part = (f"the {' and '.join(_ROLE_LABEL[r.role] for r in held)} RIM's {counted}; " if held else "")
        return StepResult(None, f"{part}missing {names} — those indices are not appraised", detail)
    used = ", ".join(f"{_ROLE_LABEL[r.role]} {r.rim.version}" for r in rims)
    return StepResult(True, f"{counted} ({used})", detail)


def appraise_evidence(spdm: SpdmEvidence, certificates: Sequence[x509.Certificate], arch: str | None,
                      store: RimStore, *, root: TrustRoot | None = None, at: float | _dt.datetime | None = None,
                      index: int = 0, memo: dict | None = None) -> GpuAppraisal:
    """Appraise one device's SPDM evidence (a GPU's or an NVSwitch's) with the RIMs ``store`` holds.
    ``memo``: RIM judgements already made for the same store, root and time (:func:`appraise_payload` shares one
    across a payload's GPUs)."""
    memo = {} if memo is None else memo
    root = root or nvidia_rim_root()
    when = _at(at)
    chip = _cn(certificates[1]).split()[0] if len(certificates) > 1 else None
    try:
        ids = rim_ids(spdm, arch)
    except UnsupportedError as exc:
        reason = StepResult(None, f"no RIM id: {exc}")
        return GpuAppraisal(index, arch, (), (), reason, StepResult(None, "no RIMs to check revocation for"), when)
    versions = {"driver": spdm.opaque.driver_version, "vbios": spdm.opaque.vbios_version,
                "switch": spdm.opaque.vbios_version}
    verifications, usable = [], []
    for role, rim_id in ids.items():
        found = _candidates(store, rim_id, memo)
        if not found:
            verifications.append(missing_rim(rim_id, role, "not in the RIMs given (fetch it online or add it to "
                                                           "--rims)"))
            continue
        tried = []
        for loaded in found:
            if isinstance(loaded, StepResult):
                tried.append((RimVerification(rim_id, role, None, loaded, loaded, loaded, loaded), None))
                continue
            # Signature, chain and revocation depend on the RIM, the root, the time and the answers only: the GPUs
            # of a payload share them (8 GPUs, one driver RIM). The binding is each GPU's own.
            key = ("judged", loaded.raw, loaded.source, role, root.sha256, when)
            if key not in memo:
                certs = rim_certificates(loaded)
                revocation = (chain_status(certs, root.certificate, store.ocsp, when,
                                           what=f"{_ROLE_LABEL[role]} RIM chain")
                              if store.ocsp and not isinstance(certs, StepResult)
                              else StepResult(None, f"{_ROLE_LABEL[role]} RIM chain: no OCSP answers given: "
                                                    "revocation not checked"))
                memo[key] = verify_rim(loaded, root=root, rim_id=rim_id, role=role, version=None, product=None,
                                       at=when, revocation=revocation)
            shared = memo[key]
            tried.append((replace(shared, binding=verify_rim_binding(loaded, version=versions[role], product=chip)),
                          loaded))
        # Several signings of one id: the newest one trusted at the judged time speaks (NVIDIA's service serves
        # the current signing); when none is trusted, the newest one's failure is reported.
        tried.sort(key=lambda t: (t[0].trusted is True, _signed_from(t[1]) if t[1] is not None else
                                  _dt.datetime.min.replace(tzinfo=_dt.timezone.utc)), reverse=True)
        v, loaded = tried[0]
        verifications.append(v)
        if loaded is not None:
            usable.append((role, loaded))
    # A RIM that could not be read still fails the verdict; an untrusted one is compared only to show the table.
    rows = compare_measurements(spdm, usable)
    measured = _judge(verifications, rows)
    # A verification whose RIM failed to parse has rim None but trusted False: name it as failed, not missing.
    for v in verifications:
        if v.rim is None and v.signature.ok is False:
            measured = StepResult(False, f"{_ROLE_LABEL[v.role]} RIM {v.rim_id}: {v.signature.reason}",
                                  measured.detail)
            break
    device = (chain_status(list(certificates), certificates[-1], store.ocsp, when, what="device chain",
                           skip_leaf=True)
              if store.ocsp and len(certificates) > 1 else StepResult(None, "device chain: no OCSP answers given"))
    revs = [v.revocation for v in verifications if v.rim is not None] + [device]
    failed = [r for r in revs if r.ok is False]
    unknown = [r for r in revs if r.ok is None]
    detail = {"steps": [r.to_dict() for r in revs]}
    if failed:
        revocation = StepResult(False, failed[0].reason, detail)
    elif unknown:
        revocation = StepResult(None, "; ".join(r.reason for r in unknown), detail)
    else:
        revocation = StepResult(True, "; ".join(r.reason for r in revs), detail)
    return GpuAppraisal(index, arch, tuple(verifications), tuple(rows), measured, revocation, when)


# --- a payload -----------------------------------------------------------------------------------------------

class MeasurementAppraisal:
    """Every GPU of a payload appraised; ``checks`` are ``gpu.measurements`` and ``gpu.revocation``."""

    def __init__(self, gpus: list[GpuAppraisal], checks: list[Check]):
        self.gpus = gpus
        self.checks = checks

    def check(self, check_id: str) -> Check:
        return Verdict(self.checks)[check_id]

    def to_dict(self) -> dict[str, Any]:
        return {"gpus": [g.to_dict() for g in self.gpus], "checks": [c.to_dict() for c in self.checks]}


def appraise_payload(payload: GpuPayload, store: RimStore, *, root: TrustRoot | None = None,
                     at: float | _dt.datetime | None = None) -> MeasurementAppraisal:
    """Appraise every GPU of ``payload`` against the RIMs in ``store`` at time ``at`` (the evidence's capture
    time; default now — an old RIM's certificate may have expired since, which then fails and says so).
    NVSwitch payloads are appraised by :func:`phalanb.gpu.switch.appraise_switch_payload` (``nvswitch.*``)."""
    if getattr(payload, "device", "GPU") != "GPU":
        raise InputError(f"this payload holds {payload.device} evidence, not a GPU's: appraise it with "
                         "phalanb.gpu.switch.appraise_switch_payload (its checks are nvswitch.*, never gpu.*)")
    return _appraise_devices(payload, store, root=root, at=at, prefix="gpu", device="GPU")


def _appraise_devices(payload: GpuPayload, store: RimStore, *, root: TrustRoot | None,
                      at: float | _dt.datetime | None, prefix: str, device: str) -> MeasurementAppraisal:
    if not isinstance(store, RimStore):
        raise InputError("store must be a RimStore (RimStore.from_dir(path) for a folder of RIMs)")
    when = _at(at)
    memo: dict = {}
    gpus = [appraise_evidence(g.spdm, g.certificates, g.arch, store, root=root, at=when, index=g.index, memo=memo)
            for g in payload.gpus]
    checks = [
        _aggregate(f"{prefix}.measurements", "measurements", [(g.index, g.measurements) for g in gpus],
                   device=device),
        _aggregate(f"{prefix}.revocation", "revocation (OCSP)", [(g.index, g.revocation) for g in gpus],
                   device=device),
    ]
    for c in checks:
        c.evidence["at"] = when.isoformat()
    return MeasurementAppraisal(gpus, checks)


def needed_rims(store: RimStore, payloads: Iterable[Any]) -> RimStore:
    """The part of ``store`` the GPUs of ``payloads`` (NVIDIA payloads or Chutes GPU evidence, as a report carries
    them) need — their RIM ids — and every OCSP answer: what a bundle keeps. Payloads that cannot be read keep the
    whole store (the appraisal will say what is wrong)."""
    from .payload import parse_payload

    try:
        ids: set[str] = set()
        for source in payloads:
            if source in (None, "", []):
                continue
            for g in parse_payload(source).gpus:
                ids.update(rim_ids(g.spdm, g.arch).values())
    except PhalanbError:  # an unreadable payload: keep everything rather than guess
        return store
    out = RimStore(ocsp=list(store.ocsp), ocsp_raw=list(store.ocsp_raw))
    for rim_id in sorted(ids):
        for data, source in store.get(rim_id):
            out.add(rim_id, data, source)
    return out
