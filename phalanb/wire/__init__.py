"""The wire: exact bytes over HTTP (client, exchange, SSE, capture, API key, body limits, batch framing).

It knows no protocol: encryption is handed in (:mod:`phalanb.wire.encryption`), and what the bytes mean is read in
the protocol's folder (:func:`phalanb.vllm.fetch_signature`, :mod:`phalanb.aci`).

>>> from phalanb.wire import Client
>>> Client(base_url="http://127.0.0.1:1/v1", api_key="sk-x")           # the key never appears
<phalanb.Client http://127.0.0.1:1/v1 model=None api_key=set>
"""

from typing import Any

__all__ = ["Client", "Exchange", "Recorder", "Encryption"]

_HOMES = {"Client": "client", "Exchange": "exchange", "Recorder": "capture", "Encryption": "encryption"}


def __getattr__(name: str) -> Any:
    # Imported on first use: reading saved exchanges (audits, batch workers) never loads httpx.
    if name in _HOMES:
        from importlib import import_module

        return getattr(import_module(f"{__name__}.{_HOMES[name]}"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
