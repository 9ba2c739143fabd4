"""wildscreen's screening service: decode, batch, detect, decide, draw.

Layers, each importing only the ones below it (tests/test_architecture.py checks it):

    main, workers       the wildscreen-serve entry point; the --workers supervisor
    grpc/               the gRPC edge: protos in, core calls, protos out
        app             the grpc.aio server with health and reflection
        servicer        Screening RPCs <-> core.screening
        status          the ONE table from domain errors to status codes
        auth            API-key interceptor (which RPCs need which role)
        observability   RPC counts and the access log
        review_feed     REVIEW/FLAG results posted to the review service in the background
    batch/              the backfill edge: a stored catalogue screened on Ray Data (optional extra)
        backfill        the Ray Data pipeline and `wildscreen-backfill`
        screener        the per-actor callable: the core's decoder, engine and rule on batches of rows
        sources         folders, list files and Parquet of paths/URIs; ids already screened
    review/             the reviewer workbench: a second edge (HTTP) with its own store
        main            the wildscreen-review entry point: serve, reviewers add, export
        app             Starlette routes: pages and the JSON API
        status          the review edge's ONE table from domain errors to HTTP codes
        accounts        reviewer accounts, session cookies, CSRF tokens, review keys
        store           the queue: intake, claims, decisions and the audit log, stats
        intake          a submitted image and screening result, checked
        schema          the tables
        database        engine, SQLite by default, Alembic upgrade at start
        export          decided items -> an Ultralytics dataset
        env, 0001_initial, 0002_queue_order_index  Alembic: env.py runs versions/ (the first schema; the queue index in order)
    core/               the screening core: no protocol, no `import grpc`
        screening       the pipeline: admit, validate, decode, batch, decide, draw
        pacing          refusals answered at a bounded rate under a retry storm
        batching        dynamic batching over asyncio
        engine          a loaded model: batched forward and NMS, boxes back
        choice          which backends may serve: manifest entries, device, --backend; why not
        backends        PyTorch and ONNX Runtime (FP32, int8) forward passes
        tensorrt        TensorRT FP16 on CUDA: built at first start, cached, checked
        decoding        the one decoder: host, reduced-size and device decoding
        geometry        letterbox and EXIF orientation, pure functions
        detections      the one result type
        decision        one image's answer from its detections: screened classes, floors, verdict
        policy          thresholds -> verdicts, the one vectorised rule
        overlay         reviewer overlays
        manifest        weights/ contract: manifest.json, sha256, versions, a model's classes
        taxonomy        the classes (ids never change; it only grows)
        keys            the API-keys file
        metrics         Prometheus metrics
        errors          the domain error tree
    config              ServerConfig, the one settings object: flags and WILDSCREEN_* variables
    process             the serving line, and the server as a child process
    logs                structured logging
"""

from server.config import stay_offline

stay_offline()
