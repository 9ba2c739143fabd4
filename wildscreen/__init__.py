"""wildscreen's client side: the generated gRPC stubs (`wildscreen.v1`) and the `wildscreen` CLI."""
