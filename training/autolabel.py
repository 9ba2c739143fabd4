"""`training autolabel`: propose boxes for images labelled per image (issue 5, not yet built)."""

from __future__ import annotations


def add_parser(sub) -> None:
    return None
