"""Every command's --help says what each argument is, and no "(default: None)" noise."""

from __future__ import annotations

import argparse

import pytest


def parsers_under(parser: argparse.ArgumentParser, name: str) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(name, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub_name, sub in action.choices.items():
                found += parsers_under(sub, f"{name} {sub_name}")
    return found


def all_parsers() -> list[tuple[str, argparse.ArgumentParser]]:
    from server.review.main import build_parser as review
    from training.cli import build_parser as training
    from wildscreen.cli import build_parser as client

    return parsers_under(training(), "wildscreen-train") + parsers_under(review({}), "wildscreen-review") + \
        parsers_under(client(), "wildscreen")


@pytest.mark.parametrize("name, parser", all_parsers(), ids=lambda v: v if isinstance(v, str) else "")
def test_help_has_no_empty_defaults_and_describes_positionals(name, parser):
    text = parser.format_help()
    assert "(default: None)" not in text and "(default: False)" not in text, name
    undescribed = [a.dest for a in parser._actions if not a.option_strings and not a.help
                   and not isinstance(a, argparse._SubParsersAction)]
    assert undescribed == [], f"{name}: positional arguments without help: {undescribed}"
