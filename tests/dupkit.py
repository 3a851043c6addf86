"""Documents with one member written twice, anywhere: what the duplicate tests feed the fast readers.

:func:`write` writes a JSON value as ``json.dumps`` would (compact, as phalanb's framed writer and most servers
write, or with json.dumps' default spaces, as a JSONL batch is written), except that one member of one object — the
``at``-th object in document order — is written a second time, before or after the original, with the same value or
another of the same type (so a typed reader still takes it: the duplicate is the only thing wrong), often one
holding colons (what the colon count counts)."""

from __future__ import annotations

import json
import random
from typing import Any


def objects(value: Any) -> int:
    """How many objects ``value`` holds, itself included."""
    if isinstance(value, dict):
        return 1 + sum(objects(v) for v in value.values())
    if isinstance(value, list):
        return sum(objects(v) for v in value)
    return 0


def other(rng: random.Random, value: Any) -> Any:
    """The same value, or another of its type (a string often with colons, as a URL or a time has)."""
    if rng.random() < 0.3:
        return value
    if isinstance(value, bool):
        return not value
    if isinstance(value, str):
        return rng.choice(("", ":", "a:b", "x" * rng.randrange(1, 9), value + ":", "12:00:00", value[::-1]))
    if isinstance(value, int):
        return value + rng.choice((1, -1, 1000))
    if isinstance(value, float):
        return value / 2
    if isinstance(value, list):
        return value[:rng.randrange(len(value) + 1)]
    if isinstance(value, dict):
        return {k: v for k, v in value.items() if rng.random() < 0.5}
    return value


def write(value: Any, rng: random.Random, *, at: int | None, compact: bool = True) -> tuple[bytes, bool]:
    """``value`` as JSON (``compact``: no spaces; else json.dumps' ``", "`` and ``": "``), UTF-8 as written (no
    ``\\u`` escapes), with one member of its ``at``-th object written twice (``at`` None: written as it is), and
    whether a member was written twice (not when that object is empty)."""
    comma, colon = (",", ":") if compact else (", ", ": ")
    count, twice = [0], [False]

    def out(v: Any) -> str:
        if isinstance(v, dict):
            here = count[0]
            count[0] += 1
            items = list(v.items())
            if here == at and items:
                key, val = rng.choice(items)
                items.insert(rng.randrange(len(items) + 1), (key, other(rng, val)))
                twice[0] = True
            return "{" + comma.join(json.dumps(k, ensure_ascii=False) + colon + out(x) for k, x in items) + "}"
        if isinstance(v, list):
            return "[" + comma.join(out(x) for x in v) + "]"
        return json.dumps(v, ensure_ascii=False)

    return out(value).encode("utf-8", "surrogatepass"), twice[0]


def variants(value: Any, rng: random.Random, per_object: int = 3) -> list[tuple[bytes, bool]]:
    """(document, has a duplicate) for ``value``: written as it is, compact and spaced, and ``per_object`` times
    with a member of each of its objects written twice (compact or spaced at random)."""
    out = [write(value, rng, at=None), write(value, rng, at=None, compact=False)]
    for at in range(objects(value)):
        for _ in range(per_object):
            out.append(write(value, rng, at=at, compact=rng.random() < 0.5))
    return out
