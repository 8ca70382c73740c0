"""Steps of gcloud (and bq, docker) commands that `gcp bootstrap` and `release` carry out: each
says why it is there, may name a read-only check that finds its work done already (so a second
run changes nothing), and runs, or with --dry-run is only printed. Checks and look-ups are
read-only, so a dry run makes them too: it prints what exists and what it would run."""

from __future__ import annotations

import os
import secrets
import shlex
import subprocess
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Step:
    what: str  # the thing it makes or changes, as a report line names it
    why: str
    command: tuple[str, ...]
    # A read-only look: whether the step's work is there already.
    done: Callable[[Shell], bool] | None = None
    # The command reads a fresh random secret on stdin, which is never shown or kept.
    reads_a_secret: bool = False


def succeeds(*command: str) -> Callable[[Shell], bool]:
    """A check that a read-only command (a describe) succeeds."""
    return lambda shell: shell.succeeds(command)


class Shell:
    """Runs commands in `cwd` without prompts (gcloud would otherwise stop to ask), with
    `project` as gcloud's project for the commands that take it from gcloud's configuration."""

    def __init__(self, cwd: Path, project: str) -> None:
        self._cwd = cwd
        self._env = {
            **os.environ,
            "CLOUDSDK_CORE_DISABLE_PROMPTS": "1",
            "CLOUDSDK_CORE_PROJECT": project,
        }

    def succeeds(self, command: Sequence[str]) -> bool:
        done = subprocess.run(  # noqa: S603 - commands built here, no shell
            list(command), cwd=self._cwd, env=self._env, capture_output=True, check=False
        )
        return done.returncode == 0

    def output(self, command: Sequence[str]) -> str | None:
        """What a read-only command prints; None when it fails (what it reads is not there)."""
        done = subprocess.run(  # noqa: S603
            list(command), cwd=self._cwd, env=self._env, capture_output=True, text=True, check=False
        )
        return done.stdout.strip() if done.returncode == 0 else None

    def run(self, command: Sequence[str], stdin: str | None = None) -> None:
        subprocess.run(  # noqa: S603
            list(command), cwd=self._cwd, env=self._env, input=stdin, text=True, check=True
        )


def carry_out(
    steps: Iterable[Step], shell: Shell, dry_run: bool, say: Callable[[str], None] = print
) -> int:
    """Each step whose check does not find it done is run (or printed); the number of steps
    that ran (or would have)."""
    changed = 0
    for step in steps:
        if step.done is not None and step.done(shell):
            say(f"exists: {step.what}")
            continue
        changed += 1
        say(f"# {step.what}: {step.why}")
        if dry_run:
            say(f"would run: {shlex.join(step.command)}")
            continue
        say(f"+ {shlex.join(step.command)}")
        # Generated here, handed over on stdin: never on a command line, in a log or a file.
        secret = secrets.token_urlsafe(32) if step.reads_a_secret else None
        shell.run(step.command, stdin=secret)
    return changed


def gcloud_dict(values: Mapping[str, str]) -> str:
    """KEY=VALUE pairs as one gcloud dict flag: with gcloud's own delimiter escape (`^|^`,
    `gcloud topic escaping`) when a value holds a comma, which the plain syntax would split."""
    delimiter = "|" if any("," in value for value in values.values()) else ","
    joined = delimiter.join(f"{key}={value}" for key, value in values.items())
    return joined if delimiter == "," else f"^{delimiter}^{joined}"
