"""wildscreen's screening service: decode, batch, detect, decide, draw.

Layers, each importing only the ones below it (tests/test_architecture.py checks it). Importing a
package does nothing but import: each entry point calls `offline.stay_offline()` itself, first.

    main, workers       the wildscreen-serve entry point; the --workers supervisor, which reads the serving line
    grpc/               the gRPC edge: protos in, core calls, protos out
        settings        GrpcSettings: address, TLS, keys, ports, workers, review feed; core and log layers
        app             the grpc.aio server with health and reflection
        ports           who may listen on a port: one server alone, or a supervisor's workers together
        banks           --banks-database-url: the review database's hash banks, read and polled for matching
        servicer        Screening RPCs <-> core.screening
        status          the ONE table from domain errors to status codes
        auth            API-key interceptor (which RPCs need which role)
        observability   RPC counts and the access log
        metrics         the edge's metrics (per RPC, review feed) beside the core's, one registry
        review_feed     REVIEW/FLAG results posted to the review service in the background
    backfill/           the backfill edge: a stored catalogue screened on Ray Data (optional extra)
        backfill        the Ray Data pipeline and `wildscreen-backfill`
        screener        the per-actor callable: the core's decoder, engine and rule on batches of rows
        sources         folders, list files and Parquet of paths/URIs; ids already screened
        review          --queue: the REVIEW and FLAG rows, with their images, sent to the review service
    review/             the reviewer workbench: a second edge (HTTP) with its own store
        main            the wildscreen-review entry point: serve, reviewers add, export
        settings        ReviewSettings (data dir, database, claims, own bank) and ReviewServeSettings (address, keys, logs)
        app             log in and out, the Starlette routes
        callers         who is calling (a key, a reviewer, the local machine), the CSRF check, who is an admin
        api             the JSON API: intake, next, an item (claim, decide, undo), the list, stats
        pages           the HTML pages: queue, an item by id, the list view, stats, login
        status          the review edge's ONE table from domain errors to HTTP codes
        accounts        reviewer accounts, session cookies, CSRF tokens, review keys
        store           the queue: intake (one item per image), claims, position, the list and its counts
        listing         the list view's filters and paging, checked; natural version order
        decisions       decide, undo one's last decision, the audit log
        outcomes        what a decision says about the model's class (confirmed, moved, relabelled, rejected)
        stats           per day, model version and class: honest counts, reject reasons
        clock           UTC now, and SQLite's zone-less datetimes read back as UTC
        intake          a submitted image and screening result (boxes, matches, image-level scores), checked
        schema          the tables
        database        engine, SQLite by default, Alembic upgrade at start
        export          decided items -> an Ultralytics dataset
        banks           known-image hash banks: banks, entries, removal tombstones, polling by seq, import/export
        bank_schema     the banks' tables (beside schema's)
        bank_files      bank files: CSV, JSON lines, bare hex and threatexchange's PDQ lines, streamed
        banks_cli       `wildscreen-review banks list|create|add|remove|import|export`
        banks_api       the same over HTTP (/api/banks), for keys with the admin role only
        own_bank        confirmed photos' PDQ hashes in the own bank, added and taken back with the decisions
        env, 0001_initial, 0002_queue_order_index, 0003_workbench, 0004_banks, 0005_screen_context, 0006_embeddings  Alembic: env.py runs versions/ (schema, queue index, workbench, banks, matches and scores, embeddings)
    core/               the screening core: no protocol, no `import grpc`
        screening       the pipeline: admit, validate, decode, match, batch, decide, draw
        runtime         one loaded version: engine, image-level head, decoder, batcher on one model thread
        pacing          refusals answered at a bounded rate under a retry storm
        batching        dynamic batching over asyncio
        engine          a loaded model: batched forward and NMS, boxes back
        backbone        ImageNet EfficientNet-Lite features (whole image, tiles, last map) for the image-level head
        imagehead       the image-level head (model v3): scores per class, activation maps, heat boxes
        backbone_onnx   the head's backbone on ONNX Runtime (CPU): exported at first start, cached, checked
        pdq             PDQ hashes of decoded pixels and their 8 dihedral variants
        hash_index      faiss binary indexes: everything within a Hamming distance
        embedding       the embedding signal: the head's pooled features projected, for crops and frames
        vector_index    faiss vector indexes: everything at least this similar
        bank_rows       bank entries as numpy arrays (a million stay small)
        matching        BankMatcher: the banks in memory, refreshed in the background, swapped atomically
        registry        the one table of backends and export formats: names, devices, loaders, file names
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
        yolo_files      YOLO label-file lines and image suffixes (training and the review export)
        keys            the API-keys file
        metrics         Prometheus metrics of screening: images, latency, batches, queue depth, model
        errors          the domain error tree
    config              CoreSettings: what the core needs (model, batching, decoding, threads, limits)
    settings            the one loader: a settings dataclass from flags > WILDSCREEN_* variables > defaults
    offline             stay_offline(): no downloads at run time, called by every entry point
    logs                structured logging and its LogSettings, for both services
"""
