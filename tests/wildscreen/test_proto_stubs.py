"""The committed stubs in wildscreen/v1 must be what `make proto` generates from proto/ now."""

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
GENERATED = ("screening_pb2.py", "screening_pb2.pyi", "screening_pb2_grpc.py")


def test_committed_stubs_are_fresh(tmp_path):
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", "-I", "proto", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}",
         f"--grpc_python_out={tmp_path}", "proto/wildscreen/v1/screening.proto"],
        cwd=REPO, check=True,
    )
    for name in GENERATED:
        fresh = (tmp_path / "wildscreen" / "v1" / name).read_text()
        committed = (REPO / "wildscreen" / "v1" / name).read_text()
        assert fresh == committed, f"wildscreen/v1/{name} is stale: run `make proto` and commit the result"
