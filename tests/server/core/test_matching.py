"""Known-image matching in memory: entries within 31 bits match and others do not, removals and
expiry take effect at the next refresh, readers keep matching while snapshots are swapped under
them, and the multi-index-hashing index answers exactly what the flat one does."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone

import numpy as np
import pytest

from server.core import hash_index, pdq
from server.core.bank_rows import BankEntry
from server.core.matching import BankMatcher
from tests.server.core.test_pdq import photo

T0 = datetime(2026, 1, 1, tzinfo=timezone.utc)


class ListSource:
    """A BankSource over a list, as the review database's store would answer."""

    def __init__(self, actions: dict[str, str] | None = None) -> None:
        self.changes: list[BankEntry] = []
        self.actions = actions or {"own": "FLAG", "partner": "REVIEW"}
        self.lock = threading.Lock()

    def put(self, entry_id: int, code: bytes, bank: str = "own", removed: bool = False, expires_at=None,
            label: str = "ivory", reference_id: str = "") -> None:
        with self.lock:
            self.changes.append(BankEntry(len(self.changes) + 1, entry_id, bank, code, label,
                                          reference_id or f"C-{entry_id}", T0, expires_at, removed))

    def entries_since(self, after_seq: int, limit: int) -> list[BankEntry]:
        with self.lock:
            return [c for c in self.changes if c.seq > after_seq][:limit]

    def bank_actions(self) -> dict[str, str]:
        return dict(self.actions)


def random_codes(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, pdq.HASH_BYTES), dtype=np.uint8)


def flipped(code: bytes, bits: int, seed: int = 0) -> bytes:
    unpacked = np.unpackbits(np.frombuffer(code, np.uint8))
    unpacked[np.random.default_rng(seed).choice(pdq.HASH_BITS, bits, replace=False)] ^= 1
    return np.packbits(unpacked).tobytes()


def test_an_entry_within_31_bits_matches_with_its_bank_label_and_reference_and_one_at_32_does_not():
    source, codes = ListSource(), random_codes(50)
    for i, code in enumerate(codes):
        source.put(i + 1, code.tobytes(), bank="own" if i % 2 else "partner")
    matcher = BankMatcher(source)
    assert matcher.refresh() == 50
    found = matcher.match([flipped(codes[7].tobytes(), 31)])
    assert [(m.entry_id, m.bank, m.distance, m.reference_id, m.action, m.label) for m in found] == \
        [(8, "own", 31, "C-8", "FLAG", "ivory")]
    assert found[0].added_at == T0
    assert matcher.match([flipped(codes[7].tobytes(), 32)]) == []
    assert matcher.snapshot.sizes(now=T0.timestamp()) == {"own": 25, "partner": 25}


def test_a_photo_matches_its_rotated_copy_through_the_variants_and_not_an_unrelated_one_nor_below_quality_50():
    source = ListSource()
    source.put(1, pdq.hash_image(photo(5)).code)
    matcher = BankMatcher(source)
    matcher.refresh()
    turned = pdq.dihedral(np.ascontiguousarray(np.rot90(photo(5))))
    assert [m.entry_id for m in matcher.match(turned.codes, turned.quality)] == [1]
    unrelated = pdq.dihedral(photo(6))
    assert matcher.match(unrelated.codes, unrelated.quality) == []
    assert matcher.match(turned.codes, quality=pdq.MIN_QUALITY - 1) == []


def test_a_removed_entry_stops_matching_at_the_next_refresh_and_a_re_added_one_matches_again():
    source, codes = ListSource(), random_codes(3)
    for i, code in enumerate(codes):
        source.put(i + 1, code.tobytes())
    matcher = BankMatcher(source, compact_at=1)
    matcher.refresh()  # compacts: the entries are in the base segment
    source.put(2, codes[1].tobytes(), removed=True)
    assert [m.entry_id for m in matcher.match([codes[1].tobytes()])] == [2]  # not polled yet
    assert matcher.refresh() == 1
    assert matcher.match([codes[1].tobytes()]) == []
    source.put(2, codes[1].tobytes(), reference_id="C-again")
    matcher.refresh()
    assert [m.reference_id for m in matcher.match([codes[1].tobytes()])] == ["C-again"]
    assert len(matcher.snapshot) == 3


def test_expired_entries_are_not_matched():
    source, codes = ListSource(), random_codes(2)
    source.put(1, codes[0].tobytes(), expires_at=T0 + timedelta(days=1))
    source.put(2, codes[1].tobytes())
    matcher = BankMatcher(source)
    matcher.refresh()
    before, after = (T0 + timedelta(hours=1)).timestamp(), (T0 + timedelta(days=2)).timestamp()
    assert [m.entry_id for m in matcher.match([codes[0].tobytes()], now=before)] == [1]
    assert matcher.match([codes[0].tobytes()], now=after) == []
    assert matcher.snapshot.sizes(now=after) == {"own": 1, "partner": 0}


def test_after_many_adds_removes_and_compactions_matches_are_what_a_brute_force_scan_finds():
    rng = np.random.default_rng(1)
    source, codes = ListSource(), random_codes(300, seed=2)
    alive: dict[int, bytes] = {}
    matcher = BankMatcher(source, page=37, compact_at=25)
    for round_ in range(6):
        for _ in range(80):
            entry_id = int(rng.integers(1, 301))
            if entry_id in alive and rng.random() < 0.4:
                source.put(entry_id, alive.pop(entry_id), removed=True)
            else:
                alive[entry_id] = codes[entry_id - 1].tobytes()
                source.put(entry_id, alive[entry_id])
        matcher.refresh()
        assert len(matcher.snapshot) == len(alive)
        for entry_id in rng.choice(300, 40, replace=False) + 1:
            query = flipped(codes[entry_id - 1].tobytes(), int(rng.integers(0, 40)), seed=round_)
            expected = sorted(i for i, c in alive.items() if pdq.distance(c, query) <= pdq.MATCH_DISTANCE)
            assert sorted(m.entry_id for m in matcher.match([query])) == expected


def test_readers_keep_matching_while_snapshots_are_rebuilt_and_swapped_under_them():
    source, codes = ListSource(), random_codes(3000, seed=3)
    source.put(1, codes[0].tobytes())
    matcher = BankMatcher(source, page=64, compact_at=100)
    matcher.refresh()
    stop, failures, reads = threading.Event(), [], [0]

    def reader() -> None:
        last = 0
        while not stop.is_set():
            snapshot = matcher.snapshot
            found = [m.entry_id for m in matcher.match([codes[0].tobytes()])]
            if found != [1] or len(snapshot) < last:
                failures.append((found, len(snapshot), last))
            last = len(snapshot)
            reads[0] += 1

    readers = [threading.Thread(target=reader) for _ in range(3)]
    for t in readers:
        t.start()
    for start in range(1, 3000, 150):  # 20 refreshes, several of them compactions into a new base
        for i in range(start, min(start + 150, 3000)):
            source.put(i + 1, codes[i].tobytes())
        matcher.refresh()
        time.sleep(0.005)
    stop.set()
    for t in readers:
        t.join()
    assert not failures, failures[:3]
    assert reads[0] > 20 and len(matcher.snapshot) == 3000


def test_the_background_thread_picks_up_new_entries_without_a_restart():
    source, codes = ListSource(), random_codes(2, seed=4)
    source.put(1, codes[0].tobytes())
    matcher = BankMatcher(source)
    matcher.start(interval_s=0.05)
    try:
        assert len(matcher.snapshot) == 1
        source.put(2, codes[1].tobytes(), bank="partner")
        deadline = time.monotonic() + 5
        while not matcher.match([codes[1].tobytes()]) and time.monotonic() < deadline:
            time.sleep(0.02)
        assert [m.action for m in matcher.match([codes[1].tobytes()])] == ["REVIEW"]
    finally:
        matcher.stop()


@pytest.mark.parametrize("kind", [hash_index.MULTIHASH, hash_index.WORDS, hash_index.HNSW])
def test_the_multi_hash_index_finds_exactly_what_the_flat_one_finds(kind):
    rng = np.random.default_rng(5)
    banked = random_codes(2000, seed=6)
    queries = np.stack([np.frombuffer(flipped(banked[i].tobytes(), int(rng.integers(0, 45)), seed=i), np.uint8)
                        for i in range(0, 2000, 10)])
    flat = hash_index.within(hash_index.build(banked, hash_index.FLAT), queries)
    other = hash_index.within(hash_index.build(banked, kind), queries)
    as_set = lambda found: set(zip(*(a.tolist() for a in found)))  # noqa: E731
    if kind in (hash_index.MULTIHASH, hash_index.WORDS):
        assert as_set(other) == as_set(flat) and len(flat[0]) > 50
    else:  # approximate: most, never a false one
        assert as_set(other) <= as_set(flat) and len(as_set(other)) >= 0.9 * len(as_set(flat))


def test_our_word_index_finds_a_hash_31_bits_away_however_the_bits_are_spread_and_never_one_32_away():
    """The pigeonhole's edge: 31 bits spread over the 12 indexed words and the 4 bits beyond them, as
    evenly as can be (no word agrees to fewer than 2 bits) or all in a few words."""
    banked = random_codes(500, seed=8)
    index = hash_index.build(banked, hash_index.WORDS)
    spreads = (([2] * 9 + [3] * 3, 4), ([3] * 10 + [1, 0], 0), ([0] * 10 + [21, 6], 4))
    for i, (per_word, tail) in enumerate(spreads):
        bits = np.unpackbits(banked[i])
        for word, count in enumerate(per_word):
            bits[word * hash_index.WORD_BITS: word * hash_index.WORD_BITS + count] ^= 1
        bits[256 - tail:] ^= 1 if tail else 0
        query = np.packbits(bits)[None, :]
        assert pdq.distance(query.tobytes(), banked[i].tobytes()) == 31
        assert (0, i, 31) in set(zip(*(a.tolist() for a in hash_index.within(index, query))))
        bits[per_word[0]] ^= 1  # one more bit, in the first word: 32 away
        further = np.packbits(bits)[None, :]
        assert pdq.distance(further.tobytes(), banked[i].tobytes()) == 32
        assert i not in hash_index.within(index, further)[1].tolist()
