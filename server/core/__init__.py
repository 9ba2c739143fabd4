"""The screening core: no protocol, no gRPC. Edges (server.grpc, later HTTP) call into it."""
