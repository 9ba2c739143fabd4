"""Who may listen on a port: one server alone, or the --workers supervisor's own workers together.

gRPC's Python server sets SO_REUSEPORT unless told not to. Left on, a second `wildscreen-serve`
started on a port that is already serving binds it too, and the kernel splits the connections
between the two: clients of the running server get answers from one still loading. So a lone
server binds exclusively, and only a supervisor's workers (worker_index >= 0) share their port.
"""

from __future__ import annotations

import socket
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import grpc


class PortInUse(OSError):
    """Another process listens on the address: the server refuses to start (exit code 2)."""


def sharing_options(supervised: bool) -> list[tuple[str, int]]:
    """The gRPC server option that makes a port exclusive, or shared within a supervisor's workers."""
    return [("grpc.so_reuseport", 1 if supervised else 0)]


def bind(server: grpc.aio.Server, address: str, credentials: grpc.ServerCredentials | None = None) -> int:
    """Bind `address` and return the port; PortInUse when gRPC cannot (it only says "Failed to bind")."""
    try:
        port = server.add_insecure_port(address) if credentials is None else server.add_secure_port(address, credentials)
    except RuntimeError:
        port = 0
    if not port:
        raise PortInUse(f"cannot listen on {address}: the address is in use (is another server running there?)")
    return port


def reserve_port(host: str, port: int) -> socket.socket:
    """A bound (not listening) SO_REUSEPORT socket that holds the port while a supervisor's workers
    start: with --port 0 it picks the port; the workers' sockets join it, and it gets no connections.

    A plain bind comes first: it fails while any server listens there (a supervisor's workers too,
    since a SO_REUSEPORT group admits only sockets that set it as well), so a second supervisor never
    joins a running one's group. Between that check and the holder's own bind lies a microsecond in
    which another server could take the port; the workers would then fail to bind and exit."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    address: tuple = (host.strip("[]"), port)
    with socket.socket(family, socket.SOCK_STREAM) as probe:
        try:
            probe.bind(address)
        except OSError as exc:
            raise PortInUse(f"cannot listen on {host}:{port}: {exc.strerror or exc} "
                            "(is another server running there?)") from exc
        address = probe.getsockname()[:2]
    holder = socket.socket(family, socket.SOCK_STREAM)
    holder.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    holder.bind(address)
    return holder
