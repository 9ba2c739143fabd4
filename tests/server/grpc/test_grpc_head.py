"""The contract of a version with an image-level head, over real gRPC: additive fields only, so a
client built before v3 reads the same answer it always did."""

from __future__ import annotations

import asyncio

from tests.support.heads import with_head
from tests.support.images import jpeg
from tests.support.servers import in_process_server, small_config
from wildscreen.v1 import screening_pb2 as pb


def test_screen_and_model_info_name_both_models(untrained_weights, tmp_path):
    weights = with_head(untrained_weights, tmp_path, biases={3: 10.0}, review=0.5, flag=0.95)

    async def go():
        async with in_process_server(small_config(weights)) as (server, stub):
            answer = await stub.Screen(pb.ScreenRequest(image=jpeg(120, 90, seed=3), overlay=pb.OVERLAY_FORMAT_JPEG))
            info = await stub.GetModelInfo(pb.GetModelInfoRequest())
            return answer, info

    answer, info = asyncio.run(go())
    assert answer.verdict == pb.VERDICT_FLAG and answer.decided_by == "image-level head"
    reptile = next(s for s in answer.image_scores if s.label == "live_reptile")
    assert reptile.verdict == pb.VERDICT_FLAG and reptile.score > 0.99
    assert 0 <= reptile.heat_box.x_min < reptile.heat_box.x_max <= 120 and reptile.heat_box_normalized.x_max <= 1
    assert {s.label: s.verdict for s in answer.image_scores if s.label != "live_reptile"} == {
        "ivory": pb.VERDICT_CLEAR, "pangolin_scales": pb.VERDICT_CLEAR, "tiger_parts": pb.VERDICT_CLEAR}
    assert answer.head.sha256 and answer.head.version == answer.model.version == "v0"
    assert [(t.label, t.review_threshold) for t in answer.image_thresholds][3] == ("live_reptile", 0.5)
    assert answer.overlay
    assert info.head.sha256 == answer.head.sha256 and len(info.head_classes) == 4
    assert info.head_backbone.startswith("lite0") and "whole image" in info.head_backbone


def test_a_detector_only_version_answers_as_before(untrained_weights):
    async def go():
        async with in_process_server(small_config(untrained_weights)) as (server, stub):
            return await stub.Screen(pb.ScreenRequest(image=jpeg(120, 90, seed=3)))

    answer = asyncio.run(go())
    assert not answer.image_scores and not answer.HasField("head") and not answer.image_thresholds
    assert answer.decided_by == "" and answer.verdict == pb.VERDICT_CLEAR
