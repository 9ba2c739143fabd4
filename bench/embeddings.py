"""The embedding signal for the benchmarks: the served model's embedding of a photo, computed the way
the server computes it, a Gaussian model of unrelated photos' embeddings, and the vector index table.

    Embedder       the v3 image-level head (its backbone on ONNX Runtime, one thread, as a CPU server
                   runs it) and the embedding projection: `vector(bgr)` is `head.run(...)[0].pooled`
                   through `EmbeddingSignal.embed`, exactly the server's path; `of_photo` keeps each
                   ../shared photo's vector in a temporary folder for the rest of the run
    GaussianModel  the mean and covariance of real embeddings: synthetic vectors for big banks (a model:
                   real photos cluster more than a Gaussian does, so the real pairs are the honest measure)
    bench_vector_index  build time, memory and lookup time of the vector indexes, with planted near copies
    index_mb       what a faiss index holds
"""

from __future__ import annotations

import hashlib
import statistics
import time
from pathlib import Path

import numpy as np

from server.core import vector_index
from server.core.embedding import EmbeddingSignal, unit_rows
from server.core.matching import CANDIDATE_MARGIN

WEIGHTS = Path(__file__).resolve().parents[1] / "weights"
MODEL = "v3"


class Embedder:
    """The served model's embedding of decoded BGR photos, on one core."""

    def __init__(self, cache_dir: Path, version: str = MODEL) -> None:
        import torch

        from server.core.imagehead import ImageHead
        from server.core.manifest import WeightsStore

        torch.set_num_threads(1)
        store = WeightsStore(WEIGHTS)
        manifest = store.get(version)
        head_spec, spec = manifest.head_spec, manifest.embedding_spec
        if head_spec is None or spec is None:
            raise SystemExit(f"model {version} has no image-level head or no embedding signal")
        self.cache_dir = Path(cache_dir)
        self.head = ImageHead.load(store.verified_path(head_spec.file, head_spec.sha256), head_spec, "cpu",
                                   onnx_cache=self.cache_dir / "onnx", threads=1)
        self.signal = EmbeddingSignal.load(store.verified_path(spec.file, spec.sha256), spec)
        self.spec = spec
        self.times_ms: list[float] = []
        """Milliseconds of each `vector` call: crops, backbone, pooling and projection."""

    @property
    def name(self) -> str:
        return self.signal.name

    @property
    def threshold(self) -> float:
        return self.signal.threshold

    @property
    def runtime(self) -> str:
        return self.head.runtime_name

    def vector(self, bgr: np.ndarray) -> np.ndarray:
        """(dim,) float32 of unit length: what the server matches this image by."""
        start = time.perf_counter()
        pooled = self.head.run([self.head.crops(bgr)])[0].pooled
        out = self.signal.embed(pooled[None, :])[0]
        self.times_ms.append((time.perf_counter() - start) * 1000)
        return out

    def of_photo(self, path: Path, bgr: np.ndarray) -> np.ndarray:
        """`vector` of a ../shared photo, computed once per run."""
        cached = self.cache_dir / f"{hashlib.sha1(str(path).encode()).hexdigest()}.npy"
        if cached.is_file():
            return np.load(cached)
        out = self.vector(bgr)
        np.save(cached, out)
        return out


def stored(vectors: np.ndarray) -> np.ndarray:
    """Vectors as a bank keeps them (float16, server.core.bank_rows.Rows.vectors), back as float32."""
    return np.asarray(vectors, dtype=np.float16).astype(np.float32)


class GaussianModel:
    """Synthetic embeddings: a Gaussian with the mean and covariance of real ones, then unit length."""

    def __init__(self, real: np.ndarray) -> None:
        real = np.asarray(real, dtype=np.float64)
        self.fitted_on = len(real)
        self.mean = real.mean(axis=0)
        cov = np.cov(real, rowvar=False)
        self.chol = np.linalg.cholesky(cov + 1e-6 * np.eye(len(cov)) * np.trace(cov) / len(cov))

    @classmethod
    def isotropic(cls, dim: int) -> GaussianModel:
        model = cls.__new__(cls)
        model.fitted_on, model.mean, model.chol = 0, np.zeros(dim), np.eye(dim)
        return model

    @property
    def dim(self) -> int:
        return len(self.mean)

    def sample(self, count: int, rng: np.random.Generator) -> np.ndarray:
        """(count, dim) float32 unit rows."""
        z = rng.standard_normal((count, self.dim), dtype=np.float32)
        return unit_rows(z @ self.chol.T.astype(np.float32) + self.mean.astype(np.float32))

    def chunks(self, count: int, rng: np.random.Generator, chunk: int = 65_536):
        """`sample(count)` in pieces of at most `chunk` rows."""
        for start in range(0, count, chunk):
            yield self.sample(min(chunk, count - start), rng)


NEAR_MARGIN = 0.005
"""Planted near copies sit at least this far above the threshold (float16 storage moves a cosine by ~1e-3)."""


def near_copies(vectors: np.ndarray, threshold: float, rng: np.random.Generator) -> np.ndarray:
    """A vector at a cosine drawn uniformly in [threshold + NEAR_MARGIN, 0.99] from each of `vectors`
    (a planted near copy: the hard case for an approximate index is a copy just above the threshold)."""
    cos = rng.uniform(threshold + NEAR_MARGIN, 0.99, len(vectors)).astype(np.float32)[:, None]
    noise = rng.standard_normal(vectors.shape).astype(np.float32)
    noise -= (noise * vectors).sum(axis=1, keepdims=True) * vectors
    noise = unit_rows(noise)
    return unit_rows(cos * vectors + np.sqrt(1 - cos ** 2) * noise)


def ivf_in_chunks(model: GaussianModel, size: int, rng: np.random.Generator, keep: np.ndarray):
    """The served IVF (vector_index.trained_ivf, sized for `size`) over `keep` then synthetic vectors
    to `size`, a million at a time, generated as they are added (10M synthetic vectors are never held at once)."""
    first = np.concatenate([keep, model.sample(min(size, 1_000_000) - len(keep), rng)])
    index = vector_index.trained_ivf(first, size)
    index.add(stored(first))
    for chunk in model.chunks(size - len(first), rng, 1_000_000):
        index.add(stored(chunk))
    return index


def index_mb(index) -> float:
    """What a faiss index holds (its serialized size: codes, ids, cells), in MB; 0 for None."""
    import faiss

    if index is None:
        return 0.0
    try:
        if isinstance(index, faiss.IndexBinary):
            return faiss.serialize_index_binary(index).nbytes / 2**20
        return faiss.serialize_index(index).nbytes / 2**20
    except RuntimeError:  # a kind faiss cannot write (IndexBinaryMultiHash)
        return float("nan")


def rss_mb() -> float:
    import gc

    import psutil

    gc.collect()
    return psutil.Process().memory_info().rss / 2**20


def bench_vector_index(size: int, kinds: list[str], queries: int, threshold: float, model: GaussianModel,
                       rng: np.random.Generator) -> list[dict]:
    """Each kind over `size` synthetic vectors: build time, memory (RSS growth and the index's own size), time per looked-up
    image (one vector, asked at the threshold less the matcher's margin, as matching asks) and the
    share of planted near copies found."""
    planted = model.sample(queries, rng)
    block = near_copies(planted, threshold, rng)
    rows = []
    for kind in kinds:
        before = rss_mb()
        t = time.perf_counter()
        if kind == vector_index.IVF and size > 1_000_000:
            index = ivf_in_chunks(model, size, rng, planted)
            label = "ivf-sq8 (in chunks)"
        else:
            vectors = np.concatenate([planted, model.sample(size - queries, rng)])
            index = vector_index.build(stored(vectors), kind)
            del vectors
            label = "ivf-sq8" if kind == vector_index.IVF else "flat ip"
        build_s = time.perf_counter() - t
        memory = rss_mb() - before
        times, found = [], 0
        for q in range(queries):
            t = time.perf_counter()
            _, hits, sims = vector_index.at_least(index, block[q:q + 1], threshold - CANDIDATE_MARGIN)
            times.append((time.perf_counter() - t) * 1000)
            found += bool((hits == q).any())
        rows.append(dict(size=size, kind=f"emb {label}", build_s=build_s, memory_mb=memory, index_mb=index_mb(index), p50_ms=statistics.median(times),
                         p99_ms=sorted(times)[int(len(times) * 0.99)], recall=found / queries))
        del index
    return rows
