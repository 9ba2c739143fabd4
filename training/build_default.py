"""`training build-default`: the default dataset from ../shared (issue 5, not yet built)."""

from __future__ import annotations


def add_parser(sub) -> None:
    return None
