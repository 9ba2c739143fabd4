"""`wildscreen-review banks ...` as an operator runs it: create, import a partner's list with a bad
line, add an image's hash, remove, export, list; and clear refusals."""

from __future__ import annotations

import os
import subprocess
import sys

import cv2

from tests.server.core.test_pdq import photo


def banks(data_dir, *args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "server.review.main", "--data-dir", str(data_dir), "banks", *args],
                          capture_output=True, text=True, timeout=120, input=stdin)


def test_create_import_add_remove_export_and_list(tmp_path):
    data = tmp_path / "review"
    done = banks(data, "create", "partner", "--action", "review", "--organisation", "TRAFFIC")
    assert done.returncode == 0 and "REVIEW" in done.stdout, done.stderr

    good = [os.urandom(32).hex() for _ in range(20)]
    listing = tmp_path / "partner.csv"
    listing.write_text("\n".join(["hash,label,reference_id", *[f"{h},ivory,C-{i}" for i, h in enumerate(good)],
                                  "abc,ivory,C-bad"]) + "\n")
    done = banks(data, "import", "partner", str(listing), "--by", "ops")
    assert done.returncode == 1, done.stderr  # loaded, with a bad line to look at
    assert "line 22: a PDQ hash is 64 hex characters" in done.stderr and "20 added" in done.stdout

    image = tmp_path / "tusk.jpg"
    cv2.imwrite(str(image), photo(7))
    done = banks(data, "add", "partner", str(image), "--label", "ivory", "--reference-id", "L-9", "--by", "alice")
    assert done.returncode == 0 and "added" in done.stdout, done.stderr
    done = banks(data, "remove", "partner", good[0], "--by", "alice")
    assert done.returncode == 0, done.stderr

    out = tmp_path / "export.csv"
    done = banks(data, "export", "partner", str(out))
    assert done.returncode == 0 and "exported 20 entries" in done.stdout, done.stderr
    rows = out.read_text().splitlines()
    assert rows[0] == "hash,label,reference_id,organisation,quality,expires_at,added_at" and len(rows) == 21
    assert not any(good[0] in row for row in rows) and any(",L-9," in row for row in rows)
    assert "partner\tREVIEW\t20 entries\tTRAFFIC" in banks(data, "list").stdout

    jsonl = banks(data, "export", "partner", "-", "--format", "jsonl")
    assert len(jsonl.stdout.splitlines()) == 20
    done = banks(data, "create", "mirror", "--action", "FLAG", "--organisation", "us")
    done = banks(data, "import", "mirror", "-", stdin=jsonl.stdout)
    assert done.returncode == 0 and "20 added" in done.stdout, done.stderr


def test_refusals_are_clear_and_change_nothing(tmp_path):
    data = tmp_path / "review"
    done = banks(data, "import", "nope", str(tmp_path / "missing.csv"))
    assert done.returncode == 2 and "no bank 'nope'" in done.stderr
    banks(data, "create", "own", "--action", "FLAG", "--organisation", "us")
    assert banks(data, "create", "own", "--action", "FLAG", "--organisation", "us").returncode == 2
    done = banks(data, "add", "own", "12" * 31)
    assert done.returncode == 2 and "64 hex characters" in done.stderr
    listing = tmp_path / "wrong.txt"
    listing.write_text("this is not a hash list\n" * 5)
    done = banks(data, "import", "own", str(listing), "--max-bad-lines", "2")
    assert done.returncode == 2 and "nothing was imported" in done.stderr
    assert "own\tFLAG\t0 entries" in banks(data, "list").stdout
    usage = banks(data, "--help")
    assert usage.returncode == 0 and "import" in usage.stdout and "never images" in usage.stdout
