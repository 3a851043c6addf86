"""TDX event logs: read them (dstack JSON, binary TCG2/CCEL), replay RTMR0-3, compare with the quote (SPEC §8).

RTMR[i] starts as 48 zero bytes and every event extends it: ``RTMR[i] = sha384(RTMR[i] ‖ digest)``. A log is
believable only when its replay equals the RTMRs the quote signed; then each event's content can be read as fact.

dstack runtime events (type 0x08000001, RTMR3) are recomputed from their name and payload, never taken from the
shipped digest: newer dstack logs ship them with an *empty* digest, and a shipped digest proves nothing about the
payload beside it.

>>> log = parse_event_log(report["event_log"])                  # list or JSON string or CCEL bytes  # doctest: +SKIP
>>> check_event_log(quote, log).status                                                          # doctest: +SKIP
<Status.PASS: 'pass'>
"""

from __future__ import annotations

import hashlib
import json
import struct
from dataclasses import dataclass, field
from typing import Any, Iterable

from .. import _json
from ..errors import InputError, ParseError
from ..verdict import Check, Status
from .quote import Quote

__all__ = [
    "DSTACK_RUNTIME_EVENT",
    "Event",
    "EventLog",
    "parse_event_log",
    "parse_dstack_log",
    "parse_ccel_log",
    "runtime_event_digest",
    "replay",
    "rtmr3_matches",
    "check_event_log",
]

DSTACK_RUNTIME_EVENT = 0x08000001
EV_NO_ACTION = 0x00000003
TPM_ALG_SHA384 = 0x000C
RTMR_COUNT = 4
RUNTIME_IMR = 3  # dstack extends its runtime events (app-id, compose-hash…) into RTMR3

# A few TCG / UEFI event types, for display only (TCG PC Client Platform Firmware Profile, "Event Types").
EVENT_TYPE_NAMES: dict[int, str] = {
    0x00000001: "EV_POST_CODE", 0x00000003: "EV_NO_ACTION", 0x00000004: "EV_SEPARATOR",
    0x00000005: "EV_ACTION", 0x00000006: "EV_EVENT_TAG", 0x0000000D: "EV_IPL",
    0x80000001: "EV_EFI_VARIABLE_DRIVER_CONFIG", 0x80000002: "EV_EFI_VARIABLE_BOOT",
    0x80000003: "EV_EFI_BOOT_SERVICES_APPLICATION", 0x80000007: "EV_EFI_ACTION",
    0x80000008: "EV_EFI_PLATFORM_FIRMWARE_BLOB", 0x80000009: "EV_EFI_HANDOFF_TABLES",
    0x8000000A: "EV_EFI_PLATFORM_FIRMWARE_BLOB2", 0x8000000B: "EV_EFI_HANDOFF_TABLES2",
    0x800000E0: "EV_EFI_VARIABLE_AUTHORITY", DSTACK_RUNTIME_EVENT: "DSTACK_RUNTIME_EVENT",
}


@dataclass(frozen=True)
class Event:
    """One measured event. ``imr`` is the 0-based RTMR index (the JSON's ``imr``; binary MR index minus 1)."""

    imr: int
    event_type: int
    digest: bytes                 # as shipped (may be empty for dstack runtime events)
    event: str = ""               # dstack: the runtime event's name
    event_payload: bytes = b""
    index: int = 0                # position in the log
    offset: int | None = None     # binary logs: absolute offset of the record

    @property
    def is_runtime(self) -> bool:
        return self.event_type == DSTACK_RUNTIME_EVENT

    @property
    def type_name(self) -> str:
        return EVENT_TYPE_NAMES.get(self.event_type, f"{self.event_type:#010x}")

    def computed_digest(self) -> bytes:
        """The digest this event should carry: recomputed for runtime events, as shipped otherwise."""
        return runtime_event_digest(self.event, self.event_payload) if self.is_runtime else self.digest

    def payload_text(self) -> str | None:
        try:
            return self.event_payload.decode("utf-8")
        except UnicodeDecodeError:
            return None

    def to_dict(self) -> dict[str, Any]:
        return {"imr": self.imr, "event_type": self.event_type, "digest": self.digest.hex(), "event": self.event,
                "event_payload": self.event_payload.hex()}


@dataclass
class EventLog:
    events: list[Event]
    format: str  # "dstack-json" or "tcg2-ccel"
    notes: list[str] = field(default_factory=list)

    def __iter__(self):
        return iter(self.events)

    def __len__(self) -> int:
        return len(self.events)

    def runtime_events(self) -> list[Event]:
        return [e for e in self.events if e.is_runtime]

    def runtime_named(self, name: str) -> list[Event]:
        """Every runtime event called ``name`` that was extended into RTMR3, in log order."""
        return [e for e in self.events if e.is_runtime and e.imr == RUNTIME_IMR and e.event == name]

    def runtime(self, name: str) -> Event | None:
        """The first runtime event called ``name`` (``app-id``, ``compose-hash``…) extended into RTMR3.

        Only RTMR3 counts: an event filed under another register was never replayed into the register dstack
        measures its runtime values in. The *first* one wins, as dstack's own reader does (``ra-tls``
        ``find_event``): a later event of the same name was extended after boot, by the app itself or a
        liar, and does not describe what was launched. These are facts only once :func:`rtmr3_matches` holds.
        """
        found = self.runtime_named(name)
        return found[0] if found else None

    def to_list(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.events]


def runtime_event_digest(name: str, payload: bytes) -> bytes:
    """dstack: sha384(le32(0x08000001) ‖ ":" ‖ name ‖ ":" ‖ payload)."""
    return hashlib.sha384(struct.pack("<I", DSTACK_RUNTIME_EVENT) + b":" + name.encode("utf-8", "surrogatepass") + b":" + payload).digest()


def _hexfield(value: Any, what: str, i: int) -> bytes:
    if value is None:
        return b""
    if not isinstance(value, str):
        raise ParseError(f"{what} must be a hex string, got {type(value).__name__}", field=f"event_log[{i}].{what}")
    try:
        return bytes.fromhex(value.removeprefix("0x"))
    except ValueError:
        raise ParseError(f"{what} is not hex: {value[:40]!r}", field=f"event_log[{i}].{what}") from None


def parse_dstack_log(data: list[Any] | str | bytes) -> EventLog:
    """A dstack JSON event log: a list of ``{imr, event_type, digest, event, event_payload}`` or its JSON text."""
    if isinstance(data, (bytes, bytearray)):
        try:
            data = bytes(data).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise ParseError(f"the event log is not UTF-8 text ({exc.reason})", field="event_log",
                             offset=exc.start) from None
    if isinstance(data, str):
        try:
            data = _json.loads(data)
            if isinstance(data, str):  # JSON-encoded twice (a JSON string holding the list's JSON text)
                data = _json.loads(data)
        except json.JSONDecodeError as exc:
            raise ParseError(f"the event log is not JSON: {exc.msg}", field="event_log", offset=exc.pos) from None
    if not isinstance(data, list):
        raise ParseError(f"the event log must be a JSON list, got {type(data).__name__}", field="event_log")
    events = []
    for i, item in enumerate(data):
        if not isinstance(item, dict):
            raise ParseError("each event must be an object", field=f"event_log[{i}]")
        imr = item.get("imr")
        etype = item.get("event_type")
        if not isinstance(imr, int) or isinstance(imr, bool) or not isinstance(etype, int):
            raise ParseError("imr and event_type must be integers", field=f"event_log[{i}]")
        if not 0 <= imr < RTMR_COUNT:
            # The replay could only skip such an entry, yet its content would still be readable as a "fact".
            raise ParseError(f"imr {imr} is not an RTMR index (0-3): the entry was never measured, so the log is "
                             "malformed", field=f"event_log[{i}].imr")
        name = item.get("event") or ""
        if not isinstance(name, str):
            raise ParseError("event must be a string", field=f"event_log[{i}].event")
        events.append(Event(imr, etype, _hexfield(item.get("digest"), "digest", i), name,
                            _hexfield(item.get("event_payload"), "event_payload", i), i))
    return EventLog(events, "dstack-json")


def parse_ccel_log(data: bytes) -> EventLog:
    """A binary TCG2 (crypto-agile) event log as found in the ACPI CCEL table. Uses the SHA-384 digests;
    EV_NO_ACTION records are kept but never extended; MR index 1..4 maps to RTMR0..3 (0 is MRTD)."""
    data = bytes(data)

    def need(pos: int, n: int, what: str) -> None:
        if pos + n > len(data):
            raise ParseError(f"needs {n} bytes, {max(0, len(data) - pos)} left", field=what, offset=pos)

    # First record: legacy TCG_PCR_EVENT carrying the Spec ID event (digest sizes per algorithm).
    need(0, 32, "spec_id_event")
    _pcr, etype = struct.unpack_from("<II", data, 0)
    size = struct.unpack_from("<I", data, 28)[0]
    need(32, size, "spec_id_event")
    spec = data[32:32 + size]
    if etype != EV_NO_ACTION or not spec.startswith(b"Spec ID Event03"):
        raise ParseError("not a crypto-agile TCG2 log (no 'Spec ID Event03' first record)",
                         field="spec_id_event", offset=0)
    if len(spec) < 28:
        raise ParseError("Spec ID event too short", field="spec_id_event", offset=32)
    n_alg = struct.unpack_from("<I", spec, 24)[0]
    if 28 + 4 * n_alg > len(spec):
        raise ParseError(f"{n_alg} algorithms do not fit the Spec ID event", field="spec_id_event", offset=56)
    sizes = {}
    for k in range(n_alg):
        alg, dsize = struct.unpack_from("<HH", spec, 28 + 4 * k)
        sizes[alg] = dsize
    if TPM_ALG_SHA384 not in sizes:
        raise ParseError("the log carries no SHA-384 digests (TDX RTMRs use SHA-384)", field="spec_id_event",
                         offset=32)
    events: list[Event] = []
    notes: list[str] = []
    pos = 32 + size
    while pos + 12 <= len(data):
        start = pos
        mr, etype, count = struct.unpack_from("<III", data, pos)
        if mr == 0xFFFFFFFF or (mr == 0 and etype == 0 and count == 0):
            break  # the unused part of the CCEL area (0xFF or zero filled)
        pos += 12
        digest = None
        for _ in range(count):
            need(pos, 2, f"event[{len(events)}].alg_id")
            alg = struct.unpack_from("<H", data, pos)[0]
            if alg not in sizes:
                raise ParseError(f"digest algorithm {alg:#06x} is not declared in the Spec ID event",
                                 field=f"event[{len(events)}].alg_id", offset=pos)
            need(pos + 2, sizes[alg], f"event[{len(events)}].digest")
            if alg == TPM_ALG_SHA384:
                digest = data[pos + 2:pos + 2 + sizes[alg]]
            pos += 2 + sizes[alg]
        need(pos, 4, f"event[{len(events)}].event_size")
        esize = struct.unpack_from("<I", data, pos)[0]
        need(pos + 4, esize, f"event[{len(events)}].event")
        body = data[pos + 4:pos + 4 + esize]
        pos += 4 + esize
        if digest is None:
            raise ParseError("event has no SHA-384 digest", field=f"event[{len(events)}]", offset=start)
        if etype != EV_NO_ACTION and not 1 <= mr <= RTMR_COUNT:
            # MR index 1..4 is RTMR0..3 (0 is MRTD, which no event extends); EV_NO_ACTION is never extended.
            raise ParseError(f"MR index {mr} is not an RTMR (1-4): the event was never measured, so the log is "
                             "malformed", field=f"event[{len(events)}].mr_index", offset=start)
        events.append(Event(mr - 1, etype, digest, "", body, len(events), start))
    if pos < len(data) and any(b not in (0, 0xFF) for b in data[pos:pos + 64]):
        notes.append(f"log ends at offset {pos}; the following bytes are not padding")
    return EventLog(events, "tcg2-ccel", notes)


def parse_event_log(data: Any) -> EventLog:
    """Any supported log: a dstack list, its JSON text, or binary TCG2/CCEL bytes."""
    if isinstance(data, EventLog):
        return data
    if isinstance(data, (bytes, bytearray, memoryview)):
        raw = bytes(data)
        if raw.lstrip()[:1] in (b"[", b'"'):
            return parse_dstack_log(raw)
        return parse_ccel_log(raw)
    if isinstance(data, (list, str)):
        return parse_dstack_log(data)
    raise InputError(f"an event log is a list, JSON text or CCEL bytes, not {type(data).__name__}")


@dataclass
class Replay:
    rtmrs: list[bytes]
    runtime_mismatches: list[tuple[Event, bytes]]  # (event, recomputed digest) where the shipped one differs
    trusted_shipped: bool


def replay(log: EventLog | Iterable[Event], *, recompute_runtime: bool = True) -> Replay:
    """Extend RTMR0-3 with every event's digest in log order. With ``recompute_runtime`` (the default and the
    only safe choice) runtime events use the digest recomputed from their payload."""
    events = log.events if isinstance(log, EventLog) else list(log)
    rtmrs = [bytes(48)] * RTMR_COUNT
    mismatches = []
    for e in events:
        if e.event_type == EV_NO_ACTION or not 0 <= e.imr < RTMR_COUNT:
            continue
        digest = e.digest
        if e.is_runtime:
            computed = e.computed_digest()
            if e.digest and e.digest != computed:
                mismatches.append((e, computed))
            if recompute_runtime:
                digest = computed
        rtmrs[e.imr] = hashlib.sha384(rtmrs[e.imr] + digest).digest()
    return Replay(rtmrs, mismatches, not recompute_runtime)


def rtmr3_matches(quote: Quote, log: EventLog) -> bool:
    """True when the log's events (runtime digests recomputed) replay to the quote's RTMR3: only then is any
    runtime value (app id, compose hash, OS image…) read from the log believed."""
    return replay(log).rtmrs[RUNTIME_IMR] == quote.body.rtmrs[RUNTIME_IMR]


def check_event_log(quote: Quote, log: Any, *, recompute_runtime: bool = True) -> Check:
    """``tdx.event_log``: the log replays to the quote's RTMR0-3."""
    try:
        parsed = parse_event_log(log)
    except (ParseError, InputError) as exc:
        return Check("tdx.event_log", Status.FAIL, f"the event log cannot be read: {exc}")
    result = replay(parsed, recompute_runtime=recompute_runtime)
    quoted = quote.body.rtmrs
    ev: dict[str, Any] = {"format": parsed.format, "events": len(parsed)}
    bad = []
    for i in range(RTMR_COUNT):
        ev[f"rt_mr{i}"] = {"replayed": result.rtmrs[i].hex(), "quote": quoted[i].hex()}
        if result.rtmrs[i] != quoted[i]:
            bad.append(f"rt_mr{i}")
    if result.runtime_mismatches:
        names = [f"{e.event!r} (#{e.index})" for e, _ in result.runtime_mismatches]
        ev["runtime_digest_mismatches"] = names
        return Check("tdx.event_log", Status.FAIL, "runtime event digests do not match their payloads: "
                     + ", ".join(names) + " (the log was altered)", ev)
    if bad:
        hint = "" if recompute_runtime else " (shipped digests were trusted; recompute runtime digests)"
        return Check("tdx.event_log", Status.FAIL, f"replaying {len(parsed)} events does not give the quote's "
                     f"{', '.join(bad)}: the log is not the one measured{hint}", ev)
    empty = sum(1 for e in parsed.runtime_events() if not e.digest)
    note = f"; {empty} runtime digests were empty and recomputed" if empty else ""
    return Check("tdx.event_log", Status.PASS, f"{len(parsed)} events replay to RTMR0-3 of the quote{note}", ev)
