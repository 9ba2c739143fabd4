"""Which files go into the CUDA pack when not all of them fit: a weighted round-robin over strata.

The pack has a byte budget (the lent GPU takes the repository plus 64 MiB in all), so most photos
stay behind. Every candidate belongs to a stratum (split or role, source, class); each stratum is
shuffled with a seed, and candidates are taken one stratum after another, a stratum of weight w
giving w of them per turn (at a tie, the heavier first). So every stratum gets its first photos
before any gets many, the training split gets more than the evaluation splits, rare classes more
than common ones, and what is dropped when the budget runs out is the tail of the big strata: the
least needed. Candidates of infinite weight (e.g. the pangolins, whose roles are drawn over all of
their repositories) are taken before anything else and must fit.
"""

from __future__ import annotations

import math
import random
from collections import Counter, defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

ALWAYS = math.inf
"""The weight of a candidate that is packed whatever the budget (or the pack fails)."""


@dataclass(frozen=True)
class Candidate:
    part: str
    """`detector` or `head`."""
    split: str
    """The detector's split (train, val, ...) or the head's role (train, calibration, holdout)."""
    source: str
    cls: str
    """Its class (the rarest it shows), or `background`."""
    src: Path
    """The file read (through ../shared's or the dataset's symlinks)."""
    dest: str
    """Its path inside the pack, `/`-separated."""
    weight: float = 1.0
    extra: dict[str, Any] = field(default_factory=dict, compare=False, hash=False)
    """What the writer needs besides: the label file, the meta.csv row, the head's table row."""

    @property
    def stratum(self) -> tuple[str, str, str, str]:
        return self.part, self.split, self.source, self.cls


@dataclass
class Packed:
    """Candidates taken (with the bytes each cost) and those dropped, in rank order."""

    kept: list[tuple[Candidate, int]] = field(default_factory=list)
    dropped: list[Candidate] = field(default_factory=list)

    @property
    def used(self) -> int:
        return sum(n for _, n in self.kept)


def rank(candidates: Sequence[Candidate], seed: int = 0) -> list[Candidate]:
    """Weighted round-robin order (see the module docstring); deterministic for a seed."""
    strata: dict[tuple[str, str, str, str], list[Candidate]] = defaultdict(list)
    for c in sorted(candidates, key=lambda c: (c.stratum, c.dest)):
        strata[c.stratum].append(c)
    keyed = []
    for index, (stratum, members) in enumerate(sorted(strata.items())):
        random.Random(f"{seed}/{'/'.join(stratum)}").shuffle(members)
        for k, c in enumerate(members):
            if c.weight <= 0:
                raise ValueError(f"{c.dest}: weight must be positive, got {c.weight}")
            always = c.weight == ALWAYS
            turn, heavier = (0.0, 0.0) if always else (k / c.weight, -c.weight)
            keyed.append((0 if always else 1, turn, heavier, index, k, c))
    keyed.sort(key=lambda t: t[:5])
    return [t[-1] for t in keyed]


def fill(ranked: Sequence[Candidate], budget: int, encode: Callable[[Candidate], bytes | None],
         store: Callable[[Candidate, bytes], None]) -> Packed:
    """Store candidates in rank order while they fit in `budget` bytes; the rest is dropped.

    A candidate costs its encoded bytes plus `extra["extra_bytes"]` (its label file, its cached
    features); `encode` returns None for a file that would not decode (dropped, the next one is
    tried). A candidate of weight ALWAYS that does not fit raises: the pack would be of no use."""
    out = Packed()
    for i, c in enumerate(ranked):
        blob = encode(c)
        if blob is None:
            out.dropped.append(c)
            continue
        cost = len(blob) + int(c.extra.get("extra_bytes", 0))
        if out.used + cost > budget:
            if c.weight == ALWAYS:
                raise ValueError(f"the budget ({budget / 1e6:.2f} MB) is too small: {c.dest} must be packed "
                                 f"and does not fit; raise --max-mb")
            out.dropped.extend(ranked[i:])
            return out
        store(c, blob)
        out.kept.append((c, cost))
    return out


def encode_jpeg(path: Path, longest_side: int, quality: int) -> bytes:
    """The photo as the server decodes it (EXIF orientation, alpha over white), shrunk so that its
    longest side is at most `longest_side` (never enlarged), as a JPEG. Raises on an undecodable file."""
    from server.core.decoding import decode

    pixels = decode(Path(path).read_bytes()).pixels
    h, w = pixels.shape[:2]
    scale = longest_side / max(h, w)
    if scale < 1:
        pixels = cv2.resize(pixels, (max(1, round(w * scale)), max(1, round(h * scale))), interpolation=cv2.INTER_AREA)
    ok, buffer = cv2.imencode(".jpg", np.ascontiguousarray(pixels), [cv2.IMWRITE_JPEG_QUALITY, quality])
    if not ok:
        raise ValueError(f"{path}: JPEG encoding failed")
    return buffer.tobytes()


def table(packed: Packed, total_bytes: int) -> tuple[list[str], list[dict[str, Any]]]:
    """Markdown lines and rows: per part, split and source, photos packed, dropped and their MB."""
    kept: Counter = Counter()
    size: Counter = Counter()
    dropped: Counter = Counter()
    for c, n in packed.kept:
        kept[c.stratum[:3]] += 1
        size[c.stratum[:3]] += n
    for c in packed.dropped:
        dropped[c.stratum[:3]] += 1
    rows = [{"part": k[0], "split": k[1], "source": k[2], "packed": kept[k], "dropped": dropped[k],
             "mb": round(size[k] / 1e6, 3)} for k in sorted(set(kept) | set(dropped))]
    lines = ["| part | split / role | source | packed | dropped | MB |", "|---|---|---|---:|---:|---:|"]
    lines += [f"| {r['part']} | {r['split']} | {r['source']} | {r['packed']} | {r['dropped']} | {r['mb']:.2f} |"
              for r in rows]
    lines.append(f"| **all** | | | **{sum(kept.values())}** | **{sum(dropped.values())}** | "
                 f"**{total_bytes / 1e6:.2f}** (whole pack) |")
    return lines, rows
