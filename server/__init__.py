"""wildscreen's screening service: decode, batch, detect, decide, draw.

Layout, one concern per module:
    config      ServerConfig: flags and WILDSCREEN_* variables
    taxonomy    the classes (ids never change)
    manifest    weights/ contract: manifest.json, sha256, versions
    policy      thresholds -> verdicts
    imageio     the one image decoder (and overlay encoder)
    geometry    letterbox and EXIF orientation, pure functions
    detections  the one result type
    backends    PyTorch and ONNX Runtime forward passes
    engine      a loaded model: prepare, run, warm up
    batching    dynamic batching over asyncio
    screening   the protocol-agnostic core
    overlay     reviewer overlays
    servicer    gRPC <-> core
    app         the grpc.aio server with health and reflection
    main        the wildscreen-serve entry point
"""

import os

# wildscreen never downloads at run time: tell Ultralytics so before anything imports it.
os.environ.setdefault("YOLO_OFFLINE", "1")
