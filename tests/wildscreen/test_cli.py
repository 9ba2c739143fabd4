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
    for name in ("a.jpg", "b.png", "sub/c.jpg", "sub/a.jpg"):
        cv2.imwrite(str(folder / name), rng.integers(0, 255, (60, 80, 3), dtype=np.uint8))
    (folder / "notes.txt").write_text("not an image")
    (folder / "broken.jpg").write_bytes(b"\xff\xd8 broken")
    result = wildscreen("screen", str(folder), "--server", untrained_server.target, "--overlays", str(tmp_path / "ov"), check=False)
    lines = [json.loads(line) for line in result.stdout.splitlines()]
    assert sorted(str(Path(line["path"]).relative_to(folder)) for line in lines) == [
        "a.jpg", "b.png", "broken.jpg", "sub/a.jpg", "sub/c.jpg"]
    good = [line for line in lines if "error" not in line]
    assert all(line["verdict"] == "VERDICT_CLEAR" and line["model"]["version"] == "v0" for line in good)
    assert all(line["request_id"] == line["path"] for line in good)  # stable across runs, not the stream index
    # Overlays mirror the tree: the two a.jpg do not overwrite each other.
    assert {str(Path(line["overlay_path"]).relative_to(tmp_path / "ov")) for line in good} == {
        "a.jpg", "b.jpg", "sub/a.jpg", "sub/c.jpg"}
    assert all(Path(line["overlay_path"]).is_file() for line in good)
    broken = next(line for line in lines if line["path"].endswith("broken.jpg"))
    assert broken["error"]["code"] == 3 and "JPEG" in broken["error"]["message"]
    assert "skipped 1 files" in result.stderr and "notes.txt" in result.stderr
    assert result.returncode == 1  # one image failed


def test_a_missing_file_is_a_local_error_and_the_summary_ends_with_totals(untrained_server, tmp_path):
    present = tmp_path / "present.jpg"
    cv2.imwrite(str(present), np.full((40, 50, 3), 90, dtype=np.uint8))
    missing = tmp_path / "missing.jpg"
    result = wildscreen("screen", str(present), str(missing), "--server", untrained_server.target, "--summary", check=False)
    lines = result.stdout.splitlines()
    assert f"{missing}  ERROR  cannot read the file: No such file or directory" in lines
    assert not any("empty" in line for line in lines)  # not sent: the server never saw it
    assert lines[-1] == "2 images: 1 CLEAR; 1 errors; 0 files skipped (not images by their suffix)"
    assert result.returncode == 1


def test_info_prints_the_model(untrained_server):
    info = json.loads(wildscreen("info", "--server", untrained_server.target).stdout)
    assert info["model"]["version"] == "v0" and info["trained"] is False and len(info["classes"]) == 4


def test_unreachable_server_is_a_clear_error(tmp_path):
    result = wildscreen("info", "--server", "127.0.0.1:1", "--timeout", "2", check=False)
    assert result.returncode == 1 and "UNAVAILABLE" in result.stderr
    assert "is a server listening at 127.0.0.1:1?" in result.stderr
