"""Connecting to a wildscreen server: channels with the right limits, TLS and API key.

Used by the `wildscreen` CLI, the benchmarks and the tests, so that all of them talk to the
server the way a platform's client would.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import grpc

# Overlays of large photos exceed gRPC's 4 MiB default.
MAX_MESSAGE_BYTES = 256 * 1024 * 1024
CHANNEL_OPTIONS = [
    ("grpc.max_receive_message_length", MAX_MESSAGE_BYTES),
    ("grpc.max_send_message_length", MAX_MESSAGE_BYTES),
]
RETRY_SERVICE_CONFIG = {
    "methodConfig": [{
        "name": [{"service": "wildscreen.v1.Screening", "method": "Screen"}, {"service": "wildscreen.v1.Screening", "method": "GetModelInfo"}],
        "retryPolicy": {
            "maxAttempts": 5, "initialBackoff": "0.1s", "maxBackoff": "5s", "backoffMultiplier": 2,
            "retryableStatusCodes": ["RESOURCE_EXHAUSTED", "UNAVAILABLE"],
        },
    }],
}
"""gRPC's own retry policy (gRFC A6), the way a platform's client should call us: a refused call is
retried after the server's `grpc-retry-pushback-ms` hint when it gives one, else with exponential
backoff and jitter, and never past the call's deadline."""
LOAD_BALANCING_POLICIES = ("pick_first", "round_robin")
"""gRPC's client-side policies: pick_first (gRPC's default) keeps one connection to the first address
that answers; round_robin connects to every address the target resolves to (a `dns:///` name of a
headless Kubernetes Service, or `ipv4:a:p,b:p`) and sends each call to the next ready one."""


def service_config(retries: bool, load_balancing: str = "pick_first") -> dict | None:
    """The one service config of a channel: the retry policy and the load-balancing policy together
    (gRPC takes a single `grpc.service_config`; a second one would replace the first)."""
    if load_balancing not in LOAD_BALANCING_POLICIES:
        raise ValueError(f"load balancing {load_balancing!r} is not one of {', '.join(LOAD_BALANCING_POLICIES)}")
    config: dict = {}
    if retries:
        config |= RETRY_SERVICE_CONFIG
    if load_balancing != "pick_first":
        config["loadBalancingConfig"] = [{load_balancing: {}}]
    return config or None


@dataclass(frozen=True)
class Connection:
    target: str = "127.0.0.1:50051"
    """host:port, or any gRPC name: `dns:///wildscreen-headless.ns.svc:50051`, `ipv4:10.0.0.1:50051,10.0.0.2:50051`."""
    tls_ca: Path | None = None
    """PEM CA that signed the server's certificate; set to use TLS."""
    client_cert: Path | None = None
    client_key: Path | None = None
    api_key: str | None = None
    server_name: str | None = None
    """Override of the TLS host name checked against the certificate."""
    retries: bool = False
    """Retry RESOURCE_EXHAUSTED and UNAVAILABLE by RETRY_SERVICE_CONFIG (load tools keep it off to count every answer)."""
    load_balancing: str = "pick_first"
    """One of LOAD_BALANCING_POLICIES; round_robin spreads calls over every address of the target."""

    def __post_init__(self) -> None:
        service_config(self.retries, self.load_balancing)  # refuses an unknown policy here, not at the first call

    def _credentials(self) -> grpc.ChannelCredentials | None:
        if self.tls_ca is None:
            return None
        cert = self.client_cert.read_bytes() if self.client_cert else None
        key = self.client_key.read_bytes() if self.client_key else None
        return grpc.ssl_channel_credentials(self.tls_ca.read_bytes(), key, cert)

    def _options(self) -> list[tuple[str, object]]:
        options = list(CHANNEL_OPTIONS)
        if self.server_name:
            options.append(("grpc.ssl_target_name_override", self.server_name))
        if self.retries:
            options.append(("grpc.enable_retries", 1))
        config = service_config(self.retries, self.load_balancing)
        if config is not None:
            options.append(("grpc.service_config", json.dumps(config)))
        return options

    def metadata(self) -> tuple[tuple[str, str], ...]:
        return (("authorization", f"Bearer {self.api_key}"),) if self.api_key else ()

    def channel(self) -> grpc.Channel:
        credentials = self._credentials()
        if credentials is None:
            return grpc.insecure_channel(self.target, options=self._options())
        return grpc.secure_channel(self.target, credentials, options=self._options())

    def aio_channel(self) -> grpc.aio.Channel:
        credentials = self._credentials()
        if credentials is None:
            return grpc.aio.insecure_channel(self.target, options=self._options())
        return grpc.aio.secure_channel(self.target, credentials, options=self._options())
