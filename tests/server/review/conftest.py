"""A throwaway PostgreSQL cluster shared by the review tests that need one (skipped where absent),
and an empty database on SQLite and on PostgreSQL for the tests that must hold on both."""

from __future__ import annotations

import pytest
from sqlalchemy import create_engine, text

from server.review.database import default_url
from tests.support.postgres import throwaway_cluster, why_not


@pytest.fixture(scope="session")
def postgres_url():
    reason = why_not()
    if reason:
        pytest.skip(reason)
    with throwaway_cluster() as url:
        yield url


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def empty_database(request, tmp_path):
    """The URL of an empty database: a SQLite file, or a database of its own in the PostgreSQL cluster."""
    if request.param == "sqlite":
        yield default_url(tmp_path)
        return
    base = request.getfixturevalue("postgres_url")
    name = f"test_{abs(hash(request.node.nodeid)) % 10**8}"
    admin = create_engine(base.replace("postgresql://", "postgresql+psycopg://"), isolation_level="AUTOCOMMIT")
    with admin.connect() as connection:
        connection.execute(text(f"CREATE DATABASE {name}"))
    yield base.rsplit("/", 1)[0] + "/" + name
    with admin.connect() as connection:
        connection.execute(text(f"DROP DATABASE {name} WITH (FORCE)"))
    admin.dispose()
