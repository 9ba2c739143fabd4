"""One loaded model version in the server: the detector's engine, the image-level head where the
version has one, the decoder for their input, and the dynamic batcher that feeds them on one model
thread. A hot reload starts a new `ModelRuntime` beside the old one and retires the old one once the
requests it holds are answered (see `server.core.screening`).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import torch

from server.config import CoreSettings
from server.core.batching import DynamicBatcher
from server.core.decoding import DecodeLimits, ImageDecoder, PreparedImage
from server.core.detections import Detections
from server.core.embedding import EmbeddingSignal
from server.core.engine import InferenceEngine
from server.core.imagehead import ImageHead, ImageScores
from server.core.manifest import ModelManifest, WeightsStore
from server.core.metrics import ScreeningMetrics


@dataclass(frozen=True)
class BatchItem:
    prepared: PreparedImage
    nms_confidence: float
    head_crops: np.ndarray | None = None
    """The whole image and its tiles at the head's input size (None without a head)."""


ModelOutput = tuple[Detections, "ImageScores | None"]
"""What the model thread answers for one image: the detector's detections and the head's scores."""


@dataclass
class ModelRuntime:
    """One loaded model, its decoder, the batcher that feeds it, and the requests using it."""

    engine: InferenceEngine
    decoder: ImageDecoder
    batcher: DynamicBatcher[BatchItem, ModelOutput]
    head: ImageHead | None = None
    """The image-level head of a version that has one: run beside the detector in the same batch."""
    embedding: EmbeddingSignal | None = None
    """Known-image matching's embedding signal over the head's features, where the version has one."""
    users: int = 0
    decoding: int = 0
    """Requests on their way to the batcher (being decoded): worth waiting for when a batch forms."""
    idle: asyncio.Event = field(default_factory=asyncio.Event)

    @property
    def manifest(self) -> ModelManifest:
        return self.engine.manifest

    def acquire(self) -> None:
        self.users += 1
        self.idle.clear()

    def release(self) -> None:
        self.users -= 1
        if self.users == 0:
            self.idle.set()

    async def retire(self) -> None:
        """Wait for the requests that started on this model, then stop its batcher."""
        if self.users:
            await self.idle.wait()
        await self.batcher.close()

    @classmethod
    async def start(cls, config: CoreSettings, version: str | None, metrics: ScreeningMetrics | None,
                    host_pixels: bool = False) -> ModelRuntime:
        """`host_pixels`: decode every image on the host (for hashing it), never leave a JPEG to the GPU."""
        def load() -> tuple[InferenceEngine, list[InferenceEngine], ImageHead | None, EmbeddingSignal | None]:
            store = WeightsStore(config.weights_dir)
            engine = InferenceEngine.load(store, version or None, config.device, config.backend,
                                          config.model_threads, config.max_batch_size)
            copies = engine.side_by_side(config.model_instances, config.model_threads)
            for e in [engine, *copies]:
                e.warm_up(sorted({1, config.max_batch_size}))
            spec = engine.manifest.head_spec
            head = None
            if spec is not None:
                head = ImageHead.load(store.verified_path(spec.file, spec.sha256), spec, engine.backend.device,
                                      onnx_cache=store.root / "cache", threads=config.model_threads)
                head.warm_up()
            embedding_spec = engine.manifest.embedding_spec
            embedding = None if embedding_spec is None else \
                EmbeddingSignal.load(store.verified_path(embedding_spec.file, embedding_spec.sha256), embedding_spec)
            return engine, copies, head, embedding

        # Load, warm up and run on one and the same thread (see DynamicBatcher).
        model_thread = ThreadPoolExecutor(max_workers=1, thread_name_prefix="model")
        try:
            engine, copies, head, embedding = await asyncio.get_running_loop().run_in_executor(model_thread, load)
        except BaseException:
            model_thread.shutdown(wait=False)
            raise
        torch_threads = engine.torch_threads(config.model_threads)

        def runner(on: InferenceEngine):
            def run_batch(items: list[BatchItem]) -> list[ModelOutput | Exception]:
                if torch.get_num_threads() != torch_threads:  # a setting of the calling thread: set in each model thread
                    torch.set_num_threads(torch_threads)
                floor = min(item.nms_confidence for item in items)
                found = on.run([item.prepared for item in items], floor)
                scores = head.run([item.head_crops for item in items]) if head else [None] * len(items)
                return [f if isinstance(f, Exception) else (f, s) for f, s in zip(found, scores)]
            return run_batch

        on_batch = (lambda info: metrics.observe_batch(info.size)) if metrics else None
        runtime: ModelRuntime
        # The admission limit in Screener bounds what reaches this queue; the queue bound is the backstop.
        batcher: DynamicBatcher[BatchItem, ModelOutput] = DynamicBatcher(
            runner(engine), config.max_batch_size, config.max_batch_delay_ms, config.max_queue_size + config.max_batch_size, on_batch,
            incoming=lambda: runtime.decoding, executor=model_thread, side_by_side=[runner(c) for c in copies],
        )
        batcher.start()
        limits = DecodeLimits(config.max_request_bytes, config.max_image_pixels)
        # The head needs the decoded pixels on the host: with a head, JPEGs are not left to the GPU's decoder.
        decoder = ImageDecoder(engine.input_size, engine.backend.device, limits,
                               on_device=False if head or host_pixels else None)
        runtime = cls(engine, decoder, batcher, head, embedding)
        runtime.idle.set()
        return runtime
