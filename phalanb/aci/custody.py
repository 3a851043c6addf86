"""dstack-kms key custody (ACI.md §2.1): which KMS root a keyset key descends from.

For each custody entry, two recoverable secp256k1 signatures form a chain:

- ``sig0`` over keccak256(``"{purpose}:{hex of the SEC1-compressed key}"``) recovers the **app key**. The key is
  ``kms_public_key`` in the current shape (the secp256k1 key the KMS derived; the Ed25519/X25519 key is derived
  from it by measured code, which the chain itself cannot show), and ``public_key`` itself in the preview shape;
- ``sig1`` over keccak256(``"dstack-kms-issued:"`` ‖ app_id (20 raw bytes, the event log's ``app-id``) ‖ app key
  compressed) recovers the **KMS root**.

The root is judged only against the auditor's allow-list (``Policy.aci_kms_roots``): a root named inside a report
is a claim. With no allow-list, custody is *skipped*, never passed.

:data:`KNOWN_KMS_ROOTS` records roots phalanb has seen recovered from real evidence, with provenance, so an auditor
can choose to allow one; none is trusted by default.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping

from ..errors import ParseError
from ._util import hex_bytes
from .crypto import compressed, keccak, recover_secp256k1

__all__ = ["KNOWN_KMS_ROOTS", "CustodyLink", "custody_chain", "roles_needed"]

#: KMS roots recovered by phalanb's own code from real evidence. Not trusted unless a Policy lists them.
KNOWN_KMS_ROOTS: dict[str, dict[str, str]] = {
    "0334c76e0c3f52ec64cbf9bbf5c910c272330166fd656c0a86bb330963e46910e1": {
        "name": "Phala dstack-kms behind inference.phala.com (2026-06)",
        "provenance": "recovered by phalanb.aci.custody from every secp256k1 custody chain (identity, receipt, "
                      "e2ee) of ../shared/fixtures/aci/real/phala-gateway-aci1-report-2026-06-28.json (app_id "
                      "fdb7a14e5a6675f752e2cb69c9067a98ca402918); looprig/llm @ 80be2641 pins the same root",
    },
}


@dataclass
class CustodyLink:
    role: str
    key: str                 # the key the chain covers (hex, as served)
    app_key: str | None      # recovered (compressed hex)
    root: str | None         # recovered (compressed hex)
    problem: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {"role": self.role, "key": self.key, "app_key": self.app_key, "root": self.root,
                "problem": self.problem}


def roles_needed(shape: str) -> tuple[str, ...]:
    """Roles whose keys ACI relies on: the receipt key always; preview also the identity key (it endorses the
    keyset) and the secp256k1 E2EE key."""
    return ("identity", "receipt", "e2ee") if shape == "preview" else ("receipt",)


def custody_chain(entry: Mapping[str, Any], *, shape: str, app_id: bytes) -> CustodyLink:
    """Recover app key and KMS root for one ``key_custody.keys[]`` entry. Never raises on bad signatures: the
    problem is recorded on the link."""
    role = str(entry.get("role"))
    purpose = entry.get("purpose")
    # v3 keeps the current shape's custody (ACI-v3.md §3: "the dstack KMS chain, ACI.md §2.1").
    covered = entry.get("kms_public_key") if shape in ("current", "v3") else entry.get("public_key")
    chain = entry.get("signature_chain")
    link = CustodyLink(role, str(covered), None, None)
    if not isinstance(purpose, str) or not isinstance(covered, str):
        link.problem = "the entry lacks purpose or the covered key"
        return link
    if not isinstance(chain, list) or len(chain) != 2 or not all(isinstance(s, str) for s in chain):
        link.problem = "signature_chain must be two hex signatures"
        return link
    try:
        key = hex_bytes(covered, "key_custody.public_key")
        sig0 = hex_bytes(chain[0], "signature_chain[0]", length=65)
        sig1 = hex_bytes(chain[1], "signature_chain[1]", length=65)
    except ParseError as exc:
        link.problem = str(exc)
        return link
    comp = compressed(key)
    if comp is None:
        link.problem = (f"the covered key ({len(key)} bytes) is not a secp256k1 point: this chain (e.g. the legacy "
                        "Ed25519 key) cannot be checked")
        return link
    app_key = recover_secp256k1(sig0, keccak(f"{purpose}:{comp.hex()}".encode()))
    if app_key is None:
        link.problem = "sig0 recovers no key"
        return link
    link.app_key = app_key.hex()
    root = recover_secp256k1(sig1, keccak(b"dstack-kms-issued:" + app_id + app_key))
    if root is None:
        link.problem = "sig1 recovers no key"
        return link
    link.root = root.hex()
    return link
