"""API keys: the authorization rule, and the interceptor in a server in process."""

import asyncio

import grpc
import pytest
from grpc_health.v1 import health_pb2, health_pb2_grpc

from server.core.errors import PermissionDenied, Unauthenticated
from server.core.keys import KeyStore
from server.grpc.auth import authorize
from tests.support.images import jpeg
from tests.support.servers import in_process_server, small_config
from wildscreen.v1 import screening_pb2 as pb

SCREEN, RELOAD = "/wildscreen.v1.Screening/Screen", "/wildscreen.v1.Screening/ReloadModel"


@pytest.fixture()
def keys(tmp_path):
    store = KeyStore(tmp_path / "keys.json")
    return store, store.add("platform", "screen"), store.add("ops", "admin")


def test_the_rule(keys):
    store, screen_key, admin_key = keys
    bearer = lambda key: (("authorization", f"Bearer {key}"),)  # noqa: E731
    assert authorize(store, "/grpc.health.v1.Health/Check", ()) is None
    assert authorize(store, SCREEN, bearer(screen_key)) == "screen"
    assert authorize(store, RELOAD, bearer(admin_key)) == "admin"
    with pytest.raises(Unauthenticated, match="missing"):
        authorize(store, SCREEN, ())
    with pytest.raises(Unauthenticated, match="unknown"):
        authorize(store, SCREEN, bearer("ws_not-a-key"))
    with pytest.raises(PermissionDenied, match="admin"):
        authorize(store, RELOAD, bearer(screen_key))


def test_the_interceptor_in_process(untrained_weights, keys):
    store, screen_key, _ = keys

    async def code_of_screen(stub, metadata) -> grpc.StatusCode:
        try:
            await stub.Screen(pb.ScreenRequest(image=jpeg()), metadata=metadata, timeout=60)
            return grpc.StatusCode.OK
        except grpc.aio.AioRpcError as exc:
            return exc.code()

    async def calls():
        async with in_process_server(small_config(untrained_weights, api_keys_file=store.path)) as (server, stub):
            codes = {"no key": await code_of_screen(stub, ()),
                     "screen key": await code_of_screen(stub, (("authorization", f"Bearer {screen_key}"),))}
            async with grpc.aio.insecure_channel(f"127.0.0.1:{server.port}") as channel:
                health = await health_pb2_grpc.HealthStub(channel).Check(health_pb2.HealthCheckRequest(), timeout=10)
            return codes, health.status

    codes, health = asyncio.run(calls())
    assert codes == {"no key": grpc.StatusCode.UNAUTHENTICATED, "screen key": grpc.StatusCode.OK}
    assert health == health_pb2.HealthCheckResponse.SERVING
