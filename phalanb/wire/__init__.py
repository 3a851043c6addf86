"""The wire: exact bytes over HTTP (client, exchange, SSE, capture, API key, batch framing). It knows no protocol: encryption is handed in (:mod:`phalanb.wire.encryption`)."""
