"""The model servers' protocol (vllm-proxy): chat signatures, every report shape, and their verification. Never imports :mod:`phalanb.aci`."""
