"""A small deterministic text generator with a latency model.

Replies are whole sentences (drawn from a fixed set about confidential inference), so a demo reads like an
answer, not like a broken model; what matters is that the same seed and prompt give the same tokens, that a reply
has exactly the number of tokens asked for (one word = one token, so usage counts stay exact), and that tokens
arrive on the configured schedule (time to first token, then a steady rate with optional jitter) so the timing
plots have real shapes offline.

The model is built so that measurement can be checked against configuration: the *median* time to first token
is ``ttft_ms`` whatever the distribution, and the *mean* gap between later tokens is ``1 / tokens_per_second``
(so ``(tokens - 1) / decode time`` recovers the rate). The server sleeps until absolute deadlines
(:meth:`TextGenerator.schedule`), so the event loop's per-sleep overshoot does not accumulate into a slower rate.

>>> g = TextGenerator(1, ttft_ms=200, tokens_per_second=50)
>>> [round(d, 3) for d in g.delays(3)]
[0.2, 0.02, 0.02]
"""

from __future__ import annotations

import hashlib
import itertools
import math
import random

__all__ = ["TextGenerator", "draw_delay"]

# Sentences of every length from one word up, so any token budget is filled with whole sentences (the
# short ones close a reply whose budget the longer ones do not fill exactly).
_SENTENCES = tuple(tuple(text.split()) for text in (
    "Verified.",
    "Signature checked.",
    "Trust, but verify.",
    "The nonce is fresh.",
    "Every reply is signed.",
    "The hardware answered this request.",
    "The quote binds the signing key.",
    "The enclave keeps its key inside.",
    "Anyone can check which machine answered.",
    "The GPU runs in confidential mode today.",
    "A fresh nonce proves the report is new.",
    "Flip one byte of the reply and the hash no longer matches.",
    "The model weights stay private inside the enclave.",
    "Intel's root of trust signs the chain that ends in this quote.",
    "Each reply is hashed byte for byte and signed with the enclave's key.",
    "A verifier recomputes both hashes and recovers the signer from the signature.",
    "The attestation report ties that signer to measured hardware and a measured application.",
    "Nothing here is trusted because it says so; every link is checked against a pinned root.",
))


def draw_delay(rng: random.Random, base: float, jitter: float, distribution: str, *, keep: str) -> float:
    """One delay around ``base`` seconds; ``keep`` is ``"median"`` or ``"mean"``: which statistic stays ``base``.

    Uniform and normal jitter are symmetric, so both statistics stay ``base`` (normal is clipped at 0, which moves
    the mean only when ``jitter`` is large). Lognormal is skewed: for the median ``mu = ln(base)``; for the mean
    ``mu = ln(base) - sigma^2 / 2``.
    """
    if base <= 0:
        return 0.0
    if jitter <= 0:
        return base
    if distribution == "uniform":
        return max(0.0, base * (1.0 + rng.uniform(-jitter, jitter)))
    if distribution == "normal":
        return max(0.0, base * (1.0 + rng.gauss(0.0, jitter)))
    if distribution == "lognormal":
        mu = math.log(base) - (jitter * jitter / 2.0 if keep == "mean" else 0.0)
        return rng.lognormvariate(mu, jitter)
    raise ValueError(f"unknown latency distribution {distribution!r}")


class TextGenerator:
    """``tokens(prompt, n)`` gives n tokens; ``delays(n)`` gives the seconds to wait before each one."""

    def __init__(self, seed: int | None, *, ttft_ms: float, tokens_per_second: float,
                 ttft_jitter: float = 0.0, token_jitter: float = 0.0,
                 ttft_distribution: str = "uniform", token_distribution: str = "uniform"):
        self.seed = seed
        self.ttft_ms = ttft_ms
        self.tokens_per_second = tokens_per_second
        self.ttft_jitter = ttft_jitter
        self.token_jitter = token_jitter
        self.ttft_distribution = ttft_distribution
        self.token_distribution = token_distribution
        self._timing_rng = random.Random(seed)

    def tokens(self, prompt: str, n: int) -> list[str]:
        """Exactly ``n`` word tokens making whole sentences; the same seed and prompt give the same reply.

        >>> "".join(TextGenerator(1, ttft_ms=0, tokens_per_second=0).tokens("hi", 3))
        'Trust, but verify.'
        """
        digest = hashlib.sha256(f"{self.seed}|{prompt}".encode()).digest()
        rng = random.Random(digest)
        words: list[str] = []
        used: set[tuple[str, ...]] = set()
        while len(words) < n:
            left = n - len(words)
            fits = [s for s in _SENTENCES if len(s) <= left]  # never empty: there is a one-word sentence
            fresh = [s for s in fits if s not in used] or fits
            # Longer sentences are likelier, so short ones mostly close a reply rather than fill it.
            pick = rng.choices(fresh, weights=[len(s) for s in fresh])[0]
            used.add(pick)
            words.extend(pick)
        # Later tokens carry their leading space, like a BPE tokenizer's output.
        return [w if i == 0 else " " + w for i, w in enumerate(words[:n])]

    def delays(self, n: int) -> list[float]:
        """Seconds to wait before token i: TTFT before the first, 1/rate (± jitter) before each later one."""
        rng = self._timing_rng
        out = []
        for i in range(n):
            if i == 0:
                out.append(draw_delay(rng, self.ttft_ms / 1000.0, self.ttft_jitter, self.ttft_distribution,
                                      keep="median"))
            else:
                base = 1.0 / self.tokens_per_second if self.tokens_per_second > 0 else 0.0
                out.append(draw_delay(rng, base, self.token_jitter, self.token_distribution, keep="mean"))
        return out

    def schedule(self, n: int) -> list[float]:
        """Offsets (seconds after the request arrived) at which token i is due: the running sum of ``delays``.

        Sleeping until each deadline, instead of sleeping each delay in turn, keeps the long-run rate exact.
        """
        return list(itertools.accumulate(self.delays(n)))
