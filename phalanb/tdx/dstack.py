"""What a dstack deployment's measurements mean: app id, compose hash, instance id, OS image, key provider.

These values are facts only once the event log has replayed to the quote's RTMRs (:mod:`.eventlog`). Then:

- ``compose_hash`` must equal sha256(app_compose), the exact text of the app's configuration (``info``);
- ``mr_config_id`` = 0x01 ‖ compose_hash ‖ 15 zero bytes ties the same hash into the TD report itself (dstack ≥
  0.5; older deployments leave it zero and rely on RTMR3 alone).

An auditor also wants to know what the configuration *allows* (facts, not verdicts): images not pinned by digest
can change under the same compose hash, a ``-dev`` OS image allows debugging access, and
``DSTACK_AUTHORIZED_KEYS`` among the allowed environment variables lets the operator inject SSH keys.

>>> facts = derive(log, info=report["info"], vm_config=report["vm_config"])        # doctest: +SKIP
>>> facts.app_id, facts.compose_hash[:8], facts.audit                               # doctest: +SKIP
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from typing import Any

from .. import _json
from ..errors import ParseError
from ..verdict import Check, Status
from .eventlog import EventLog, parse_event_log, rtmr3_matches
from .quote import Quote

__all__ = ["DstackFacts", "derive", "app_compose_from_info", "compose_hash", "expected_mr_config_id",
           "check_compose_hash", "audit_app_compose"]


def compose_hash(app_compose: str) -> str:
    """sha256 of the exact app_compose text, lowercase hex."""
    return hashlib.sha256(app_compose.encode("utf-8", "surrogatepass")).hexdigest()


def expected_mr_config_id(compose_hash_hex: str) -> bytes:
    """0x01 ‖ compose_hash ‖ 15 zero bytes (48 bytes)."""
    return b"\x01" + bytes.fromhex(compose_hash_hex) + bytes(15)


def _maybe_json(value: Any) -> Any:
    if isinstance(value, str):
        try:
            return _json.loads(value)
        except json.JSONDecodeError:
            return value
    return value


def app_compose_from_info(info: Any) -> str | None:
    """The app_compose text from a dstack ``info`` (``info.tcb_info`` is a dict or a JSON string)."""
    info = _maybe_json(info)
    if not isinstance(info, dict):
        return None
    if isinstance(info.get("app_compose"), str):
        return info["app_compose"]
    tcb = _maybe_json(info.get("tcb_info"))
    if isinstance(tcb, dict) and isinstance(tcb.get("app_compose"), str):
        return tcb["app_compose"]
    return None


_IMAGE_RE = re.compile(r"^\s*image:\s*['\"]?([^\s'\"#]+)", re.MULTILINE)


def audit_app_compose(app_compose: str | None, *, os_image: str | None = None) -> dict[str, Any]:
    """Deployment facts an auditor reports (never pass/fail on their own)."""
    facts: dict[str, Any] = {}
    if os_image:
        facts["os_image"] = os_image
        facts["os_image_is_dev"] = "-dev" in os_image
    if app_compose is None:
        return facts
    try:
        compose = _json.loads(app_compose)
    except json.JSONDecodeError:
        facts["app_compose_is_json"] = False
        return facts
    if not isinstance(compose, dict):
        return facts
    allowed = compose.get("allowed_envs") or []
    facts["allowed_envs"] = allowed
    facts["ssh_keys_injectable"] = "DSTACK_AUTHORIZED_KEYS" in allowed
    yaml = compose.get("docker_compose_file") or ""
    images = list(dict.fromkeys(_IMAGE_RE.findall(yaml))) if isinstance(yaml, str) else []
    facts["images"] = images
    facts["images_not_pinned"] = [i for i in images if "@sha256:" not in i]
    for key in ("kms_enabled", "gateway_enabled", "public_logs", "public_sysinfo", "no_instance_id",
                "secure_time", "local_key_provider_enabled", "key_provider"):
        if key in compose:
            facts[key] = compose[key]
    if compose.get("pre_launch_script"):
        facts["pre_launch_script"] = True
    return facts


@dataclass
class DstackFacts:
    """Values read from the (replayed) event log and the info, plus the auditor's facts."""

    app_id: str | None = None
    compose_hash: str | None = None
    instance_id: str | None = None
    os_image_hash: str | None = None
    key_provider: Any = None
    app_compose: str | None = None
    app_compose_sha256: str | None = None
    audit: dict[str, Any] = field(default_factory=dict)
    #: True when the log replayed to the quote's RTMR3 (the runtime values above are facts); False when it did
    #: not (they are then all None); None when no quote was given (the values are the log's unconfirmed claims).
    replayed: bool | None = None

    def to_dict(self) -> dict[str, Any]:
        return {k: getattr(self, k) for k in ("app_id", "compose_hash", "instance_id", "os_image_hash",
                                              "key_provider", "app_compose_sha256", "audit", "replayed")}


def derive(log: Any, *, info: Any = None, vm_config: Any = None, quote: Quote | None = None) -> DstackFacts:
    """Read app-id, compose-hash, instance-id, os-image-hash and key-provider from the runtime events in RTMR3.

    Given the ``quote``, a value is read only when the log replays to the quote's RTMR3; otherwise every runtime
    value is None (an unmeasured log says nothing). Without a quote the values are the log's claims
    (``facts.replayed`` is None): a verifier always passes the quote."""
    parsed: EventLog = parse_event_log(log)
    replayed = None if quote is None else rtmr3_matches(quote, parsed)

    def payload(name: str, as_text: bool = False) -> Any:
        e = parsed.runtime(name) if replayed is not False else None
        if e is None:
            return None
        if as_text:
            text = e.payload_text()
            return _maybe_json(text) if text is not None else e.event_payload.hex()
        return e.event_payload.hex()

    facts = DstackFacts(app_id=payload("app-id"), compose_hash=payload("compose-hash"),
                        instance_id=payload("instance-id"), os_image_hash=payload("os-image-hash"),
                        key_provider=payload("key-provider", as_text=True), replayed=replayed)
    facts.app_compose = app_compose_from_info(info)
    if facts.app_compose is not None:
        facts.app_compose_sha256 = compose_hash(facts.app_compose)
    vm = _maybe_json(vm_config)
    os_image = vm.get("image") if isinstance(vm, dict) else None
    facts.audit = audit_app_compose(facts.app_compose, os_image=os_image)
    return facts


def check_compose_hash(quote: Quote, log: Any, *, info: Any = None, app_compose: str | None = None) -> Check:
    """``app.compose_hash``: sha256(app_compose) = the compose-hash event, and mr_config_id = 01 ‖ it (when used).

    Meaningful only together with a passing ``tdx.event_log`` (otherwise the event could be invented)."""
    try:
        parsed = parse_event_log(log)
    except ParseError as exc:
        return Check("app.compose_hash", Status.FAIL, f"the event log cannot be read: {exc}")
    if app_compose is None:
        app_compose = app_compose_from_info(info)
    mr = quote.body.mr_config_id
    ev: dict[str, Any] = {"mr_config_id": mr.hex()}
    if not rtmr3_matches(quote, parsed):
        return Check("app.compose_hash", Status.FAIL, "the event log does not replay to the quote's RTMR3, so its "
                     "compose-hash event is not believed (see tdx.event_log)", ev)
    events = parsed.runtime_named("compose-hash")
    if len(events) > 1:
        # dstack reads the first; a second one was extended later (by the app or a liar). Which configuration
        # runs is then ambiguous, and phalanb refuses to pick.
        ev["compose_hash_events"] = [e.event_payload.hex() for e in events]
        return Check("app.compose_hash", Status.FAIL, f"RTMR3 holds {len(events)} compose-hash events (#"
                     + ", #".join(str(e.index) for e in events) + "): a deployment measures one configuration, "
                     "so the log is ambiguous", ev)
    event = events[0] if events else None
    if event is None:
        return Check("app.compose_hash", Status.SKIPPED, "the event log has no compose-hash event in RTMR3", ev)
    logged = event.event_payload.hex()
    ev["compose_hash_event"] = logged
    if app_compose is None:
        return Check("app.compose_hash", Status.SKIPPED, "no app_compose given (info.tcb_info.app_compose): the "
                     "compose hash cannot be tied to a configuration", ev)
    computed = compose_hash(app_compose)
    ev["sha256_app_compose"] = computed
    if computed != logged:
        return Check("app.compose_hash", Status.FAIL, f"sha256(app_compose) = {computed[:16]}… but the measured "
                     f"compose-hash event says {logged[:16]}…: the configuration shown is not the one running", ev)
    if mr == bytes(48):
        return Check("app.compose_hash", Status.PASS, "sha256(app_compose) equals the measured compose-hash event "
                     "(mr_config_id is unused by this deployment; the binding is through RTMR3)", ev)
    if len(logged) != 64 or mr != expected_mr_config_id(logged):
        return Check("app.compose_hash", Status.FAIL, f"mr_config_id {mr.hex()[:20]}… is not 01 ‖ compose_hash ‖ "
                     "zeros", ev)
    return Check("app.compose_hash", Status.PASS, "sha256(app_compose) equals the compose-hash event and "
                 "mr_config_id = 01 ‖ compose_hash", ev)
