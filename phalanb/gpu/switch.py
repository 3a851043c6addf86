"""Offline verification of NVIDIA NVSwitch (LS10) evidence: the GPU steps, under the switch's own check ids.

An NVSwitch answers SPDM GET_MEASUREMENTS like a GPU (31 blocks, a switch's opaque fields) and signs it with the
key of its ``LS_10 A01 FSP FMC LF`` leaf, whose chain (FSP BROM, *NVIDIA LS_10 Provisioner ICA 1*, *NVIDIA GH100
Identity*) ends at the same NVIDIA Device Identity CA that anchors GPU chains — the CA pinned in ``phalanb/roots``.
So the steps are those of :mod:`phalanb.gpu.verify` — signature by offset with the leaf key, the 5-certificate
chain to the pinned root, FWID (switch evidence carries none: skipped, optional), nonce, agreement — and the
appraisal is :func:`phalanb.gpu.appraise.appraise_evidence` against the switch BIOS RIM
(``NV_SWITCH_BIOS_5612_0002_890_<bios>``).

The checks are named ``nvswitch.*`` (``nvswitch.evidence_signature``, ``nvswitch.cert_chain``, ``nvswitch.nonce``,
``nvswitch.fwid``, ``nvswitch.agree``, ``nvswitch.measurements``, ``nvswitch.revocation``), never ``gpu.*``: a
switch that verifies vouches for a switch, and can never stand in for a GPU a report or policy expects (the GPU
readers refuse switch evidence, and the GPU verifier and appraiser refuse a switch payload).

>>> p = parse_switch_files("switchAttestationReport.txt", "switchCertChain.txt")      # doctest: +SKIP
>>> verify_switch_payload(p, root=nvidia_device_identity_ca(), expected_nonce=nonce).verdict().status  # doctest: +SKIP
'verified'
"""

from __future__ import annotations

import datetime as _dt

from ..errors import InputError
from .appraise import MeasurementAppraisal, RimStore, _appraise_devices
from .payload import GpuPayload
from .verify import GpuVerification, TrustRoot, _verify_devices

__all__ = ["SWITCH_CHECK_PREFIX", "verify_switch_payload", "appraise_switch_payload"]

#: Every check about NVSwitch evidence is ``nvswitch.<step>``.
SWITCH_CHECK_PREFIX = "nvswitch"


def _switches(payload: GpuPayload) -> GpuPayload:
    if not isinstance(payload, GpuPayload) or payload.device != "NVSwitch":
        raise InputError("expected NVSwitch evidence read by parse_switch_files / parse_switch_payload; GPU evidence "
                         "is verified by verify_payload")
    return payload


def verify_switch_payload(payload: GpuPayload, *, root: TrustRoot, expected_nonce: str | bytes | None = None,
                          at: float | _dt.datetime | None = None) -> GpuVerification:
    """Verify every NVSwitch of ``payload`` against ``root`` (NVIDIA's Device Identity CA for real switches):
    SPDM signature with the leaf key, chain to the root, FWID, nonce (skipped without ``expected_nonce``: the
    verdict is then incomplete), agreement. Checks ``nvswitch.*``; never raises for a failed check."""
    return _verify_devices(_switches(payload), root=root, expected_nonce=expected_nonce, at=at,
                           prefix=SWITCH_CHECK_PREFIX, device="NVSwitch")


def appraise_switch_payload(payload: GpuPayload, store: RimStore, *, root: TrustRoot | None = None,
                            at: float | _dt.datetime | None = None) -> MeasurementAppraisal:
    """Appraise every NVSwitch's measurements against its switch BIOS RIM in ``store`` (RIM judged at ``at``):
    ``nvswitch.measurements`` and ``nvswitch.revocation``."""
    return _appraise_devices(_switches(payload), store, root=root, at=at, prefix=SWITCH_CHECK_PREFIX,
                             device="NVSwitch")
