"""Every command in a shell block (```bash) of the README and of docs/*.md is one this
repository can run: `make` targets exist, `quotestream` command lines parse with the CLI's own
parser, scripts exist and are executable, `airflow` commands parse with Airflow's own CLI
parser and name a DAG and params it has, `pytest -m` names declared markers, `gcloud` and `bq`
commands delete only quotestream's own resources. The commands that change nothing and need
no network (`make help`, `composer deploy --dry-run`, a `--check`) are run; the dry runs of
`gcp bootstrap` and `release` look at a project, so tests/gcp runs them against the stand-ins.
A command of any other kind fails the test until someone decides how it is checked."""

from __future__ import annotations

import ast
import json
import os
import re
import shlex
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

from quotestream.entrypoints.cli import _parser
from tests.conftest import REPO

BLOCK = re.compile(r"```bash\n(.*?)```", re.DOTALL)
ASSIGNMENT = re.compile(r"^[A-Z][A-Z_]*=\S+$")
# What `composer deploy` synced into an environment's plugins folder before the wheel: the
# upgrade deletes exactly these.
OLD_PLUGINS = {"quotestream", "quotestream_cockpit.py", ".airflowignore"}
# What the alerts connection's extra may hold (quotestream.entrypoints.dags.notifiers).
ALERT_EXTRAS = {
    "webhook_url",
    "email_to",
    "email_from",
    "smtp_host",
    "smtp_port",
    "smtp_starttls",
    "smtp_ca_file",
}
QUOTESTREAM = (".venv/bin/quotestream", "quotestream")


def documents() -> list[Path]:
    return [REPO / "README.md", *sorted((REPO / "docs").glob("*.md"))]


def shell_commands(path: Path) -> list[str]:
    commands = []
    for block in BLOCK.findall(path.read_text()):
        for line in block.splitlines():
            command = line.split("  #", 1)[0].strip()
            if command and not command.startswith("#"):
                commands.append(command)
    return commands


def all_commands() -> list[tuple[str, str]]:
    """(document, command) for every command of every document, in order."""
    return [
        (str(path.relative_to(REPO)), command)
        for path in documents()
        for command in shell_commands(path)
    ]


def pipeline(command: str) -> list[list[str]]:
    """The words of each command of a pipeline (`a | b`); quotes keep what they hold."""
    lexer = shlex.shlex(command, posix=True, punctuation_chars="|")
    lexer.whitespace_split = True
    segments: list[list[str]] = [[]]
    for token in lexer:
        if token == "|":
            segments.append([])
        else:
            segments[-1].append(token)
    return segments


def make_targets() -> set[str]:
    return set(re.findall(r"(?m)^([a-z][a-z-]*):", (REPO / "Makefile").read_text()))


def declared_markers() -> set[str]:
    options = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["pytest"]
    return {line.split(":", 1)[0] for line in options["ini_options"]["markers"]}


def dag_params() -> dict[str, set[str]]:
    """dag_id -> the names of its params, read from the DAG files without importing them."""
    found = {}
    for path in sorted((REPO / "dags").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not (isinstance(node, ast.Call) and getattr(node.func, "id", None) == "dag"):
                continue
            keywords = {keyword.arg: keyword.value for keyword in node.keywords}
            dag_id = keywords.get("dag_id")
            if isinstance(dag_id, ast.Constant):
                params = keywords.get("params")
                names = params.keys if isinstance(params, ast.Dict) else []
                found[str(dag_id.value)] = {
                    str(name.value) for name in names if isinstance(name, ast.Constant)
                }
    return found


@pytest.mark.unit
@pytest.mark.parametrize(("doc", "command"), all_commands())
def test_command_is_runnable_here(doc: str, command: str) -> None:
    segments = pipeline(command)
    for index, words in enumerate(segments):
        if words[0] == "echo":
            assert index < len(segments) - 1, f"{doc}: echo into nothing: {command}"
            continue
        check(words, f"{doc}: {command}")


def check(words: list[str], where: str) -> None:
    program, arguments = words[0], words[1:]
    if program == "make":
        assert set(arguments) <= make_targets(), f"no such make target in {where}"
    elif program in QUOTESTREAM:
        args, extra = _parser().parse_known_args(arguments)
        assert not extra or args.command == "pipeline", f"unknown arguments in {where}"
    elif program == ".venv/bin/python" and arguments[0].startswith("scripts/"):
        assert (REPO / arguments[0]).is_file(), f"no such script in {where}"
    elif program.startswith("scripts/"):
        assert os.access(REPO / program, os.X_OK), f"{program} is not an executable script"
    elif program == ".venv/bin/pytest":
        check_pytest(arguments, where)
    elif program == "airflow":
        check_airflow(arguments, where)
    elif words[:2] == ["docker", "compose"]:
        # The file itself is validated by tests/repository/test_compose_file.py.
        assert arguments[1:] == ["up", "--build"], f"unchecked compose command: {where}"
    elif ASSIGNMENT.match(program):
        assert all(ASSIGNMENT.match(word) for word in words), f"not only assignments: {where}"
    elif program == "gcloud":
        check_gcloud(arguments)
    elif program == "bq":
        check_teardown(arguments)
    elif program == "export" and arguments[0].startswith("AIRFLOW_CONN_"):
        check_alerts_connection(json.loads(arguments[0].split("=", 1)[1]))
    else:
        pytest.fail(f"a command of a kind no test checks: {where}")


def check_pytest(arguments: list[str], where: str) -> None:
    assert arguments[0] == "-m", f"unchecked pytest command: {where}"
    assert len(arguments) == 2, f"unchecked pytest command: {where}"
    words = set(re.findall(r"[\w-]+", arguments[1])) - {"and", "or", "not"}
    assert words <= declared_markers(), f"undeclared markers {words - declared_markers()}"


def check_airflow(arguments: list[str], where: str) -> None:
    """The DAG it names exists and the conf it passes are that DAG's params. That Airflow's
    CLI takes the command is test_airflow_commands_parse_with_airflows_own_cli's."""
    params = dag_params()
    if arguments[:2] == ["dags", "trigger"]:
        dag_id = arguments[2]
        assert dag_id in params, f"no DAG {dag_id} in {where}"
        flags = dict(zip(arguments[3::2], arguments[4::2], strict=True))
        conf = json.loads(flags.get("--conf", "{}"))
        assert set(conf) <= params[dag_id], f"{set(conf) - params[dag_id]} are not params"
    elif arguments[:2] == ["dags", "unpause"]:
        assert arguments[2] in params, f"no DAG {arguments[2]} in {where}"
    elif arguments[:2] == ["backfill", "create"]:
        dag_id = arguments[arguments.index("--dag-id") + 1]
        assert dag_id in params, f"no DAG {dag_id} in {where}"
    else:
        pytest.fail(f"unchecked airflow command: {where}")


def check_gcloud(arguments: list[str]) -> None:
    if arguments[:5] == ["composer", "environments", "storage", "plugins", "delete"]:
        # Upgrading an environment deployed before the wheel: only what was synced then.
        assert arguments[5] in OLD_PLUGINS, f"not an old plugin: {arguments[5]}"
        assert {"--environment", "--location"} <= set(arguments), arguments
        return
    check_teardown(arguments)


def check_teardown(arguments: list[str]) -> None:
    """What the owner deletes by hand after the quotestream_teardown DAG: quotestream's own
    resources, each named."""
    verb = next((word for word in ("delete", "rm") if word in arguments), None)
    assert verb, f"unchecked command: {arguments}"
    names = [word for word in arguments[arguments.index(verb) + 1 :] if not word.startswith("-")]
    assert names, f"deletes nothing named: {arguments}"
    assert all("quotestream" in name for name in names), f"not quotestream's: {arguments}"


def check_alerts_connection(connection: dict[str, object]) -> None:
    extra = connection["extra"]
    assert isinstance(extra, dict)
    assert set(extra) <= ALERT_EXTRAS, f"not read by the alerts: {set(extra) - ALERT_EXTRAS}"
    assert "password" not in connection, "a password in a doc would be a committed secret"
    assert extra.get("webhook_url", "https://").startswith("https://")


@pytest.mark.unit
def test_the_readme_has_its_two_commands_and_the_docs_theirs() -> None:
    assert {"make demo", "make test"} <= set(shell_commands(REPO / "README.md"))
    assert len(all_commands()) >= 60


def changes_nothing(words: list[str]) -> bool:
    """Commands the tests run: they read, print and check, and need no network."""
    return (
        words == ["make", "help"]
        or (
            words[0] in QUOTESTREAM
            and words[1:3] == ["composer", "deploy"]
            and "--dry-run" in words
        )
        or (words[0].startswith("scripts/settings-doc") and words[1:] == ["--check"])
    )


RUN_HERE = [
    (doc, command)
    for doc, command in all_commands()
    if "|" not in command and changes_nothing(shlex.split(command))
]


@pytest.mark.integration
@pytest.mark.parametrize(("doc", "command"), RUN_HERE)
def test_the_commands_that_change_nothing_run(doc: str, command: str) -> None:
    words = shlex.split(command)
    if words[0] == ".venv/bin/quotestream":
        # This interpreter's venv, wherever it is (the same as .venv in a checkout).
        words = [sys.executable, "-m", "quotestream.entrypoints.cli", *words[1:]]
    done = subprocess.run(words, cwd=REPO, capture_output=True, text=True, timeout=300, check=False)
    assert done.returncode == 0, f"{doc}: {command}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"


@pytest.mark.unit
def test_some_commands_are_run() -> None:
    kinds = {shlex.split(command)[0] for _, command in RUN_HERE}
    assert {"make", ".venv/bin/quotestream", "scripts/settings-doc"} <= kinds, RUN_HERE


# Airflow's CLI parser in a process of its own: importing Airflow reads (and may write) its
# configuration under AIRFLOW_HOME, which is a scratch directory here.
PARSE_AIRFLOW = """
import json, shlex, sys
from airflow.cli.cli_parser import get_parser
refused = []
for command in json.load(sys.stdin):
    try:
        get_parser().parse_args(shlex.split(command)[1:])
    except SystemExit as exit:
        if exit.code:
            refused.append(command)
print(json.dumps(refused))
"""


@pytest.mark.integration
def test_airflow_commands_parse_with_airflows_own_cli(tmp_path: Path) -> None:
    commands = [c for _, c in all_commands() if c.startswith("airflow ")]
    assert commands, "the runbooks have airflow commands"
    environment = {key: value for key, value in os.environ.items() if not key.startswith("AIRFLOW")}
    done = subprocess.run(
        [sys.executable, "-c", PARSE_AIRFLOW],
        input=json.dumps(commands),
        env={**environment, "AIRFLOW_HOME": str(tmp_path)},
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == [], done.stderr[-3000:]
