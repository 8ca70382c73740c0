"""Commands plugged into `quotestream` by other distributions (the development harness's demo
and bench): the core names none of them, and one that cannot load never breaks the others."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

import pytest

from quotestream.entrypoints import cli

pytestmark = pytest.mark.unit


@dataclass(frozen=True)
class PluggedIn:
    """An entry point as importlib.metadata lists it."""

    name: str
    adds: Any

    def load(self) -> Any:
        if isinstance(self.adds, Exception):
            raise self.adds
        return self.adds


def adds_hello(commands: Any) -> None:
    commands.add_parser("hello", help="says hello").set_defaults(handler=lambda _: 0)


def test_a_plugged_in_command_is_listed_once_and_a_broken_one_only_warns(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    plugged_in = [
        PluggedIn("hello", adds_hello),
        PluggedIn("hello", adds_hello),  # the same distribution, installed twice
        PluggedIn("broken", ImportError("No module named 'gone'")),
    ]
    monkeypatch.setattr(cli, "entry_points", lambda group: plugged_in)

    parser = cli._parser()

    warnings = capsys.readouterr().err.splitlines()
    assert warnings == ["quotestream: warning: command 'broken' not loaded: No module named 'gone'"]
    assert parser.parse_args(["hello"]).command == "hello"
    assert parser.parse_args(["api", "--port", "9000"]).port == 9000
    with pytest.raises(SystemExit):
        parser.parse_args(["broken"])


def test_without_plugged_in_commands_only_the_products_own_are_listed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(cli, "entry_points", lambda group: [])
    parser = cli._parser()
    commands = next(
        action for action in parser._actions if isinstance(action, argparse._SubParsersAction)
    )
    assert set(commands.choices) == {
        "api",
        "local",
        "provision",
        "pipeline",
        "composer",
        "gcp",
        "release",
    }
