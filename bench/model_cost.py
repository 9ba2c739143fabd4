"""`python -m bench.model_cost --versions v2 v3`: the CPU cost per image of each version, side by side.

One thread for PyTorch and ONNX Runtime each, batches of 8, CPU time of the whole process
(`time.process_time`: ONNX Runtime computes in threads of its own, and a busy neighbour does not
inflate it as it would wall time): decode and letterbox, the detector's forward pass and NMS, and for a version with an
image-level head its crops and forward pass. Prints a table and the ratio of each version to the first
(issue 21's target: v3 at most 1.35x v2).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from bench.phases import listing_images
from server.core.decoding import ImageDecoder
from server.core.engine import InferenceEngine
from server.core.imagehead import ImageHead
from server.core.manifest import WeightsStore
from server.offline import stay_offline


def cost_ms(weights: Path, version: str, images: list[bytes], backend: str, batch: int, repeats: int) -> dict[str, float]:
    store = WeightsStore(weights)
    engine = InferenceEngine.load(store, version, "cpu", backend, 1, batch)
    spec = engine.manifest.head_spec
    head = ImageHead.load(store.verified_path(spec.file, spec.sha256), spec, torch.device("cpu"),
                         store.root / "cache", 1) if spec else None
    decoder = ImageDecoder(engine.input_size, "cpu", on_device=False)
    spent = {"decode": 0.0, "detector": 0.0, "head": 0.0}
    for repeat in range(repeats + 1):  # the first pass warms up and is not counted
        for i in range(0, len(images), batch):
            t = time.process_time()
            decoded = [decoder.prepare(b) for b in images[i:i + batch]]
            crops = [head.crops(image.pixels) for image, _ in decoded] if head else []
            t_decoded = time.process_time()
            engine.run([prepared for _, prepared in decoded], 0.25)
            t_detected = time.process_time()
            if head:
                head.run(crops)
            t_done = time.process_time()
            if repeat:
                spent["decode"] += t_decoded - t
                spent["detector"] += t_detected - t_decoded
                spent["head"] += t_done - t_detected
    per_image = {k: 1000.0 * v / (repeats * len(images)) for k, v in spent.items()}
    per_image["total"] = sum(per_image.values())
    per_image["backend"] = engine.backend.name + (f" + {head.runtime_name}" if head else "")
    return per_image


def main(argv: list[str] | None = None) -> int:
    stay_offline()
    parser = argparse.ArgumentParser(prog="python -m bench.model_cost", description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--weights", type=Path, default=Path("weights"))
    parser.add_argument("--versions", nargs="+", default=["v2", "v3"])
    parser.add_argument("--shared", type=Path, default=Path("../shared"))
    parser.add_argument("--count", type=int, default=32, help="listing-sized JPEGs from ../shared (synthetic without it)")
    parser.add_argument("--backend", default="auto", help="as the server's --backend, for every version")
    parser.add_argument("--repeats", type=int, default=2)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    images, origin = listing_images(args.shared, args.count, 0, 800, 1600)
    rows = {v: cost_ms(args.weights, v, images, args.backend, 8, args.repeats) for v in args.versions}
    first = rows[args.versions[0]]["total"]
    print(f"CPU ms per image (process CPU time, one model thread), batches of 8, {len(images)} JPEGs 800-1600 px ({origin})\n")
    print(f"{'version':<16} {'backend':<34} {'decode':>7} {'detector':>9} {'head':>7} {'total':>7} {'ratio':>6}")
    for version, r in rows.items():
        print(f"{version:<16} {r['backend']:<34} {r['decode']:>7.1f} {r['detector']:>9.1f} {r['head']:>7.1f} "
              f"{r['total']:>7.1f} {r['total'] / first:>6.2f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
