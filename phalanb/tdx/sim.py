"""A simulated Intel TDX platform: real-format v4 quotes under a *simulated* root CA, and its PCCS.

Everything a verifier checks exists and is signed, so the whole verification path runs for real:

- a simulated PKI shaped like Intel's: root CA → PCK Platform CA → PCK leaf (with the SGX extension: PPID, TCB
  components, PCESVN, CPUSVN, PCE-ID, FMSPC, SGX type, platform instance id, configuration), and root → TCB
  signing certificate;
- a Quoting Enclave: an attestation key, QE auth data, a QE report binding them, signed by the PCK leaf key;
- collateral (TCB info, QE identity, root and PCK CRLs, signed by the simulated keys) under which dcap-qvl finds
  the platform *UpToDate*, served by :meth:`SimulatedTdx.routes` at ``/pccs/…`` with Intel PCS paths;
- a dstack-style event log whose replay gives the quote's RTMR0-3, and an ``info`` carrying ``app_compose``.

The root is phalanb's own and says so in its subject ("phalanb simulated"): :class:`TrustRoot.intel` never accepts
it, and verification explains that the quote is simulated. Only an explicit ``SimulatedTdx.trust_root`` makes it
pass.

>>> tdx = SimulatedTdx(seed=7)
>>> att = tdx.attest(bytes(64))
>>> dcap_qvl.verify_with_root_ca(att.quote, tdx.collateral().dcap(), tdx.trust_root.der, now).status  # doctest: +SKIP
'UpToDate'

Chain, QE and collateral are made once per instance; each :meth:`attest` only signs a new TD report.
"""

from __future__ import annotations

import datetime as _dt
import hashlib
import json
import secrets
import struct
import threading
import time
import urllib.parse
from dataclasses import dataclass, field
from functools import lru_cache
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.x509.oid import NameOID

from . import _der
from .collateral import Collateral
from .dstack import compose_hash as _compose_hash
from .dstack import expected_mr_config_id
from .eventlog import DSTACK_RUNTIME_EVENT, parse_dstack_log, replay, runtime_event_digest
from .quote import INTEL_QE_VENDOR_ID
from .verify import SGX_EXTENSION_OID, TrustRoot

__all__ = ["SimulatedTdx", "TdxAttestation", "PCCS_PREFIX", "simulated_root", "SIM_MR_SEAM", "SIM_MR_TD"]


@dataclass
class TdxAttestation:
    """What a simulated TDX platform returns for one ``report_data``: the quote and the event log it replays."""

    quote: bytes
    event_log: list[dict[str, Any]] = field(default_factory=list)
    info: dict[str, Any] = field(default_factory=dict)
    vm_config: str = ""


PCCS_PREFIX = "/pccs"
_N = 0xFFFFFFFF00000000FFFFFFFFFFFFFFFFBCE6FAADA7179E84F3B9CAC2FC632551  # P-256 group order

# Platform TCB of the simulated machine; the TCB info's UpToDate level equals it exactly.
SGX_COMPONENTS = (2, 2, 2, 2, 3, 1, 0, 5, 0, 0, 0, 0, 0, 0, 0, 0)
PCE_SVN = 13
TEE_TCB_SVN = bytes([6, 1, 3]) + bytes(13)
QE_ISV_SVN = 4
FMSPC = bytes.fromhex("00906ed50000")  # not an Intel FMSPC on purpose: collateral from Intel can never match
PCE_ID = b"\x00\x00"
# SEPT_VE_DISABLE only: DEBUG off, reserved bits clear (what dcap-qvl and Intel's QVL require).
TD_ATTRIBUTES = (1 << 28).to_bytes(8, "little")
XFAM = bytes.fromhex("e702060000000000")
QE_ATTRIBUTES = bytes.fromhex("11000000000000000000000000000000")

APP_COMPOSE = json.dumps({
    "manifest_version": 2,
    "name": "phalanb-sim",
    "runner": "docker-compose",
    "docker_compose_file": (
        "services:\n"
        "  vllm-proxy:\n"
        "    image: phalanb/sim-vllm-proxy@sha256:" + hashlib.sha256(b"phalanb sim proxy").hexdigest() + "\n"
        "    ports:\n      - \"8000:8000\"\n"
        "  vllm:\n"
        "    image: phalanb/sim-vllm@sha256:" + hashlib.sha256(b"phalanb sim vllm").hexdigest() + "\n"),
    "allowed_envs": ["HF_TOKEN"],
    "kms_enabled": True,
    "gateway_enabled": False,
    "public_logs": False,
    "public_sysinfo": False,
    "no_instance_id": False,
    "secure_time": True,
}, indent=4)
OS_IMAGE = "dstack-0.5.8"
#: The simulator's TDX module and OS-image firmware measurements (the same in every simulator; see _build_td).
SIM_MR_SEAM = hashlib.sha384(b"phalanb simulated TDX module").digest()
SIM_MR_TD = hashlib.sha384(b"phalanb simulated TD firmware " + OS_IMAGE.encode()).digest()


def _derive(seed: int | None, label: str) -> bytes:
    if seed is None:
        return secrets.token_bytes(48)
    return hashlib.sha384(f"phalanb-sim-tdx/{seed}/{label}".encode()).digest()


def _key(seed: int | None, label: str) -> ec.EllipticCurvePrivateKey:
    return ec.derive_private_key(int.from_bytes(_derive(seed, "key/" + label), "big") % (_N - 1) + 1, ec.SECP256R1())


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn),
                      x509.NameAttribute(NameOID.ORGANIZATION_NAME, "phalanb simulated TEE (not Intel)"),
                      x509.NameAttribute(NameOID.COUNTRY_NAME, "XX")])


def _raw_sig(key: ec.EllipticCurvePrivateKey, data: bytes) -> bytes:
    try:  # deterministic (RFC 6979): a seeded simulator gives the same bytes for the same request
        algo = ec.ECDSA(hashes.SHA256(), deterministic_signing=True)
    except TypeError:  # cryptography < 44
        algo = ec.ECDSA(hashes.SHA256())
    r, s = decode_dss_signature(key.sign(data, algo))
    return r.to_bytes(32, "big") + s.to_bytes(32, "big")


def _xy(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.public_key().public_bytes(serialization.Encoding.X962, serialization.PublicFormat.UncompressedPoint)[1:]


def _pem(cert: x509.Certificate) -> str:
    return cert.public_bytes(serialization.Encoding.PEM).decode()


def _iso(t: _dt.datetime) -> str:
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def _sgx_extension(ppid: bytes, instance_id: bytes) -> bytes:
    o = SGX_EXTENSION_OID
    tcb = [_der.oid_pair(f"{o}.2.{i + 1}", _der.der_int(v)) for i, v in enumerate(SGX_COMPONENTS)]
    tcb.append(_der.oid_pair(f"{o}.2.17", _der.der_int(PCE_SVN)))
    tcb.append(_der.oid_pair(f"{o}.2.18", _der.octets(bytes(SGX_COMPONENTS))))
    false = _der.tlv(0x01, b"\x00")
    return _der.seq(
        _der.oid_pair(f"{o}.1", _der.octets(ppid)),
        _der.oid_pair(f"{o}.2", _der.seq(*tcb)),
        _der.oid_pair(f"{o}.3", _der.octets(PCE_ID)),
        _der.oid_pair(f"{o}.4", _der.octets(FMSPC)),
        _der.oid_pair(f"{o}.5", _der.tlv(0x0A, b"\x01")),  # SGX type: Scalable (TDX platforms)
        _der.oid_pair(f"{o}.6", _der.octets(instance_id)),
        _der.oid_pair(f"{o}.7", _der.seq(_der.oid_pair(f"{o}.7.1", false), _der.oid_pair(f"{o}.7.2", false),
                                         _der.oid_pair(f"{o}.7.3", false))),
    )


_START = _dt.datetime(2025, 1, 1, tzinfo=_dt.timezone.utc)
_END = _dt.datetime(2049, 12, 31, 23, 59, 59, tzinfo=_dt.timezone.utc)


def _ku(sign_certs: bool) -> x509.KeyUsage:
    return x509.KeyUsage(digital_signature=not sign_certs, content_commitment=not sign_certs,
                         key_encipherment=False, data_encipherment=False, key_agreement=False,
                         key_cert_sign=sign_certs, crl_sign=sign_certs, encipher_only=False, decipher_only=False)


def _sign_cert(builder: x509.CertificateBuilder, key: ec.EllipticCurvePrivateKey) -> x509.Certificate:
    try:
        # Deterministic ECDSA (RFC 6979): the same inputs give the same certificate bytes in every process.
        return builder.sign(key, hashes.SHA256(), ecdsa_deterministic=True)
    except TypeError:  # cryptography < 44
        return builder.sign(key, hashes.SHA256())


# The simulated root is the same for every seed and every process, like Intel's: a bundle recorded from any
# simulator re-verifies offline against it. Its key is derived from a public label — it protects nothing.
_ROOT_LABEL = "fixed/root"


@lru_cache(maxsize=1)
def _root() -> tuple[ec.EllipticCurvePrivateKey, x509.Certificate]:
    key = ec.derive_private_key(int.from_bytes(hashlib.sha384(b"phalanb-sim-tdx/" + _ROOT_LABEL.encode()).digest(),
                                               "big") % (_N - 1) + 1, ec.SECP256R1())
    name = _name("phalanb simulated SGX Root CA")
    builder = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
               .serial_number(0x5A11AB5EED).not_valid_before(_START).not_valid_after(_END)
               .add_extension(x509.BasicConstraints(ca=True, path_length=1), critical=True)
               .add_extension(_ku(True), critical=True)
               .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False))
    return key, _sign_cert(builder, key)


def simulated_root() -> TrustRoot:
    """phalanb's simulated SGX root CA (the same everywhere). Never trusted unless passed explicitly."""
    return TrustRoot("simulated", _root()[1].public_bytes(serialization.Encoding.DER))


class _Pki:
    """The simulated Intel-shaped PKI and its collateral, built once per instance (the root is shared)."""

    def __init__(self, seed: int | None, now: float):
        self.root_key, self.root = _root()
        self.platform_key = _key(seed, "platform-ca")
        self.pck_key = _key(seed, "pck")
        self.tcb_key = _key(seed, "tcb-signing")
        serial = lambda label: int.from_bytes(_derive(seed, "serial/" + label)[:16], "big") >> 1  # noqa: E731

        def build(subject: str, key, issuer_cert, issuer_key, *, ca: bool, label: str, extra=()):
            issuer_name = _name(subject) if issuer_cert is None else issuer_cert.subject
            b = (x509.CertificateBuilder().subject_name(_name(subject)).issuer_name(issuer_name)
                 .public_key(key.public_key()).serial_number(serial(label)).not_valid_before(_START)
                 .not_valid_after(_END)
                 .add_extension(x509.BasicConstraints(ca=ca, path_length=(1 if issuer_cert is None else 0)
                                                      if ca else None), critical=True)
                 .add_extension(_ku(ca), critical=True)
                 .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
                 .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(
                     (issuer_key or key).public_key()), critical=False))
            for ext in extra:
                b = b.add_extension(ext, critical=False)
            return _sign_cert(b, issuer_key or key)

        # Every subject says "phalanb simulated" so no one (and no verifier) can mistake it for Intel's.
        self.platform = build("phalanb simulated SGX PCK Platform CA", self.platform_key, self.root,
                              self.root_key, ca=True, label="platform")
        sgx = x509.UnrecognizedExtension(x509.ObjectIdentifier(SGX_EXTENSION_OID),
                                         _sgx_extension(_derive(seed, "ppid")[:16], _derive(seed, "instance")[:16]))
        self.pck = build("phalanb simulated SGX PCK Certificate", self.pck_key, self.platform, self.platform_key,
                         ca=False, label="pck", extra=(sgx,))
        self.tcb = build("phalanb simulated SGX TCB Signing", self.tcb_key, self.root, self.root_key, ca=False,
                         label="tcb")
        self.pck_chain_pem = _pem(self.pck) + _pem(self.platform) + _pem(self.root)

        # Collateral, valid like Intel's: issued a day ago, next update in 30 days (from the instance's birth).
        issued = _dt.datetime.fromtimestamp(int(now) - 86400, tz=_dt.timezone.utc)
        next_update = issued + _dt.timedelta(days=31)
        self.issued, self.next_update = issued, next_update
        self.root_crl = self._crl(self.root, self.root_key, issued, next_update)
        self.pck_crl = self._crl(self.platform, self.platform_key, issued, next_update)
        self.qe_mr_signer = hashlib.sha256(_derive(seed, "qe-signer")).digest()
        self.tcb_info = self._tcb_info(issued, next_update)
        self.qe_identity = self._qe_identity(issued, next_update)
        self.tcb_info_signature = _raw_sig(self.tcb_key, self.tcb_info.encode())
        self.qe_identity_signature = _raw_sig(self.tcb_key, self.qe_identity.encode())

    @staticmethod
    def _crl(issuer: x509.Certificate, key, last: _dt.datetime, nxt: _dt.datetime) -> bytes:
        crl = (x509.CertificateRevocationListBuilder().issuer_name(issuer.subject).last_update(last).next_update(nxt)
               .add_extension(x509.CRLNumber(1), critical=False)
               .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(key.public_key()), critical=False)
               .sign(key, hashes.SHA256()))
        return crl.public_bytes(serialization.Encoding.DER)

    @staticmethod
    def _canonical(obj: Any) -> str:
        # dcap-qvl's PCCS client re-serialises the signed object with serde_json before checking the signature;
        # compact, key-sorted ASCII JSON is the same text either way, so the signature holds after the round trip.
        return json.dumps(obj, separators=(",", ":"), sort_keys=True)

    def _tcb_info(self, issued: _dt.datetime, nxt: _dt.datetime) -> str:
        comps = lambda svns: [{"svn": v} for v in svns]  # noqa: E731
        level = {"tcb": {"sgxtcbcomponents": comps(SGX_COMPONENTS), "pcesvn": PCE_SVN,
                         "tdxtcbcomponents": comps(TEE_TCB_SVN)},
                 "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": "UpToDate"}
        older = {"tcb": {"sgxtcbcomponents": comps([max(0, v - 1) for v in SGX_COMPONENTS]), "pcesvn": PCE_SVN - 2,
                         "tdxtcbcomponents": comps([max(0, v - 1) for v in TEE_TCB_SVN])},
                 "tcbDate": "2024-01-01T00:00:00Z", "tcbStatus": "OutOfDate", "advisoryIDs": ["INTEL-SA-00000"]}
        module = {"mrsigner": "00" * 48, "attributes": "0000000000000000", "attributesMask": "FFFFFFFFFFFFFFFF"}
        return self._canonical({
            "id": "TDX", "version": 3, "issueDate": _iso(issued), "nextUpdate": _iso(nxt),
            "fmspc": FMSPC.hex().upper(), "pceId": PCE_ID.hex(), "tcbType": 0, "tcbEvaluationDataNumber": 17,
            "tdxModule": module,
            "tdxModuleIdentities": [{"id": f"TDX_{TEE_TCB_SVN[1]:02X}", **module, "tcbLevels": [
                {"tcb": {"isvsvn": TEE_TCB_SVN[0]}, "tcbDate": "2025-01-01T00:00:00Z", "tcbStatus": "UpToDate"}]}],
            "tcbLevels": [level, older],
        })

    def _qe_identity(self, issued: _dt.datetime, nxt: _dt.datetime) -> str:
        return self._canonical({
            "id": "TD_QE", "version": 2, "issueDate": _iso(issued), "nextUpdate": _iso(nxt),
            "tcbEvaluationDataNumber": 17, "miscselect": "00000000", "miscselectMask": "FFFFFFFF",
            "attributes": QE_ATTRIBUTES.hex().upper(), "attributesMask": "FBFFFFFFFFFFFFFF0000000000000000",
            "mrsigner": self.qe_mr_signer.hex().upper(), "isvprodid": 2,
            "tcbLevels": [{"tcb": {"isvsvn": QE_ISV_SVN}, "tcbDate": "2025-01-01T00:00:00Z",
                           "tcbStatus": "UpToDate"}],
        })


class SimulatedTdx:
    """A simulated TDX guest running a dstack-style app. Implements :class:`phalanb.sim.attest.TdxProvider`."""

    def __init__(self, seed: int | None = None, *, now: float | None = None, app_compose: str = APP_COMPOSE,
                 app_name: str = "phalanb-sim", machine: "SimulatedTdx | None" = None):
        # Another app (e.g. the ACI gateway) on the same simulated machine (``machine``): same platform, PCK chain,
        # collateral and QE — so one PCCS serves both — and its own TD.
        self._app_compose = app_compose
        self._app_name = app_name
        self._lock = threading.Lock()
        if machine is not None:
            self.seed, self.created, self._pki, self._ak = machine.seed, machine.created, machine._pki, machine._ak
        else:
            self.seed = seed
            self.created = time.time() if now is None else now
            self._pki = _Pki(seed, self.created)
            self._ak = _key(seed, "attestation-key")  # the QE's attestation key (one per QE boot)
        self._build_qe()
        self._build_td()

    # -- the Quoting Enclave ---------------------------------------------------------------------------------
    def _build_qe(self) -> None:
        self.attestation_key = _xy(self._ak)
        self.qe_auth_data = bytes(range(32))  # the quoting library's default auth data is 0x00..0x1f
        rd = hashlib.sha256(self.attestation_key + self.qe_auth_data).digest() + bytes(32)
        qe_report = (bytes(SGX_COMPONENTS) + struct.pack("<I", 0) + bytes(28) + QE_ATTRIBUTES
                     + hashlib.sha256(_derive(self.seed, "qe-enclave")).digest() + bytes(32)
                     + self._pki.qe_mr_signer + bytes(96) + struct.pack("<HH", 2, QE_ISV_SVN) + bytes(60) + rd)
        assert len(qe_report) == 384
        self.qe_report = qe_report
        self.qe_report_signature = _raw_sig(self._pki.pck_key, qe_report)
        chain = self._pki.pck_chain_pem.encode() + b"\0"  # Intel's library leaves a trailing NUL; so do we
        qe_cert_data = (qe_report + self.qe_report_signature + struct.pack("<H", len(self.qe_auth_data))
                        + self.qe_auth_data + struct.pack("<HI", 5, len(chain)) + chain)
        self._cert_data = struct.pack("<HI", 6, len(qe_cert_data)) + qe_cert_data

    # -- the TD: measurements and event log -----------------------------------------------------------------
    def _build_td(self) -> None:
        # The default app keeps its historical labels, so seeded values stay what they were.
        prefix = "" if self._app_name == "phalanb-sim" else f"app/{self._app_name}/"
        d = lambda label, n=48: _derive(self.seed, prefix + label)[:n]  # noqa: E731
        self.app_compose = self._app_compose
        self.compose_hash = _compose_hash(self._app_compose)
        self.app_id = d("app-id", 20).hex()
        self.instance_id = d("instance-id", 20).hex()
        self.os_image_hash = hashlib.sha256(b"phalanb simulated " + OS_IMAGE.encode()).hexdigest()
        self.device_id = hashlib.sha256(d("device")).hexdigest()
        key_provider = json.dumps({"name": "kms", "id": d("kms-key", 32).hex()}, separators=(",", ":"))
        events: list[dict[str, Any]] = []
        boot = [(0, 0x8000000B, "td-hob"), (0, 0x8000000A, "acpi-tables"), (0, 0x80000001, "secure-boot"),
                (1, 0x80000003, "kernel"), (1, 0x00000004, "separator"), (2, 0x0000000D, "cmdline"),
                (2, 0x0000000D, "initrd")]
        for imr, etype, label in boot:
            payload = label.encode()
            events.append({"imr": imr, "event_type": etype, "digest": hashlib.sha384(d("boot/" + label)).hexdigest(),
                           "event": "", "event_payload": payload.hex()})
        runtime = [("system-preparing", b""), ("app-id", bytes.fromhex(self.app_id)),
                   ("compose-hash", bytes.fromhex(self.compose_hash)),
                   ("instance-id", bytes.fromhex(self.instance_id)), ("boot-mr-done", b""),
                   ("os-image-hash", bytes.fromhex(self.os_image_hash)), ("key-provider", key_provider.encode()),
                   ("system-ready", b"")]
        for name, payload in runtime:
            events.append({"imr": 3, "event_type": DSTACK_RUNTIME_EVENT,
                           "digest": runtime_event_digest(name, payload).hex(), "event": name,
                           "event_payload": payload.hex()})
        self.event_log = events
        self.rtmrs = replay(parse_dstack_log(events)).rtmrs
        # One simulated TDX module and one simulated OS image for every seed, as a real fleet shares Intel's module
        # and a published image: Policy.for_simulator() knows exactly these two values (tdx.measurements).
        self.mr_td = SIM_MR_TD
        self.mr_seam = SIM_MR_SEAM
        self.mr_config_id = expected_mr_config_id(self.compose_hash)
        self.vm_config = json.dumps({"os_image_hash": self.os_image_hash, "cpu_count": 8, "memory_size": 34359738368,
                                     "num_gpus": 1, "image": OS_IMAGE, "spec_version": 1}, separators=(",", ":"))
        self.info = {
            "app_id": self.app_id, "instance_id": self.instance_id, "app_name": self._app_name,
            "device_id": self.device_id, "os_image_hash": self.os_image_hash, "compose_hash": self.compose_hash,
            "key_provider_info": key_provider, "vm_config": self.vm_config,
            "tcb_info": {"mrtd": self.mr_td.hex(), "rtmr0": self.rtmrs[0].hex(), "rtmr1": self.rtmrs[1].hex(),
                         "rtmr2": self.rtmrs[2].hex(), "rtmr3": self.rtmrs[3].hex(), "app_compose": self.app_compose,
                         "event_log": json.dumps(events), "os_image_hash": self.os_image_hash,
                         "compose_hash": self.compose_hash, "device_id": self.device_id},
        }

    # -- quotes ------------------------------------------------------------------------------------------------
    def quote(self, report_data: bytes, *, debug: bool = False) -> bytes:
        """A TDX v4 quote over ``report_data`` (64 bytes; shorter is zero-padded as the TDX module does).
        ``debug=True`` sets the TD's DEBUG attribute (the simulator's ``debug_td`` fault)."""
        if len(report_data) > 64:
            raise ValueError(f"report_data is at most 64 bytes, got {len(report_data)}")
        report_data = report_data.ljust(64, b"\0")
        header = (struct.pack("<HHIHH", 4, 2, 0x81, 0, PCE_SVN) + INTEL_QE_VENDOR_ID
                  + hashlib.sha256(_derive(self.seed, "platform-id")).digest()[:16] + bytes(4))
        attributes = bytes([TD_ATTRIBUTES[0] | 0x01]) + TD_ATTRIBUTES[1:] if debug else TD_ATTRIBUTES
        body = (TEE_TCB_SVN + self.mr_seam + bytes(48) + bytes(8) + attributes + XFAM + self.mr_td
                + self.mr_config_id + bytes(48) + bytes(48) + b"".join(self.rtmrs) + report_data)
        signed = header + body
        assert len(signed) == 632
        signature = _raw_sig(self._ak, signed)
        sig_data = signature + self.attestation_key + self._cert_data
        return signed + struct.pack("<I", len(sig_data)) + sig_data

    def attest(self, report_data: bytes, *, debug: bool = False) -> TdxAttestation:
        """The :class:`TdxProvider` call: quote, event log, info (with app_compose) and vm_config."""
        return TdxAttestation(quote=self.quote(report_data, debug=debug), event_log=[dict(e) for e in self.event_log],
                              info=json.loads(json.dumps(self.info)), vm_config=self.vm_config)

    # -- trust and collateral ----------------------------------------------------------------------------------
    @property
    def trust_root(self) -> TrustRoot:
        """The simulated root CA. Pass it explicitly to trust this simulator; nothing trusts it by default."""
        return simulated_root()

    @property
    def collateral_window(self) -> tuple[int, int]:
        return int(self._pki.issued.timestamp()), int(self._pki.next_update.timestamp())

    def _issuer_chain(self, leaf: x509.Certificate) -> str:
        return _pem(leaf) + _pem(self._pki.root)

    def collateral(self) -> Collateral:
        """The same collateral the PCCS endpoint serves, without HTTP (for offline tests and bundles)."""
        p = self._pki
        data = {
            "pck_crl_issuer_chain": self._issuer_chain(p.platform),
            "root_ca_crl": p.root_crl.hex(),
            "pck_crl": p.pck_crl.hex(),
            "tcb_info_issuer_chain": self._issuer_chain(p.tcb),
            "tcb_info": p.tcb_info,
            "tcb_info_signature": p.tcb_info_signature.hex(),
            "qe_identity_issuer_chain": self._issuer_chain(p.tcb),
            "qe_identity": p.qe_identity,
            "qe_identity_signature": p.qe_identity_signature.hex(),
        }
        return Collateral(data, source="phalanb simulator", fetched_at=int(time.time()))

    # -- the PCCS --------------------------------------------------------------------------------------------
    def routes(self) -> list[Any]:
        """Starlette routes of a PCCS serving this platform's collateral under ``/pccs`` (Intel PCS v4 paths), so
        ``dcap_qvl.get_collateral("<simulator root>/pccs", quote)`` works."""
        from starlette.requests import Request
        from starlette.responses import JSONResponse, Response
        from starlette.routing import Route

        p = self._pki
        enc = lambda pem: urllib.parse.quote(pem, safe="")  # noqa: E731  (PCS sends issuer chains URL-encoded)
        fmspc = FMSPC.hex().upper()

        async def pckcrl(request: Request) -> Response:
            if request.query_params.get("ca", "platform").lower() != "platform":
                return JSONResponse({"error": "the simulated platform has a Platform CA only"}, status_code=404)
            chain = enc(self._issuer_chain(p.platform))
            if request.query_params.get("encoding") == "der":
                return Response(p.pck_crl, media_type="application/pkix-crl",
                                headers={"SGX-PCK-CRL-Issuer-Chain": chain})
            return Response(p.pck_crl.hex(), media_type="text/plain", headers={"SGX-PCK-CRL-Issuer-Chain": chain})

        async def rootcacrl(request: Request) -> Response:
            return Response(p.root_crl.hex(), media_type="text/plain")  # PCCS style: hex text

        async def tcb(request: Request) -> Response:
            if request.query_params.get("fmspc", "").upper() != fmspc:
                return JSONResponse({"error": f"no TCB info for this FMSPC; the simulator's is {fmspc}"},
                                    status_code=404)
            body = '{"tcbInfo":' + p.tcb_info + ',"signature":"' + p.tcb_info_signature.hex() + '"}'
            chain = enc(self._issuer_chain(p.tcb))
            return Response(body, media_type="application/json",
                            headers={"TCB-Info-Issuer-Chain": chain, "SGX-TCB-Info-Issuer-Chain": chain})

        async def qe_identity(request: Request) -> Response:
            body = '{"enclaveIdentity":' + p.qe_identity + ',"signature":"' + p.qe_identity_signature.hex() + '"}'
            return Response(body, media_type="application/json",
                            headers={"SGX-Enclave-Identity-Issuer-Chain": enc(self._issuer_chain(p.tcb))})

        base = PCCS_PREFIX
        return [
            Route(f"{base}/sgx/certification/v4/pckcrl", pckcrl, methods=["GET"]),
            Route(f"{base}/sgx/certification/v4/rootcacrl", rootcacrl, methods=["GET"]),
            Route(f"{base}/tdx/certification/v4/tcb", tcb, methods=["GET"]),
            Route(f"{base}/tdx/certification/v4/qe/identity", qe_identity, methods=["GET"]),
        ]

    def __repr__(self) -> str:
        return f"<SimulatedTdx seed={self.seed} fmspc={FMSPC.hex()} root='phalanb simulated SGX Root CA'>"
