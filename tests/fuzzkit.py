"""Shared by ``tests/test_fuzz.py``, ``tests/test_mutation.py`` and ``scripts/fuzz_and_mutate.py``: the parsers under
test, seed inputs read from the real fixtures, input generators, and the single-byte mutation matrix.

The rule every parser must keep (issue 8): arbitrary bytes or JSON either parse or raise
:class:`~phalanb.errors.PhalanbError`; anything else (``IndexError``, ``UnicodeDecodeError``, ``RecursionError``…),
a hang or unbounded memory is a bug. And the rule every verifier must keep: a single-byte flip inside a signed
region turns the result to *failed* — never pass, never crash.

Nothing here writes into the fixtures: every mutation works on an in-memory copy of the bytes.
"""

from __future__ import annotations

import base64
import contextlib
import datetime as _dt
import hashlib
import json
import os
import random
import re
import signal
import tempfile
import threading
import time
from dataclasses import dataclass, replace
from functools import cached_property, lru_cache
from pathlib import Path
from typing import Any, Callable, Iterator

from phalanb.errors import PhalanbError

# --------------------------------------------------------------------------------------------------------------
# Per-input time bound


class Hang(BaseException):
    """Raised inside the code under test when one input ran past its time bound. A BaseException, so a parser's
    own ``except Exception`` cannot swallow it and make a hang look like a rejection."""


@contextlib.contextmanager
def time_bound(seconds: float) -> Iterator[None]:
    """Interrupt the block after ``seconds`` with :class:`Hang` (SIGALRM, so main thread only; elsewhere the elapsed
    time is checked afterwards). C code that never returns is not interrupted, but is still caught late: the
    elapsed time is compared after the block."""
    use_alarm = threading.current_thread() is threading.main_thread() and hasattr(signal, "setitimer")
    start = time.perf_counter()
    if use_alarm:
        def on_alarm(signum, frame):  # noqa: ARG001
            raise Hang(f"no answer within {seconds} s")

        old = signal.signal(signal.SIGALRM, on_alarm)
        signal.setitimer(signal.ITIMER_REAL, seconds)
    try:
        yield
    finally:
        if use_alarm:
            signal.setitimer(signal.ITIMER_REAL, 0)
            signal.signal(signal.SIGALRM, old)
    if time.perf_counter() - start > seconds:
        raise Hang(f"took {time.perf_counter() - start:.1f} s (bound {seconds} s)")


@dataclass
class Outcome:
    kind: str            # "parsed", "rejected", "unexpected", "hang"
    error: str = ""      # the exception class name
    message: str = ""
    seconds: float = 0.0


def run_one(fn: Callable[[Any], Any], value: Any, *, bound: float = 2.0) -> Outcome:
    """Run one input through one target and classify what happened."""
    start = time.perf_counter()
    try:
        with time_bound(bound):
            fn(value)
    except Hang as exc:
        return Outcome("hang", "Hang", str(exc), time.perf_counter() - start)
    except PhalanbError as exc:
        return Outcome("rejected", type(exc).__name__, str(exc)[:200], time.perf_counter() - start)
    except Exception as exc:  # the finding: anything that is not phalanb's own error
        import traceback

        tb = traceback.extract_tb(exc.__traceback__)
        where = f"{Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else "?"
        return Outcome("unexpected", type(exc).__name__, f"{exc!s:.300} [{where}]", time.perf_counter() - start)
    return Outcome("parsed", "", "", time.perf_counter() - start)


# --------------------------------------------------------------------------------------------------------------
# The seeds: real fixtures, read once


def _file_quote_bytes(path: Path) -> bytes:
    from phalanb.tdx import parse_quote

    return parse_quote(path.read_bytes()).raw


@dataclass
class QuoteSeed:
    name: str
    raw: bytes
    at: float  # a time inside the PCK chain's validity (ground truth's verify_now when it has one)


@dataclass
class GpuSeed:
    name: str
    evidence: bytes       # the SPDM bytes (request ‖ response)
    chain_pem: bytes      # the certificate chain, PEM, leaf first
    at: float             # a time inside every certificate's validity


#: Quotes of the field shapes (``path`` or ``report#member`` whose ``intel_quote`` is taken), relative to fixtures.
FIELD_QUOTES = ("field/tinfoil-verifier-tdx-v2/quote.bin", "field/tinfoil-direct-gemma4-2026-06/quote.bin",
                "field/chutes-direct-glm5-2026-06/quote_instance0.bin",
                "field/nearai-gateway-gptoss-2026-04/attestation_report.json#gateway_attestation")

#: (folder, file) of the attestation documents in ``fixtures/field``.
FIELD_REPORTS = (("tinfoil-verifier-tdx-v2", "attestation_doc.json"),
                 ("nanogpt-tinfoil-llama-2026-03", "attestation_report.json"),
                 ("tinfoil-direct-gemma4-2026-06", "tinfoil_attestation.json"),
                 ("tinfoil-cloud-sevsnp-2026-06", "tinfoil_attestation.json"),
                 ("dstack-sevsnp-2026", "sev-snp-attestation.json"),
                 ("chutes-direct-glm5-2026-06", "evidence.json"),
                 ("venice-qwen35-2026-06", "attestation_report.json"),
                 ("nearai-gateway-gptoss-2026-04", "attestation_report.json"),
                 ("nanogpt-gateway-glm5-2026-03", "attestation_report.json"),
                 ("nanogpt-chutes-deepseek-2026-03", "attestation_report.json"))
SMALL_FIELD_REPORTS = ("tinfoil-verifier-tdx-v2", "nanogpt-tinfoil-llama-2026-03", "tinfoil-direct-gemma4-2026-06",
                       "tinfoil-cloud-sevsnp-2026-06", "dstack-sevsnp-2026", "aci-marker")


class Corpus:
    """Seed inputs read from ``fixtures`` (the ``../shared/fixtures`` folder)."""

    def __init__(self, fixtures: Path):
        self.root = Path(fixtures)

    def _text(self, rel: str) -> str:
        return (self.root / rel).read_text()

    def _json(self, rel: str) -> Any:
        return json.loads(self._text(rel))

    # -- TDX ---------------------------------------------------------------------------------------------------
    @cached_property
    def ground_truth(self) -> list[dict]:
        return self._json("tdx/ground_truth.json")

    @cached_property
    def quotes(self) -> list[QuoteSeed]:
        from phalanb.tdx import parse_quote
        from phalanb.tdx.verify import _load_chain

        out = []
        for e in self.ground_truth:
            q = parse_quote((self.root / "tdx" / e["file"]).read_bytes())
            at = e.get("verify_now")
            if at is None:
                # No DCAP run recorded: any instant inside every certificate's validity will do.
                certs = _load_chain(q)
                at = max(c.not_valid_before_utc for c in certs).timestamp() + 86400
            out.append(QuoteSeed(e["file"], q.raw, float(at)))
        return out + self.field_quotes

    @cached_property
    def field_quotes(self) -> list[QuoteSeed]:
        """The quotes of the shapes met in the field (issue 12): Tinfoil v2 and v3, the Chutes evidence API and a
        NEAR AI Cloud gateway. Appended after the ground-truth quotes, so the indices of those stay put."""
        from phalanb.tdx import parse_quote
        from phalanb.tdx.verify import _load_chain

        out = []
        for name in FIELD_QUOTES:
            path, _, member = name.partition("#")
            if member:
                data = json.loads((self.root / path).read_text())[member]["intel_quote"]
            else:
                data = (self.root / path).read_bytes()
            q = parse_quote(data)
            at = max(c.not_valid_before_utc for c in _load_chain(q)).timestamp() + 86400
            out.append(QuoteSeed(name, q.raw, float(at)))
        return out

    @cached_property
    def quote_texts(self) -> list[str]:
        # The encodings services publish: hex, 0x-hex and base64.
        raws = [q.raw for q in self.quotes[:3]]
        return ([r.hex() for r in raws] + ["0x" + raws[0].hex()]
                + [base64.b64encode(r).decode() for r in raws[:2]])

    @cached_property
    def dstack_logs(self) -> list[str]:
        return [self._text("tdx/private-ml-sdk/dstack_event_log.json"),
                self._text("tdx/dstack/quote-report.event_log.json")]

    @cached_property
    def ccel(self) -> bytes:
        return (self.root / "tdx/go-tdx-guest/ccel_ccel_data.dat").read_bytes()

    @cached_property
    def collaterals(self) -> list[str]:
        return [self._text("tdx/dcap-qvl/tdx_quote_collateral.json"),
                self._text("tdx/dcap-qvl/near_gas_quote_collateral.json")]

    # -- GPU ---------------------------------------------------------------------------------------------------
    @cached_property
    def gpu_records(self) -> list[tuple[str, Any]]:
        """(name, parsed payload) for every row of the README's nvidia table."""
        import sys

        sys.path.insert(0, str(Path(__file__).resolve().parent / "gpu"))
        from gpu_table import NVIDIA_TABLE

        return [(r.name, r.load(self.root)) for r in NVIDIA_TABLE]

    @cached_property
    def gpus(self) -> list[GpuSeed]:
        """Every GPU of every record whose signature verifies (the table's invalid-signature sample is left out:
        its result is already failed, so a flip cannot show anything)."""
        from cryptography.hazmat.primitives.serialization import Encoding

        out = []
        for name, payload in self.gpu_records:
            if name == "sdk-sample-invalid-signature":
                continue
            for g in payload.gpus:
                pem = b"".join(c.public_bytes(Encoding.PEM) for c in g.certificates)
                if g.certificate_text:
                    pem = base64.b64decode(g.certificate_text)
                elif payload.encoded_as == "files":
                    pem = _chain_file(self.root, name) or pem
                at = max(c.not_valid_before_utc for c in g.certificates).timestamp() + 86400
                out.append(GpuSeed(f"{name}/GPU-{g.index}", g.evidence_bytes, pem, at))
        return out

    @cached_property
    def payload_texts(self) -> list[str]:
        texts = [self._text("nvidia/nvidia_attestation_sdk/hopper_evidence.json"),
                 self._text("nvidia/chutes_api/evidence.json"),
                 self._text("reports/private-ml-sdk-2025-01/nvidia_payload.json")]
        rep = self.reports["nanogpt-gemma-2026-06"]
        texts.append(rep["nvidia_payload"])
        # Issue 12: NVSwitch evidence (refused as such) and a Tinfoil v3 document's GPU evidence list.
        texts.append(self._text("field/nvidia-sdk-nvswitch-ls10/switch_evidence_ls10.json"))
        texts.append(json.dumps(self._json("field/tinfoil-direct-gemma4-2026-06/tinfoil_attestation.json")
                                ["gpu"]["evidences"]))
        return texts

    @cached_property
    def chains(self) -> list[bytes]:
        return [(self.root / "nvidia" / p).read_bytes() for p in
                ("nvtrust/hopperCertChain.txt", "nvidia_attestation_sdk/sample_blackwellCertChain.txt",
                 "trustee/hopper_cert_chain_case3.txt")]

    @cached_property
    def nras(self) -> list[tuple[str, dict, float, str | None]]:
        """(response JSON text, JWKS, clock pinned to the overall token's iat, expected nonce)."""
        from phalanb.gpu.nras import parse_nras_response

        out = []
        for d in ("neardirect-qwen-2026-06", "redpill-chutes-deepseek-2026-06"):
            text = self._text(f"reports/{d}/nras_response.json")
            jwks = self._json(f"reports/{d}/nras_jwks_at_capture.json")
            iat = parse_nras_response(text).overall.claims.get("iat")
            out.append((text, jwks, float(iat), parse_nras_response(text).overall.claims.get("eat_nonce")))
        return out

    @cached_property
    def jwts(self) -> list[str]:
        from phalanb.gpu.nras import parse_nras_response

        resp = parse_nras_response(self.nras[0][0])
        return [t.raw for _, t in resp.tokens()][:3]

    # -- reports, chat, bundles --------------------------------------------------------------------------------
    @cached_property
    def reports(self) -> dict[str, dict]:
        out = {}
        for d in sorted((self.root / "reports").iterdir()):
            f = d / "attestation_report.json"
            if f.is_file():
                out[d.name] = json.loads(f.read_text())
        return out

    @cached_property
    def field_reports(self) -> dict[str, tuple[dict, bytes | None]]:
        """(document, client nonce) of every attestation shape in ``fixtures/field`` (issue 12): Tinfoil v2 and
        v3, NanoGPT wrappers, the Chutes evidence API (with its e2e keys merged), Venice, a NEAR AI Cloud gateway,
        the AMD SEV-SNP documents phalanb refuses, and an ACI gateway report's marker."""
        from phalanb.vllm.report import merge_chutes_instances

        out: dict[str, tuple[dict, bytes | None]] = {}
        for folder, file in FIELD_REPORTS:
            d = self.root / "field" / folder
            doc = json.loads((d / file).read_text())
            if folder == "chutes-direct-glm5-2026-06":
                doc = merge_chutes_instances(doc, json.loads((d / "e2e_instances.json").read_text()))
            nonce = d / "client_nonce.txt"
            out[folder] = (doc, bytes.fromhex(nonce.read_text().strip()) if nonce.is_file() else None)
        out["aci-marker"] = ({"api_version": "aci/1", "keyset": {}, "quote": "00"}, None)
        return out

    @cached_property
    def report_nonces(self) -> dict[str, bytes | None]:
        out: dict[str, bytes | None] = {}
        for name in self.reports:
            m = self.root / "reports" / name / "manifest.json"
            out[name] = bytes.fromhex(json.loads(m.read_text())["nonce_hex"]) if m.is_file() else None
        return out

    @cached_property
    def small_reports(self) -> dict[str, dict]:
        """The reports with at most one GPU: verify_report on them is cheap enough to run thousands of times."""
        return {k: v for k, v in self.reports.items() if k.startswith("nanogpt")}

    @cached_property
    def request(self) -> bytes:
        return (self.root / "signatures/phala-docs-2024/request_body.json").read_bytes()

    @cached_property
    def sse(self) -> bytes:
        return (self.root / "signatures/phala-docs-2024/response_body.sse").read_bytes()

    @cached_property
    def signature_vector(self) -> dict:
        return self._json("signatures/phala-docs-2024/signature_vector.json")

    @cached_property
    def signature_record(self) -> str:
        v = self.signature_vector
        return json.dumps({"text": v["text"], "signature": v["signature"], "signing_algo": "ecdsa"})

    @cached_property
    def exchange_dict(self) -> dict:
        from phalanb.wire.exchange import Exchange

        return Exchange.from_bytes(request_bytes=self.request, response_bytes=self.sse).to_dict()

    @cached_property
    def bundle_text(self) -> str:
        """A real-data audit bundle: the 2024 docs exchange and signature with the nanogpt-2026-06 report."""
        from phalanb.audit.bundle import make_bundle
        from phalanb.wire.exchange import Exchange
        from phalanb.policy import Policy
        from phalanb.vllm.signatures import SignatureRecord

        ex = Exchange.from_bytes(request_bytes=self.request, response_bytes=self.sse)
        sig = SignatureRecord.from_json(self.signature_record)
        b = make_bundle(ex, sig, policy=Policy(), verdict=None, report=self.reports["nanogpt-gemma-2026-06"],
                        nonce=self.report_nonces["nanogpt-gemma-2026-06"], verified_at=1781056145.0)
        return json.dumps(b.to_dict())

    @cached_property
    def batch_text(self) -> str:
        header = {"kind": "phalanb.audit-batch",
                  "attestation": {"report": self.reports["nanogpt-gemma-2026-06"],
                                  "nonce": self.report_nonces["nanogpt-gemma-2026-06"].hex()},
                  "policy": {"trust": "production"}, "verified_at": 1781056145.0}
        line = {"exchange": self.exchange_dict, "signature": json.loads(self.signature_record)}
        return json.dumps(header) + "\n" + json.dumps(line) + "\n" + json.dumps(line) + "\n"


def framed_batch(header_text: str, metas: list[bytes], request: bytes, response: bytes) -> bytes:
    """A framed batch (phalanb.wire.frames): the header line, then one frame holding a record per meta."""
    from phalanb.wire import frames as _frames

    records = [_frames.RECORD_HEAD.pack(len(m), len(request), len(response)) + m + request + response for m in metas]
    payload = b"".join(records)
    return (header_text.encode("utf-8", "surrogatepass") + b"\n"
            + _frames.FRAME_HEAD.pack(_frames.MAGIC, len(payload), len(records)) + payload)


def _chain_file(root: Path, record: str) -> bytes | None:
    import sys

    sys.path.insert(0, str(Path(__file__).resolve().parent / "gpu"))
    from gpu_table import NVIDIA_TABLE

    for r in NVIDIA_TABLE:
        if r.name == record and r.chain:
            return (root / "nvidia" / r.chain).read_bytes()
    return None


# --------------------------------------------------------------------------------------------------------------
# Generic mutators

INTERESTING_U8 = (0x00, 0x01, 0x7F, 0x80, 0xFF)
INTERESTING_LEN = (0, 1, 2, 3, 4, 63, 64, 96, 384, 0x7F, 0x80, 0xFF, 0x100, 0xFFFF, 0x10000, 0x7FFFFFFF,
                   0x80000000, 0xFFFFFFFF)


def mutate_bytes(rng: random.Random, data: bytes, others: list[bytes] = ()) -> bytes:
    """One random structural mutation of ``data`` (flip, overwrite, insert, delete, duplicate, truncate, splice)."""
    b = bytearray(data)
    op = rng.randrange(9)
    n = len(b)
    if n == 0 or op == 8:
        return bytes(rng.getrandbits(8) for _ in range(rng.randrange(0, 64)))
    i = rng.randrange(n)
    if op == 0:
        for _ in range(rng.randint(1, 8)):
            j = rng.randrange(n)
            b[j] ^= 1 << rng.randrange(8)
    elif op == 1:
        b[i] = rng.choice(INTERESTING_U8)
    elif op == 2:
        size = rng.choice((1, 2, 3, 4))
        b[i:i + size] = rng.choice(INTERESTING_LEN).to_bytes(8, "little")[:size]
    elif op == 3:
        b[i:i] = bytes(rng.getrandbits(8) for _ in range(rng.randint(1, 32)))
    elif op == 4:
        del b[i:i + rng.randint(1, 64)]
    elif op == 5:
        j = rng.randrange(i, n)
        b[j:j] = b[i:j + 1][:4096]
    elif op == 6:
        del b[i:]
    else:
        other = rng.choice(list(others)) if others else data
        j = rng.randrange(len(other)) if other else 0
        b[i:] = other[j:]
    return bytes(b)


def random_bytes(rng: random.Random) -> bytes:
    n = rng.choice((0, 1, 2, 4, 16, 48, 64, 100, 700, 5000))
    return bytes(rng.getrandbits(8) for _ in range(rng.randrange(n + 1)))


_PLACEHOLDER = "\u0000phalanb-fuzz-raw\u0000"
# JSON texts that Python's json module handles badly: deep nesting (RecursionError), integers beyond the 4300-digit
# conversion limit (ValueError, not JSONDecodeError), non-finite numbers, huge exponents.
_NASTY_JSON = ("[" * 50000 + "]" * 50000, "{\"a\":" * 30000 + "1" + "}" * 30000, "1" * 5000, "-" + "9" * 4400,
               "NaN", "Infinity", "-Infinity", "1e400", "-1e400", "1e-400", "0.1e99999999")


def random_json_value(rng: random.Random, depth: int = 0) -> Any:
    """A random JSON-able value; sometimes a placeholder that :func:`dumps_with_raw` turns into nasty raw JSON."""
    k = rng.randrange(16)
    if k == 0:
        return None
    if k == 1:
        return rng.choice((True, False))
    if k == 2:
        return rng.choice((0, 1, -1, 2**31, 2**63, -2**64, 10**30, 27, 28))
    if k == 3:
        return rng.choice((0.5, -0.0, 1e308, 1.5e-300))
    if k == 4:
        return "".join(rng.choice("0123456789abcdef") for _ in range(rng.choice((0, 1, 2, 31, 64, 65, 96, 128))))
    if k == 5:
        return base64.b64encode(bytes(rng.getrandbits(8) for _ in range(rng.randrange(200)))).decode()
    if k == 6:
        return "".join(chr(rng.choice((rng.randrange(0x20, 0x7F), rng.randrange(0x80, 0x3000),
                                       rng.randrange(0xD800, 0xE000), 0, 0x0B, ord(":"), ord(".")))) for _ in
                       range(rng.randrange(40)))
    if k == 7:
        return rng.choice(("", "0x", "ecdsa", "ed25519", "HOPPER", "JWT", "chutes", "tinfoil", "[DONE]", "GPU-0",
                           "GPU-\u00b2", "GPU-\u0661", "-----BEGIN CERTIFICATE-----", "11e001ff", "data: x"))
    if k == 8 and depth < 4:
        return [random_json_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    if k == 9 and depth < 4:
        return {random_key(rng): random_json_value(rng, depth + 1) for _ in range(rng.randrange(4))}
    if k == 10:
        return _PLACEHOLDER + str(rng.randrange(len(_NASTY_JSON)))
    return rng.choice((0, "", [], {}, "a" * rng.choice((1, 100, 10000))))


def random_key(rng: random.Random) -> str:
    return rng.choice(("nonce", "evidence", "certificate", "arch", "evidence_list", "text", "signature", "imr",
                       "event_type", "digest", "event", "event_payload", "intel_quote", "nvidia_payload",
                       "signing_address", "kind", "x", "", "\u00e9"))


def dumps_with_raw(obj: Any) -> str:
    text = json.dumps(obj)
    for i, nasty in enumerate(_NASTY_JSON):
        text = text.replace(json.dumps(_PLACEHOLDER + str(i)), nasty)
    return text


def _paths(obj: Any, prefix: tuple = ()) -> list[tuple]:
    out = [prefix]
    if isinstance(obj, dict):
        for k, v in obj.items():
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(obj, list):
        for i, v in enumerate(obj[:64]):
            out.extend(_paths(v, prefix + (i,)))
    return out


def mutate_json(rng: random.Random, obj: Any, *, rounds: int | None = None) -> Any:
    """A deep copy of ``obj`` with one to three nodes replaced, deleted or duplicated (structure-aware fuzzing)."""
    obj = json.loads(json.dumps(obj))
    for _ in range(rounds or rng.randint(1, 3)):
        paths = _paths(obj)
        path = rng.choice(paths)
        if not path:
            obj = random_json_value(rng)
            continue
        parent = obj
        for p in path[:-1]:
            parent = parent[p]
        last = path[-1]
        op = rng.randrange(5)
        if op == 0 and isinstance(parent, dict):
            del parent[last]
        elif op == 1 and isinstance(parent[last], str) and parent[last]:
            s = parent[last]
            i = rng.randrange(len(s))
            parent[last] = s[:i] + rng.choice(("", "0", "Z", "=", "\u00ff", s[i:i + 8])) + s[i + 1:]
        elif op == 2 and isinstance(parent[last], str):
            parent[last] = parent[last][:rng.randrange(len(parent[last]) + 1)]
        else:
            parent[last] = random_json_value(rng)
    return obj


def mutate_json_text(rng: random.Random, obj: Any) -> str:
    """Mutated JSON text: usually structure-aware, sometimes with bytes broken too."""
    text = dumps_with_raw(mutate_json(rng, obj))
    if rng.random() < 0.2:
        raw = mutate_bytes(rng, text.encode())
        return raw.decode("utf-8", errors="surrogateescape")
    return text


# --------------------------------------------------------------------------------------------------------------
# Structured generators: valid framing, random lengths (where raw bytes would never reach deep code)

def quote_with_random_lengths(rng: random.Random, seed: bytes) -> bytes:
    """A real quote with one length, type or version field set to a boundary or random value."""
    from phalanb.tdx import parse_quote

    q = parse_quote(seed)
    fields = {f.name: f for f in q.fields() if f.name in (
        "version", "att_key_type", "tee_type", "body_type", "body_size", "signature_data_len",
        "certification_data_type", "certification_data_size", "qe_auth_data_size", "pck_cert_type",
        "pck_cert_data_size")}
    f = fields[rng.choice(sorted(fields))]
    value = rng.choice(INTERESTING_LEN + (rng.getrandbits(8 * f.size), f.value + 1, max(f.value - 1, 0),
                                          f.value + rng.randint(-70, 70) if isinstance(f.value, int) else 0))
    b = bytearray(q.raw)
    b[f.offset:f.offset + f.size] = (value % (1 << (8 * f.size))).to_bytes(f.size, "little")
    if rng.random() < 0.3:
        del b[rng.randrange(len(b)):]
    return bytes(b)


def spdm_with_random_lengths(rng: random.Random, seed: bytes) -> bytes:
    """Real SPDM evidence with NumberOfBlocks, L1, L2, a block's sizes or an opaque DataSize set at random."""
    from phalanb.gpu import parse_evidence

    ev = parse_evidence(seed)
    b = bytearray(ev.raw)
    rf = {f.name: f for f in ev.response.fields}
    choice = rng.randrange(5)
    if choice == 0:
        f = rf["response.NumberOfBlocks"]
    elif choice == 1:
        f = rf["response.MeasurementRecordLength"]
    elif choice == 2:
        f = rf["response.OpaqueLength"]
    elif choice == 3 and ev.response.measurement_blocks:
        blk = rng.choice(ev.response.measurement_blocks)
        at = blk.offset + rng.choice((2, 5))  # MeasurementSize or DMTFSpecMeasurementValueSize
        b[at:at + 2] = rng.choice(INTERESTING_LEN + (rng.getrandbits(16),)).to_bytes(8, "little")[:2]
        return bytes(b)
    else:
        if not ev.opaque.fields:
            return bytes(b)
        of = rng.choice(ev.opaque.fields)
        at = of.offset + rng.choice((0, 2))  # DataType or DataSize
        b[at:at + 2] = rng.choice(INTERESTING_LEN + (rng.getrandbits(16),)).to_bytes(8, "little")[:2]
        return bytes(b)
    value = rng.choice(INTERESTING_LEN + (rng.getrandbits(8 * f.size),)) % (1 << (8 * f.size))
    b[f.offset:f.offset + f.size] = value.to_bytes(f.size, "little")
    return bytes(b)


def ccel_with_random_lengths(rng: random.Random, seed: bytes) -> bytes:
    """A CCEL log whose Spec ID event or one event record carries a random count or size."""
    import struct

    b = bytearray(seed)
    choice = rng.randrange(4)
    if choice == 0:      # Spec ID event size
        struct.pack_into("<I", b, 28, rng.choice(INTERESTING_LEN))
    elif choice == 1:    # number of algorithms
        struct.pack_into("<I", b, 32 + 24, rng.choice(INTERESTING_LEN))
    elif choice == 2:    # a digest size in the Spec ID event
        struct.pack_into("<H", b, 32 + 28 + 2 + 4 * rng.randrange(2), rng.choice(INTERESTING_LEN) & 0xFFFF)
    else:                # an event's count, type or size field, somewhere after the Spec ID event
        spec = struct.unpack_from("<I", b, 28)[0]
        pos = 32 + spec + rng.randrange(0, max(1, min(len(b) - 32 - spec - 4, 4000)))
        struct.pack_into("<I", b, min(pos, len(b) - 4), rng.choice(INTERESTING_LEN))
    return bytes(b)


class NrasForge:
    """Signs NRAS-shaped answers with a throwaway P-384 key, so fuzzed *claims* reach the code after the signature
    check (exp/nbf/iat handling, submods, per-GPU claims, identity) — random tokens would stop at the signature."""

    ISSUER = "https://nras.fuzz.invalid"

    def __init__(self) -> None:
        from cryptography.hazmat.primitives.asymmetric import ec

        from cryptography import x509
        from cryptography.hazmat.primitives import hashes
        from cryptography.x509.oid import NameOID

        from phalanb.gpu.nras import jwk_of
        from phalanb.gpu.sim import _fixed_nras_intermediate, simulated_nras_anchor

        self.key = ec.derive_private_key(0xF022, ec.SECP384R1())
        # Its key chains to the simulated NRAS intermediate, so verify_nras(anchor=forge.anchor) gets past the key
        # check to the claims; under NVIDIA's anchor (the default) the same tokens are refused.
        ca_key, ca = _fixed_nras_intermediate()
        self.anchor = simulated_nras_anchor()
        leaf = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "fuzz")]))
                .issuer_name(ca.subject).public_key(self.key.public_key()).serial_number(0xF022)
                .not_valid_before(ca.not_valid_before_utc).not_valid_after(ca.not_valid_after_utc)
                .sign(ca_key, hashes.SHA384()))
        self.jwks = {"keys": [jwk_of(self.key.public_key(), "fuzz-kid", [leaf, ca])]}

    def answer(self, rng: random.Random) -> tuple[Any, str]:
        nonce = os.urandom(32).hex() if rng.random() < 0.5 else "ab" * 32
        names = [rng.choice(("GPU-0", "GPU-1", "GPU-7", "GPU-\u00b2", "GPU-\u0661", "GPU-x", "", "GPU-99999999999"))
                 for _ in range(rng.randint(0, 3))]
        gpus = {}
        for name in names:
            claims = {"iss": self.ISSUER, "exp": 2e9, "iat": 1.7e9, "measres": "success", "secboot": True,
                      "dbgstat": "disabled", "x-nvidia-gpu-attestation-report-nonce-match": True, "eat_nonce": nonce,
                      "ueid": str(rng.getrandbits(64))}
            gpus[name] = self.sign(mutate_json(rng, claims, rounds=rng.randint(0, 2)))
        overall = {"iss": self.ISSUER, "exp": 2e9, "iat": 1.7e9, "nbf": 1.6e9, "eat_nonce": nonce,
                   "x-nvidia-overall-att-result": True,
                   "submods": {n: ["DIGEST", ["SHA-256", hashlib.sha256(t.encode()).hexdigest()]]
                               for n, t in gpus.items()}}
        overall = mutate_json(rng, overall, rounds=rng.randint(0, 2))
        if rng.random() < 0.3 and isinstance(overall, dict):
            # Non-finite and huge times go in as raw JSON numbers (json.dumps would refuse some of them).
            overall[rng.choice(("exp", "nbf", "iat"))] = _PLACEHOLDER + str(rng.choice((6, 7, 8, 9, 10, 2)))
        answer: Any = [["JWT", self.sign(overall)], gpus]
        if rng.random() < 0.2:
            answer = mutate_json(rng, answer)
        return answer, nonce

    def sign(self, claims: Any) -> str:
        head = base64.urlsafe_b64encode(b'{"kid":"fuzz-kid","alg":"ES384"}').rstrip(b"=").decode()
        return _resign(head, dumps_with_raw(claims).encode("utf-8", "surrogatepass"), self.key)


def _resign(head_b64: str, body_json: bytes, key: Any) -> str:
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature

    b64 = lambda d: base64.urlsafe_b64encode(d).rstrip(b"=").decode()  # noqa: E731
    signing_input = f"{head_b64}.{b64(body_json)}"
    r, s = decode_dss_signature(key.sign(signing_input.encode(), ec.ECDSA(hashes.SHA384())))
    return f"{signing_input}.{b64(r.to_bytes(48, 'big') + s.to_bytes(48, 'big'))}"


# --------------------------------------------------------------------------------------------------------------
# The targets: one function per parser, and a generator of inputs for it


@dataclass
class Target:
    name: str
    call: Callable[[Any], Any]
    generate: Callable[[random.Random, Corpus], Any]
    weight: float = 1.0  # share of the runner's inputs (cheap parsers get more)


def _pick(rng: random.Random, *choices: tuple[float, Callable[[], Any]]) -> Any:
    total = sum(w for w, _ in choices)
    x = rng.random() * total
    for w, fn in choices:
        x -= w
        if x <= 0:
            return fn()
    return choices[-1][1]()


def _text_of(rng: random.Random, b: bytes) -> Any:
    """Bytes, or the same as str when they decode (parsers accept both)."""
    if rng.random() < 0.5:
        try:
            return b.decode("utf-8")
        except UnicodeDecodeError:
            pass
    return b


def _gen_quote(rng: random.Random, c: Corpus) -> Any:
    seeds = [q.raw for q in c.quotes]
    return _pick(rng,
                 (1, lambda: random_bytes(rng)),
                 (3, lambda: mutate_bytes(rng, rng.choice(seeds), seeds)),
                 (3, lambda: quote_with_random_lengths(rng, rng.choice(seeds))),
                 (1, lambda: rng.choice(seeds)[:rng.randrange(len(rng.choice(seeds)))]),
                 (2, lambda: _text_of(rng, mutate_bytes(rng, rng.choice(c.quote_texts).encode()))))


def _gen_ccel(rng: random.Random, c: Corpus) -> bytes:
    return _pick(rng,
                 (1, lambda: random_bytes(rng)),
                 (3, lambda: mutate_bytes(rng, c.ccel)),
                 (3, lambda: ccel_with_random_lengths(rng, c.ccel)),
                 (1, lambda: c.ccel[:rng.randrange(len(c.ccel))]))


def _gen_dstack_log(rng: random.Random, c: Corpus) -> Any:
    seed = json.loads(rng.choice(c.dstack_logs))
    return _pick(rng,
                 (1, lambda: random_bytes(rng)),
                 (3, lambda: mutate_json_text(rng, seed)),
                 (1, lambda: mutate_json_text(rng, seed).encode("utf-8", "surrogatepass")),
                 (2, lambda: mutate_json(rng, seed)),
                 (1, lambda: json.dumps(mutate_json_text(rng, seed))))  # JSON-encoded twice, as some services do


def _gen_event_log(rng: random.Random, c: Corpus) -> Any:
    return _gen_ccel(rng, c) if rng.random() < 0.4 else _gen_dstack_log(rng, c)


def _gen_collateral(rng: random.Random, c: Corpus) -> Any:
    seed = json.loads(rng.choice(c.collaterals))
    # Strings that do not start with "{" are file paths by design (load_collateral's API), so fuzzed text always
    # comes as JSON text, bytes or an object.
    def obj() -> Any:
        v = mutate_json(rng, seed)
        return v if not isinstance(v, str) else "{" + v

    return _pick(rng,
                 (2, obj),
                 (2, lambda: "{" + mutate_json_text(rng, seed)[1:]),
                 (1, lambda: mutate_bytes(rng, json.dumps(seed).encode())),
                 (1, lambda: {"collateral": mutate_json(rng, seed), "source": random_json_value(rng)}))


def _gen_verify_collateral(rng: random.Random, c: Corpus) -> tuple:
    # A real quote with mutated collateral: dcap-qvl and phalanb's reading of TCB info, QE identity and CRLs.
    index = rng.randrange(2)
    seed = json.loads(c.collaterals[index])
    col = mutate_json(rng, seed)
    q = c.quotes[0] if index == 0 else c.quotes[1]
    return q.raw, col if isinstance(col, dict) else seed, q.at


def _call_verify_collateral(args: tuple) -> Any:
    from phalanb.tdx import verify_with_collateral

    raw, col, at = args
    return verify_with_collateral(raw, col, at=at)


def _gen_spdm(rng: random.Random, c: Corpus) -> bytes:
    seeds = [g.evidence for g in c.gpus[:6]]
    return _pick(rng,
                 (1, lambda: random_bytes(rng)),
                 (1, lambda: b"\x11\xe0" + random_bytes(rng)),
                 (3, lambda: mutate_bytes(rng, rng.choice(seeds), seeds)),
                 (3, lambda: spdm_with_random_lengths(rng, rng.choice(seeds))),
                 (1, lambda: rng.choice(seeds)[:rng.randrange(len(rng.choice(seeds)))]))


def _gen_payload(rng: random.Random, c: Corpus) -> Any:
    seed = json.loads(rng.choice(c.payload_texts))
    if isinstance(seed, str):
        seed = json.loads(seed)
    return _pick(rng,
                 (1, lambda: random_bytes(rng)),
                 (3, lambda: mutate_json_text(rng, seed)),
                 (3, lambda: mutate_json(rng, seed)),
                 (1, lambda: json.dumps(json.dumps(mutate_json(rng, seed)))),
                 (1, lambda: _payload_with_bad_evidence(rng, c, seed)))


def _payload_with_bad_evidence(rng: random.Random, c: Corpus, seed: Any) -> Any:
    # Valid JSON shape, evidence replaced by a mutated SPDM blob in one of the accepted encodings.
    ev = _gen_spdm(rng, c)
    enc = rng.randrange(3)
    text = (base64.b64encode(ev).decode() if enc == 0 else base64.b64encode(ev.hex().encode()).decode() if enc == 1
            else ev.hex())
    item = {"evidence": text, "certificate": base64.b64encode(rng.choice(c.chains)).decode(), "arch": "HOPPER"}
    return {"nonce": "00" * 32, "arch": "HOPPER", "evidence_list": [item]}


def _gen_chain(rng: random.Random, c: Corpus) -> Any:
    seed = rng.choice(c.chains)
    begin, end = b"-----BEGIN CERTIFICATE-----", b"-----END CERTIFICATE-----"
    return _pick(rng,
                 (1, lambda: random_bytes(rng)),
                 (4, lambda: _text_of(rng, mutate_bytes(rng, seed, c.chains))),
                 (1, lambda: begin * rng.randint(1, 2000) + b"x" * rng.randrange(100) + end * rng.randint(0, 1)),
                 (1, lambda: begin + base64.encodebytes(random_bytes(rng)) + end))


def _gen_nras_text(rng: random.Random, c: Corpus) -> Any:
    text, _, _, _ = rng.choice(c.nras)
    seed = json.loads(text)
    return _pick(rng,
                 (1, lambda: random_bytes(rng)),
                 (3, lambda: mutate_json_text(rng, seed)),
                 (2, lambda: mutate_json(rng, seed)),
                 (1, lambda: mutate_bytes(rng, text.encode())))


def _gen_jwt(rng: random.Random, c: Corpus) -> Any:
    tok = rng.choice(c.jwts)
    head, body, sig = tok.split(".")

    def reencoded() -> str:
        claims = json.loads(base64.urlsafe_b64decode(body + "=" * (-len(body) % 4)))
        new = dumps_with_raw(mutate_json(rng, claims)).encode("utf-8", "surrogatepass")
        return head + "." + base64.urlsafe_b64encode(new).rstrip(b"=").decode() + "." + sig

    return _pick(rng,
                 (1, lambda: random_json_value(rng)),
                 (3, lambda: mutate_bytes(rng, tok.encode()).decode("latin-1")),
                 (3, reencoded),
                 (1, lambda: ".".join(rng.choice(("", "e30", "bnVsbA", "W10", "!!", head, body))
                                      for _ in range(rng.choice((1, 2, 3, 3, 4))))))


_FORGE: NrasForge | None = None


def _forge() -> NrasForge:
    global _FORGE
    if _FORGE is None:
        _FORGE = NrasForge()
    return _FORGE


def _gen_verify_nras(rng: random.Random, c: Corpus) -> tuple:
    if rng.random() < 0.6:
        answer, nonce = _forge().answer(rng)
        jwks: Any = _forge().jwks
        if rng.random() < 0.2:
            jwks = mutate_json(rng, jwks)
        return answer, jwks, rng.choice((nonce, None, "00" * 32, b"\0" * 32)), rng.choice((1.8e9, None, 1.65e9)), \
            NrasForge.ISSUER
    text, jwks, at, nonce = rng.choice(c.nras)
    answer = mutate_json(rng, json.loads(text)) if rng.random() < 0.8 else json.loads(text)
    if rng.random() < 0.3:
        jwks = mutate_json(rng, jwks)
    return answer, jwks, nonce, at, None


def _call_verify_nras(args: tuple) -> Any:
    from phalanb.gpu.nras import NRAS_ISSUER, verify_nras

    answer, jwks, nonce, at, issuer = args
    anchor = _forge().anchor if issuer == NrasForge.ISSUER else None
    return verify_nras(answer, jwks=jwks, expected_nonce=nonce, at=at, issuer=issuer or NRAS_ISSUER, anchor=anchor)


def _gen_report_value(rng: random.Random, c: Corpus) -> Any:
    if rng.random() < 0.4:  # the shapes of issue 12 (Tinfoil, Chutes evidence API, Venice, gateway, SEV-SNP…)
        seed = c.field_reports[rng.choice(sorted(c.field_reports))][0]
    else:
        seed = c.reports[rng.choice(sorted(c.reports))]
    return _pick(rng,
                 (1, lambda: random_bytes(rng)),
                 (4, lambda: mutate_json(rng, seed)),
                 (1, lambda: mutate_json_text(rng, seed)),
                 (1, lambda: {random_key(rng): random_json_value(rng) for _ in range(rng.randrange(5))}))


def _gen_verify_report(rng: random.Random, c: Corpus) -> tuple:
    # The small (one-GPU) reports keep this target cheap; the big ones come in now and then.
    if rng.random() < 0.3:  # the shapes of issue 12; the small ones (no or one GPU) mostly
        small = [k for k in sorted(c.field_reports) if k in SMALL_FIELD_REPORTS]
        name = rng.choice(small if rng.random() < 0.8 else sorted(c.field_reports))
        seed, client = c.field_reports[name]
        report = mutate_json(rng, seed, rounds=rng.randint(1, 2))
        return report, rng.choice((client, None, os.urandom(32)))
    pool = c.small_reports if rng.random() < 0.85 else c.reports
    name = rng.choice(sorted(pool))
    report = mutate_json(rng, pool[name], rounds=rng.randint(1, 2))
    nonce = rng.choice((c.report_nonces.get(name), None, os.urandom(32)))
    return report, nonce


def _call_verify_report(args: tuple) -> Any:
    from phalanb.verdict import Verdict
    from phalanb.vllm.verify import verify_report

    report, nonce = args
    verdict = verify_report(report, nonce=nonce)
    assert isinstance(verdict, Verdict), "verify_report must return a Verdict"
    return verdict


def _gen_sse(rng: random.Random, c: Corpus) -> bytes:
    return _pick(rng,
                 (1, lambda: random_bytes(rng)),
                 (4, lambda: mutate_bytes(rng, c.sse)),
                 (1, lambda: c.sse[:rng.randrange(len(c.sse))]),
                 (1, lambda: b"data: " + dumps_with_raw(random_json_value(rng)).encode("utf-8", "surrogatepass")
                  + b"\n\n" + b"data: [DONE]\n\n"))


def _call_sse_decoder(data: bytes) -> Any:
    from phalanb.wire.sse import SSEDecoder

    # Feed in uneven chunks, as a network delivers them; the event boundaries must not depend on the split.
    dec = SSEDecoder()
    rng = random.Random(len(data))
    events = []
    i = 0
    while i < len(data):
        n = rng.choice((1, 2, 7, 64, 1000))
        events.extend(dec.feed(data[i:i + n]))
        i += n
    dec.close()
    return events


def _gen_exchange_bytes(rng: random.Random, c: Corpus) -> tuple:
    req = mutate_bytes(rng, c.request) if rng.random() < 0.5 else c.request
    resp = _gen_sse(rng, c) if rng.random() < 0.7 else mutate_bytes(rng, b'{"id":"x","choices":[{"message":'
                                                                       b'{"content":"hi"}}]}')
    return req, resp, rng.choice((None, True, False))


def _call_exchange_bytes(args: tuple) -> Any:
    from phalanb.wire.exchange import Exchange

    req, resp, stream = args
    return Exchange.from_bytes(request_bytes=req, response_bytes=resp, stream=stream)


def _gen_exchange_dict(rng: random.Random, c: Corpus) -> Any:
    return _pick(rng, (4, lambda: mutate_json(rng, c.exchange_dict)), (1, lambda: random_json_value(rng)))


def _gen_signed_text(rng: random.Random, c: Corpus) -> Any:
    text = c.signature_vector["text"]
    return _pick(rng,
                 (1, lambda: random_json_value(rng)),
                 (4, lambda: mutate_bytes(rng, text.encode()).decode("utf-8", "surrogateescape")),
                 (1, lambda: "model:" + text))


def _gen_signature_record(rng: random.Random, c: Corpus) -> Any:
    seed = json.loads(c.signature_record)
    return _pick(rng,
                 (1, lambda: random_bytes(rng)),
                 (3, lambda: mutate_json_text(rng, seed)),
                 (1, lambda: mutate_json_text(rng, seed).encode("utf-8", "surrogatepass")))


def _gen_recover(rng: random.Random, c: Corpus) -> tuple:
    v = c.signature_vector
    sig = v["signature"]
    return (rng.choice((v["text"], random_json_value(rng))),
            rng.choice((mutate_bytes(rng, sig.encode()).decode("latin-1"), "0x" + sig, random_json_value(rng),
                        "0x" + "11" * 64 + rng.choice(("1b", "1c", "00", "ff")),
                        "0x" + "ff" * 64 + "1b")),
            rng.choice(("ecdsa", "ed25519", "rsa", None, random_json_value(rng))),
            rng.choice((None, "22" * 32, random_json_value(rng))))


def _call_recover(args: tuple) -> Any:
    from phalanb.vllm.signatures import recover_signer

    text, sig, algo, pub = args
    return recover_signer(text, sig, algo, public_key=pub)


def _gen_bundle(rng: random.Random, c: Corpus) -> Any:
    seed = json.loads(c.bundle_text)
    return _pick(rng,
                 (1, lambda: random_bytes(rng)),
                 (4, lambda: mutate_json(rng, seed)),
                 (2, lambda: mutate_json_text(rng, seed)),
                 (1, lambda: mutate_bytes(rng, c.bundle_text.encode())))


def _call_bundle(value: Any) -> Any:
    from phalanb.audit.bundle import parse_bundle, reverify

    # A bundle that loads must also re-verify to a verdict (that is what loading one is for).
    return reverify(parse_bundle(value), trust="simulated")


def _gen_jsonl(rng: random.Random, c: Corpus) -> bytes:
    lines = c.batch_text.splitlines()
    header, row = json.loads(lines[0]), json.loads(lines[1])
    k = rng.randrange(4)
    if k == 0:
        return mutate_bytes(rng, c.batch_text.encode())
    if k == 1:
        return (dumps_with_raw(mutate_json(rng, header)) + "\n" + lines[1] + "\n").encode("utf-8", "surrogatepass")
    if k == 2:
        return (lines[0] + "\n" + dumps_with_raw(mutate_json(rng, row)) + "\n").encode("utf-8", "surrogatepass")
    return random_bytes(rng)


_TMP: Path | None = None


def _tmp() -> Path:
    global _TMP
    if _TMP is None:
        import atexit
        import shutil

        _TMP = Path(tempfile.mkdtemp(prefix="phalanb-fuzz-"))
        atexit.register(shutil.rmtree, _TMP, True)
    return _TMP


def _call_jsonl(data: bytes) -> Any:
    from phalanb.audit.batch import load_items

    p = _tmp() / f"batch-{os.getpid()}.jsonl"
    p.write_bytes(data)
    return load_items([p])


def _framed_parts(c: Corpus) -> tuple[dict, dict]:
    lines = c.batch_text.splitlines()
    header = {**json.loads(lines[0]), "framing": "phalanb.frames/1"}
    meta = json.loads(lines[1])
    for key in ("request_b64", "response_b64", "chat_id", "model", "text", "usage", "finish_reason"):
        meta["exchange"].pop(key, None)
    return header, meta


def _gen_framed(rng: random.Random, c: Corpus) -> bytes:
    """A framed batch of the real exchange: bytes broken, the header or a record's meta mutated, a length or count
    set to a boundary or random value, or the file cut short."""
    import struct

    header, meta = _framed_parts(c)
    good_meta = json.dumps(meta).encode()
    data = framed_batch(json.dumps(header), [good_meta, good_meta], c.request, c.sse)
    k = rng.randrange(5)
    if k == 0:
        return mutate_bytes(rng, data)
    if k == 1:
        return framed_batch(dumps_with_raw(mutate_json(rng, header)), [good_meta], c.request, c.sse)
    if k == 2:
        bad = dumps_with_raw(mutate_json(rng, meta)).encode("utf-8", "surrogatepass")
        return framed_batch(json.dumps(header), [good_meta, bad], c.request, c.sse)
    body = data.index(b"\n") + 1
    if k == 3:  # a frame or record head field: magic, payload length, count, meta/request/response lengths
        at = body + rng.choice((4, 8, 12, 16, 20)) + rng.choice((0, 0, 0, 12 + len(good_meta) + len(c.request)
                                                                  + len(c.sse)))
        value = rng.choice((0, 1, 11, 12, 2 ** 31, 2 ** 32 - 1, rng.randrange(2 ** 32)))
        return data[:at] + struct.pack("<I", value) + data[at + 4:]
    return data[:rng.randrange(body, len(data))]


def _call_framed(data: bytes) -> Any:
    """The loader, then the workers' fast reader over the same file: once the loader has read it, the fast reader
    must read every record too (it hands what it does not read itself to the loader's rules)."""
    from phalanb.audit import fastpath as _batchscan
    from phalanb.audit.batch import load_items

    p = _tmp() / f"batch-{os.getpid()}.pbatch"
    p.write_bytes(data)
    items = load_items([p])
    body = data.index(b"\n") + 1
    seen = 0
    for start, end in _batchscan.spans(str(p), body, framed=True):
        _, replies = _batchscan.read_span(str(p), start, end, None, True)
        seen += sum(1 for _ in replies)
    assert seen == len(items), (seen, len(items))
    return items


def _call_event_log(value: Any) -> Any:
    from phalanb.tdx import parse_event_log

    return parse_event_log(value)


def _gen_jwks(rng: random.Random, c: Corpus) -> Any:
    # Real NVIDIA JWKS (x5c chains to the pinned intermediate) with JSON-level mutations: the key checks must
    # refuse or accept, never crash.
    jwks = dict(c.nras[rng.randrange(len(c.nras))][1])
    keys = list(jwks.get("keys", []))[:3]
    if rng.random() < 0.5 and keys:
        key = dict(keys[0])
        chain = list(key.get("x5c", []))
        if chain and rng.random() < 0.5:
            raw = base64.b64decode(chain[0])
            chain[0] = base64.b64encode(mutate_bytes(rng, raw)).decode()
        key["x5c"] = chain if rng.random() < 0.8 else mutate_json(rng, chain)
        keys[0] = key
    return mutate_json(rng, {"keys": keys}, rounds=rng.randint(0, 2))


def _call_jwks(document: Any) -> Any:
    from phalanb.gpu.nras import Jwks

    return Jwks(document)


def _gen_time(rng: random.Random, c: Corpus) -> Any:
    return _pick(rng, (1, lambda: random_json_value(rng)),
                 (1, lambda: rng.choice(("NaN", "inf", "-inf", "1e309", "-0", "now", " 12 ", "0x10", "1_000", ""))),
                 (1, lambda: rng.choice((float("nan"), float("inf"), -1e-9, 2.5e11, 1 << 70, True, None))))


def _call_time(value: Any) -> Any:
    from phalanb.timeutil import parse_time

    return parse_time(value, field="at", allow_now=True)


def _gen_compressed(rng: random.Random, c: Corpus) -> tuple:
    import gzip
    import zlib

    body = os.urandom(rng.randint(0, 300)) if rng.random() < 0.3 else b'{"a": "' + b"0" * rng.randint(0, 5000) + b'"}'
    encoding = rng.choice(("gzip", "x-gzip", "deflate", "identity", None, "br", " GZIP "))
    packed = gzip.compress(body) if "gzip" in str(encoding).lower() else zlib.compress(body)
    if rng.random() < 0.2:
        packed += packed  # two gzip members, or trailing data after a zlib stream
    return mutate_bytes(rng, packed) if rng.random() < 0.6 else packed, encoding, rng.choice((64, 4096, 1 << 20))


def _call_compressed(args: tuple) -> Any:
    from phalanb.wire.client import _decode_content

    body, encoding, limit = args
    return _decode_content(body, encoding, limit=limit, what="fuzz")


# -- ACI (the gateway protocol): reports, receipts, sessions, and the whole verification on mutated documents ------

def _aci_seeds(c: Corpus) -> dict[str, Any]:
    seeds = getattr(c, "_aci", None)
    if seeds is None:
        v = c._json("aci/test_vectors.json")["aci"]
        real = (c.root / "aci" / "real" / "phala-gateway-aci1-report-2026-06-28.json").read_bytes()
        stub = (c.root / "aci" / "verifier_ts_stub_report.json").read_bytes()
        seeds = {"reports": [real, stub], "receipt": v["receipt"]["document_jcs"].encode(),
                 "session": v["session"]["document_jcs"].encode()}
        c._aci = seeds
    return seeds


def _gen_aci_doc(kind: str) -> Callable[[random.Random, Corpus], Any]:
    def gen(rng: random.Random, c: Corpus) -> Any:
        s = _aci_seeds(c)
        seed = rng.choice(s["reports"]) if kind == "report" else s[kind]
        doc = json.loads(seed)
        return _pick(rng,
                     (1, lambda: random_bytes(rng)),
                     (3, lambda: mutate_bytes(rng, seed)),
                     (3, lambda: mutate_json_text(rng, doc).encode("utf-8", "surrogatepass")),
                     (1, lambda: seed[:rng.randrange(len(seed))]),
                     (1, lambda: seed.replace(b"1", b"1.0", 1)),  # a float
                     (1, lambda: seed[:-1] + b',"api_version":"aci/1"}'),  # a duplicate member
                     (1, lambda: mutate_json(rng, doc)))
    return gen


def _gen_verify_aci(rng: random.Random, c: Corpus) -> tuple:
    s = _aci_seeds(c)
    which = rng.randrange(3)
    parts = [rng.choice(s["reports"]), s["receipt"], s["session"]]
    parts[which] = _gen_aci_doc(("report", "receipt", "session")[which])(rng, c)
    return tuple(parts)


def _call_verify_aci(args: tuple) -> Any:
    from phalanb.gateway import verify_aci
    from phalanb.policy import Policy

    report, receipt, session = args
    sid = hashlib.sha256(session if isinstance(session, bytes) else b"").hexdigest()
    return verify_aci((b"{}", b"{}"), receipt=receipt, report=report, nonce=bytes(32), sessions={sid: session},
                      policy=Policy(), at=1782664738)


# -- E2EE replies: a sealed reply (buffered and streamed) to a request phalanb prepared ------------------------------

_E2EE_NOW = 1_800_000_000
_E2EE_ANSWER = "the sealed answer: forty-two, and nothing else"


@lru_cache(maxsize=1)
def e2ee_exchange() -> tuple[Any, bytes, bytes]:
    """(the prepared request, its buffered sealed reply, its streamed sealed reply), reproducible (seeded)."""
    from phalanb.aci import e2ee_crypto as ec
    from phalanb.aci.e2ee import AttestedE2EEKey, prepare_request
    from phalanb.aci.verify import EstablishedKeyset
    from phalanb.sim.e2ee import E2EEService

    service = E2EEService.from_seed("fuzz", clock=lambda: _E2EE_NOW, rng=ec.deterministic_rng(b"fuzz-service"))
    keyset = EstablishedKeyset(digest="sha256:" + "ab" * 32, keyset={"e2ee_public_keys": service.keyset_entries()})
    key = AttestedE2EEKey.from_established_keyset(keyset, algo=ec.X25519)
    req = prepare_request({"model": "demo-model", "messages": [{"role": "user", "content": "tell me"}]},
                          model_key=key, now=_E2EE_NOW, rng=ec.deterministic_rng(b"fuzz-client"))
    opened = service.open_request(req.headers, req.body, "/v1/chat/completions")
    body = json.dumps({"id": "chatcmpl-f", "object": "chat.completion",
                       "choices": [{"index": 0, "message": {"role": "assistant", "content": _E2EE_ANSWER}}]})
    buffered = service.seal_response(body.encode(), opened.context)
    sealer = service.stream_sealer(opened.context)
    events = b"".join(b"data: " + json.dumps({"id": "chatcmpl-s", "object": "chat.completion.chunk",
                                              "choices": [{"index": 0, "delta": {"content": part}}]}).encode()
                      + b"\n\n" for part in ("the sealed ", "answer, ", "streamed"))
    streamed = sealer.push(events + b"data: [DONE]\n\n") + sealer.finish()
    return req, buffered, streamed


def _e2ee_outcome(wire: bytes, stream: bool) -> str:
    """"passed" when every sealed field opened and the reply check passed; "failed" when the reader refused it
    (E2EEError) or the check failed."""
    from phalanb.aci.e2ee import check_response_authenticated, decrypt_response, decrypt_stream

    req = e2ee_exchange()[0]
    try:
        out = (decrypt_stream if stream else decrypt_response)(wire, req)
    except PhalanbError:
        return "failed"
    status = check_response_authenticated(out).status.value
    return "failed" if status == "fail" else "passed"


def _gen_e2ee_reply(stream: bool) -> Callable[[random.Random, Corpus], Any]:
    def gen(rng: random.Random, c: Corpus) -> Any:
        seed = e2ee_exchange()[2 if stream else 1]
        clear = b'"content":"' + _E2EE_ANSWER.encode() + b'",'
        return _pick(rng,
                     (1, lambda: random_bytes(rng)),
                     (4, lambda: mutate_bytes(rng, seed)),
                     (1, lambda: seed[:rng.randrange(len(seed))]),
                     (1, lambda: seed.replace(b'"content":', clear + b'"content":', 1)),  # the answer in clear
                     (1, lambda: seed.replace(b'"id":', b'"id":NaN,"id":', 1)),
                     (1, lambda: seed.replace(b'"index":0', b'"index":1e400', 1)))
    return gen


def _call_e2ee_reply(stream: bool) -> Callable[[Any], Any]:
    def call(wire: Any) -> Any:
        from phalanb.aci.e2ee import check_response_authenticated, decrypt_response, decrypt_stream

        return check_response_authenticated((decrypt_stream if stream else decrypt_response)(wire,
                                                                                          e2ee_exchange()[0]))
    return call


def _targets() -> list[Target]:
    from phalanb.aci import parse_aci_report, parse_receipt, parse_session
    from phalanb.audit.bundle import parse_bundle  # noqa: F401  (imported early so import cost is not an input's time)
    from phalanb.audit.batch import load_items  # noqa: F401  (likewise: pandas takes ~2 s to import on a busy machine)
    from phalanb.wire.exchange import Exchange
    from phalanb.gpu import parse_cert_chain, parse_evidence, parse_payload
    from phalanb.gpu.nras import decode_jwt, parse_nras_response
    from phalanb.vllm.report import parse_report
    from phalanb.vllm.signatures import SignatureRecord, parse_signed_text
    from phalanb.wire.sse import parse_sse
    from phalanb.tdx import load_collateral, parse_ccel_log, parse_dstack_log, parse_quote

    return [
        Target("tdx.parse_quote", parse_quote, _gen_quote, 3),
        Target("tdx.parse_event_log", _call_event_log, _gen_event_log, 1.5),
        Target("tdx.parse_dstack_log", parse_dstack_log, _gen_dstack_log, 1),
        Target("tdx.parse_ccel_log", parse_ccel_log, _gen_ccel, 1.5),
        Target("tdx.load_collateral", load_collateral, _gen_collateral, 0.5),
        Target("tdx.verify_with_collateral", _call_verify_collateral, _gen_verify_collateral, 0.4),
        Target("gpu.parse_evidence", parse_evidence, _gen_spdm, 3),
        Target("gpu.parse_payload", parse_payload, _gen_payload, 1),
        Target("gpu.parse_cert_chain", parse_cert_chain, _gen_chain, 1),
        Target("gpu.nras.parse_nras_response", parse_nras_response, _gen_nras_text, 1),
        Target("gpu.nras.decode_jwt", decode_jwt, _gen_jwt, 1.5),
        Target("gpu.nras.verify_nras", _call_verify_nras, _gen_verify_nras, 0.7),
        Target("gpu.nras.Jwks", _call_jwks, _gen_jwks, 0.4),
        Target("timeutil.parse_time", _call_time, _gen_time, 0.5),
        Target("client.decode_content", _call_compressed, _gen_compressed, 0.5),
        Target("report.parse_report", parse_report, _gen_report_value, 1),
        Target("verify.verify_report", _call_verify_report, _gen_verify_report, 0.5),
        Target("sse.parse_sse", parse_sse, _gen_sse, 2),
        Target("sse.SSEDecoder.feed", _call_sse_decoder, _gen_sse, 1),
        Target("exchange.Exchange.from_bytes", _call_exchange_bytes, _gen_exchange_bytes, 1),
        Target("exchange.Exchange.from_dict", Exchange.from_dict, _gen_exchange_dict, 1),
        Target("signatures.parse_signed_text", parse_signed_text, _gen_signed_text, 1.5),
        Target("signatures.SignatureRecord.from_json", SignatureRecord.from_json, _gen_signature_record, 1),
        Target("signatures.recover_signer", _call_recover, _gen_recover, 1),
        Target("audit.parse_bundle", _call_bundle, _gen_bundle, 0.5),
        Target("batch.load_items", _call_jsonl, _gen_jsonl, 0.5),
        Target("batch.load_items.framed", _call_framed, _gen_framed, 0.5),
        Target("aci.parse_aci_report", parse_aci_report, _gen_aci_doc("report"), 1),
        Target("aci.parse_receipt", parse_receipt, _gen_aci_doc("receipt"), 1),
        Target("aci.parse_session", parse_session, _gen_aci_doc("session"), 1),
        Target("aci.verify_aci", _call_verify_aci, _gen_verify_aci, 0.3),
        Target("aci.e2ee.decrypt_response", _call_e2ee_reply(False), _gen_e2ee_reply(False), 0.5),
        Target("aci.e2ee.decrypt_stream", _call_e2ee_reply(True), _gen_e2ee_reply(True), 0.5),
    ]


TARGETS: dict[str, Target] = {}


def targets() -> dict[str, Target]:
    if not TARGETS:
        TARGETS.update({t.name: t for t in _targets()})
    return TARGETS


def truncations(c: Corpus) -> list[tuple[str, str, int]]:
    """(target, seed name, length) for a truncation at every offset of one seed of each binary format."""
    out = []
    q = c.quotes[0]
    out += [("tdx.parse_quote", f"quote:{q.name}", n) for n in range(len(q.raw))]
    g = c.gpus[0]
    out += [("gpu.parse_evidence", f"spdm:{g.name}", n) for n in range(len(g.evidence))]
    # The CCEL area is 256 KiB, of which the 43 events fill the first 18 kB; the rest is 0xFF padding, where every
    # cut reads the same. Cut at every offset of the events and 512 bytes past them.
    end = _ccel_end(c.ccel) + 512
    out += [("tdx.parse_ccel_log", "ccel", n) for n in range(0, min(end, len(c.ccel)))]
    return out


def _ccel_end(data: bytes) -> int:
    from phalanb.tdx import parse_ccel_log

    last = parse_ccel_log(data).events[-1]
    return last.offset + 12 + 2 + 48 + 4 + len(last.event_payload)  # a lower bound is enough here


def truncated_input(c: Corpus, seed: str, n: int) -> bytes:
    kind, _, name = seed.partition(":")
    if kind == "quote":
        return next(q.raw for q in c.quotes if q.name == name)[:n]
    if kind == "spdm":
        return next(g.evidence for g in c.gpus if g.name == name)[:n]
    return c.ccel[:n]


# --------------------------------------------------------------------------------------------------------------
# The mutation matrix: signed regions and how a mutated input is judged


@dataclass(frozen=True)
class Region:
    """A byte range of one artefact and whether its bytes are covered by a signature (directly, or through a hash
    or a length that a signature covers)."""

    name: str
    start: int
    end: int
    signed: bool = True

    def __len__(self) -> int:
        return self.end - self.start


def quote_regions(raw: bytes) -> list[Region]:
    """The quote's parts. The header and TD report are signed by the attestation key; the attestation key is bound
    by the QE report's report_data; the QE report by the PCK leaf; each certificate by its issuer (the root by the
    pinned key); the length and type fields frame all of these. Only the bytes between PEM blocks and the padding
    after the quote are covered by nothing."""
    from phalanb.tdx import parse_quote

    q = parse_quote(raw)
    by = {f.name: f for f in q.fields()}
    out = [Region("header+td_report", 0, q.signed_length)]
    sd = by["signature"].offset
    out.append(Region("signature_data_len", q.signed_length, sd))
    out.append(Region("signature", sd, sd + 64))
    out.append(Region("attestation_key", sd + 64, sd + 128))
    qe = by["qe_report.cpu_svn"].offset
    out.append(Region("certification_data_type+size", sd + 128, qe))
    out.append(Region("qe_report", qe, qe + 384))
    auth = by["qe_report_signature"]
    out.append(Region("qe_report_signature", auth.offset, auth.end))
    chain = by["pck_chain"]
    out.append(Region("qe_auth_data+pck_cert_type+size", auth.end, chain.offset))
    # Each PEM certificate (armour lines included) is signed; what lies between them is not.
    pos = chain.offset
    for m in re.finditer(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", q.raw[chain.offset:chain.end],
                         re.S):
        s, e = chain.offset + m.start(), chain.offset + m.end()
        if s > pos:
            out.append(Region("pck_chain.between_certificates", pos, s, signed=False))
        out.append(Region(f"pck_chain.certificate[{sum(r.name.startswith('pck_chain.cert') for r in out)}]", s, e))
        pos = e
    if chain.end > pos:
        out.append(Region("pck_chain.after_last_certificate", pos, chain.end, signed=False))
    if q.end < len(q.raw):
        out.append(Region("trailing_padding", q.end, len(q.raw), signed=False))
    return out


def spdm_regions(evidence: bytes) -> list[Region]:
    from phalanb.gpu import parse_evidence

    ev = parse_evidence(evidence)
    s = ev.signature_offset
    out = [Region("request", 0, 37), Region("response.signed", 37, s), Region("response.signature", s, s + 96)]
    if ev.trailing:
        out.append(Region("trailing", s + 96, len(evidence), signed=False))
    return out


def chain_regions(pem: bytes) -> list[Region]:
    out, pos, i = [], 0, 0
    for m in re.finditer(rb"-----BEGIN CERTIFICATE-----.+?-----END CERTIFICATE-----", pem, re.S):
        if m.start() > pos:
            out.append(Region("between_certificates", pos, m.start(), signed=False))
        out.append(Region(f"certificate[{i}]", m.start(), m.end()))
        pos, i = m.end(), i + 1
    if pos < len(pem):
        out.append(Region("after_last_certificate", pos, len(pem), signed=False))
    return out


def flip(data: bytes, i: int, mask: int) -> bytes:
    b = bytearray(data)
    b[i] ^= mask
    return bytes(b)


#: The single-byte flips tried at every position: the lowest bit (the smallest change; in hex and base64 text it
#: often gives another valid digit), the ASCII case bit, and all eight bits.
FLIP_MASKS = (0x01, 0x20, 0xFF)


class QuoteJudge:
    """Re-parses and re-verifies a mutated quote (offline steps 1-4 against Intel's pinned root, at a fixed time).

    Result: ``"failed"`` (a PhalanbError while parsing, or a step that passed before now fails), ``"passed"``
    (every step still holds) or ``"unexpected:<Exception>"``."""

    def __init__(self, seed: QuoteSeed):
        from phalanb.tdx import TrustRoot, verify_quote_offline

        self.seed = seed
        self.root = TrustRoot.intel()
        base = verify_quote_offline(seed.raw, root=self.root, at=seed.at)
        self.baseline = {s.name for s in base.steps if s.ok}

    def __call__(self, data: bytes) -> str:
        from phalanb.tdx import parse_quote, verify_quote_offline

        try:
            q = parse_quote(data)
            result = verify_quote_offline(q, root=self.root, at=self.seed.at)
        except PhalanbError:
            return "failed"
        except Exception as exc:  # noqa: BLE001 — reported, never hidden
            return f"unexpected:{type(exc).__name__}: {exc!s:.200}"
        held = {s.name for s in result.steps if s.ok}
        return "passed" if self.baseline <= held else "failed"


class GpuJudge:
    """Re-parses and re-verifies one GPU (signature, chain to NVIDIA's pinned root, FWID, requester nonce)."""

    def __init__(self, seed: GpuSeed):
        from phalanb.gpu import nvidia_device_identity_ca, parse_cert_chain, parse_evidence

        self.seed = seed
        self.root = nvidia_device_identity_ca()
        self.spdm = parse_evidence(seed.evidence)
        self.certs = parse_cert_chain(seed.chain_pem)
        self.nonce = self.spdm.requester_nonce
        base = self._verify(self.spdm, self.certs)
        self.baseline = {k for k, v in base.items() if v}
        assert {"signature", "chain", "nonce"} <= self.baseline, (seed.name, base)

    def _verify(self, spdm: Any, certs: Any) -> dict[str, bool]:
        from phalanb.gpu import GpuEvidence, verify_gpu

        gpu = GpuEvidence(index=0, arch=None, spdm=spdm, certificates=certs, evidence_encoding="binary")
        r = verify_gpu(gpu, root=self.root, expected_nonce=self.nonce, at=self.seed.at)
        return {"signature": r.signature.ok is True, "chain": r.chain.ok is True, "fwid": r.fwid.ok is True,
                "nonce": r.nonce.ok is True}

    def _judge(self, make: Callable[[], tuple[Any, Any]]) -> str:
        try:
            spdm, certs = make()
            result = self._verify(spdm, certs)
        except PhalanbError:
            return "failed"
        except Exception as exc:  # noqa: BLE001
            return f"unexpected:{type(exc).__name__}: {exc!s:.200}"
        held = {k for k, v in result.items() if v}
        return "passed" if self.baseline <= held else "failed"

    def evidence(self, data: bytes) -> str:
        from phalanb.gpu import parse_evidence

        return self._judge(lambda: (parse_evidence(data), self.certs))

    def chain(self, pem: bytes) -> str:
        from phalanb.gpu import parse_cert_chain

        return self._judge(lambda: (self.spdm, parse_cert_chain(pem)))


# --------------------------------------------------------------------------------------------------------------
# Bound fields of the field shapes (issue 12): a value report_data commits to, flipped, must fail the verdict

#: (source, field path, encoding, region length cap). ``source`` is ``reports/<folder>`` or ``field/<folder>``.
#: Each field is bound by a signed quote: the gateway's key, nonce and TLS fingerprint (NEAR AI Cloud), the Tinfoil
#: v3 report_data inputs, and a Chutes instance's e2e key (only its first bytes: every byte is hashed alike).
BOUND_FIELDS = (
    ("reports/nearcloud-2026", ("gateway_attestation", "signing_address"), "hex", None),
    ("reports/nearcloud-2026", ("gateway_attestation", "request_nonce"), "hex", None),
    ("reports/nearcloud-2026", ("gateway_attestation", "tls_cert_fingerprint"), "hex", None),
    ("field/nearai-gateway-gptoss-2026-04", ("gateway_attestation", "signing_address"), "hex", None),
    ("field/nearai-gateway-gptoss-2026-04", ("gateway_attestation", "request_nonce"), "hex", None),
    ("field/tinfoil-direct-gemma4-2026-06", ("report_data", "tls_key_fp"), "hex", None),
    ("field/tinfoil-direct-gemma4-2026-06", ("report_data", "hpke_key"), "hex", None),
    ("field/tinfoil-direct-gemma4-2026-06", ("report_data", "nonce"), "hex", None),
    ("field/chutes-direct-glm5-2026-06", ("evidence", 0, "e2e_pubkey"), "base64", 48),
)


class ReportFieldJudge:
    """Re-verifies a field-shape report with one bound field replaced (the field is mutated as the bytes it encodes:
    the case of hex digits is spelling, not content). ``"failed"`` when the verdict fails or the report is refused,
    ``"passed"`` otherwise; the unmutated report must not fail, so a pass after a flip is a silent pass."""

    def __init__(self, corpus: "Corpus", source: str, path: tuple, encoding: str):
        kind, _, folder = source.partition("/")
        if kind == "reports":
            self.report = corpus.reports[folder]
            self.nonce = corpus.report_nonces[folder]
        else:
            self.report, self.nonce = corpus.field_reports[folder]
        self.path, self.encoding = path, encoding
        self.name = f"{folder}:{'.'.join(map(str, path))}"
        value = self.report
        for p in path:
            value = value[p]
        self.prefix = "0x" if encoding == "hex" and value.startswith("0x") else ""
        self.data = (bytes.fromhex(value.removeprefix("0x")) if encoding == "hex" else base64.b64decode(value))
        assert self._verdict(self.report) != "failed", self.name

    def _verdict(self, report: dict) -> str:
        from phalanb.vllm.verify import verify_report

        # The report has several nodes when the shape lists several: the first is checked, as the field's is there.
        return verify_report(report, nonce=self.nonce, node=0).status

    def _with(self, data: bytes) -> dict:
        text = self.prefix + data.hex() if self.encoding == "hex" else base64.b64encode(data).decode()
        out = dict(self.report)
        parent: Any = out
        for p in self.path[:-1]:
            child = parent[p]
            child = list(child) if isinstance(child, list) else dict(child)
            parent[p] = child
            parent = child
        parent[self.path[-1]] = text
        return out

    def __call__(self, data: bytes) -> str:
        try:
            status = self._verdict(self._with(data))
        except PhalanbError:
            return "failed"
        except Exception as exc:  # noqa: BLE001 — reported, never hidden
            return f"unexpected:{type(exc).__name__}: {exc!s:.200}"
        return "failed" if status == "failed" else "passed"


# --------------------------------------------------------------------------------------------------------------
# Recorded simulator exchanges


@dataclass
class Recorded:
    """One simulator reply as an audit bundle (JSON), verified once when recorded."""

    name: str
    bundle: dict
    status: str

    @cached_property
    def parsed(self) -> Any:
        from phalanb.audit.bundle import parse_bundle

        return parse_bundle(self.bundle)

    @cached_property
    def attested(self) -> Any:
        from phalanb.vllm.verify import attest_report

        b = self.parsed
        return attest_report(b.report, nonce=b.nonce, signer=b.signature.signing_address, policy=b.policy,
                             collateral=b.collateral, nras_response=b.nras_response, jwks=b.jwks, at=b.verified_at)

    def regions(self) -> list[tuple[str, bytes]]:
        b = self.parsed
        # The signature is mutated as the bytes it encodes: its hex digits' case is spelling, not content (a hex
        # string and its upper-case twin are the same signature).
        return [("request_bytes", b.exchange.request_bytes), ("response_bytes", b.exchange.response_bytes),
                ("signature.text", b.signature.text.encode()),
                ("signature.value", bytes.fromhex(b.signature.signature.removeprefix("0x")))]

    def judge(self, region: str, data: bytes) -> str:
        """Verdict of the reply with ``region`` replaced by ``data``: the reply's own links checked again and put
        together with the (unchanged, verified once) attestation — what the batch auditor does, and the same
        verdict :func:`phalanb.vllm.verify.verify_exchange` gives (the tests check both on a sample)."""
        from phalanb.vllm.verify import assemble, chat_checks

        try:
            ex, sig = self.mutated(region, data)
            chat, signer = chat_checks(ex, sig)
            verdict = assemble(chat, signer, sig.signing_algo, self.attested)
        except PhalanbError:
            return "failed"
        except Exception as exc:  # noqa: BLE001
            return f"unexpected:{type(exc).__name__}: {exc!s:.200}"
        return "failed" if verdict.status == "failed" else "passed"

    def mutated(self, region: str, data: bytes) -> tuple[Any, Any]:
        from phalanb.vllm.signatures import SignatureRecord

        b = self.parsed
        ex, sig = b.exchange, b.signature
        if region == "request_bytes":
            ex = replace(ex, request_bytes=data)
        elif region == "response_bytes":
            ex = replace(ex, response_bytes=data)
        else:
            d = sig.to_dict()
            if region == "signature.text":
                d["text"] = data.decode("utf-8", "surrogateescape")
            else:
                d["signature"] = ("0x" if sig.signature.startswith("0x") else "") + data.hex()
            sig = SignatureRecord.from_dict(d)
        return ex, sig


# --------------------------------------------------------------------------------------------------------------
# ACI artefacts in the mutation matrix: every byte of each is bound (a signature, a digest or an AEAD tag covers it)

#: name -> what is flipped. Signatures and ciphertexts are flipped as the bytes they encode (their hex digits' case
#: is spelling, not content).
ACI_ARTEFACTS = ("receipt.document", "receipt.signature", "session.document", "report.workload_keyset",
                 "e2ee.reply.sealed", "e2ee.stream.sealed")


def aci_regions(c: Corpus, name: str) -> list[Region]:
    """The regions of an ACI artefact: all bound, but for the receipt's signature written in hex inside the
    document, whose digits' case is spelling (its bytes are flipped as ``receipt.signature``)."""
    data, _ = aci_artefact(c, name)
    if name != "receipt.document":
        return [Region(name, 0, len(data))]
    sig = json.loads(data)["signature"].encode()
    a = data.index(b'"signature":"' + sig) + len(b'"signature":"')
    return [Region(name, 0, a), Region("receipt.signature-hex", a, a + len(sig), signed=False),
            Region(name, a + len(sig), len(data))]


def aci_artefact(c: Corpus, name: str) -> tuple[bytes, Callable[[bytes], str]]:
    """(the bytes to flip, the judge of flipped bytes: "failed", "passed" or "unexpected:…")."""
    v = c._json("aci/test_vectors.json")["aci"]

    def guarded(judge: Callable[[bytes], str]) -> Callable[[bytes], str]:
        def run(data: bytes) -> str:
            try:
                return judge(data)
            except PhalanbError:
                return "failed"
            except Exception as exc:  # noqa: BLE001 — reported, never hidden
                return f"unexpected:{type(exc).__name__}: {exc!s:.200}"
        return run

    if name.startswith("receipt."):
        from phalanb.aci import EstablishedKeyset, verify_receipt

        keyset = EstablishedKeyset(digest=v["keyset"]["workload_keyset_digest"], keyset=v["keyset"]["object"],
                                   shape="current")
        doc = v["receipt"]["document_jcs"].encode()
        sig_hex = json.loads(doc)["signature"]
        request, response = v["receipt"]["request_body"].encode(), v["receipt"]["response_body"].encode()

        def receipt_outcome(receipt: bytes) -> str:
            checks = verify_receipt(receipt, keyset=keyset, request_bytes=request, response_bytes=response)
            return "failed" if any(ch.status.value == "fail" for ch in checks) else "passed"

        if name == "receipt.document":
            return doc, guarded(receipt_outcome)
        return bytes.fromhex(sig_hex), guarded(lambda d: receipt_outcome(doc.replace(sig_hex.encode(),
                                                                                     d.hex().encode(), 1)))
    if name == "session.document":
        from phalanb.aci import verify_session
        from phalanb.policy import Policy

        def session_outcome(data: bytes) -> str:
            checks = verify_session(data, expected_id=v["session"]["session_id"], served_at=None, policy=Policy(),
                                    deep=False)
            return "failed" if any(ch.status.value == "fail" for ch in checks) else "passed"

        return v["session"]["document_jcs"].encode(), guarded(session_outcome)
    if name == "report.workload_keyset":
        from phalanb.aci import verify_aci_report
        from phalanb.policy import Policy

        raw = (c.root / "aci" / "real" / "phala-gateway-aci1-report-2026-06-28.json").read_bytes()
        vectors = c._json("aci/test_vectors.json")
        nonce = bytes.fromhex(vectors["real_capture_phala_2026_06_28"]["nonce"])
        text = raw.decode()
        key = text.index('"workload_keyset"')
        start = text.index("{", key)
        end = json.JSONDecoder().raw_decode(text, start)[1]
        start_b, end_b = len(text[:start].encode()), len(text[:end].encode())

        def report_outcome(data: bytes) -> str:
            att = verify_aci_report(raw[:start_b] + data + raw[end_b:], nonce=nonce, policy=Policy(),
                                    at=1782664738)
            return "failed" if att.verdict.status == "failed" else "passed"

        return raw[start_b:end_b], guarded(report_outcome)
    if name.startswith("e2ee."):
        stream = name.startswith("e2ee.stream")
        wire = e2ee_exchange()[2 if stream else 1]
        # The first sealed value: the hex string after the first "content":" (buffered) or delta content (stream).
        at = wire.index(b'"content":"') + len(b'"content":"')
        end = wire.index(b'"', at)
        sealed = wire[at:end]
        return bytes.fromhex(sealed.decode()), guarded(
            lambda d: _e2ee_outcome(wire[:at] + d.hex().encode() + wire[end:], stream))
    raise KeyError(name)


def record_exchanges(n_stream: int = 2, n_json: int = 1, *, ed25519: bool = True) -> list[Recorded]:
    """Chat with phalanb's embedded simulator (no latency) and keep each reply's audit bundle."""
    from phalanb.session import Session, Settings

    out = []
    opts = {"seed": 1, "ttft_ms": 0, "tokens_per_second": 0}
    plans = [("ecdsa", True)] * n_stream + [("ecdsa", False)] * n_json + ([("ed25519", True)] if ed25519 else [])
    by_algo: dict[str, list[bool]] = {}
    for algo, stream in plans:
        by_algo.setdefault(algo, []).append(stream)
    for algo, streams in by_algo.items():
        with Session(Settings(protocol="legacy", sim_options=opts, signing_algo=algo)) as s:
            for i, stream in enumerate(streams):
                vc = s.chat_and_verify(f"fuzz prompt {i}: say something about bytes", stream=stream, max_tokens=24)
                out.append(Recorded(f"{algo}-{'stream' if stream else 'json'}-{i}", vc.bundle().to_dict(),
                                    vc.verdict.status))
    return out


def now_utc() -> str:
    return _dt.datetime.now(_dt.timezone.utc).strftime("%H:%M:%S")


__all__ = ["Hang", "time_bound", "run_one", "Outcome", "Corpus", "QuoteSeed", "GpuSeed", "targets", "Target",
           "truncations", "truncated_input", "Region", "quote_regions", "spdm_regions", "chain_regions", "flip",
           "FLIP_MASKS", "QuoteJudge", "GpuJudge", "ReportFieldJudge", "BOUND_FIELDS", "Recorded",
           "record_exchanges", "mutate_bytes", "mutate_json", "ACI_ARTEFACTS", "aci_artefact", "aci_regions",
           "e2ee_exchange"]
