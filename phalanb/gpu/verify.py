"""Offline verification of NVIDIA GPU evidence (SPEC §9): signature, certificate chain, FWID, nonce, agreement.

For each GPU, in this order:

1. **signature** — the ECDSA P-384 signature found *by offset* in the SPDM response verifies with the public key
   of the leaf certificate over every byte before it (request ‖ response up to the signature);
2. **chain** — the 5 certificates (GSP FMC LF leaf, GSP BROM, Provisioner ICA, GHxxx/GBxxx Identity, root) link
   up to the *pinned* root passed in (NVIDIA's Device Identity CA, or a simulator's root when a test says so),
   validated with :mod:`cryptography.x509.verification`;
3. **FWID** — the firmware digest the GPU reports in its opaque data appears in the leaf certificate's DICE
   extension (2.23.133.5.4.1 on Hopper, 2.23.133.5.4.1.1 on Blackwell): the signing key belongs to the firmware
   that was measured;
4. **nonce** — the SPDM requester nonce equals the nonce the verifier expected;

then across GPUs: all carry the same nonce, every leaf is a different device, and the declared arch matches the
chip named in the certificates. Results are :class:`~phalanb.verdict.Check` objects (``gpu.nonce``,
``gpu.evidence_signature``, ``gpu.cert_chain``, ``gpu.fwid``, ``gpu.agree``) with per-GPU detail in ``evidence``.

Not here: whether the measured firmware and driver are the ones NVIDIA published, and whether certificates were
revoked. :mod:`phalanb.gpu.appraise` judges both against NVIDIA's signed RIMs and saved OCSP answers (offline),
and NRAS (:mod:`phalanb.gpu.nras`) answers for them online.

>>> root = nvidia_device_identity_ca()                                   # doctest: +SKIP
>>> result = verify_payload(parse_payload(nvidia_payload), root=root, expected_nonce=nonce_hex)  # doctest: +SKIP
>>> result.verdict().status                                              # doctest: +SKIP
'verified'
"""

from __future__ import annotations

import datetime as _dt
import hashlib
from dataclasses import dataclass, field
from functools import cached_property, lru_cache
from importlib import resources
from typing import Any, Sequence

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import verification as xv

from ..errors import InputError
from ..timeutil import parse_time
from ..verdict import Check, Status, Verdict
from .payload import GpuEvidence, GpuPayload, arch_of_chain, der_items, parse_cert_chain
from .spdm import SpdmEvidence

__all__ = [
    "NVIDIA_DEVICE_IDENTITY_CA_SHA256",
    "DICE_TCB_INFO_OIDS",
    "TrustRoot",
    "nvidia_device_identity_ca",
    "StepResult",
    "GpuFacts",
    "GpuResult",
    "GpuVerification",
    "verify_signature",
    "verify_chain",
    "verify_fwid",
    "leaf_fwids",
    "gpu_facts",
    "verify_gpu",
    "verify_payload",
    "chutes_gpu_nonce",
]

#: SHA-256 of the DER of NVIDIA's Device Identity CA, as published with NVIDIA's verifiers.
NVIDIA_DEVICE_IDENTITY_CA_SHA256 = "102BF659D5419614C9D8E6AECEBC80454EB26B1DF6A769AC720B9A690B167B48"
#: TCG DICE extensions that carry the firmware digest (FWID) in NVIDIA leaf certificates.
DICE_TCB_INFO_OIDS = ("2.23.133.5.4.1", "2.23.133.5.4.1.1")
CHAIN_LENGTH = 5
_SIM_MARK = "phalanb simulat"  # appears in the organisation of every certificate the simulator makes


# The root's digest is asked for by every GPU of a payload: remembered per certificate. A Certificate hashes and
# compares by its DER bytes, so an entry answers only for identical bytes.
@lru_cache(maxsize=256)
def _sha256_der(cert: x509.Certificate) -> str:
    return hashlib.sha256(cert.public_bytes(Encoding.DER)).hexdigest().upper()


def _cn(cert: x509.Certificate) -> str:
    attrs = cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
    return str(attrs[0].value) if attrs else cert.subject.rfc4514_string()


def _is_simulated(cert: x509.Certificate) -> bool:
    return _SIM_MARK in cert.subject.rfc4514_string().lower()


@dataclass(frozen=True)
class TrustRoot:
    """A device root the caller chose to trust. ``simulated`` roots make every result say so."""

    certificate: x509.Certificate
    name: str
    simulated: bool = False

    @cached_property
    def sha256(self) -> str:  # compared once per GPU: computed once per root
        return _sha256_der(self.certificate)

    @classmethod
    def from_pem(cls, pem: bytes | str, *, name: str | None = None, simulated: bool | None = None) -> "TrustRoot":
        certs = parse_cert_chain(pem, "root")
        if len(certs) != 1:
            raise InputError(f"a trust root is one certificate; this PEM holds {len(certs)}")
        cert = certs[0]
        sim = _is_simulated(cert) if simulated is None else simulated
        return cls(cert, name or _cn(cert), sim)


def nvidia_device_identity_ca() -> TrustRoot:
    """NVIDIA's Device Identity CA as shipped in ``phalanb/roots``, checked against its published SHA-256."""
    pem = resources.files("phalanb.roots").joinpath("nvidia_device_identity_ca.pem").read_bytes()
    root = TrustRoot.from_pem(pem, name="NVIDIA Device Identity CA", simulated=False)
    if root.sha256 != NVIDIA_DEVICE_IDENTITY_CA_SHA256:
        raise InputError(f"phalanb/roots/nvidia_device_identity_ca.pem has SHA-256 {root.sha256}, not NVIDIA's "
                         f"{NVIDIA_DEVICE_IDENTITY_CA_SHA256}: the installed package was altered")
    return root


@dataclass(frozen=True)
class StepResult:
    """One step for one GPU: ``ok`` True (held), False (failed) or None (could not be checked), and why."""

    ok: bool | None
    reason: str
    detail: dict[str, Any] = field(default_factory=dict)

    @property
    def status(self) -> Status:
        return Status.PASS if self.ok else Status.FAIL if self.ok is False else Status.SKIPPED

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status.value, "reason": self.reason, **self.detail}


# --- 1. signature --------------------------------------------------------------------------------------------

def verify_signature(spdm: SpdmEvidence, leaf: x509.Certificate) -> StepResult:
    """ECDSA P-384/SHA-384 over ``spdm.signed_bytes`` with the leaf's key; the signature is read by offset."""
    detail = {"signature_offset": spdm.signature_offset, "signed_bytes": len(spdm.signed_bytes),
              "trailing_bytes": len(spdm.trailing)}
    key = leaf.public_key()
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp384r1":
        return StepResult(False, f"the leaf certificate's key is not ECDSA P-384 ({type(key).__name__}); NVIDIA "
                          "GPUs sign with P-384", detail)
    sig = spdm.signature
    der = encode_dss_signature(int.from_bytes(sig[:48], "big"), int.from_bytes(sig[48:], "big"))
    try:
        key.verify(der, spdm.signed_bytes, ec.ECDSA(hashes.SHA384()))
    except InvalidSignature:
        return StepResult(False, f"the SPDM signature at offset {spdm.signature_offset} does not verify with the "
                          f"leaf key over the {len(spdm.signed_bytes)} bytes before it", detail)
    extra = f" ({len(spdm.trailing)} trailing byte(s) after it ignored)" if spdm.trailing else ""
    return StepResult(True, f"ECDSA P-384 signature at offset {spdm.signature_offset} verifies with the leaf "
                      f"key{extra}", detail)


# --- 2. chain ------------------------------------------------------------------------------------------------

def _verifier(root: TrustRoot, at: _dt.datetime) -> xv.ClientVerifier:
    # The web-PKI defaults hold for NVIDIA's chains (CA flags, key usage, AKI/SKI) and reject a CA posing as a leaf.
    return (xv.PolicyBuilder().store(xv.Store([root.certificate])).time(at)
            .max_chain_depth(CHAIN_LENGTH).build_client_verifier())


def _at(at: float | _dt.datetime | None) -> _dt.datetime:
    if at is None:
        return _dt.datetime.now(_dt.timezone.utc)
    if isinstance(at, (int, float)):
        return _dt.datetime.fromtimestamp(parse_time(at, field="at"), _dt.timezone.utc)
    return at if at.tzinfo else at.replace(tzinfo=_dt.timezone.utc)


def _is_ca(cert: x509.Certificate) -> bool:
    try:
        return bool(cert.extensions.get_extension_for_class(x509.BasicConstraints).value.ca)
    except x509.ExtensionNotFound:
        return False


#: Upper chains validated by this process: (Provisioner ICA, Identity, root certificate, pinned root, time) →
#: a verifier anchored at that ICA. See :func:`verify_chain`; bounded (cleared when full).
_UPPER_CHAINS: dict[tuple, xv.ClientVerifier] = {}


def clear_chain_cache() -> None:
    """Forget every validated upper chain (benchmarks measure the cold path with it)."""
    _UPPER_CHAINS.clear()


def _anchored(certs: Sequence[x509.Certificate], at: _dt.datetime) -> xv.ClientVerifier | None:
    """A verifier whose trust anchor is ``certs[2]`` (the Provisioner ICA), for chains whose upper three
    certificates were just validated to the root — or None when a name constraint up there would have to be
    applied to the lower certificates again."""
    for cert in certs[2:]:
        try:
            cert.extensions.get_extension_for_class(x509.NameConstraints)
            return None
        except x509.ExtensionNotFound:
            pass
    return (xv.PolicyBuilder().store(xv.Store([certs[2]])).time(at)
            .max_chain_depth(CHAIN_LENGTH).build_client_verifier())


def verify_chain(certs: Sequence[x509.Certificate], root: TrustRoot, *,
                 at: float | _dt.datetime | None = None, verifier: xv.ClientVerifier | None = None,
                 validated: dict[tuple, xv.ClientVerifier] | None = None) -> StepResult:
    """The GPU's chain, leaf first, up to ``root``. The reason names the broken link when it fails.

    ``validated``: upper chains (Provisioner ICA, Identity, root) already validated — the eight GPUs of a board
    share one, and so do the boards of a generation. It is keyed by the certificates themselves (equal only when
    every DER byte is), the root and the exact validation time, and is filled only by a full validation that
    succeeded; a chain whose upper part is found there validates its leaf and GSP BROM to the ICA.
    :func:`verify_payload` passes the process's bounded :data:`_UPPER_CHAINS`.
    """
    certs = list(certs)
    names = [_cn(c) for c in certs]
    detail: dict[str, Any] = {"certificates": names, "root": root.name, "root_sha256": root.sha256}
    if not certs:
        return StepResult(False, "the chain is empty: an NVIDIA GPU chain has 5 certificates", detail)
    if len(certs) == 1 and certs[0].subject == certs[0].issuer:
        return StepResult(False, f"the chain holds only the root '{names[0]}': the GPU's leaf certificate and the "
                          "3 intermediates are missing", detail)
    if _is_ca(certs[0]):
        return StepResult(False, f"leaf missing: the first certificate '{names[0]}' is a CA, not the GPU's "
                          "'GSP FMC LF' leaf that signs the evidence", detail)
    for i in range(len(certs) - 1):
        if certs[i].issuer != certs[i + 1].subject:
            issuer = certs[i].issuer.get_attributes_for_oid(x509.NameOID.COMMON_NAME)
            issuer_cn = str(issuer[0].value) if issuer else certs[i].issuer.rfc4514_string()
            return StepResult(False, f"broken link: certificate {i} '{names[i]}' was issued by '{issuer_cn}' but "
                              f"certificate {i + 1} is '{names[i + 1]}' (a middle certificate is missing or out of "
                              "order)", detail)
    if len(certs) != CHAIN_LENGTH:
        return StepResult(False, f"the chain has {len(certs)} certificates; an NVIDIA GPU chain has exactly "
                          f"{CHAIN_LENGTH} (GSP FMC LF, GSP BROM, Provisioner ICA, Identity, Device Identity CA)",
                          detail)
    last = certs[-1]
    if _sha256_der(last) != root.sha256:
        if _is_simulated(last) and not root.simulated:
            why = (f"the chain ends at a simulated device root '{names[-1]}' (phalanb simulator), not at "
                   f"{root.name}: simulated GPU evidence is never trusted unless its root is passed explicitly")
        elif root.simulated and not _is_simulated(last):
            why = f"the chain ends at '{names[-1]}', not at the simulated root '{root.name}' passed in"
        else:
            why = (f"the chain ends at '{names[-1]}' (SHA-256 {_sha256_der(last)[:16]}…), not at the pinned "
                   f"{root.name} ({root.sha256[:16]}…): a look-alike root is not trusted")
        return StepResult(False, why, detail)
    when = _at(at)
    detail["validated_at"] = when.isoformat()
    held = StepResult(True, f"5 certificates validate to the pinned {root.name}", detail)
    upper = (*certs[2:], root.certificate, when)
    anchored = validated.get(upper) if validated is not None else None
    if anchored is not None:
        try:
            anchored.verify(certs[0], [certs[1]])
            return held
        except xv.VerificationError:
            pass  # the full validation below says what is wrong, in its own words
    try:
        (verifier or _verifier(root, when)).verify(certs[0], certs[1:-1])
    except xv.VerificationError as exc:
        return StepResult(False, f"the chain does not validate to {root.name}: {exc}", detail)
    if validated is not None and anchored is None:
        shortcut = _anchored(certs, when)
        if shortcut is not None:
            if len(validated) >= 256:
                validated.clear()
            validated[upper] = shortcut
    return held


# --- 3. FWID -------------------------------------------------------------------------------------------------

_HASH_OIDS = {bytes.fromhex("608648016503040202"): "sha384", bytes.fromhex("608648016503040201"): "sha256",
              bytes.fromhex("608648016503040203"): "sha512"}


def leaf_fwids(leaf: x509.Certificate) -> list[dict[str, str]]:
    """Every FWID (hash algorithm + digest) in the leaf's DICE extension(s), with the extension's OID."""
    out = []
    for ext in leaf.extensions:
        oid = ext.oid.dotted_string
        if oid not in DICE_TCB_INFO_OIDS:
            continue
        raw = ext.value.value if isinstance(ext.value, x509.UnrecognizedExtension) else b""
        # An FWID is SEQUENCE { hashAlg OID, digest OCTET STRING }, nested at different depths in the two layouts.
        for tag, value in der_items(raw):
            if tag != 0x30:
                continue
            parts = list(der_items(value, recurse=False))
            if len(parts) == 2 and parts[0][0] == 0x06 and parts[1][0] == 0x04:
                alg = _HASH_OIDS.get(parts[0][1], parts[0][1].hex())
                out.append({"extension": oid, "hash": alg, "digest": parts[1][1].hex()})
    return out


def verify_fwid(spdm: SpdmEvidence, leaf: x509.Certificate) -> StepResult:
    """The opaque-data FWID must equal an FWID in the leaf's DICE extension. Old drivers report none: skipped."""
    fwid = spdm.opaque.fwid
    found = leaf_fwids(leaf)
    detail = {"opaque_fwid": fwid.hex() if fwid else None, "certificate_fwids": [f["digest"] for f in found],
              "extension": found[0]["extension"] if found else None}
    if fwid is None:
        return StepResult(None, "the evidence has no OPAQUE_FIELD_ID_FWID (GPU drivers before ~550 and NVSwitch "
                          "firmware do not report it); nothing to compare with the certificate", detail)
    if not found:
        return StepResult(False, "the leaf certificate has no DICE FWID extension (2.23.133.5.4.1 / .1.1) to "
                          "compare the evidence's FWID with", detail)
    if any(f["digest"] == fwid.hex() for f in found):
        return StepResult(True, f"opaque FWID {fwid.hex()[:16]}… is in the leaf's DICE extension "
                          f"{found[0]['extension']}", detail)
    return StepResult(False, f"FWID mismatch: the evidence reports {fwid.hex()[:16]}… but the leaf certificate "
                      f"carries {found[0]['digest'][:16]}… (the signing key is not the measured firmware's)", detail)


# --- facts, one GPU, a payload -------------------------------------------------------------------------------

@dataclass(frozen=True)
class GpuFacts:
    """What a reader wants to know about a GPU, whether or not it verified."""

    index: int
    arch: str | None
    ueid: str | None  # decimal serial of the leaf certificate (NRAS calls it ueid)
    serial_hex: str | None
    hwmodel: str | None  # common name of certificate 1 (GSP BROM), e.g. "GH100 A01 GSP BROM"
    chip: str | None  # first word of it, e.g. "GH100" (NRAS's hwmodel)
    driver_version: str | None
    vbios_version: str | None
    requester_nonce: str
    fwid: str | None
    feature_flag: str | None
    chip_sku: str | None
    project: str | None
    project_sku: str | None

    def to_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


def gpu_facts(gpu: GpuEvidence) -> GpuFacts:
    leaf = gpu.certificates[0] if gpu.certificates else None
    hw = _cn(gpu.certificates[1]) if len(gpu.certificates) > 1 else None
    op = gpu.spdm.opaque
    return GpuFacts(
        index=gpu.index, arch=gpu.arch,
        ueid=str(leaf.serial_number) if leaf is not None else None,
        serial_hex=f"{leaf.serial_number:X}" if leaf is not None else None,
        hwmodel=hw, chip=hw.split()[0] if hw else None,
        driver_version=op.driver_version, vbios_version=op.vbios_version,
        requester_nonce=gpu.requester_nonce.hex(), fwid=op.fwid.hex() if op.fwid else None,
        feature_flag=op.feature_flag, chip_sku=op.chip_sku, project=op.project, project_sku=op.project_sku)


@dataclass(frozen=True)
class GpuResult:
    facts: GpuFacts
    signature: StepResult
    chain: StepResult
    fwid: StepResult
    nonce: StepResult

    def to_dict(self) -> dict[str, Any]:
        return {**self.facts.to_dict(), "signature": self.signature.to_dict(), "chain": self.chain.to_dict(),
                "fwid": self.fwid.to_dict(), "nonce": self.nonce.to_dict()}


def _nonce_bytes(value: str | bytes | None) -> bytes | None:
    if value is None or isinstance(value, bytes):
        return value
    try:
        return bytes.fromhex(value.lower().removeprefix("0x"))
    except ValueError:
        raise InputError(f"expected nonce {value[:80]!r} is not hex") from None


def verify_gpu(gpu: GpuEvidence, *, root: TrustRoot, expected_nonce: str | bytes | None = None,
               at: float | _dt.datetime | None = None, verifier: xv.ClientVerifier | None = None,
               validated: dict[tuple, xv.ClientVerifier] | None = None) -> GpuResult:
    """All four per-GPU steps. Never raises for a failed check; returns why each step held or not."""
    want = _nonce_bytes(expected_nonce)
    certs = gpu.certificates
    leaf = certs[0] if certs else None
    if leaf is None or _is_ca(leaf):
        why = "no leaf certificate to take the key from" if leaf is None else \
            f"the first certificate '{_cn(leaf)}' is a CA, not the GPU's leaf: no key to verify with"
        sig = StepResult(False, why)
        fw = StepResult(False, why)
    else:
        sig = verify_signature(gpu.spdm, leaf)
        fw = verify_fwid(gpu.spdm, leaf)
    chain = verify_chain(certs, root, at=at, verifier=verifier, validated=validated)
    got = gpu.requester_nonce
    if want is None:
        nonce = StepResult(None, f"no expected nonce given; the evidence's requester nonce is {got.hex()}",
                           {"requester_nonce": got.hex()})
    elif got == want:
        nonce = StepResult(True, "requester nonce equals the expected nonce", {"requester_nonce": got.hex()})
    else:
        nonce = StepResult(False, f"requester nonce {got.hex()[:16]}… is not the expected {want.hex()[:16]}…",
                           {"requester_nonce": got.hex(), "expected": want.hex()})
    return GpuResult(gpu_facts(gpu), sig, chain, fw, nonce)


class GpuVerification:
    """The outcome for a whole payload: per-GPU results, the checks derived from them, and the identity facts."""

    def __init__(self, payload: GpuPayload, gpus: list[GpuResult], checks: list[Check], root: TrustRoot):
        self.payload = payload
        self.gpus = gpus
        self.checks = checks
        self.root = root

    @property
    def facts(self) -> list[GpuFacts]:
        return [g.facts for g in self.gpus]

    def check(self, check_id: str) -> Check:
        return self.verdict()[check_id]

    def verdict(self) -> Verdict:
        return Verdict(self.checks)

    def to_dict(self) -> dict[str, Any]:
        return {"variant": self.payload.variant, "description": self.payload.description,
                "root": {"name": self.root.name, "sha256": self.root.sha256, "simulated": self.root.simulated},
                "gpus": [g.to_dict() for g in self.gpus], "verdict": self.verdict().to_dict()}


def _aggregate(check_id: str, label: str, results: list[tuple[int, StepResult]], *,
               skipped_required: bool = True, device: str = "GPU") -> Check:
    per = {f"{device}-{i}": r.to_dict() for i, r in results}
    failed = [(i, r) for i, r in results if r.ok is False]
    skipped = [(i, r) for i, r in results if r.ok is None]
    n = len(results)
    if failed:
        i, r = failed[0]
        more = f" (and {len(failed) - 1} more {device}(s))" if len(failed) > 1 else ""
        return Check(check_id, Status.FAIL, f"{device}-{i}: {r.reason}{more}", {"gpus": per})
    if skipped:
        i, r = skipped[0]
        return Check(check_id, Status.SKIPPED, f"{label} not checked for {len(skipped)} of {n} {device}(s): "
                     f"{device}-{i}: {r.reason}", {"gpus": per}, required=skipped_required)
    return Check(check_id, Status.PASS, f"{label}: all {n} {device}(s) pass; {device}-0: {results[0][1].reason}",
                 {"gpus": per})


def _agreement(payload: GpuPayload, results: list[GpuResult], *, check_id: str = "gpu.agree",
               device: str = "GPU") -> Check:
    problems = []
    nonces = {g.facts.requester_nonce for g in results}
    if len(nonces) > 1:
        problems.append(f"the {device}s carry {len(nonces)} different requester nonces")
    for g, ev in zip(results, payload.gpus):
        if ev.item_nonce is not None and ev.item_nonce != g.facts.requester_nonce:
            problems.append(f"{device}-{g.facts.index}: its 'nonce' key {ev.item_nonce[:16]}… differs from the SPDM "
                            f"requester nonce {g.facts.requester_nonce[:16]}…")
    if payload.nonce is not None and payload.nonce not in nonces:
        problems.append(f"the payload's nonce {payload.nonce[:16]}… is not the {device}s' requester nonce")
    serials = [g.facts.ueid for g in results]
    if len(set(serials)) != len(serials):
        problems.append(f"two entries carry the same leaf certificate: one {device} answering for several")
    for g, ev in zip(results, payload.gpus):
        chip_arch = arch_of_chain(ev.certificates)
        if ev.arch and chip_arch and ev.arch != chip_arch:
            problems.append(f"{device}-{g.facts.index} is declared {ev.arch} but its certificates name a {chip_arch} "
                            "chip")
    evidence = {"requester_nonces": sorted(nonces), "ueids": serials, "payload_nonce": payload.nonce}
    if problems:
        return Check(check_id, Status.FAIL, "; ".join(problems), evidence)
    return Check(check_id, Status.PASS, f"{len(results)} distinct {device}(s) agree on one nonce and their arch",
                 evidence)


def verify_payload(payload: GpuPayload, *, root: TrustRoot, expected_nonce: str | bytes | None = None,
                   at: float | _dt.datetime | None = None) -> GpuVerification:
    """Verify every GPU of ``payload`` against ``root`` (always passed in: no root is trusted implicitly).

    ``expected_nonce`` is what the client sent (or, for Chutes, :func:`chutes_gpu_nonce`); without it the nonce
    check is *skipped* and the verdict can only be incomplete. ``at`` pins the validation clock (Unix seconds).
    NVSwitch evidence is refused here (its checks are its own: :func:`phalanb.gpu.switch.verify_switch_payload`).
    """
    if payload.device != "GPU":
        raise InputError(f"this payload holds {payload.device} evidence, not a GPU's: verify it with "
                         "phalanb.gpu.switch.verify_switch_payload (its checks are nvswitch.*, never gpu.*)")
    return _verify_devices(payload, root=root, expected_nonce=expected_nonce, at=at, prefix="gpu", device="GPU")


def _verify_devices(payload: GpuPayload, *, root: TrustRoot, expected_nonce: str | bytes | None,
                    at: float | _dt.datetime | None, prefix: str, device: str) -> GpuVerification:
    """The same four steps for every device of a payload, aggregated into ``<prefix>.*`` checks."""
    if not isinstance(root, TrustRoot):
        raise InputError("root must be a TrustRoot (phalanb.gpu.nvidia_device_identity_ca() for real NVIDIA "
                         "devices)")
    when = _at(at)  # one clock for every device, so an upper chain validated once holds for all of them
    verifier = _verifier(root, when)
    results = [verify_gpu(g, root=root, expected_nonce=expected_nonce, at=when, verifier=verifier,
                          validated=_UPPER_CHAINS) for g in payload.gpus]
    idx = [g.facts.index for g in results]
    checks = [
        _aggregate(f"{prefix}.nonce", "requester nonce", list(zip(idx, (r.nonce for r in results))), device=device),
        _aggregate(f"{prefix}.evidence_signature", "SPDM signature", list(zip(idx, (r.signature for r in results))),
                   device=device),
        _aggregate(f"{prefix}.cert_chain", "certificate chain", list(zip(idx, (r.chain for r in results))),
                   device=device),
        # FWID is absent from old drivers' evidence (and from NVSwitch evidence): NVIDIA's own verifier then skips
        # it, and so a missing FWID informs without making the verdict incomplete. A mismatch still fails.
        _aggregate(f"{prefix}.fwid", "FWID", list(zip(idx, (r.fwid for r in results))), skipped_required=False,
                   device=device),
        _agreement(payload, results, check_id=f"{prefix}.agree", device=device),
    ]
    if root.simulated:
        checks.append(Check(f"{prefix}.trust_root", Status.WARNING, f"verified against the simulated root "
                            f"'{root.name}' (phalanb simulator): this proves nothing about real NVIDIA hardware",
                            {"root_sha256": root.sha256}, required=False))
    return GpuVerification(payload, results, checks, root)


def chutes_gpu_nonce(nonce_hex: str, e2e_pubkey: str) -> str:
    """The nonce Chutes puts in every GPU's evidence: ``sha256((nonce_hex + e2e_pubkey).encode())`` (SPEC §6)."""
    return hashlib.sha256((nonce_hex + e2e_pubkey).encode("utf-8", "surrogatepass")).hexdigest()
