"""`wildscreen screen --queue URL --summary` against the real screening server and the real review
service: what needs a person is queued (once, however often it is screened), the rest is not."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np
import pytest

from tests.support.server_process import ServerProcess
from tests.support.eager import eager_weights
from tests.support.review import review_service

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def eager_server(untrained_weights, tmp_path_factory):
    """Every image with any detection calls for REVIEW, by construction (tests/support/eager.py)."""
    with ServerProcess(eager_weights(untrained_weights, tmp_path_factory.mktemp("eager")), "--max-batch-size", "2") as proc:
        yield proc


def wildscreen(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wildscreen.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=180)


def test_screen_queues_what_needs_a_person_and_prints_a_summary(eager_server, untrained_server, tmp_path):
    folder = tmp_path / "listing-42"
    folder.mkdir()
    rng = np.random.default_rng(1)
    for name in ("a.jpg", "b.png"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (96, 128, 3), dtype=np.uint8))
    with review_service(tmp_path / "review") as service:
        for _ in range(2):  # screening twice queues each image once
            eager = wildscreen("screen", str(folder), "--server", eager_server.target, "--queue", service.url, "--summary")
            assert eager.returncode == 0, eager.stderr
        *lines, totals = eager.stdout.splitlines()
        assert len(lines) == 2 and all("REVIEW" in line and "queued #" in line for line in lines), eager.stdout
        assert totals.startswith("2 images: 2 REVIEW; 0 errors"), totals
        items = service.store.page()
        assert len(items) == 2 and {i.listing_id for i in items} == {"listing-42"}
        assert all(i.model_version == "v0" and i.verdict == "REVIEW" and i.detections for i in items)

        clear = wildscreen("screen", str(folder), "--server", untrained_server.target, "--queue", service.url)
        assert clear.returncode == 0, clear.stderr
        assert all(json.loads(line)["verdict"] == "VERDICT_CLEAR" and "queued" not in json.loads(line)
                   for line in clear.stdout.splitlines())
        assert len(service.store.page()) == 2

    unreachable = wildscreen("screen", str(folder), "--server", eager_server.target, "--queue", "http://127.0.0.1:1")
    assert unreachable.returncode == 1 and "review queue unreachable" in unreachable.stderr
