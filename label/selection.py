"""Which images a queue takes, and the order each rater sees them in.

The random sample is drawn first, from everything, so it stays an unbiased sample that an
evaluation can use alone; the uncertain ones come from the rest. Each rater's order is a
shuffle seeded by the project's seed and the rater's name: the same on every reload and
restart, different between raters, so no two raters drift through the data together.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

REPEAT_GAP = 10  # a repeat comes at least this many images after its first showing


@dataclass(frozen=True)
class Candidate:
    """What uncertain selection needs to know of a crop."""

    mouse: str
    time: float
    entropy: float


def pick_random(count: int, total: int, rng: np.random.Generator) -> list[int]:
    """`count` indices of `total`, uniformly without replacement (all when fewer)."""
    return sorted(rng.choice(total, size=min(count, total), replace=False).tolist())


def pick_uncertain(count: int, candidates: Sequence[Candidate], taken: set[int],
                   min_gap: float, pool: int = 2) -> list[int]:
    """The `count` least certain crops, spread over mice and time.

    From the `pool` x `count` crops of highest entropy, round-robin over mice (the mouse with
    the most uncertain crop left goes first in each round), each mouse giving its most
    uncertain crop at least `min_gap` seconds from those already taken of it: the model's
    doubts about one bad hour of one mouse do not fill the queue. When that leaves the queue
    short, the pool is widened to every crop; then the gap is dropped.
    """
    ranked = sorted((i for i, c in enumerate(candidates)
                     if i not in taken and not math.isnan(c.entropy)),
                    key=lambda i: -candidates[i].entropy)
    chosen: list[int] = []
    times: dict[str, list[float]] = defaultdict(list)  # mouse -> times of its crops taken
    for gap, size in ((min_gap, pool * count), (min_gap, len(ranked)),
                      (0.0, pool * count), (0.0, len(ranked))):
        by_mouse: dict[str, list[int]] = defaultdict(list)
        for i in ranked[:size]:
            if i not in chosen:
                by_mouse[candidates[i].mouse].append(i)
        while len(chosen) < count:
            got = _one_round(count - len(chosen), candidates, by_mouse, times, gap)
            if not got:
                break
            chosen += got
    return chosen


def _one_round(room: int, candidates: Sequence[Candidate], by_mouse: dict[str, list[int]],
               times: dict[str, list[float]], gap: float) -> list[int]:
    firsts = [(mouse, next((i for i in queue if _apart(candidates[i].time, times[mouse], gap)),
                           None)) for mouse, queue in by_mouse.items()]
    ready = sorted(((m, i) for m, i in firsts if i is not None),
                   key=lambda mi: (-candidates[mi[1]].entropy, mi[0]))[:room]
    for mouse, i in ready:
        by_mouse[mouse].remove(i)
        times[mouse].append(candidates[i].time)
    return [i for _, i in ready]


def _apart(time: float, taken: list[float], gap: float) -> bool:
    return all(abs(time - other) >= gap for other in taken)


def pick_repeats(total: int, fraction: float, rng: np.random.Generator) -> list[int]:
    """round(fraction * total) indices to be shown a second time to every rater."""
    return pick_random(round(fraction * total), total, rng)


def rater_rng(seed: int, rater: str, queue: str) -> np.random.Generator:
    digest = hashlib.sha256(f"{seed}\0{rater}\0{queue}".encode()).digest()
    return np.random.default_rng(int.from_bytes(digest[:8], "little"))


def rater_order(ids: Sequence[str], repeated: set[str], seed: int, rater: str,
                queue: str) -> list[tuple[str, bool]]:
    """(item id, is the repeat showing) per position: a shuffle, each repeat placed at a random
    position at least REPEAT_GAP after its first showing (at the end when there is no room)."""
    rng = rater_rng(seed, rater, queue)
    order = [ids[i] for i in rng.permutation(len(ids))]
    n = len(order)
    keyed = [(float(pos), item, False) for pos, item in enumerate(order)]
    for pos, item in enumerate(order):
        if item in repeated:
            first = pos + REPEAT_GAP
            at = rng.uniform(first, n) if first < n else n + rng.uniform(0, 1)
            keyed.append((at, item, True))
    keyed.sort(key=lambda k: k[0])
    return [(item, again) for _, item, again in keyed]
