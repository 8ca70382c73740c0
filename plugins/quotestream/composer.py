"""`quotestream composer deploy`: sync dags/ and plugins/quotestream to a Composer environment's
bucket with gcloud (or print the commands with --dry-run)."""

from __future__ import annotations

import shlex
import subprocess
from pathlib import Path


def deploy_commands(repo_root: Path, environment: str, location: str) -> list[list[str]]:
    base = ["gcloud", "composer", "environments", "storage"]
    where = ["--environment", environment, "--location", location]
    commands = [
        [*base, "dags", "import", *where, "--source", str(path.relative_to(repo_root))]
        for path in sorted((repo_root / "dags").glob("*.py"))
    ]
    commands.append([*base, "plugins", "import", *where, "--source", "plugins/quotestream"])
    return commands


def deploy(repo_root: Path, environment: str, location: str, dry_run: bool) -> int:
    for command in deploy_commands(repo_root, environment, location):
        print(("would run: " if dry_run else "+ ") + shlex.join(command))
        if not dry_run:
            subprocess.run(command, cwd=repo_root, check=True)  # noqa: S603
    return 0
