"""`quotestream composer deploy`: give a Composer environment the PyPI packages the DAG tasks
need, then sync dags/ and the plugins folder (the quotestream package, the .airflowignore that
keeps Airflow's plugin loader out of it, and the plugin module of the cockpit page) to its
bucket, with gcloud (or print the commands with --dry-run)."""

from __future__ import annotations

import json
import re
import shlex
import subprocess
from pathlib import Path

REQUIREMENTS = "composer/requirements.txt"


def environment_flags(environment: str, location: str) -> list[str]:
    return [environment, "--location", location]


def package_update_command(environment: str, location: str) -> list[str]:
    return [
        "gcloud",
        "composer",
        "environments",
        "update",
        *environment_flags(environment, location),
        "--update-pypi-packages-from-file",
        REQUIREMENTS,
    ]


def sync_commands(repo_root: Path, environment: str, location: str) -> list[list[str]]:
    base = ["gcloud", "composer", "environments", "storage"]
    where = ["--environment", environment, "--location", location]
    # The plugins folder first: DAGs that need new core code would fail to import before it.
    commands = [
        [*base, "plugins", "import", *where, "--source", source]
        for source in (
            "plugins/.airflowignore",
            "plugins/quotestream",
            "plugins/quotestream_cockpit.py",
        )
    ]
    commands += [
        [*base, "dags", "import", *where, "--source", str(path.relative_to(repo_root))]
        for path in sorted((repo_root / "dags").glob("*.py"))
    ]
    return commands


def wanted_packages(repo_root: Path) -> dict[str, str]:
    """name -> specifier, as Composer's describe reports its `pypiPackages`."""
    packages = {}
    for line in (repo_root / REQUIREMENTS).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, specifier = re.split(r"(?=[=<>!~])", line.strip(), maxsplit=1)
            packages[_normalized(name)] = specifier
    return packages


def installed_packages(environment: str, location: str) -> dict[str, str]:
    describe = [
        "gcloud",
        "composer",
        "environments",
        "describe",
        *environment_flags(environment, location),
        "--format=json(config.softwareConfig.pypiPackages)",
    ]
    described = subprocess.run(describe, capture_output=True, text=True, check=True)  # noqa: S603
    config = json.loads(described.stdout or "{}").get("config", {})
    packages = config.get("softwareConfig", {}).get("pypiPackages", {})
    return {_normalized(name): specifier for name, specifier in packages.items()}


def _packages_match(wanted: dict[str, str], installed: dict[str, str]) -> bool:
    # The update adds and changes packages; others the environment has may stay.
    return all(installed.get(name) == specifier for name, specifier in wanted.items())


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def deploy(repo_root: Path, environment: str, location: str, dry_run: bool) -> int:
    update = package_update_command(environment, location)
    if dry_run:
        print(f"would run (when the environment's PyPI packages differ): {shlex.join(update)}")
    elif _packages_match(wanted_packages(repo_root), installed_packages(environment, location)):
        # Composer refuses an update that changes nothing, so a second deploy must skip it.
        print(f"PyPI packages of {environment} already match {REQUIREMENTS}")
    else:
        print(f"+ {shlex.join(update)}  (Composer rebuilds its image: this takes minutes)")
        subprocess.run(update, cwd=repo_root, check=True)  # noqa: S603
    for command in sync_commands(repo_root, environment, location):
        print(("would run: " if dry_run else "+ ") + shlex.join(command))
        if not dry_run:
            subprocess.run(command, cwd=repo_root, check=True)  # noqa: S603
    return 0
