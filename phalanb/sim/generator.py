"""A small deterministic text generator with a latency model.

The words carry no meaning; what matters is that the same seed and prompt give the same tokens, and that tokens
arrive on the configured schedule (time to first token, then a steady rate with optional jitter) so the timing
plots have real shapes offline.
"""

from __future__ import annotations

import hashlib
import random

__all__ = ["TextGenerator"]

_WORDS = (
    "the enclave keeps its key inside and signs every reply it sends so that anyone can check "
    "which machine answered measured quoted attested fresh nonce bytes hash chain root trust "
    "model weights stay private while the GPU runs in confidential mode and the quote binds it all"
).split()


class TextGenerator:
    """``tokens(prompt, n)`` gives n tokens; ``delays(n)`` gives the seconds to wait before each one."""

    def __init__(self, seed: int | None, *, ttft_ms: float, tokens_per_second: float,
                 ttft_jitter: float = 0.0, token_jitter: float = 0.0):
        self.seed = seed
        self.ttft_ms = ttft_ms
        self.tokens_per_second = tokens_per_second
        self.ttft_jitter = ttft_jitter
        self.token_jitter = token_jitter
        self._timing_rng = random.Random(seed)

    def tokens(self, prompt: str, n: int) -> list[str]:
        digest = hashlib.sha256(f"{self.seed}|{prompt}".encode()).digest()
        rng = random.Random(digest)
        words = [rng.choice(_WORDS) for _ in range(n)]
        # First token capitalised, later ones carry their leading space, like a BPE tokenizer's output.
        return [w.capitalize() if i == 0 else " " + w for i, w in enumerate(words)]

    def delays(self, n: int) -> list[float]:
        """Seconds to sleep before token i: TTFT before the first, 1/rate (± jitter) before each later one."""
        rng = self._timing_rng
        out = []
        for i in range(n):
            if i == 0:
                base, jitter = self.ttft_ms / 1000.0, self.ttft_jitter
            else:
                base = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
                jitter = self.token_jitter
            out.append(max(0.0, base * (1.0 + rng.uniform(-jitter, jitter))) if base else 0.0)
        return out
