"""The three measurements of `make bench`, each meant to run in a process of its own.

PyTorch on the CPU runs at about half speed in a thread other than the one whose OpenMP team first
ran it, and Ultralytics' predictor leaves such state behind: so naive and engine each get a fresh
process (spawned), and the server is a subprocess as in production.
"""

from __future__ import annotations

import subprocess
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import cv2
import numpy as np
import torch

from bench.load import ClientProcesses, percentile
from server.config import usable_cores
from tests.support.server_process import ServerProcess
from server.core.engine import InferenceEngine
from server.core.manifest import WeightsStore
from wildscreen.client import Connection

SHARED_FOLDERS = ("met-ivory/ivory", "met-ivory/non_ivory", "reptiles", "pangolins", "negatives/caltech", "tiger-video/images", "snakes-boxed/images")


def listing_images(shared: Path, count: int, seed: int, min_side: int, max_side: int) -> tuple[list[bytes], str]:
    """JPEGs (quality 90) with a longer side between min_side and max_side."""
    rng = np.random.default_rng(seed)
    data = shared / "data"
    sources = []
    if data.is_dir():
        for folder in SHARED_FOLDERS:
            files = sorted(p for p in (data / folder).rglob("*.jpg"))
            sources += [files[i] for i in rng.choice(len(files), size=min(len(files), count), replace=False)] if files else []
        rng.shuffle(sources)
    out = []
    for i in range(count):
        side = int(rng.integers(min_side, max_side + 1))
        if sources:
            image = cv2.imread(str(sources[i % len(sources)]))
        else:
            image = cv2.GaussianBlur(rng.integers(0, 255, (480, 640, 3), dtype=np.uint8), (0, 0), 4)
        h, w = image.shape[:2]
        scale = side / max(h, w)
        image = cv2.resize(image, (round(w * scale), round(h * scale)), interpolation=cv2.INTER_CUBIC if scale > 1 else cv2.INTER_AREA)
        out.append(cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, 90])[1].tobytes())
    return out, ("../shared/data photos, resized" if sources else "synthetic")


def load_head(weights: Path, device: str, onnx: bool = True):
    """The current version's image-level head (ImageHead), or None for a detector-only version; its
    backbone on ONNX Runtime as the server runs it, or (`onnx=False`) on PyTorch as a user would."""
    from server.core.imagehead import ImageHead
    from server.core.backends import resolve_device

    store = WeightsStore(weights)
    spec = store.get(None).head_spec
    if spec is None:
        return None
    return ImageHead.load(store.verified_path(spec.file, spec.sha256), spec, resolve_device(device),
                          store.root / "cache" if onnx else None, usable_cores())


def bench_naive(model: Path, images: list[bytes], imgsz: int, device: str, seconds: float = 0.0,
                weights: Path | None = None) -> dict:
    """Whole passes over `images` until `seconds` have gone by (at least one): as long as a server level
    runs, so that a noisy neighbour weighs on both sides of the ratio alike. A version with an
    image-level head runs it too, one image at a time, so that server/naive compares like with like."""
    from ultralytics import YOLO

    yolo = YOLO(str(model))
    head = load_head(weights, "cuda" if device != "cpu" else "cpu", onnx=False) if weights else None
    decode = lambda b: cv2.imdecode(np.frombuffer(b, np.uint8), cv2.IMREAD_COLOR)  # noqa: E731

    def both(data: bytes) -> None:
        pixels = decode(data)
        yolo.predict(pixels, imgsz=imgsz, device=device, verbose=False)
        if head is not None:
            head.run([head.crops(pixels)])

    for b in images[:2]:
        both(b)
    latencies = []
    start = time.perf_counter()
    while not latencies or time.perf_counter() - start < seconds:
        for b in images:
            t = time.perf_counter()
            both(b)
            latencies.append((time.perf_counter() - t) * 1000)
    elapsed = time.perf_counter() - start
    return {"name": "naive", "images_per_s": len(latencies) / elapsed, "p50_ms": percentile(latencies, 50), "p95_ms": percentile(latencies, 95),
            "p99_ms": percentile(latencies, 99), "mean_batch": 1.0}


def bench_engine(weights: Path, device: str, backend: str, images: list[bytes], batch_size: int, workers: int,
                 name: str = "engine", seconds: float = 0.0) -> tuple[dict, dict]:
    """Batched throughput with decode threads feeding the model (whole passes for `seconds`, as
    `bench_naive`), single-image latency, stage times."""
    from server.core.decoding import ImageDecoder, decode
    from server.grpc.servicer import response_from_result

    engine = InferenceEngine.load(WeightsStore(weights), None, device, backend, 0, batch_size)
    torch.set_num_threads(engine.torch_threads(usable_cores()))  # as the server's model threads run it
    head = load_head(weights, device)
    decoder = ImageDecoder(engine.input_size, engine.backend.device, on_device=False if head else None)

    def run(items: list[tuple]) -> list:
        """The models as the server's model thread runs them on a batch of `prepare`d images: the
        detector, then the head on the same images."""
        found = engine.run([prepared for prepared, _ in items], 0.25)
        if head is not None:
            head.run([crops for _, crops in items])
        return found

    def prepare(data: bytes) -> tuple:
        image, prepared = decoder.prepare(data)
        return prepared, (head.crops(image.pixels) if head is not None else None)

    for _ in range(2):
        run([prepare(images[0])] * batch_size)
    # Single-image latency: bytes in, detections out, one at a time (every image twice: the reference
    # of the c=1 gap, which a handful of samples leaves at the mercy of a noisy neighbour).
    single = []
    for b in images * 2:
        t = time.perf_counter()
        run([prepare(b)])
        single.append((time.perf_counter() - t) * 1000)
    # Stage times, measured one stage at a time on the whole set.
    stages: dict[str, float] = {}
    t = time.perf_counter()
    decoded = [decode(b, min_side=None if decoder.on_device else engine.input_size) for b in images]
    stages["decode"] = (time.perf_counter() - t) * 1000 / len(images)
    t = time.perf_counter()
    prepared = [decoder.letterbox(d) for d in decoded]
    stages["letterbox"] = (time.perf_counter() - t) * 1000 / len(images)
    timings: dict[str, float] = {}
    results = []
    for i in range(0, len(prepared), batch_size):
        results += engine.run(prepared[i : i + batch_size], 0.25, timings)
    for k, v in timings.items():
        stages[k] = v / len(images)
    if head is not None:
        crops = [head.crops(d.pixels) for d in decoded]
        t = time.perf_counter()
        for i in range(0, len(crops), batch_size):
            head.run(crops[i : i + batch_size])
        stages["image_level_head"] = (time.perf_counter() - t) * 1000 / len(images)
    t = time.perf_counter()
    for detections, p in zip(results, prepared):
        response_from_result(_fake_result(engine, detections, p)).SerializeToString()
    stages["encode_reply"] = (time.perf_counter() - t) * 1000 / len(images)

    # Batched throughput: decode threads and the model thread overlapping, as in the server.
    pool = ThreadPoolExecutor(workers)
    start = time.perf_counter()
    answered = 0
    while not answered or time.perf_counter() - start < seconds:
        futures = [pool.submit(prepare, b) for b in images]
        for i in range(0, len(images), batch_size):
            run([f.result() for f in futures[i : i + batch_size]])
        answered += len(images)
    elapsed = time.perf_counter() - start
    pool.shutdown()
    row = {"name": name, "backend": engine.backend.name, "images_per_s": answered / elapsed, "p50_ms": percentile(single, 50), "p95_ms": percentile(single, 95),
           "p99_ms": percentile(single, 99), "mean_batch": float(batch_size), "single_image_p50_ms": percentile(single, 50)}
    return row, stages


def _fake_result(engine: InferenceEngine, detections, prepared, min_confidence: float = 0.25):
    """The result the server would build for `detections` (all classes, all listed), decided by the
    server's own rule, so that encoding it costs what a real reply costs."""
    from server.core.decision import DecisionRule
    from server.core.screening import ScreenResult, Timing

    rule = DecisionRule.of(engine.manifest, None, min_confidence, max(1, len(detections)))
    decision = rule.decide(detections)
    return ScreenResult("bench", decision.verdict, decision.detections, decision.detection_verdicts, prepared.width,
                        prepared.height, engine.manifest, rule.screened, rule.listed_min, Timing(1, 1, 1, 1), 1,
                        decision.deciding_class)


class GpuSampler:
    """GPU utilisation from nvidia-smi every half second while running; nothing where there is none."""

    def __init__(self) -> None:
        self.samples: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                out = subprocess.run(["nvidia-smi", "--query-gpu=utilization.gpu", "--format=csv,noheader,nounits"],
                                     capture_output=True, text=True, timeout=5).stdout
                self.samples.append(float(out.split()[0]))
            except (OSError, ValueError, IndexError, subprocess.TimeoutExpired):
                return
            self._stop.wait(0.5)

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc):
        self._stop.set()
        self._thread.join(timeout=6)

    @property
    def mean(self) -> float | None:
        return float(np.mean(self.samples)) if self.samples else None


def bench_server(weights: Path, images: list[bytes], concurrencies: list[int], seconds: float, server_args: list[str],
                 client_processes: int = 1) -> list[dict]:
    import psutil

    rows = []
    with ServerProcess(weights, *server_args, "--log-level", "WARNING") as proc, ClientProcesses(client_processes) as load:
        connection = Connection(target=proc.target)
        load.run(connection, images, max(concurrencies), 2.0)  # warm up every batch size (and the client processes)
        supervisor = psutil.Process(proc.proc.pid)
        server_processes = [supervisor, *supervisor.children()]  # the workers, with --workers
        for clients in concurrencies:
            for p in server_processes:
                p.cpu_percent(None)
            with GpuSampler() as gpu:
                report = load.run(connection, images, clients, seconds)
            cpu = sum(p.cpu_percent(None) for p in server_processes)
            s = report.summary()
            rows.append({"name": f"server c={clients}", "clients": clients, "images_per_s": s["goodput_per_s"], "p50_ms": s["p50_ms"],
                         "server_p50_ms": s["server_p50_ms"],
                         **{k: v for k, v in s.items() if k.startswith("server_") and k.endswith("_p50_ms")},
                         "p95_ms": s["p95_ms"], "p99_ms": s["p99_ms"], "mean_batch": s["mean_batch"], "server_cpu_percent": cpu,
                         "gpu_util_percent": gpu.mean, "codes": s["codes"]})
    return rows


def describe_model(weights: Path, device: str, backend: str, batch_size: int) -> tuple[dict, str | None]:
    engine = InferenceEngine.load(WeightsStore(weights), None, device, backend, 0, batch_size)
    m = engine.manifest
    gpu = torch.cuda.get_device_name(0) if engine.backend.device.type == "cuda" else None
    return {"version": m.version, "input_size": m.input_size, "file": m.file, "backend": engine.backend.name, "device": engine.device,
            "backend_reason": engine.backend_reason, "exports": sorted(m.exports)}, gpu
