"""The core subcommands: ``sim``, ``demo`` and ``chat``.

The API key is read from the environment only (``PHALANB_API_KEY`` or ``REDPILL_API_KEY``): a key on the command
line would sit in the shell history and in every process listing.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from . import COMMANDS
from .._term import verdict_table
from ..wire.apikey import ENV_VARS
from ..audit.evidence import DEFAULT_PCCS_URL
from ..session import Session, Settings
from ..sim.config import LATENCY_DISTRIBUTIONS
from ..errors import InputError, SignatureExpiredError
from ..vllm.signatures import ALGOS, fetch_signature
from .options import service_args

__all__ = ["register"]

DEMO_PROMPT = "In one sentence: why does a confidential LLM sign its replies?"


def _positive(kind):
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"not a number: {text!r}") from None
        if value < 0:
            raise argparse.ArgumentTypeError(f"must be >= 0, got {text}")
        return value
    return parse


def register(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("sim", help=COMMANDS["sim"][1],
                       description="Run phalanb's simulated confidential-inference service. The first stdout line "
                       "is its base URL.")
    p.add_argument("--host", default="127.0.0.1", help="address to listen on (default 127.0.0.1, loopback only)")
    p.add_argument("--port", type=int, default=0, help="port (default 0: any free port)")
    p.add_argument("--seed", type=int, default=None, help="derive keys and text from this seed (reproducible)")
    p.add_argument("--signature-ttl", type=_positive(float), default=1200.0, metavar="SECONDS",
                   help="how long signatures (/v1/signature, the model server's and the gateway's legacy one) stay "
                   "retrievable (default 1200, as the real proxy)")
    p.add_argument("--max-signatures", type=int, default=1000, help="signature cache size (default 1000)")
    p.add_argument("--ttft-ms", type=_positive(float), default=200.0, help="time to first token (default 200)")
    p.add_argument("--tokens-per-second", type=_positive(float), default=50.0,
                   help="token rate after the first (default 50; 0 = as fast as possible)")
    p.add_argument("--ttft-jitter", type=_positive(float), default=0.0, metavar="FRACTION",
                   help="spread of the time to first token, as a fraction of it (default 0)")
    p.add_argument("--token-jitter", type=_positive(float), default=0.0, metavar="FRACTION",
                   help="spread of the gaps between tokens, as a fraction (default 0)")
    p.add_argument("--distribution", choices=tuple(LATENCY_DISTRIBUTIONS), default="uniform",
                   help="how the jitter is spread (default uniform)")
    p.add_argument("--model", action="append", dest="models", metavar="NAME",
                   help="model name to serve (repeatable; default phalanb/sim-llama-3-8b)")
    p.add_argument("--gpus", type=int, default=1, help="simulated GPUs in the attestation (0-8, default 1)")
    p.add_argument("--fault", action="append", default=[], metavar="NAME",
                   help="inject a fault (repeatable); see `phalanb sim --list-faults`")
    p.add_argument("--list-faults", action="store_true", help="list the faults the simulator can inject and exit")
    p.add_argument("--reply", metavar="TEXT", help="answer every chat with this text (demos; display tests)")
    p.add_argument("--upstream", metavar="URL", help="proxy a real OpenAI-compatible server (e.g. a local "
                   "llama.cpp at http://127.0.0.1:8080/v1) and sign its replies; its key, if any, comes from "
                   "$PHALANB_UPSTREAM_API_KEY")
    p.add_argument("--protocol", choices=("aci", "legacy"), default="aci",
                   help="aci (default): the ACI gateway in front of the model server, as the real services answer "
                   "now; legacy: the vllm-proxy model server alone")
    p.add_argument("--aci-mode", choices=("aggregator", "direct"), default="aggregator",
                   help="aggregator (default): attested upstream sessions; direct: the gateway serves the model")
    p.add_argument("--aci-shape", choices=("v3", "aug-2026", "preview-2026-06", "current", "preview"), default="v3",
                   help="v3 (default): the served-bytes revision (ACI-v3.md: keyset bytes, receipt envelopes, E2EE "
                        "v3); aug-2026: the August 2026 spec (alias current); preview-2026-06: the June 2026 build "
                        "(alias preview)")
    p.add_argument("--https", action="store_true",
                   help="serve over TLS with a self-signed certificate made at start-up (its SPKI is in the keyset)")
    p.add_argument("--receipt-ttl", type=_positive(float), default=3600.0, metavar="S",
                   help="how long receipts stay retrievable (default 3600, as the gateway)")
    p.add_argument("--keepalive", action="store_true",
                   help="inject one ': PROCESSING' keep-alive comment before each stream's first event")
    p.set_defaults(func=cmd_sim)

    p = sub.add_parser("demo", help=COMMANDS["demo"][1],
                       description="Start the embedded simulator (an ACI gateway, unless --base-url is given), chat "
                       "once, fetch the reply's receipt (ACI) or signature (a model server), a fresh attestation and "
                       "the attested sessions the receipt cites, verify, and print a table of checks. Exit code 0 "
                       "only when every check passed; 1 when one failed; 3 when something could not be checked.")
    _client_args(p)
    p.add_argument("--prompt", default=DEMO_PROMPT, help=f"the user message to send (default: {DEMO_PROMPT!r})")
    p.add_argument("--json", action="store_true", help="print the result as JSON")
    p.add_argument("--save", type=Path, metavar="FILE", help="write an audit bundle that re-verifies offline")
    p.add_argument("--offline", action="store_true",
                   help="do not fetch Intel collateral or ask NRAS (TCB status and NRAS are then not checked)")
    p.add_argument("--pccs-url", default=None, help=f"collateral source (default: the simulator's, or "
                   f"{DEFAULT_PCCS_URL} for a real service)")
    p.add_argument("--nras-url", default=None, help="where to ask for NVIDIA's appraisal of the GPU evidence "
                   "(default: the simulator's NRAS, or https://nras.attestation.nvidia.com for a real service)")
    p.add_argument("--no-nras", action="store_true", help="do not ask NRAS (a real service's verdict is then "
                   "incomplete: production policy requires NVIDIA's appraisal of the GPU measurements)")
    p.set_defaults(func=cmd_demo)

    p = sub.add_parser("chat", help=COMMANDS["chat"][1],
                       description="Send one chat request, print the reply and fetch its receipt (ACI) or signature "
                       "(a model server). With --save, verify it and write its audit bundle (the exact bytes and all "
                       "the evidence; phalanb verify FILE re-verifies it offline).")
    _client_args(p)
    p.add_argument("prompt", help="the user message")
    p.add_argument("--save", type=Path, metavar="FILE",
                   help="verify the reply and write its audit bundle (re-verify offline with phalanb verify FILE)")
    p.add_argument("--no-signature", action="store_true",
                   help="do not fetch the signature or receipt (cannot be combined with --save)")
    p.set_defaults(func=cmd_chat)


def _client_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--aci-shape", choices=("v3", "aug-2026", "preview-2026-06", "current", "preview"), default=None,
                   help="the ACI shape the embedded simulator serves (default v3; see phalanb sim --aci-shape)")
    p.add_argument("--base-url", help="service base URL, e.g. https://api.redpill.ai/v1 (default: the embedded "
                   f"simulator). The API key comes from ${ENV_VARS[0]} or ${ENV_VARS[1]}.")
    p.add_argument("--model", help="model id (default: the first one the service lists)")
    p.add_argument("--no-stream", action="store_true", help="ask for a non-streaming reply")
    p.add_argument("--max-tokens", type=int, default=None,
                   help="the most tokens the reply may have (default: the service's own limit)")
    p.add_argument("--signing-algo", choices=ALGOS, default="ecdsa",
                   help="the signature to ask for: ecdsa (an Ethereum address signs) or ed25519 (default ecdsa)")
    p.add_argument("--timeout", type=_positive(float), default=60.0, help="seconds (default 60)")
    p.add_argument("--allow-insecure-http", action="store_true",
                   help="allow sending the API key over plain http to a non-loopback host")
    p.add_argument("--trust", choices=("production", "simulated"), default=None,
                   help="roots to trust (default: simulated for the embedded simulator, production otherwise)")
    service_args(p, compose=False)
    p.add_argument("--e2ee", action="store_true",
                   help="ACI only: verify the gateway's report first, then encrypt the prompt (E2EE v2) to an E2EE "
                   "key of the keyset it established; the reply is decrypted and the verdict adds e2ee.* checks")
    p.add_argument("--rims", metavar="fetch|DIR", default=None,
                   help="also appraise the GPU measurements with NVIDIA's signed reference manifests (RIMs): 'fetch' "
                   "fetches them and their OCSP answers from NVIDIA's RIM service and OCSP responder (the "
                   "simulator's own, for the simulator) and keeps them in memory and in --save bundles; DIR uses the "
                   "folder as a cache (missing RIMs are fetched into it). Default: NRAS alone")
    p.add_argument("--protocol", choices=("aci", "legacy"), default="aci",
                   help="what the embedded simulator serves: aci (default; today's Redpill/Phala gateway: report, "
                   "signed receipts, attested sessions) or legacy (a model server's vllm-proxy protocol). A real "
                   "service is recognised by its answer (an X-Receipt-Id header means ACI)")


def _session(args: argparse.Namespace) -> Session:
    """A session for --base-url, or for a freshly started embedded simulator."""
    settings = Settings.from_env(base_url=args.base_url or None, signing_algo=args.signing_algo,
                                 timeout=args.timeout)
    if args.model:
        settings.model = args.model
    if not args.base_url:
        settings.trust = "simulated"
    if getattr(args, "trust", None):
        settings.trust = args.trust
    settings.protocol = getattr(args, "protocol", None) or "aci"
    if getattr(args, "service", None):
        settings.service = args.service

    if getattr(args, "offline", False):
        settings.online = False
    if getattr(args, "pccs_url", None):
        settings.pccs_url = args.pccs_url
    if getattr(args, "nras_url", None):
        settings.nras_url = args.nras_url
    if getattr(args, "no_nras", False):
        settings.ask_nras = False
    if getattr(args, "aci_shape", None):
        if args.base_url:
            raise InputError("--aci-shape chooses what the embedded simulator serves; a real service (--base-url) "
                             "serves its own shape, which phalanb reads from its documents")
        settings.sim_options = {**settings.sim_options, "aci_shape": args.aci_shape}
    if getattr(args, "rims", None):
        if args.rims != "fetch" and Path(args.rims).expanduser().exists() and not Path(args.rims).expanduser().is_dir():
            raise InputError(f"--rims {args.rims}: not a folder (give 'fetch', or the folder that caches the RIMs)")
        settings.rims = args.rims
    return Session(settings, allow_insecure_http=args.allow_insecure_http)


def cmd_sim(args: argparse.Namespace) -> int:
    from ..sim import FAULTS, SimConfig, Simulator

    if args.list_faults:
        for name, what in FAULTS.items():
            print(f"{name:<26} {what}")
        return 0
    config = SimConfig(seed=args.seed, signature_ttl=args.signature_ttl, max_signatures=args.max_signatures,
                       ttft_ms=args.ttft_ms, tokens_per_second=args.tokens_per_second, gpus=args.gpus,
                       ttft_jitter=args.ttft_jitter, token_jitter=args.token_jitter,
                       ttft_distribution=args.distribution, token_distribution=args.distribution,
                       models=tuple(args.models) if args.models else SimConfig().models, faults=set(args.fault),
                       upstream=args.upstream, reply=args.reply,
                       upstream_api_key=os.environ.get("PHALANB_UPSTREAM_API_KEY"),
                       protocol=args.protocol, aci_mode=args.aci_mode, aci_shape=args.aci_shape, https=args.https,
                       receipt_ttl=args.receipt_ttl, aci_keepalive=args.keepalive)
    try:
        Simulator(config, host=args.host, port=args.port).serve_forever()
    except KeyboardInterrupt:
        pass
    return 0


def cmd_demo(args: argparse.Namespace) -> int:
    out = sys.stderr if args.json else sys.stdout
    with _session(args) as session:
        if session.sim is not None:
            print(f"Using phalanb's embedded simulator at {session.client.base_url} (no API key, no network). Its "
                  "roots are SIMULATED: a pass proves phalanb's checks work, not that real hardware answered.",
                  file=out)
        print(f"> {args.prompt}", file=out)
        result = session.chat_and_verify(args.prompt, stream=not args.no_stream, max_tokens=args.max_tokens,
                                         on_text=lambda t: (out.write(t), out.flush()), e2ee=args.e2ee)
        print("\n", file=out)
        _say_e2ee(result.exchange, out)
        for problem in result.online.problems:
            print(f"phalanb: could not fetch {problem}", file=sys.stderr)
        if args.save:
            result.save(args.save)
            trust = " --trust simulated" if session.simulated else ""
            # The hint must reproduce the verdict as printed: simulator evidence only verifies under the
            # simulator's roots, which `phalanb verify` never trusts unless told to.
            print(f"saved the audit bundle to {args.save} (re-verify offline: phalanb verify {args.save}{trust})",
                  file=sys.stderr)
    verdict = result.verdict
    if args.json:
        print(json.dumps({**result.endpoint, "chat_id": result.exchange.chat_id, "reply": result.exchange.text,
                          "nonce": result.attestation.nonce_hex, "verdict": verdict.to_dict()}, indent=2))
    else:
        print(verdict_table(verdict))
    return verdict.exit_code()


def _say_e2ee(exchange: Any, out: Any) -> None:
    """What travelled: with E2EE the prompt left as ciphertext to a key of the verified keyset."""
    rec = getattr(exchange, "e2ee", None)
    if rec is None:
        return
    if getattr(rec, "version", 2) == 3:
        print(f"E2EE v3 ({rec.algo}): the whole request body ({len(rec.restored_request)} bytes) left sealed to "
              f"{rec.key_id} of the verified keyset; the request on the wire was {len(exchange.request_bytes)} bytes, "
              "the reply opened locally", file=out)
        return
    fields = ", ".join(rec.encrypted_fields)
    print(f"E2EE v2 ({rec.algo}): {fields} left encrypted to {rec.key_id} of the verified keyset; the request on the "
          f"wire was {len(exchange.request_bytes)} bytes, the reply decrypted locally", file=out)


def cmd_chat(args: argparse.Namespace) -> int:
    if args.save and args.no_signature:
        raise InputError("--save writes an audit bundle, which needs the signature or receipt: drop --no-signature")
    if args.rims and not args.save:
        raise InputError("--rims appraises the GPUs of a verified reply, and phalanb chat verifies only with --save "
                         "FILE: add --save (or use phalanb demo --rims)")
    def on_text(t: str) -> None:
        sys.stdout.write(t)
        sys.stdout.flush()

    with _session(args) as session:
        client = session.client
        verdict = None
        if args.save:
            # A saved chat is an audit bundle, made by the same path as `phalanb demo` (either protocol, E2EE
            # included): `phalanb verify FILE` then gives this chat's verdict offline.
            result = session.chat_and_verify(args.prompt, stream=not args.no_stream, max_tokens=args.max_tokens,
                                             on_text=on_text, e2ee=args.e2ee)
            exchange = result.exchange
            print()
            _say_e2ee(exchange, sys.stderr)
            result.save(args.save)
            verdict = result.verdict
            trust = " --trust simulated" if session.simulated else ""
        else:
            key = session.attested_e2ee_key()[1] if args.e2ee else None  # verify before you send
            exchange = client.chat(args.prompt, stream=not args.no_stream, max_tokens=args.max_tokens,
                                   on_text=on_text, e2ee=key)
            print()
            _say_e2ee(exchange, sys.stderr)
            if not args.no_signature:
                try:
                    if exchange.receipt_id is not None:
                        receipt = client.receipt(exchange.receipt_id)
                        print(f"receipt {exchange.receipt_id}: {len(receipt.raw)} bytes, signed by the gateway's "
                              "attested key (phalanb chat --save FILE verifies it and keeps it)", file=sys.stderr)
                    else:
                        fetch_signature(client, exchange.chat_id)
                except SignatureExpiredError as exc:
                    print(f"phalanb: {exc}", file=sys.stderr)
    t = exchange.timings
    print(f"chat id {exchange.chat_id}; request sha256 {exchange.request_sha256}; response sha256 "
          f"{exchange.response_sha256}; first token {t.ttft_s * 1000 if t.ttft_s is not None else float('nan'):.0f}"
          f" ms; total {t.total_s * 1000:.0f} ms", file=sys.stderr)
    if verdict is not None:
        print(f"verdict: {verdict.summary()}", file=sys.stderr)
        print(f"saved the audit bundle to {args.save} (re-verify offline: phalanb verify {args.save}{trust})",
              file=sys.stderr)
        return verdict.exit_code()
    return 0
