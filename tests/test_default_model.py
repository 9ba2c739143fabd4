"""The shipped model, served from weights/ the way `make serve` serves it, finds each class it was
trained on in a test-split image of that class (../shared; skipped where it is absent)."""

import grpc
import pytest

from server.core.manifest import WeightsStore
from tests.support.server_process import REPO, ServerProcess
from tests.support.shared import SHARED
from training.steps.evaluate import example_image
from wildscreen.v1 import screening_pb2 as pb
from wildscreen.v1 import screening_pb2_grpc as pb_grpc

WEIGHTS = REPO / "weights"
MANIFEST = WeightsStore(WEIGHTS).get()
EXAMPLES = MANIFEST.metrics.get("examples", {})

pytestmark = pytest.mark.skipif(not MANIFEST.trained, reason="the current model in weights/ is the untrained placeholder")


def example_path(label: str):
    path = example_image(EXAMPLES[label]["image"], SHARED)
    if not path.exists():
        pytest.skip(f"{path} is absent (../shared holds the real images; CI has it, a fresh clone may not)")
    return path


@pytest.fixture(scope="module")
def shipped_server():
    with ServerProcess(WEIGHTS) as proc:
        yield proc


def test_the_manifest_names_an_example_for_each_class_with_test_data():
    assert EXAMPLES, "the manifest of the current model records no test examples"


@pytest.mark.parametrize("label", sorted(EXAMPLES))
def test_each_class_is_found_in_a_test_image_of_it(shipped_server, label):
    with grpc.insecure_channel(shipped_server.target) as channel:
        response = pb_grpc.ScreeningStub(channel).Screen(pb.ScreenRequest(image=example_path(label).read_bytes()), timeout=60)
    assert response.model.version == MANIFEST.version and response.model.sha256 == MANIFEST.sha256
    assert response.detections and response.detections[0].label == label
    assert response.verdict in (pb.VERDICT_REVIEW, pb.VERDICT_FLAG)


def test_the_shipped_versions_serve_with_and_without_the_image_level_head(shipped_server):
    """`make serve` serves the current version with its head; an older detector-only version still
    loads from the same manifest (`--model-version v2`)."""
    with grpc.insecure_channel(shipped_server.target) as channel:
        info = pb_grpc.ScreeningStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    if MANIFEST.head is None:
        pytest.skip("the current version has no image-level head")
    assert info.head.sha256 == MANIFEST.head["sha256"] and len(info.head_classes) == len(MANIFEST.classes)
    older = [v for v in WeightsStore(WEIGHTS).versions() if WeightsStore(WEIGHTS).get(v).head is None
             and WeightsStore(WEIGHTS).get(v).trained]
    with ServerProcess(WEIGHTS, "--model-version", older[-1]) as proc, grpc.insecure_channel(proc.target) as channel:
        before = pb_grpc.ScreeningStub(channel).GetModelInfo(pb.GetModelInfoRequest(), timeout=30)
    assert before.model.version == older[-1] and not before.HasField("head") and not before.head_classes
