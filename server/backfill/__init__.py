"""Batch screening of a catalogue already in storage: `python -m server.backfill` / `wildscreen-backfill`.

    sources    what to screen: a folder, a list file or Parquet of paths/URIs -> an (id, path) table;
               what is already screened (resume); the bytes behind a path or URI
    screener   the Ray-free callable: bytes -> rows, with the server's decoder, engine and rule
    backfill   the Ray Data pipeline and its command line

An edge on the core like the gRPC one, without a protocol: it imports `server.core` and never grpc.
Ray and pyarrow are the optional `backfill` extra; only this package imports them.
"""
