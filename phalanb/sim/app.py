"""The simulated service as an ASGI app (starlette): the endpoints of SPEC §2, hashing and signing as the real
proxy does, and the faults of :data:`phalanb.sim.config.FAULTS`.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import secrets
import time
import uuid
from typing import Any, AsyncIterator

from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import JSONResponse, Response, StreamingResponse
from starlette.routing import Route

from .. import _json
from .attest import GpuProvider, TdxProvider, build_report
from .cache import SignatureCache
from .config import FAULTS, SimConfig, fault_refusal
from .generator import TextGenerator
from .keys import SimKeys

__all__ = ["SimState", "create_app"]

ALGOS = ("ecdsa", "ed25519")


def _compact(obj: Any) -> bytes:
    # vLLM emits compact JSON; the exact spelling matters only in that the client must hash what it receives.
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def _error(status: int, message: str, err_type: str, code: Any = None) -> JSONResponse:
    return JSONResponse({"error": {"message": message, "type": err_type, "param": None, "code": code}},
                        status_code=status)


class SimState:
    """Keys, generator, signature cache and providers of one simulator instance."""

    def __init__(self, config: SimConfig, *, tdx: TdxProvider | None, gpu: GpuProvider | None):
        self.config = config
        self.keys = SimKeys(config.seed)
        # A second key the report never names, for the wrong_signing_key fault.
        self.rogue_keys = SimKeys(config.seed, label=b"rogue")
        self.generator = TextGenerator(config.seed, ttft_ms=config.ttft_ms,
                                       tokens_per_second=config.tokens_per_second,
                                       ttft_jitter=config.ttft_jitter, token_jitter=config.token_jitter,
                                       ttft_distribution=config.ttft_distribution,
                                       token_distribution=config.token_distribution)
        self.cache = SignatureCache(ttl=config.signature_ttl, max_entries=config.max_signatures)
        self.tdx = tdx
        self.gpu = gpu
        self.seen_paths: set[str] = set()  # for faults that hit the first request to each path
        self.requests: dict[str, int] = {}  # requests received per path (tests count retries with it)

    def fault(self, name: str) -> bool:
        return name in self.config.faults

    def signed_text(self, model: str, req_hash: str, resp_hash: str) -> str:
        if self.config.text_format == "3part":
            return f"{model}:{req_hash}:{resp_hash}"
        return f"{req_hash}:{resp_hash}"


def _authorized(state: SimState, request: Request) -> bool:
    if state.config.api_key is None:
        return True
    header = request.headers.get("authorization", "")
    return secrets.compare_digest(header, f"Bearer {state.config.api_key}")


def _unauthorized() -> JSONResponse:
    # Never echo what the client sent: it may be a real key.
    return _error(401, "Invalid or missing API key", "authentication_error", "invalid_api_key")


def _prompt_of(messages: list[Any]) -> str:
    for m in reversed(messages):
        if isinstance(m, dict) and m.get("role") == "user":
            content = m.get("content")
            if isinstance(content, str):
                return content
            if isinstance(content, list):
                return " ".join(p.get("text", "") for p in content if isinstance(p, dict))
    return ""


def _tamper(data: bytes) -> bytes:
    """Alter one byte of a content token (a man in the middle that changes the reply)."""
    marker = b'"content":"'
    i = data.rfind(marker)
    pos = i + len(marker) if i >= 0 and i + len(marker) < len(data) else len(data) // 2
    return data[:pos] + bytes([data[pos] ^ 0x01]) + data[pos + 1:]


async def _network_fault(state: SimState, request: Request) -> Response | None:
    """Faults of the network or an overloaded gateway, for the endpoints a client may safely retry (and for chat,
    which it must not retry). The first request to each path is the one that suffers."""
    path = request.url.path
    first = path not in state.seen_paths
    state.seen_paths.add(path)
    state.requests[path] = state.requests.get(path, 0) + 1
    if state.fault("rate_limit") and first:
        resp = _error(429, "Too many requests (simulated fault rate_limit)", "rate_limit_error")
        resp.headers["Retry-After"] = "1"
        return resp
    if state.fault("flaky_503") and first:
        return _error(503, "Service temporarily unavailable (simulated fault flaky_503)", "server_error")
    if state.fault("hang") and request.method == "GET":
        await asyncio.sleep(3600)  # the client's timeout must end this, not the server
    return None


def _maybe_truncated(state: SimState, response: JSONResponse) -> Response:
    if not state.fault("truncated_json"):
        return response
    body = bytes(response.body)
    return Response(body[:len(body) // 2], media_type="application/json")


async def chat_completions(request: Request) -> Response:
    state: SimState = request.app.state.sim
    if not _authorized(state, request):
        return _unauthorized()
    if state.fault("chat_500"):
        return _error(500, "Internal server error (simulated fault chat_500)", "server_error")
    refused = await _network_fault(state, request)
    if refused is not None:
        return refused
    raw = await request.body()
    try:
        body = _json.loads(raw)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return _error(400, f"Request body is not valid JSON: {exc}", "invalid_request_error")
    if not isinstance(body, dict):
        return _error(400, "Request body must be a JSON object", "invalid_request_error")
    model = body.get("model")
    if state.config.upstream is not None:
        return await _proxy_upstream(state, request, raw, body)
    if model not in state.config.models:
        return _error(404, f"The model `{model}` does not exist.", "not_found_error", "model_not_found")
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        return _error(400, "'messages' must be a non-empty list", "invalid_request_error")
    max_tokens = body.get("max_tokens", body.get("max_completion_tokens", state.config.default_max_tokens))
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or not 1 <= max_tokens <= 4096:
        return _error(400, "'max_tokens' must be an integer between 1 and 4096", "invalid_request_error")
    stream = body.get("stream", False)
    if not isinstance(stream, bool):
        return _error(400, "'stream' must be true or false", "invalid_request_error")

    signed_request = raw + b" " if state.fault("tamper_request") else raw
    req_hash = hashlib.sha256(signed_request).hexdigest()
    chat_id = "chatcmpl-" + uuid.uuid4().hex
    created = int(time.time())
    prompt = _prompt_of(messages)
    if state.config.reply is not None:
        # A fixed reply (demos, and tests of how untrusted model text is displayed), cut into word tokens.
        tokens = re.findall(r"\s*\S+", state.config.reply)[:max_tokens] or [""]
    else:
        tokens = state.generator.tokens(prompt, max_tokens)
    # Absolute deadlines from the moment the request was read: each sleep's overshoot is absorbed by the next
    # one instead of piling up, so a configured 50 tokens/s is what a client measures.
    loop = asyncio.get_running_loop()
    arrived = loop.time()
    due = [arrived + offset for offset in state.generator.schedule(len(tokens))]

    async def wait_until(deadline: float) -> None:
        remaining = deadline - loop.time()
        # Even when already late, yield once so that concurrent streams take turns (as the old sleep(0) did).
        await asyncio.sleep(max(0.0, remaining))
    usage = {"prompt_tokens": max(1, len(prompt.split())), "completion_tokens": len(tokens),
             "total_tokens": max(1, len(prompt.split())) + len(tokens)}
    def store(resp_hash: str) -> None:
        text = state.signed_text(model, req_hash, resp_hash)
        state.cache.put(chat_id, model, text, rogue=state.fault("wrong_signing_key"))

    if not stream:
        if due:
            await wait_until(due[-1])
        payload = {
            "id": chat_id, "object": "chat.completion", "created": created, "model": model,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": "".join(tokens)},
                         "logprobs": None, "finish_reason": "length" if len(tokens) >= max_tokens else "stop"}],
            "usage": usage,
        }
        data = _compact(payload)
        hashed = data if state.config.nonstream_hash == "body" else json.dumps(_json.loads(data)).encode()
        store(hashlib.sha256(hashed).hexdigest())
        sent = _tamper(data) if state.fault("tamper_response") else data
        return Response(sent, media_type="application/json")

    include_usage = bool((body.get("stream_options") or {}).get("include_usage"))

    def event(delta: dict[str, Any], finish: str | None = None) -> bytes:
        chunk = {"id": chat_id, "object": "chat.completion.chunk", "created": created, "model": model,
                 "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}]}
        return b"data: " + _compact(chunk) + b"\n\n"

    async def events() -> AsyncIterator[bytes]:
        hasher = hashlib.sha256()
        cut_at = len(tokens) // 2 if state.fault("cut_stream") else None

        def emit(data: bytes, tamper: bool = False) -> bytes:
            hasher.update(data)
            return _tamper(data) if tamper else data

        yield emit(event({"role": "assistant", "content": ""}))
        for i, (tok, deadline) in enumerate(zip(tokens, due)):
            if cut_at is not None and i == cut_at:
                # Dropping the connection without ending the chunked body: the client sees a broken stream.
                raise ConnectionAbortedError("simulated fault cut_stream")
            await wait_until(deadline)
            yield emit(event({"content": tok}), tamper=(i == 0 and state.fault("tamper_response")))
        yield emit(event({}, "length" if len(tokens) >= max_tokens else "stop"))
        if include_usage:
            usage_chunk = {"id": chat_id, "object": "chat.completion.chunk", "created": created, "model": model,
                           "choices": [], "usage": usage}
            yield emit(b"data: " + _compact(usage_chunk) + b"\n\n")
        yield emit(b"data: [DONE]\n\n")
        # Reached only when the whole stream was handed to the server: a client that leaves early gets no
        # signature, as with the real proxy.
        store(hasher.hexdigest())

    async def dripped() -> AsyncIterator[bytes]:
        # slow_drip: each event leaves in three pieces with pauses, splitting lines mid-way.
        async for data in events():
            step = max(1, len(data) // 3)
            for n in range(0, len(data), step):
                await asyncio.sleep(0.01)
                yield data[n:n + step]

    return StreamingResponse(dripped() if state.fault("slow_drip") else events(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _proxy_upstream(state: SimState, request: Request, raw: bytes, body: dict[str, Any]) -> Response:
    """Forward the exact request to the upstream server and stream its exact reply back, hashing and signing
    both as the real proxy does (the proxy hashes what it received and what it sends)."""
    import httpx

    model = str(body.get("model"))
    stream = body.get("stream") is True
    req_hash = hashlib.sha256(raw).hexdigest()
    headers = {"Content-Type": "application/json", "Accept-Encoding": "identity"}
    if state.config.upstream_api_key:
        headers["Authorization"] = f"Bearer {state.config.upstream_api_key}"
    client = httpx.AsyncClient(timeout=httpx.Timeout(300.0, connect=10.0))
    url = state.config.upstream.rstrip("/") + "/chat/completions"
    try:
        upstream = await client.send(client.build_request("POST", url, content=raw, headers=headers), stream=True)
    except httpx.HTTPError as exc:
        await client.aclose()
        return _error(502, f"upstream {url} unreachable: {type(exc).__name__}", "upstream_error")
    if upstream.status_code >= 400:
        data = await upstream.aread()
        await client.aclose()
        return Response(data, status_code=upstream.status_code,
                        media_type=upstream.headers.get("content-type", "application/json"))

    async def relay() -> AsyncIterator[bytes]:
        hasher = hashlib.sha256()
        chat_id = None
        head = b""
        try:
            async for chunk in upstream.aiter_raw():
                hasher.update(chunk)
                if chat_id is None and len(head) < 4096:
                    head += chunk
                    found = re.search(rb'"id"\s*:\s*"([^"]+)"', head)
                    chat_id = found.group(1).decode() if found else None
                yield chunk
        finally:
            await upstream.aclose()
            await client.aclose()
        if chat_id is not None:
            state.cache.put(chat_id, model, state.signed_text(model, req_hash, hasher.hexdigest()))

    return StreamingResponse(relay(), status_code=upstream.status_code,
                             media_type="text/event-stream" if stream else "application/json")


async def signature(request: Request) -> Response:
    state: SimState = request.app.state.sim
    if state.fault("signature_500"):
        return _error(500, "Internal server error (simulated fault signature_500)", "server_error")
    refused = await _network_fault(state, request)
    if refused is not None:
        return refused
    chat_id = request.path_params["chat_id"]
    algo = request.query_params.get("signing_algo", "ecdsa")
    if algo not in ALGOS:
        return _error(400, "Invalid signing algorithm. Must be 'ecdsa' or 'ed25519'", "invalid_request_error")
    model = request.query_params.get("model")
    item = None if state.fault("signature_missing") else state.cache.get(chat_id)
    if item is None or (model is not None and model != item.model):
        return _error(404, "Chat id not found or expired", "not_found")
    signer = state.rogue_keys if item.rogue else state.keys
    return _maybe_truncated(state, JSONResponse({
        "text": item.text,
        "signature": signer.sign(item.text, algo),
        "signing_address": state.keys.address(algo),
        "signing_algo": algo,
    }))


async def attestation_report(request: Request) -> Response:
    state: SimState = request.app.state.sim
    if state.fault("attestation_500"):
        return _error(500, "Internal server error (simulated fault attestation_500)", "server_error")
    refused = await _network_fault(state, request)
    if refused is not None:
        return refused
    algo = request.query_params.get("signing_algo", "ecdsa")
    if algo not in ALGOS:
        return _error(400, "Invalid signing algorithm. Must be 'ecdsa' or 'ed25519'", "invalid_request_error")
    model = request.query_params.get("model")
    if model is not None and model not in state.config.models:
        return _error(404, f"The model `{model}` does not exist.", "not_found_error", "model_not_found")
    nonce_hex = request.query_params.get("nonce")
    if nonce_hex is None:
        nonce = secrets.token_bytes(32)
    else:
        try:
            nonce = bytes.fromhex(nonce_hex)
        except ValueError:
            return _error(400, "Nonce must be hex-encoded", "invalid_request_error")
        if len(nonce) != 32:
            return _error(400, "Nonce must be 32 bytes", "invalid_request_error")
    wanted = request.query_params.get("signing_address")
    if wanted is not None and wanted.lower().removeprefix("0x") != \
            state.keys.address(algo).lower().removeprefix("0x"):
        return _error(404, "Signing address not found on this node", "not_found")
    if state.fault("ignore_nonce"):
        nonce = secrets.token_bytes(32)
    # The quote and GPU evidence take real work (signatures); keep the event loop free for streams.
    report = await asyncio.to_thread(build_report, keys=state.keys, algo=algo, nonce=nonce,
                                     tdx=state.tdx, gpu=state.gpu, faults=frozenset(state.config.faults))
    return _maybe_truncated(state, JSONResponse(report))


async def models(request: Request) -> Response:
    state: SimState = request.app.state.sim
    if not _authorized(state, request):
        return _unauthorized()
    refused = await _network_fault(state, request)
    if refused is not None:
        return refused
    created = 1735689600
    return JSONResponse({"object": "list", "data": [
        {"id": m, "object": "model", "created": created, "owned_by": "phalanb-sim"} for m in state.config.models]})


async def sim_faults(request: Request) -> Response:
    """``GET``/``POST /_sim/faults``: read or set the injected faults (the simulator's own control endpoint)."""
    state: SimState = request.app.state.sim
    if request.method == "POST":
        try:
            wanted = _json.loads(await request.body()).get("faults", [])
        except (json.JSONDecodeError, AttributeError, UnicodeDecodeError):
            return _error(400, 'Body must be {"faults": [names]}', "invalid_request_error")
        unknown = set(wanted) - set(FAULTS)
        if unknown:
            return _error(400, f"Unknown faults {sorted(unknown)}; known: {sorted(FAULTS)}", "invalid_request_error")
        refusals = [r for r in (fault_refusal(n, state.config) for n in sorted(set(wanted))) if r]
        if refusals:
            return _error(400, refusals[0], "invalid_request_error")
        state.config.faults = set(wanted)
    return JSONResponse({"faults": sorted(state.config.faults), "known": FAULTS})


def create_app(config: SimConfig, *, tdx: TdxProvider | None = None, gpu: GpuProvider | None = None) -> Starlette:
    routes = [
        Route("/v1/chat/completions", chat_completions, methods=["POST"]),
        Route("/v1/signature/{chat_id:str}", signature, methods=["GET"]),
        Route("/v1/attestation/report", attestation_report, methods=["GET"]),
        Route("/v1/models", models, methods=["GET"]),
        Route("/_sim/faults", sim_faults, methods=["GET", "POST"]),
    ]
    # A provider may serve its own endpoints (the TDX simulator a PCCS, the GPU simulator an NRAS).
    for provider in (tdx, gpu):
        extra = getattr(provider, "routes", None)
        if extra is not None:
            routes.extend(extra())
    app = Starlette(routes=routes)
    app.state.sim = SimState(config, tdx=tdx, gpu=gpu)
    return app
