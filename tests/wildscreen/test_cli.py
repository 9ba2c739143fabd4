"""`wildscreen screen` and `wildscreen info` against the real server."""

import json
import subprocess
import sys
from pathlib import Path

import cv2
import numpy as np

REPO = Path(__file__).resolve().parents[2]


def wildscreen(*args: str, check: bool = True) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "wildscreen.cli", *args], cwd=REPO, capture_output=True, text=True, timeout=120, check=check)


def test_screen_a_folder_prints_a_line_per_image_and_writes_overlays(untrained_server, tmp_path):
    folder = tmp_path / "listing"
    (folder / "sub").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for name in ("a.jpg", "b.png", "sub/c.jpg"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    result = wildscreen("screen", str(folder), "--server", untrained_server.target, "--overlays", str(tmp_path / "ov"), check=False)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(Path(line["path"]).name for line in lines) == ["a.jpg", "b.png", "broken.jpg", "c.jpg"]
    good = [line for line in lines if "error" not in line]
    assert all(line["verdict"] == "VERDICT_CLEAR" and line["model"]["version"] == "v0" for line in good)
    assert all(Path(line["overlay_path"]).is_file() for line in good)
    broken = next(line for line in lines if line["path"].endswith("broken.jpg"))
    assert broken["error"]["code"] == 3 and "JPEG" in broken["error"]["message"]
    assert result.returncode == 1  # one image failed


def test_info_prints_the_model(untrained_server):
    info = json.loads(wildscreen("info", "--server", untrained_server.target).stdout)
    assert info["model"]["version"] == "v0" and info["trained"] is False and len(info["classes"]) == 4


def test_unreachable_server_is_a_clear_error(tmp_path):
    result = wildscreen("info", "--server", "127.0.0.1:1", "--timeout", "2", check=False)
    assert result.returncode == 1 and "UNAVAILABLE" in result.stderr
