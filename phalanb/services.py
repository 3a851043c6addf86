"""Service profiles: what the auditor expects of the service they talk to (``phalanb/data/services.json``).

Evidence says what it is; only the auditor says what it should be. A profile names the protocol and report shapes a
service answers with, whether a gateway must show a verified upstream, the dstack-kms roots its keys may descend
from, and the app ids / compose hashes of a genuine deployment (or the published source that lists them). The
``service.profile`` check holds the evidence to it:

- a gateway's legacy answer dressed as a model server's reply, or any app on an allow-listed KMS root posing as the
  gateway, fails, naming the mismatch;
- an app id that belongs to another profile fails wherever it turns up (the gateway answering as a model server);
- a deployment phalanb cannot place (no profile, no pinned compose hash, no app id it knows) is *skipped*: the
  verdict is incomplete, never verified;
- a chosen profile that names only the published source of its compose hashes (not the hashes) holds with a
  *warning* naming the compose hash to compare.

The profile comes from the auditor (``Policy(service="redpill-aci")``, ``--service NAME``) or from the base URL's
host when exactly one profile lists it (:func:`profile_for_url`) — never from the evidence.

>>> profile("redpill-aci").upstream
'required'
>>> profile_for_url("https://api.redpill.ai/v1").name
'redpill-aci'
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from functools import lru_cache
from importlib import resources
from typing import Any
from urllib.parse import urlsplit

from .errors import InputError
from .verdict import Check, Status

__all__ = ["ServiceProfile", "profiles", "profile", "profile_for_url", "profile_of_app", "profile_check",
           "PROTOCOLS"]

PROTOCOLS = ("aci", "vllm-proxy")


@dataclass(frozen=True)
class ServiceProfile:
    """One service as an auditor expects it. ``protocols``: ``aci`` and/or ``vllm-proxy``; ``shapes``: the report
    shapes a genuine answer has (``report.shape`` / ``aci.shape`` names, ``aci-legacy-gateway`` for the ACI
    gateway's legacy endpoints); ``upstream``: ``"required"`` (an aggregator: every receipt shows a verified
    upstream), ``"none"`` (the gateway serves the model itself) or None (not a gateway);
    ``upstream_flag_required``: the upstream verification must also say ``required:true``."""

    name: str
    title: str
    protocols: tuple[str, ...]
    shapes: tuple[str, ...]
    hosts: tuple[str, ...] = ()
    upstream: str | None = None
    upstream_flag_required: bool = True
    kms_roots: tuple[str, ...] = ()
    app_ids: tuple[str, ...] = ()
    compose_hashes: tuple[str, ...] = ()
    compose_source: str | None = None
    trust: str = "production"
    sources: tuple[str, ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if not self.name or not all(p in PROTOCOLS for p in self.protocols) or not self.protocols:
            raise InputError(f"a service profile needs a name and protocols among {PROTOCOLS}, got "
                             f"{self.name!r}, {self.protocols!r}")
        if self.upstream not in (None, "required", "none"):
            raise InputError(f"profile {self.name}: upstream is 'required', 'none' or null, got {self.upstream!r}")
        if self.trust not in ("production", "simulated"):
            raise InputError(f"profile {self.name}: trust is 'production' or 'simulated', got {self.trust!r}")
        for name in ("kms_roots", "app_ids", "compose_hashes"):
            object.__setattr__(self, name, tuple(str(v).lower().removeprefix("0x") for v in getattr(self, name)))

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> "ServiceProfile":
        proto = d.get("protocol", "any")
        protocols = PROTOCOLS if proto == "any" else ((proto,) if isinstance(proto, str) else tuple(proto))
        return cls(name=d["name"], title=d.get("title", d["name"]), protocols=protocols,
                   shapes=tuple(d.get("shapes", ())), hosts=tuple(d.get("hosts", ())), upstream=d.get("upstream"),
                   upstream_flag_required=bool(d.get("upstream_flag_required", True)),
                   kms_roots=tuple(d.get("kms_roots", ())), app_ids=tuple(d.get("app_ids", ())),
                   compose_hashes=tuple(d.get("compose_hashes", ())), compose_source=d.get("compose_source"),
                   trust=d.get("trust", "production"), sources=tuple(d.get("sources", ())))

    def serves(self, host: str) -> bool:
        from .trust import is_loopback_url

        host = host.rstrip(".").lower()
        for h in self.hosts:
            if h == "loopback":
                if is_loopback_url(f"http://{host}/") or is_loopback_url(f"http://[{host}]/"):
                    return True
            elif h.startswith("*."):
                if host.endswith(h[1:]) and host != h[2:]:
                    return True
            elif host == h:
                return True
        return False


@lru_cache(maxsize=1)
def profiles() -> dict[str, ServiceProfile]:
    """Every shipped profile by name (``phalanb/data/services.json``)."""
    data = json.loads(resources.files("phalanb").joinpath("data/services.json").read_text())
    return {p["name"]: ServiceProfile.from_dict(p) for p in data["profiles"]}


def profile(name: str | ServiceProfile) -> ServiceProfile:
    """The profile called ``name`` (a :class:`ServiceProfile` is returned as is)."""
    if isinstance(name, ServiceProfile):
        return name
    found = profiles().get(str(name).strip().lower()) if isinstance(name, str) else None
    if found is None:
        raise InputError(f"no service profile called {name!r:.60}; phalanb knows {', '.join(profiles())}")
    return found


def profile_for_url(url: str | None) -> ServiceProfile | None:
    """The profile whose hosts include ``url``'s host, when exactly one does; None otherwise (choose one with
    ``--service NAME``)."""
    try:
        host = urlsplit(str(url)).hostname if url else None
    except ValueError:
        return None
    if not host:
        return None
    found = [p for p in profiles().values() if p.serves(host)]
    return found[0] if len(found) == 1 else None


def profile_of_app(app_id: str | None) -> ServiceProfile | None:
    """The shipped profile that lists ``app_id`` as its deployment, if any."""
    if not app_id:
        return None
    app_id = app_id.lower()
    return next((p for p in profiles().values() if app_id in p.app_ids), None)


def _names() -> str:
    return ", ".join(profiles())


def profile_check(policy: Any, *, protocol: str, shape: str | None, app_id: str | None = None,
                  compose_hash: str | None = None) -> Check:
    """``service.profile``: does this answer fit the service the auditor expects (``policy.service``)?

    ``protocol``: how the answer came (``aci`` or ``vllm-proxy``); ``shape``: the report shape seen; ``app_id`` /
    ``compose_hash``: read from an event log that replayed into the quote (None when not shown)."""
    prof: ServiceProfile | None = getattr(policy, "service", None)
    pinned = (getattr(policy, "expected", None) or {}).get("compose_hash")
    ev: dict[str, Any] = {"profile": prof.name if prof else None, "protocol": protocol, "shape": shape,
                          "app_id": app_id, "compose_hash": compose_hash, "pinned_compose_hash": pinned}
    cid = "service.profile"
    owner = profile_of_app(app_id)
    if prof is None:
        if owner is not None:
            if protocol in owner.protocols and shape in owner.shapes:
                return Check(cid, Status.PASS, f"placed by its attested app id {app_id}: {owner.title} "
                             f"(profile {owner.name})", ev)
            return Check(cid, Status.FAIL, f"app {app_id} is {owner.title} (profile {owner.name}), which answers "
                         f"{'/'.join(owner.protocols)} with {', '.join(owner.shapes)} — not this {protocol} answer "
                         f"of shape {shape}: the service is posing as another", ev)
        if pinned:
            return Check(cid, Status.PASS, "no service profile; placed by the compose hash you pinned "
                         "(policy.measurements compares it)", ev)
        return Check(cid, Status.SKIPPED, "phalanb cannot place this deployment: pin its compose "
                     "(Policy(expected={'compose_hash': '<hex>'}), --expect-compose HEX) or choose a profile "
                     f"(Policy(service=NAME), --service NAME; known: {_names()})", ev)
    if owner is not None and owner.name != prof.name and app_id not in prof.app_ids:
        return Check(cid, Status.FAIL, f"app {app_id} is {owner.title} (profile {owner.name}), not {prof.title}: "
                     f"another service's deployment is answering ({protocol}, shape {shape})", ev)
    if protocol not in prof.protocols:
        return Check(cid, Status.FAIL, f"the {prof.name} profile ({prof.title}) answers {'/'.join(prof.protocols)}, "
                     f"but this is a {protocol} answer (shape {shape}): not the service you expect", ev)
    if shape not in prof.shapes:
        return Check(cid, Status.FAIL, f"the {prof.name} profile ({prof.title}) expects shape "
                     f"{' or '.join(prof.shapes)}, but this answer is {shape}", ev)
    if prof.trust == "simulated":
        return Check(cid, Status.PASS, f"{prof.title}: placed by simulated trust (loopback only)", ev)
    if prof.app_ids or prof.compose_hashes:
        if app_id is None and compose_hash is None:
            return Check(cid, Status.SKIPPED, f"the {prof.name} profile pins the deployment's app id / compose hash, "
                         "but no event log replayed into the quote to read them from", ev)
        if (app_id in prof.app_ids) or (compose_hash in prof.compose_hashes):
            what = f"app {app_id}" if app_id in prof.app_ids else f"compose hash {compose_hash}"
            return Check(cid, Status.PASS, f"{prof.title}: {what} as the profile pins", ev)
        return Check(cid, Status.FAIL, f"app {app_id} (compose {str(compose_hash)[:16]}…) is not {prof.title}'s "
                     f"(the {prof.name} profile pins app {', '.join(prof.app_ids) or '—'}): another app is "
                     "answering, however genuine its TEE", ev)
    if pinned:
        return Check(cid, Status.PASS, f"{prof.title}: shape {shape} fits; the deployment is placed by the compose "
                     "hash you pinned (policy.measurements compares it)", ev)
    # The auditor chose this service and the answer fits it; what software runs is not pinned by the profile (the
    # published source lists it per deployment), which is said as a caveat rather than passed.
    return Check(cid, Status.WARNING, f"{prof.title}: shape {shape} fits the profile you chose, but the profile pins "
                 f"no app id or compose hash ({prof.compose_source or 'no published list'}): compare compose hash "
                 f"{compose_hash or '(not readable here)'} with it, and pin it with --expect-compose / "
                 "Policy(expected=…)", ev)
