"""How long after a reply can its signature — or, from an ACI gateway, its receipt — still be fetched? A probe
that measures it (SPEC §2; ACI.md: receipts are kept ``receipt_ttl_seconds``).

The documentation says 5 minutes and 30 minutes, the server code says 1200 s, and a busy node forgets sooner.
:class:`WindowProbe` makes a fresh chat, then asks ``GET /signature/{chat_id}`` on a schedule until the answer
turns from 200 to 404, and reports the window as the interval between the last success and the first failure.

Rules the probe keeps:

* **Time only moves forward.** Once a chat's signature is gone it stays gone, so a bisection step that lands
  after the expiry needs a *fresh* chat; a step that lands before it continues on the same chat.
* **A 404 is not yet an expiry.** With several nodes a lookup can reach a node that never saw the chat. A 404 is
  confirmed by ``confirm`` consecutive 404s; a 404 followed by a later 200 on the same chat is recorded as a
  *multi-node miss* and never counts as the end of the window.
* **Never faster than ``min_interval``** between any two probes (over all chats), and never past ``horizon``
  seconds after a chat ended.
* **Conservative bounds:** a success counts from when its request was *sent*, a failure from when its answer was
  *received*, so the true window lies inside ``[lower_s, upper_s]`` up to the client-server clock offset of one
  network trip.

The clock and the sleep are injectable, so the scheduling logic can be tested instantly; in a notebook the probe
runs in a background thread (:meth:`WindowProbe.start`) with a per-probe callback and :meth:`WindowProbe.stop`.

>>> probe = WindowProbe.for_client(client, horizon=1800, min_interval=2.0)        # doctest: +SKIP
>>> result = probe.run()                                                          # doctest: +SKIP
>>> print(result)                                                                 # doctest: +SKIP
signature window 1199.4 s ± 7.8 s (last success 1191.6 s, first failure 1207.2 s; 21 probes on 3 chats)
"""

from __future__ import annotations

import math
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable, Iterator

import pandas as pd

from ..errors import InputError, PhalanbError, ServiceError, SignatureExpiredError, TransportError
from ..vllm.signatures import fetch_signature

if TYPE_CHECKING:  # pragma: no cover
    from ..wire.client import Client

__all__ = ["Probe", "WindowResult", "WindowProbe", "SCHEDULES", "ENDPOINTS", "probe_window", "signature_status",
           "receipt_status", "chat_maker", "grid_probe_count"]

SCHEDULES = ("exponential", "grid")

#: What a probe can ask for, and where.
ENDPOINTS = {"receipt": "GET /v1/aci/receipts/{id}", "signature": "GET /v1/signature/{chat_id}"}

#: Outcomes of one probe.
OK, MISSING, ERROR = "ok", "missing", "error"


@dataclass
class Probe:
    """One ``GET /signature`` attempt. ``elapsed_s`` is measured from the end of the chat to the request's
    departure; ``status`` is the HTTP status (``None`` when the request itself failed)."""

    chat: int
    chat_id: str
    elapsed_s: float
    rtt_s: float
    status: int | None
    outcome: str
    phase: str
    wall_time: float = 0.0
    multi_node_miss: bool = False
    error: str | None = None

    @property
    def received_s(self) -> float:
        return self.elapsed_s + self.rtt_s

    def to_dict(self) -> dict[str, Any]:
        return {"chat": self.chat, "chat_id": self.chat_id, "elapsed_s": self.elapsed_s, "rtt_s": self.rtt_s,
                "received_s": self.received_s, "status": self.status, "outcome": self.outcome,
                "phase": self.phase, "multi_node_miss": self.multi_node_miss, "wall_time": self.wall_time,
                "error": self.error}


@dataclass
class WindowResult:
    """The measured window. ``status``:

    * ``"expired"``: seen alive until ``lower_s`` and gone from ``upper_s``; ``estimate_s`` ± ``uncertainty_s``.
    * ``"alive_at_horizon"``: still there at the horizon; the window is at least ``lower_s``.
    * ``"never_available"``: no probe ever got the signature (wrong endpoint, or a node that never saw the chat).
    * ``"inconsistent"``: one chat was alive later than another had expired (busy nodes evicting early).
    * ``"stopped"``: stopped before a conclusion; the bounds found so far are kept.
    """

    status: str
    lower_s: float | None
    upper_s: float | None
    probes: list[Probe] = field(default_factory=list)
    chats: int = 0
    schedule: str = "exponential"
    horizon_s: float = 0.0
    min_interval_s: float = 0.0
    #: what was probed: ``"receipt"`` (``GET /v1/aci/receipts/{id}``, what an ACI gateway keeps today) or
    #: ``"signature"`` (``GET /v1/signature/{chat_id}``, a model server's)
    what: str = "signature"

    @property
    def endpoint(self) -> str:
        return ENDPOINTS.get(self.what, self.what)

    @property
    def estimate_s(self) -> float | None:
        if self.lower_s is None or self.upper_s is None or self.upper_s < self.lower_s:
            return None
        return (self.lower_s + self.upper_s) / 2

    @property
    def uncertainty_s(self) -> float | None:
        """Half the width of ``[lower_s, upper_s]``: the window is ``estimate_s ± uncertainty_s``."""
        if self.estimate_s is None:
            return None
        return (self.upper_s - self.lower_s) / 2  # type: ignore[operator]

    @property
    def multi_node_misses(self) -> int:
        return sum(p.multi_node_miss for p in self.probes)

    def frame(self) -> pd.DataFrame:
        """Every probe as one row (CSV-ready): when it was sent and answered in seconds since the chat ended (the
        plot's axis, to the millisecond), its round trip in milliseconds."""
        cols = list(Probe(0, "", 0.0, 0.0, None, OK, "").to_dict())
        frame = pd.DataFrame([p.to_dict() for p in self.probes], columns=cols)
        frame[["elapsed_s", "received_s"]] = frame[["elapsed_s", "received_s"]].astype(float).round(3)
        frame["rtt_s"] = (frame["rtt_s"].astype(float) * 1000).round(3)
        return frame.rename(columns={"rtt_s": "rtt_ms"})

    def to_dict(self) -> dict[str, Any]:
        return {"status": self.status, "lower_s": self.lower_s, "upper_s": self.upper_s,
                "estimate_s": self.estimate_s, "uncertainty_s": self.uncertainty_s, "chats": self.chats,
                "probes": len(self.probes), "multi_node_misses": self.multi_node_misses,
                "schedule": self.schedule, "horizon_s": self.horizon_s, "min_interval_s": self.min_interval_s,
                "what": self.what, "endpoint": self.endpoint}

    def __str__(self) -> str:
        tail = f"{len(self.probes)} probes on {self.chats} chat{'s' if self.chats != 1 else ''}"
        if self.multi_node_misses:
            tail += f", {self.multi_node_misses} multi-node misses (404 then 200) not counted as expiry"
        w = self.what
        tail += f"; probed {self.endpoint}"
        if self.status == "expired" and self.estimate_s is not None:
            return (f"{w} window {self.estimate_s:.1f} s ± {self.uncertainty_s:.1f} s (last success "
                    f"{self.lower_s:.1f} s, first failure {self.upper_s:.1f} s; {tail})")
        if self.status == "alive_at_horizon":
            return f"{w} still retrievable at {self.lower_s:.1f} s (horizon {self.horizon_s:g} s; {tail})"
        if self.status == "never_available":
            return (f"the {w} was never retrievable: the endpoint keeps none, or every lookup reached a node "
                    f"that never saw the chat ({tail})")
        if self.status == "inconsistent":
            return (f"inconsistent: one chat was alive at {self.lower_s:.1f} s while another was gone at "
                    f"{self.upper_s:.1f} s; a busy node evicts early (at most 1000 entries) ({tail})")
        lo = "?" if self.lower_s is None else f"{self.lower_s:.1f}"
        hi = "?" if self.upper_s is None else f"{self.upper_s:.1f}"
        return f"stopped before a conclusion: alive at {lo} s, gone at {hi} s ({tail})"


class _Stopped(Exception):
    pass


@dataclass
class _Chat:
    index: int
    chat_id: str
    t0: float
    alive: bool = True
    pending: list[Probe] = field(default_factory=list)  # unconfirmed 404s


class WindowProbe:
    """Measure the signature window. ``fetch(chat_id)`` returns the HTTP status of ``GET /signature`` (``None``
    if the request failed); ``new_chat()`` makes a fresh chat and returns its id once the reply has ended.

    ``schedule="grid"`` probes one chat every ``interval`` seconds (default ``min_interval``).
    ``schedule="exponential"`` probes at ``first_probe * factor**k`` until the first failure, then bisects the
    interval between the last success and the first failure, on fresh chats when needed (at most
    ``max_chats`` chats in all), until it is at most ``resolution`` wide (default: the larger of
    ``min_interval`` and 2% of the upper bound).

    Cost: the exponential schedule uses few probes but, because every bisection step that lands after the
    expiry needs a fresh chat that must age again, it can take several windows of wall time (for a 1200 s
    window, one to two hours); the grid takes one window of time but ``window / min_interval`` probes.

    >>> clock = FakeClock()                                                      # doctest: +SKIP
    >>> WindowProbe(fetch, new_chat, clock=clock, sleep=clock.sleep, min_interval=1).run().estimate_s  # doctest: +SKIP
    5.02
    """

    def __init__(self, fetch: Callable[[str], int | None], new_chat: Callable[[], str], *,
                 schedule: str = "exponential", horizon: float = 1800.0, min_interval: float = 1.0,
                 interval: float | None = None, first_probe: float | None = None, factor: float = 1.5,
                 resolution: float | None = None, confirm: int = 2, max_chats: int = 6,
                 clock: Callable[[], float] = time.monotonic, sleep: Callable[[float], None] | None = None,
                 wall_clock: Callable[[], float] = time.time,
                 on_probe: Callable[[Probe], None] | None = None, stop_event: threading.Event | None = None,
                 what: str | Callable[[], str] = "signature"):
        if schedule not in SCHEDULES:
            raise InputError(f"schedule must be one of {', '.join(SCHEDULES)}, got {schedule!r}")
        if not (isinstance(min_interval, (int, float)) and min_interval > 0):
            raise InputError(f"min_interval must be > 0 seconds (it protects the service from polling), "
                             f"got {min_interval!r}")
        if not (isinstance(horizon, (int, float)) and horizon >= min_interval):
            raise InputError(f"horizon must be at least min_interval ({min_interval} s), got {horizon!r}")
        if interval is not None and interval < min_interval:
            raise InputError(f"interval {interval} s is shorter than min_interval {min_interval} s; raise it or "
                             "lower min_interval")
        if first_probe is not None and first_probe < 0:
            raise InputError(f"first_probe must be >= 0 seconds, got {first_probe}")
        if not factor > 1:
            raise InputError(f"factor must be > 1 (each probe later than the last), got {factor}")
        if resolution is not None and not resolution > 0:
            raise InputError(f"resolution must be > 0 seconds, got {resolution}")
        if not (isinstance(confirm, int) and confirm >= 1):
            raise InputError(f"confirm must be a whole number >= 1 (404s in a row that mean expiry), got {confirm!r}")
        if not (isinstance(max_chats, int) and max_chats >= 1):
            raise InputError(f"max_chats must be >= 1, got {max_chats!r}")
        self.fetch = fetch
        self.new_chat = new_chat
        self._what = what
        self.schedule = schedule
        self.horizon = float(horizon)
        self.min_interval = float(min_interval)
        self.interval = float(interval if interval is not None else min_interval)
        self.first_probe = float(first_probe if first_probe is not None else min_interval)
        self.factor = float(factor)
        self.resolution = resolution
        self.confirm = confirm
        self.max_chats = max_chats
        self.clock = clock
        self.wall_clock = wall_clock
        self._sleep = sleep
        self.on_probe = on_probe
        self.stop_event = stop_event or threading.Event()
        self.probes: list[Probe] = []
        self.chats: list[_Chat] = []
        self.lower_s: float | None = None  # latest elapsed time at which any chat's signature was there
        self.upper_s: float | None = None  # earliest elapsed time at which a confirmed expiry was seen
        self.result: WindowResult | None = None
        self.error: BaseException | None = None
        self._last_send: float | None = None
        self._thread: threading.Thread | None = None

    # -- construction from a Client -------------------------------------------------------------------
    @classmethod
    def for_client(cls, client: "Client", *, prompt: str = "Say OK.", stream: bool = True, max_tokens: int = 1,
                   **kwargs: Any) -> "WindowProbe":
        """A probe that chats through ``client`` (short replies: the window, not the text, is measured).

        It probes what the service keeps today: an ACI gateway (its reply carries ``X-Receipt-Id``) the reply's
        receipt, ``GET /v1/aci/receipts/{id}``; a model server the signature, ``GET /v1/signature/{chat_id}``.
        The first chat decides; ``.what`` (and the result's) says which.
        """
        seen: dict[str, str] = {}
        return cls(_status_of_what_is_kept(client, seen),
                   chat_maker(client, prompt=prompt, stream=stream, max_tokens=max_tokens, seen=seen),
                   what=lambda: seen.get("what", "signature"), **kwargs)

    @property
    def what(self) -> str:
        return self._what() if callable(self._what) else self._what

    # -- background use (notebooks) -------------------------------------------------------------------
    def start(self) -> "WindowProbe":
        """Run in a daemon thread; poll ``probes``/``lower_s``/``upper_s``, or pass ``on_probe`` for a live plot."""
        if self._thread is not None:
            raise InputError("this probe was already started; make a new WindowProbe for another run")

        def target() -> None:
            try:
                self.run()
            except BaseException as exc:  # surfaced through .error and wait()
                self.error = exc

        self._thread = threading.Thread(target=target, name="phalanb-window-probe", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the probe to stop; it returns a ``"stopped"`` result with the bounds found so far."""
        self.stop_event.set()

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive()

    def wait(self, timeout: float | None = None) -> WindowResult | None:
        """Join the background thread; re-raise what it raised; the result (None if still running)."""
        if self._thread is not None:
            self._thread.join(timeout)
        if self.error is not None:
            raise self.error
        return self.result

    # -- the measurement ------------------------------------------------------------------------------
    def run(self) -> WindowResult:
        """Probe until the window is known to ``resolution``, the horizon passes, or :meth:`stop` is called."""
        status = None
        try:
            first = self._new_chat()
            if self.schedule == "grid":
                targets = self._grid_targets()
            else:
                targets = self._exponential_targets()
            end = self._scan(first, targets, phase=self.schedule)
            if self.lower_s is None and self.upper_s is not None:
                status = "never_available"
            elif end == "horizon" and self.upper_s is None:
                status = "never_available" if self.lower_s is None else "alive_at_horizon"
            elif self.schedule == "exponential":
                self._bisect()
        except _Stopped:
            status = "stopped"
        if status is None:
            if self.lower_s is not None and self.upper_s is not None and self.lower_s >= self.upper_s:
                status = "inconsistent"
            elif self.lower_s is None:
                status = "never_available"
            elif self.upper_s is None:
                status = "alive_at_horizon"
            else:
                status = "expired"
        self.result = WindowResult(status=status, lower_s=self.lower_s, upper_s=self.upper_s,
                                   probes=list(self.probes), chats=len(self.chats), schedule=self.schedule,
                                   horizon_s=self.horizon, min_interval_s=self.min_interval, what=self.what)
        return self.result

    def _grid_targets(self) -> Iterator[float]:
        k = 0
        while True:
            t = self.first_probe + k * self.interval
            if t > self.horizon:
                return
            yield t
            k += 1

    def _exponential_targets(self) -> Iterator[float]:
        t = self.first_probe if self.first_probe > 0 else self.min_interval
        while t < self.horizon:
            yield t
            t *= self.factor
        yield self.horizon  # always look once at the horizon itself

    def _bisect(self) -> None:
        live: _Chat | None = self.chats[-1] if self.chats[-1].alive else None
        while True:
            lo, hi = self.lower_s, self.upper_s
            if lo is None or hi is None or lo >= hi:
                return
            resolution = self.resolution or max(self.min_interval, 0.02 * hi)
            if hi - lo <= resolution:
                return
            target = (lo + hi) / 2
            if target > self.horizon:
                return  # no chat may be probed there; the bounds found are the answer
            if live is not None and self._earliest(live, target) >= hi:
                live = None  # this chat can no longer reach the interval in time: only a fresh one can
            if live is None:
                if len(self.chats) >= self.max_chats:
                    return
                live = self._new_chat()
            end = self._scan(live, iter([target]), phase="bisect")
            if not live.alive or end == "horizon":
                live = None

    # -- one chat, probed at increasing elapsed times -------------------------------------------------
    def _scan(self, chat: _Chat, targets: Iterator[float], *, phase: str) -> str:
        """Probe ``chat`` at each target (and confirmations in between) until it is confirmed expired
        (``"expired"``), the targets run out (``"done"``), or the horizon is passed (``"horizon"``)."""
        for target in targets:
            probe = self._probe(chat, target, phase)
            if probe is None:
                return "horizon"
            while probe.outcome == MISSING and chat.alive:
                if len(chat.pending) >= self.confirm:
                    self._expire(chat)
                    break
                probe = self._probe(chat, probe.elapsed_s, "confirm")  # as soon as min_interval allows
                if probe is None:
                    return "horizon"
            if not chat.alive:
                return "expired"
        return "done"

    def _expire(self, chat: _Chat) -> None:
        chat.alive = False
        first_failure = chat.pending[0].received_s
        self.upper_s = first_failure if self.upper_s is None else min(self.upper_s, first_failure)

    def _earliest(self, chat: _Chat, target: float) -> float:
        """The elapsed time (for ``chat``) at which a probe aimed at ``target`` can go, given ``min_interval``."""
        when = chat.t0 + target
        if self._last_send is not None:
            when = max(when, self._last_send + self.min_interval)
        return when - chat.t0

    def _probe(self, chat: _Chat, target: float, phase: str) -> Probe | None:
        at = self._earliest(chat, target)
        if at > self.horizon + 1e-9:
            return None
        self._wait_until(chat.t0 + at)
        sent = self.clock()
        error = None
        try:
            status = self.fetch(chat.chat_id)
        except PhalanbError as exc:  # fetch helpers return statuses; a raising one still must not end the run
            status, error = getattr(exc, "status", None), str(exc)
        received = self.clock()
        self._last_send = sent
        outcome = OK if status == 200 else MISSING if status == 404 else ERROR
        probe = Probe(chat=chat.index, chat_id=chat.chat_id, elapsed_s=sent - chat.t0, rtt_s=received - sent,
                      status=status, outcome=outcome, phase=phase, wall_time=self.wall_clock(), error=error)
        self.probes.append(probe)
        if outcome == OK:
            for p in chat.pending:  # a 404 followed by a 200: another node answered, not an expiry
                p.multi_node_miss = True
            chat.pending.clear()
            self.lower_s = probe.elapsed_s if self.lower_s is None else max(self.lower_s, probe.elapsed_s)
        elif outcome == MISSING:
            chat.pending.append(probe)
        if self.on_probe is not None:
            self.on_probe(probe)
        return probe

    def _new_chat(self) -> _Chat:
        self._check_stop()
        chat_id = self.new_chat()
        chat = _Chat(index=len(self.chats), chat_id=chat_id, t0=self.clock())
        self.chats.append(chat)
        return chat

    def _check_stop(self) -> None:
        if self.stop_event.is_set():
            raise _Stopped()

    def _wait_until(self, when: float) -> None:
        self._check_stop()
        remaining = when - self.clock()
        if remaining > 0:
            if self._sleep is not None:
                self._sleep(remaining)
            else:
                # Event.wait returns early when stop() is called: a notebook's stop button acts at once.
                self.stop_event.wait(remaining)
        self._check_stop()


# -- adapters for phalanb's Client ---------------------------------------------------------------------
def signature_status(client: "Client") -> Callable[[str], int | None]:
    """``fetch`` for :class:`WindowProbe`: the HTTP status of ``fetch_signature(client, chat_id)``."""

    def fetch(chat_id: str) -> int | None:
        try:
            fetch_signature(client, chat_id)
        except SignatureExpiredError:
            return 404
        except ServiceError as exc:
            return exc.status
        except TransportError:
            return None
        return 200

    return fetch


def receipt_status(client: "Client") -> Callable[[str], int | None]:
    """``fetch`` for :class:`WindowProbe` against an ACI gateway: the HTTP status of ``client.receipt(id)``."""

    def fetch(receipt_id: str) -> int | None:
        try:
            client.receipt(receipt_id)
        except ServiceError as exc:
            return exc.status
        except TransportError:
            return None
        return 200

    return fetch


def _status_of_what_is_kept(client: "Client", seen: dict[str, str]) -> Callable[[str], int | None]:
    receipts, signatures = receipt_status(client), signature_status(client)
    return lambda ident: (receipts if seen.get("what") == "receipt" else signatures)(ident)


def chat_maker(client: "Client", *, prompt: str = "Say OK.", stream: bool = True,
               max_tokens: int = 1, seen: dict[str, str] | None = None) -> Callable[[], str]:
    """``new_chat`` for :class:`WindowProbe`: one short chat; once the reply has ended, the id to look up — its
    receipt id when the service is an ACI gateway (recorded in ``seen["what"]``), else its chat id."""

    def new_chat() -> str:
        ex = client.chat(prompt, stream=stream, max_tokens=max_tokens)
        if ex.receipt_id:
            if seen is not None:
                seen["what"] = "receipt"
                return ex.receipt_id
        if not ex.chat_id:
            raise PhalanbError("the service's reply carries no chat id, so its signature cannot be looked up")
        if seen is not None:
            seen.setdefault("what", "signature")
        return ex.chat_id

    return new_chat


def probe_window(client: "Client", **kwargs: Any) -> WindowResult:
    """Measure the signature window of ``client``'s endpoint (blocking); keywords as :class:`WindowProbe`.

    >>> print(probe_window(client, horizon=30, min_interval=0.5))                 # doctest: +SKIP
    signature window 5.0 s ± 0.2 s (last success 4.8 s, first failure 5.2 s; 11 probes on 2 chats)
    """
    return WindowProbe.for_client(client, **kwargs).run()


def grid_probe_count(window_s: float, min_interval: float, *, first_probe: float | None = None,
                     confirm: int = 2) -> int:
    """How many probes a fixed grid at ``min_interval`` needs to see a ``window_s`` expiry (and confirm it):
    the yardstick the exponential-then-bisection schedule must beat."""
    first = min_interval if first_probe is None else first_probe
    if window_s <= first:
        return confirm
    return math.ceil((window_s - first) / min_interval) + confirm
