"""Generated from proto/wildscreen/v1/screening.proto by `make proto`; do not edit the *_pb2* files."""
