"""Timing: latency runs, signature-window probes, and their figures."""
