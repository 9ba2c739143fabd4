"""The gRPC edge: the grpc.aio server, the servicer, interceptors and the one status table."""
