"""A throwaway PostgreSQL cluster shared by the review tests that need one (skipped where absent)."""

from __future__ import annotations

import pytest

from tests.support.postgres import throwaway_cluster, why_not


@pytest.fixture(scope="session")
def postgres_url():
    reason = why_not()
    if reason:
        pytest.skip(reason)
    with throwaway_cluster() as url:
        yield url
