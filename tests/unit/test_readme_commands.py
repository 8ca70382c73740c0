"""Every command in the README's shell blocks is one this repository can run: `make` targets
exist, `quotestream` command lines parse, scripts exist and are executable. A command of any
other kind fails the test until someone decides how it is checked."""

from __future__ import annotations

import json
import os
import re
import shlex
from pathlib import Path

import pytest

from quotestream.cli import _parser

pytestmark = pytest.mark.unit

REPO = Path(__file__).resolve().parents[2]
BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)


def readme_commands() -> list[str]:
    commands = []
    for block in BLOCK.findall((REPO / "README.md").read_text()):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def make_targets() -> set[str]:
    return set(re.findall(r"(?m)^([a-z][a-z-]*):", (REPO / "Makefile").read_text()))


@pytest.mark.parametrize("command", readme_commands())
def test_readme_command_is_runnable_here(command: str) -> None:
    words = shlex.split(command)
    program, arguments = words[0], words[1:]
    if program == "make":
        assert set(arguments) <= make_targets(), f"no such make target in: {command}"
    elif program in (".venv/bin/quotestream", "quotestream"):
        args, extra = _parser().parse_known_args(arguments)
        assert not extra or args.command == "pipeline", f"unknown arguments in: {command}"
    elif program.startswith("scripts/"):
        assert os.access(REPO / program, os.X_OK), f"{program} is not an executable script"
    elif words[:2] == ["docker", "compose"]:
        # The file itself is validated by tests/integration/test_compose_file.py.
        assert arguments[1:] == ["up", "--build"], f"unchecked compose command: {command}"
    elif program == "export" and arguments[0].startswith("AIRFLOW_CONN_"):
        connection = json.loads(arguments[0].split("=", 1)[1])
        assert connection["extra"]["webhook_url"].startswith("https://")
    else:
        pytest.fail(f"README command of a kind no test checks: {command}")


def test_the_readme_has_commands_to_check() -> None:
    assert len(readme_commands()) >= 10
