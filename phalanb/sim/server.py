"""Run the simulator: in a background thread (tests, notebooks, ``phalanb demo``) or in the foreground (CLI)."""

from __future__ import annotations

import asyncio
import dataclasses
import json
import os
import socket
import tempfile
import threading
from typing import TYPE_CHECKING, Iterable

import httpx
import uvicorn

from ..errors import InputError, PhalanbError
from .app import SimState, create_app
from .attest import GpuProvider, TdxProvider
from .config import SimConfig
from .providers import default_providers
from .tls import make_self_signed

if TYPE_CHECKING:
    from .aci_gateway import AciGateway

__all__ = ["Simulator", "bind_socket"]

_LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def bind_socket(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    # Accepted sockets inherit TCP_NODELAY: small SSE events must leave at once, not wait for a delayed ACK.
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    try:
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise InputError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    sock.listen(128)
    sock.setblocking(False)
    return sock


class Simulator:
    """A running simulated service. Use it as a context manager; ``base_url`` ends in ``/v1``.

    >>> with Simulator(SimConfig(seed=7, ttft_ms=0, tokens_per_second=0)) as sim:   # doctest: +SKIP
    ...     client = phalanb.Client(base_url=sim.base_url, model=sim.model)

    The host defaults to 127.0.0.1 and the port to 0 (the OS picks a free one).
    """

    def __init__(self, config: SimConfig | None = None, *, host: str = "127.0.0.1", port: int = 0,
                 tdx: TdxProvider | None = None, gpu: GpuProvider | None = None, use_default_providers: bool = True):
        self.config = config or SimConfig()
        self.host = host
        self.port = port
        if use_default_providers and tdx is None and gpu is None:
            tdx, gpu = default_providers(self.config)
        self.tls = make_self_signed(self.config.seed) if self.config.https else None
        self._tls_dir: tempfile.TemporaryDirectory[str] | None = None
        model_app = create_app(self.config, tdx=tdx, gpu=gpu)
        if self.config.protocol == "aci":
            from .aci_gateway import create_aci_app  # the gateway in front of the model server

            self.app = create_aci_app(self.config, model_app=model_app, tdx=tdx, gpu=gpu,
                                      tls_spki=self.tls.spki_sha256 if self.tls is not None else None)
        else:
            self.app = model_app
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._sock: socket.socket | None = None
        self._error: BaseException | None = None

    # -- facts about the running service -------------------------------------------------------------
    @property
    def state(self) -> SimState:
        return self.app.state.sim

    @property
    def aci(self) -> "AciGateway":
        """The ACI gateway's state (keys, sessions, receipts, ``clock``); only with ``protocol="aci"``."""
        gateway = getattr(self.app.state, "aci", None)
        if gateway is None:
            raise PhalanbError("this simulator serves the legacy protocol only; start it with protocol='aci'")
        return gateway

    @property
    def cert_pem(self) -> str | None:
        """The HTTPS listener's self-signed certificate (PEM), or None without ``https``."""
        return self.tls.cert_pem.decode() if self.tls is not None else None

    @property
    def ca_pem(self) -> str | None:
        """What a client must trust to reach the HTTPS listener: the self-signed certificate itself."""
        return self.cert_pem

    @property
    def model(self) -> str:
        return self.config.models[0]

    @property
    def base_url(self) -> str:
        if self._sock is None:
            raise PhalanbError("the simulator is not running; use it as a context manager or call start()")
        host, port = self._sock.getsockname()[:2]
        shown = f"[{host}]" if ":" in host else host
        return f"{'https' if self.tls is not None else 'http'}://{shown}:{port}/v1"

    @property
    def signing_address(self) -> str:
        return self.state.keys.ecdsa_address

    def set_faults(self, faults: Iterable[str]) -> None:
        """Inject faults (names from :data:`phalanb.sim.FAULTS`); an empty list clears them."""
        faults = set(faults)
        # Judged before anything changes: a refused fault leaves the running simulator as it was.
        dataclasses.replace(self.config, faults=faults)
        self.config.faults = faults

    # -- lifecycle -------------------------------------------------------------------------------------
    def _uvicorn_config(self) -> uvicorn.Config:
        # Access logs off: the simulator must never write request details (which may include keys) anywhere.
        tls: dict[str, str] = {}
        if self.tls is not None:
            # uvicorn reads the certificate and key from files; they live in a private temporary directory.
            if self._tls_dir is None:
                self._tls_dir = tempfile.TemporaryDirectory(prefix="phalanb-sim-tls-")
                for name, data in (("cert.pem", self.tls.cert_pem), ("key.pem", self.tls.key_pem)):
                    path = os.path.join(self._tls_dir.name, name)
                    with open(os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600), "wb") as fh:
                        fh.write(data)
            tls = {"ssl_certfile": os.path.join(self._tls_dir.name, "cert.pem"),
                   "ssl_keyfile": os.path.join(self._tls_dir.name, "key.pem")}
        return uvicorn.Config(self.app, log_level="warning", access_log=False, lifespan="off",
                              timeout_graceful_shutdown=1, **tls)

    def start(self) -> "Simulator":
        if self._thread is not None:
            return self
        self._sock = bind_socket(self.host, self.port)
        self._server = uvicorn.Server(self._uvicorn_config())
        # Signal handlers can only be installed from the main thread; the thread's server must not try.
        self._server.install_signal_handlers = lambda: None  # type: ignore[method-assign]
        ready = threading.Event()

        def run() -> None:
            try:
                loop = asyncio.new_event_loop()
                asyncio.set_event_loop(loop)

                async def serve() -> None:
                    task = asyncio.ensure_future(self._server.serve(sockets=[self._sock]))
                    while not self._server.started and not task.done():
                        await asyncio.sleep(0.005)
                    ready.set()
                    await task

                loop.run_until_complete(serve())
                loop.close()
            except BaseException as exc:  # surfaced to the caller of start()
                self._error = exc
            finally:
                ready.set()

        self._thread = threading.Thread(target=run, name="phalanb-sim", daemon=True)
        self._thread.start()
        if not ready.wait(timeout=20) or self._error is not None or not self._server.started:
            self.stop()
            raise PhalanbError(f"the simulator failed to start: {self._error!r}")
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=10)
        if self._sock is not None:
            self._sock.close()
        self._thread = None
        self._server = None
        if self._tls_dir is not None:
            self._tls_dir.cleanup()
            self._tls_dir = None

    def serve_forever(self) -> None:
        """Foreground mode for ``phalanb sim``: prints the base URL as the first stdout line, then serves."""
        self._sock = bind_socket(self.host, self.port)
        print(self.base_url, flush=True)
        if self.host not in _LOOPBACK:
            print(f"warning: listening on {self.host}, reachable from other machines", flush=True)
        server = uvicorn.Server(self._uvicorn_config())
        try:
            server.run(sockets=[self._sock])
        finally:
            if self._tls_dir is not None:
                self._tls_dir.cleanup()
                self._tls_dir = None

    def __enter__(self) -> "Simulator":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.base_url if self._sock is not None and self._thread is not None else "stopped"
        return f"<Simulator {where} model={self.model!r} faults={sorted(self.config.faults)}>"


def set_remote_faults(base_url: str, faults: Iterable[str], *, timeout: float = 5.0) -> list[str]:
    """Set faults on a simulator started elsewhere (``phalanb sim``) through its control endpoint."""
    root = base_url.rstrip("/").removesuffix("/v1")
    resp = httpx.post(f"{root}/_sim/faults", content=json.dumps({"faults": list(faults)}), timeout=timeout)
    if resp.status_code != 200:
        raise PhalanbError(f"the simulator refused the faults: {resp.text}")
    return resp.json()["faults"]
