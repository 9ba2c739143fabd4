"""A throwaway PostgreSQL cluster for one test session: initdb, pg_ctl start on a free loopback
port, trust auth for a `review` user, removed afterwards. PostgreSQL refuses to run as root, so
as root the cluster runs as the `postgres` user that Debian's package creates."""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from tests.support.ports import free_port


def postgres_bin() -> Path | None:
    found = shutil.which("pg_ctl")
    if found:
        return Path(os.path.realpath(found)).parent
    versions = sorted(glob.glob("/usr/lib/postgresql/*/bin/pg_ctl"))
    return Path(versions[-1]).parent if versions else None


def why_not() -> str | None:
    """None when a cluster can be started here, else the reason (for pytest.skip)."""
    if postgres_bin() is None:
        return "no PostgreSQL server: apt-get install -y postgresql (CI's .ci/run does)"
    if os.geteuid() == 0:
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            return "running as root and there is no 'postgres' user to run the cluster as"
    return None


@contextlib.contextmanager
def throwaway_cluster() -> Iterator[str]:
    """Yields a SQLAlchemy URL of an empty database."""
    bin_dir = postgres_bin()
    root = Path(tempfile.mkdtemp(prefix="wildscreen-pg-"))
    data, port = root / "data", free_port()
    as_user: list[str] = []
    if os.geteuid() == 0:
        user = pwd.getpwnam("postgres")
        os.chown(root, user.pw_uid, user.pw_gid)
        as_user = ["runuser", "-u", "postgres", "--"]

    def run(*args: str) -> None:
        subprocess.run([*as_user, *args], check=True, capture_output=True, timeout=120, cwd=root)

    run(str(bin_dir / "initdb"), "-D", str(data), "-U", "review", "--auth=trust", "-E", "UTF8", "--no-sync")
    options = f"-c listen_addresses=127.0.0.1 -p {port} -k {root} -c fsync=off"
    run(str(bin_dir / "pg_ctl"), "-D", str(data), "-o", options, "-l", str(root / "log"), "-w", "-t", "60", "start")
    try:
        yield f"postgresql://review@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, str(bin_dir / "pg_ctl"), "-D", str(data), "-m", "immediate", "stop"],
                       capture_output=True, timeout=60, cwd=root)
        shutil.rmtree(root, ignore_errors=True)
