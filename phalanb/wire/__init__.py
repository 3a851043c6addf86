"""The wire: exact bytes over HTTP (client, exchange, SSE, capture, API key, body limits, batch framing).

It knows no protocol: encryption is handed in (:mod:`phalanb.wire.encryption`), and what the bytes mean is read in
the protocol's folder (:func:`phalanb.vllm.fetch_signature`, :mod:`phalanb.aci`).

>>> from phalanb.wire import Client
>>> Client(base_url="http://127.0.0.1:1/v1", api_key="sk-x")           # the key never appears
<phalanb.Client http://127.0.0.1:1/v1 model=None api_key=set>
"""

from .capture import Recorder
from .client import Client
from .encryption import Encryption
from .exchange import Exchange

__all__ = ["Client", "Exchange", "Recorder", "Encryption"]
