"""The embedding signal in the matcher: an entry whose embedding (of the served model) is at least the
threshold similar matches even when its PDQ hash is far, the answer says which signal matched, other
models' vectors are never compared, removals and a change of model take effect, the IVF index finds
what the flat one finds; and the vector format's bad inputs are refused."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest

from server.core import vector_index
from server.core.bank_rows import BankEntry, Names, Rows
from server.core.embedding import SIGNAL_EMBEDDING, from_text, pack, to_text, unit_rows, unpack
from server.core.errors import InvalidInput
from server.core.matching import BankMatcher
from tests.server.core.test_matching import T0, ListSource, flipped, random_codes

MODEL, DIM, THRESHOLD = "test-pca16-00000000", 16, 0.9


def vectors(n: int, seed: int = 0) -> np.ndarray:
    return unit_rows(np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32))


def near(vector: np.ndarray, similarity: float, seed: int = 1) -> np.ndarray:
    """A unit vector at exactly `similarity` (cosine) from `vector`."""
    other = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
    other -= (other @ vector) * vector
    other /= np.linalg.norm(other)
    return (similarity * vector + np.sqrt(1 - similarity ** 2) * other).astype(np.float32)


class EmbeddedSource(ListSource):
    def put_embedded(self, entry_id: int, code: bytes, vector: np.ndarray | None, model: str = MODEL,
                     removed: bool = False) -> None:
        self.put(entry_id, code, removed=removed)
        with self.lock:
            self.changes[-1] = replace(self.changes[-1], embedding=None if vector is None else pack(vector),
                                       embedding_model=model if vector is not None else "")


def matcher_over(source: EmbeddedSource) -> BankMatcher:
    matcher = BankMatcher(source)
    matcher.use_embedding(MODEL, DIM, THRESHOLD)
    matcher.refresh()
    return matcher


def test_a_similar_embedding_matches_where_pdq_is_far_and_the_answer_says_so():
    source, codes, vecs = EmbeddedSource(), random_codes(20), vectors(20)
    for i in range(20):
        source.put_embedded(i + 1, codes[i].tobytes(), vecs[i])
    matcher = matcher_over(source)
    far_code = [flipped(codes[3].tobytes(), 100)]
    found = matcher.match(far_code, vector=near(vecs[3], 0.95), embedding_model=MODEL)
    assert [(m.entry_id, m.signal, m.bank) for m in found] == [(4, SIGNAL_EMBEDDING, "own")]
    assert found[0].similarity == pytest.approx(0.95, abs=2e-3) and found[0].distance > 31
    assert found[0].action == "REVIEW", "the own bank FLAGs, but on the embedding's word alone a person looks first"
    assert matcher.match(far_code, vector=near(vecs[3], 0.85), embedding_model=MODEL) == []
    both = matcher.match([flipped(codes[3].tobytes(), 10)], vector=near(vecs[3], 0.95), embedding_model=MODEL)
    assert [(m.entry_id, m.signal, m.distance, m.action) for m in both] == [(4, "pdq+embedding", 10, "FLAG")]
    by_pdq = matcher.match([flipped(codes[3].tobytes(), 10)], vector=near(vecs[3], 0.5), embedding_model=MODEL)
    assert [(m.signal, m.similarity is not None and m.similarity < 0.6) for m in by_pdq] == [("pdq", True)]


def test_vectors_of_another_model_are_never_compared():
    source, codes, vecs = EmbeddedSource(), random_codes(3), vectors(3)
    source.put_embedded(1, codes[0].tobytes(), vecs[0], model="other-model")
    source.put_embedded(2, codes[1].tobytes(), vecs[1])
    matcher = matcher_over(source)
    far = [flipped(codes[0].tobytes(), 100)]
    assert matcher.match(far, vector=vecs[0], embedding_model=MODEL) == []
    assert [m.entry_id for m in matcher.match(far, vector=vecs[1], embedding_model=MODEL)] == [2]
    assert matcher.match(far, vector=vecs[1], embedding_model="other-model") == [], "the snapshot holds MODEL's vectors"
    assert matcher.snapshot.sizes(with_embedding=True) == {"own": 1, "partner": 0}


def test_a_low_quality_hash_still_matches_by_embedding_but_not_by_pdq():
    source, codes, vecs = EmbeddedSource(), random_codes(2), vectors(2)
    source.put_embedded(1, codes[0].tobytes(), vecs[0])
    source.put_embedded(2, codes[1].tobytes(), None)
    matcher = matcher_over(source)
    assert matcher.match([codes[1].tobytes()], quality=20) == []
    found = matcher.match([codes[0].tobytes()], quality=20, vector=vecs[0], embedding_model=MODEL)
    assert [(m.entry_id, m.signal) for m in found] == [(1, SIGNAL_EMBEDDING)]


def test_removal_and_a_change_of_model_take_effect():
    source, codes, vecs = EmbeddedSource(), random_codes(30), vectors(30)
    for i in range(30):
        source.put_embedded(i + 1, codes[i].tobytes(), vecs[i])
    matcher = matcher_over(source)
    far = [flipped(codes[5].tobytes(), 100)]
    assert [m.entry_id for m in matcher.match(far, vector=vecs[5], embedding_model=MODEL)] == [6]
    source.put_embedded(6, codes[5].tobytes(), vecs[5], removed=True)
    matcher.refresh()
    assert matcher.match(far, vector=vecs[5], embedding_model=MODEL) == []
    source.put_embedded(31, codes[5].tobytes(), vecs[5], model="v4-model")
    matcher.use_embedding("v4-model", DIM, THRESHOLD)  # reloads every entry: the new model's vectors were never kept
    assert matcher.snapshot.embedding_model == "v4-model"
    assert [m.entry_id for m in matcher.match(far, vector=vecs[5], embedding_model="v4-model")] == [31]
    assert matcher.match([codes[0].tobytes()])[0].entry_id == 1, "PDQ entries are all back after the reload"
    matcher.use_embedding("", 0, 1.0)
    assert matcher.match(far, vector=vecs[5], embedding_model="v4-model") == []


def test_rows_keep_each_vector_with_its_entry_through_take_and_merge():
    banks, labels = Names(), Names()
    codes, vecs = random_codes(6), vectors(6)
    entries = [BankEntry(i + 1, i + 1, "own", codes[i].tobytes(), "ivory", f"C-{i}", T0,
                         embedding=pack(vecs[i]) if i % 2 else None, embedding_model=MODEL if i % 2 else "")
               for i in range(6)]
    first = Rows.of(entries[:4], banks, labels, MODEL, DIM)
    second = Rows.of(entries[4:], banks, labels, MODEL, DIM)
    merged = first.take(np.array([3, 1, 0])).merge(second)
    assert merged.entry_ids.tolist() == [1, 2, 4, 5, 6]
    for row, entry_id in enumerate(merged.entry_ids.tolist()):
        at = merged.vector_of[row]
        assert (at >= 0) == (entry_id % 2 == 0)
        if at >= 0:
            np.testing.assert_allclose(merged.vectors[at].astype(np.float32), vecs[entry_id - 1], atol=2e-3)


def test_the_ivf_index_finds_the_near_copies_the_flat_one_finds():
    bank = vectors(5000, seed=3)
    queries = np.stack([near(bank[i], 0.93, seed=i) for i in range(0, 5000, 50)])
    flat = vector_index.at_least(vector_index.build(bank, vector_index.FLAT), queries, 0.9)
    ivf = vector_index.at_least(vector_index.build(bank, vector_index.IVF), queries, 0.9 - 0.02)
    expected = set(zip(flat[0].tolist(), flat[1].tolist()))
    assert expected == {(q, q * 50) for q in range(100)}
    assert expected <= set(zip(ivf[0].tolist(), ivf[1].tolist()))


@pytest.mark.parametrize("data, why", [
    (b"", "1 to"), (b"\x00" * 3, "1 to"), (b"\x00" * 8, "not all zeros"),
    (np.array([np.inf, 1], "<f2").tobytes(), "finite"), (b"\x00" * 5000, "1 to"),
])
def test_a_bad_vector_is_refused_with_a_reason(data, why):
    with pytest.raises(InvalidInput, match=why):
        unpack(data)


def test_vectors_travel_as_base64_of_float16():
    vec = vectors(1)[0]
    assert np.allclose(unpack(from_text(to_text(pack(vec)))), vec, atol=2e-3)
    with pytest.raises(InvalidInput, match="base64"):
        from_text("not base64!")
    with pytest.raises(InvalidInput, match="numbers"):
        unpack(pack(vec), dim=DIM + 1)


def test_a_damaged_vector_in_the_database_counts_as_none_and_never_stops_a_refresh():
    source, codes, vecs = EmbeddedSource(), random_codes(3), vectors(3)
    source.put_embedded(1, codes[0].tobytes(), vecs[0])
    source.put(2, codes[1].tobytes())
    with source.lock:  # as a hand-written row would be: all zeros, and one of another length
        source.changes[-1] = replace(source.changes[-1], embedding=b"\x00" * 2 * DIM, embedding_model=MODEL)
    source.put(3, codes[2].tobytes())
    with source.lock:
        source.changes[-1] = replace(source.changes[-1], embedding=b"\x01\x3c" * 3, embedding_model=MODEL)
    matcher = matcher_over(source)
    assert len(matcher.snapshot) == 3 and matcher.snapshot.sizes(with_embedding=True) == {"own": 1, "partner": 0}
    assert [m.entry_id for m in matcher.match([codes[1].tobytes()])] == [2], "PDQ still matches the entry"
