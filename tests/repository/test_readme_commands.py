"""Every command in the README's shell blocks is one this repository can run: `make` targets
exist, `quotestream` command lines parse, scripts exist and are executable. A command of any
other kind fails the test until someone decides how it is checked."""

from __future__ import annotations

import json
import os
import re
import shlex

import pytest

from quotestream.entrypoints.cli import _parser
from tests.conftest import REPO

pytestmark = pytest.mark.unit


BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)
ASSIGNMENT = re.compile(r"^[A-Z][A-Z_]*=\S+$")
ACCOUNTS = {"quotestream-api", "quotestream-dataflow", "quotestream-composer"}
# Granted by provisioning (Pub/Sub) and the deploy (Cloud Run) on their own resources: the
# one-time script must not grant them more widely.
OWNED_ROLES = {"roles/pubsub.publisher", "roles/pubsub.subscriber", "roles/pubsub.viewer"} | {
    "roles/run.invoker"
}
GRANT_TARGETS = {
    ("projects", "add-iam-policy-binding"),
    ("iam", "service-accounts"),
    ("iam", "roles"),
    ("storage", "buckets"),
    ("artifacts", "repositories"),
    ("secrets", "add-iam-policy-binding"),
}


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
        # The file itself is validated by tests/repository/test_compose_file.py.
        assert arguments[1:] == ["up", "--build"], f"unchecked compose command: {command}"
    elif ASSIGNMENT.match(program):
        assert all(ASSIGNMENT.match(word) for word in words), f"not only assignments: {command}"
    elif program == "gcloud":
        check_grant(arguments)
    elif program == "export" and arguments[0].startswith("AIRFLOW_CONN_"):
        connection = json.loads(arguments[0].split("=", 1)[1])
        assert connection["extra"]["webhook_url"].startswith("https://")
    else:
        pytest.fail(f"README command of a kind no test checks: {command}")


def check_grant(arguments: list[str]) -> None:
    """The one-time IAM script: accounts of this project's components, and grants of a role to
    a member, never a role provisioning or the deploy owns, never to everyone."""
    assert tuple(arguments[:2]) in GRANT_TARGETS, f"unchecked gcloud command: {arguments}"
    if arguments[:3] == ["iam", "service-accounts", "create"]:
        assert arguments[3] in ACCOUNTS, f"not a component's account: {arguments[3]}"
        return
    flags = dict(a.removeprefix("--").split("=", 1) for a in arguments if a.startswith("--"))
    if arguments[:3] == ["iam", "roles", "create"]:
        # Only what provisioning and the deploy need to own their resources' IAM.
        permissions = set(flags["permissions"].split(","))
        assert all(p.endswith(("getIamPolicy", "setIamPolicy")) for p in permissions), flags
        assert {p.split(".")[0] for p in permissions} == {"pubsub", "run"}, flags
        return
    assert "add-iam-policy-binding" in arguments[:3], f"not a grant: {arguments}"
    custom = "projects/$PROJECT/roles/"
    assert re.fullmatch(rf"(roles/|{re.escape(custom)})[a-z][a-zA-Z.]+", flags["role"]), flags
    assert flags["role"] not in OWNED_ROLES, f"{flags['role']} is granted by quotestream itself"
    assert not flags["role"].endswith(".admin"), f"least privilege: {flags['role']}"
    assert flags["member"] in {"$API", "$WORKERS", "$COMPOSER"}, flags


def test_the_one_time_iam_script_creates_every_account_it_grants_to() -> None:
    commands = [shlex.split(c) for c in readme_commands()]
    created = {w[4] for w in commands if w[1:4] == ["iam", "service-accounts", "create"]}
    assignments = dict(w.split("=", 1) for ws in commands if ASSIGNMENT.match(ws[0]) for w in ws)
    granted = {
        assignments[member].removeprefix("serviceAccount:").split("@")[0]
        for member in ("API", "WORKERS", "COMPOSER")
    }
    assert created == granted == ACCOUNTS


def test_the_readme_has_commands_to_check() -> None:
    assert len(readme_commands()) >= 10
