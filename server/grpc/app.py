"""The gRPC server: our Screening service, grpc.health.v1 and reflection on one grpc.aio server.

Life cycle: bind the port, health NOT_SERVING; load and warm up the model; SERVING. On stop:
NOT_SERVING, refuse new RPCs, let in-flight ones finish within the grace period, drain the batcher.
"""

from __future__ import annotations

import asyncio
import logging

import grpc
from grpc_health.v1 import health, health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha import reflection

from server.core.keys import KeyStore
from server.grpc.auth import AuthInterceptor
from server.grpc.banks import log_banks, open_banks
from server.grpc.metrics import GrpcMetrics
from server.grpc.observability import ObservabilityInterceptor
from server.grpc.ports import PortInUse, bind, sharing_options
from server.grpc.review_feed import ReviewFeed
from server.core.screening import Screener
from server.grpc.servicer import ScreeningServicer
from server.grpc.settings import GrpcSettings
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc

log = logging.getLogger(__name__)

SERVICE_NAME = pb.DESCRIPTOR.services_by_name["Screening"].full_name
# Room for the largest accepted image plus the rest of the request; bigger messages are refused
# by gRPC itself with RESOURCE_EXHAUSTED before they are read into memory.
MESSAGE_OVERHEAD_BYTES = 64 * 1024


def _read(path) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def server_credentials(config: GrpcSettings) -> grpc.ServerCredentials | None:
    if not config.tls:
        return None
    client_ca = _read(config.tls_client_ca) if config.tls_client_ca else None
    return grpc.ssl_server_credentials(
        [(_read(config.tls_key), _read(config.tls_cert))],
        root_certificates=client_ca,
        require_client_auth=client_ca is not None,
    )


def server_options(config: GrpcSettings) -> list[tuple[str, int]]:
    limit = config.core.max_request_bytes + MESSAGE_OVERHEAD_BYTES
    options = [("grpc.max_receive_message_length", limit), ("grpc.max_send_message_length", -1),
               *sharing_options(supervised=config.worker_index >= 0)]
    if config.max_connection_age_s:
        # gRPC adds +-10 % jitter to the age, so replicas started together do not all reconnect at once.
        options += [("grpc.max_connection_age_ms", round(config.max_connection_age_s * 1000)),
                    ("grpc.max_connection_age_grace_ms", round(config.grace_period_s * 1000))]
    return options


class WildscreenServer:
    def __init__(self, config: GrpcSettings) -> None:
        self.config = config
        self.metrics = GrpcMetrics()
        self.matcher = open_banks(config.banks_database_url) if config.banks_database_url else None
        self.screener = Screener(config.core, self.metrics.screening, self.matcher)
        self.health = health.aio.HealthServicer()
        self.review_feed = ReviewFeed.from_config(config, self.metrics) if config.review_queue else None
        self.servicer = ScreeningServicer(self.screener, config.max_stream_in_flight, self.review_feed, config.supervised)
        interceptors: list[grpc.aio.ServerInterceptor] = [ObservabilityInterceptor(self.metrics)]
        if config.api_keys_file is not None:
            interceptors.append(AuthInterceptor(KeyStore(config.api_keys_file)))
        self.server = grpc.aio.server(interceptors=interceptors, options=server_options(config))
        pb_grpc.add_ScreeningServicer_to_server(self.servicer, self.server)
        health_pb2_grpc.add_HealthServicer_to_server(self.health, self.server)
        reflection.enable_server_reflection(
            (SERVICE_NAME, health_pb2.DESCRIPTOR.services_by_name["Health"].full_name, reflection.SERVICE_NAME),
            self.server,
        )
        self.port: int | None = None
        self.health_server: grpc.aio.Server | None = None
        """Plaintext grpc.health.v1 alone on --health-port: the same statuses, nothing else reachable."""
        if config.health_port:
            self.health_server = grpc.aio.server(options=sharing_options(supervised=config.worker_index >= 0))
            health_pb2_grpc.add_HealthServicer_to_server(self.health, self.health_server)

    async def _set_health(self, status: int) -> None:
        for service in ("", SERVICE_NAME):
            await self.health.set(service, status)

    async def start(self) -> int:
        """Bind and start; load the model; then report SERVING. Returns the bound port."""
        self.port = bind(self.server, self.config.address, server_credentials(self.config))
        # Every port is taken before anything starts: a port in use starts nothing.
        if self.health_server is not None:
            bind(self.health_server, self.config.address_on(self.config.health_port))
        if self.config.metrics_port:
            try:
                self.metrics.serve(self.config.host, self.config.metrics_port)
            except OSError as exc:
                raise PortInUse(f"cannot serve metrics on {self.config.address_on(self.config.metrics_port)}: "
                                f"{exc.strerror or exc}") from exc
        await self._set_health(health_pb2.HealthCheckResponse.NOT_SERVING)
        if self.review_feed is not None:
            self.review_feed.start()
        await self.server.start()
        if self.health_server is not None:
            await self.health_server.start()
        log.info("listening", extra={"fields": {"address": self.config.address, "port": self.port, "tls": self.config.tls}})
        await self.screener.load(self.config.core.model_version or None)
        if self.matcher is not None:  # after the model: the first fill keeps its embeddings
            await asyncio.get_running_loop().run_in_executor(None, self.matcher.start, self.config.banks_poll_s)
            log_banks(self.matcher)
        await self._set_health(health_pb2.HealthCheckResponse.SERVING)
        log.info("serving", extra={"fields": {"model": self.screener.runtime.manifest.version}})
        return self.port

    async def stop(self, grace_s: float | None = None) -> None:
        """NOT_SERVING, then let in-flight RPCs finish within the grace period."""
        await self.health.enter_graceful_shutdown()
        grace_s = self.config.grace_period_s if grace_s is None else grace_s
        await self.server.stop(grace_s)
        if self.health_server is not None:
            await self.health_server.stop(0)
        if self.review_feed is not None:  # what the last RPCs offered gets the grace period to go out
            await asyncio.to_thread(self.review_feed.close, grace_s)
        await self.screener.close()
        if self.matcher is not None:
            self.matcher.stop()
        log.info("stopped")

    async def wait_for_termination(self) -> None:
        await self.server.wait_for_termination()
