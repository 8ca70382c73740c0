"""`quotestream composer deploy`: ship quotestream to a Cloud Composer environment the way
Composer installs code (its "Install Python dependencies" page).

1. Build the wheel (the core and the cockpit's Airflow plugin, which Airflow finds through the
   wheel's `airflow.plugins` entry point) and publish it to the project's Artifact Registry
   Python repository; a version already there is left as it is (versions are immutable).
2. Point the environment's pip at that repository: `config/pip/pip.conf` in its bucket.
3. Set the environment's PyPI packages to composer/requirements.txt: quotestream at exactly
   this version and the few pinned packages it adds to Composer's own. Skipped when they
   match already, since Composer refuses an update that changes nothing.
4. Sync dags/. The plugins folder stays empty: nothing is imported from it.

With --dry-run it prints the PyPI packages it would set and the commands, and runs none."""

from __future__ import annotations

import json
import os
import re
import shlex
import subprocess
import tempfile
import tomllib
from dataclasses import dataclass
from pathlib import Path

REQUIREMENTS = "composer/requirements.txt"
# Artifact Registry takes an access token as the password of this user name.
TOKEN_USER = "oauth2accesstoken"  # noqa: S105 - a fixed user name, not a secret


@dataclass(frozen=True)
class Target:
    environment: str
    location: str
    # LOCATION-python.pkg.dev/PROJECT/REPOSITORY
    python_repository: str

    @property
    def upload_url(self) -> str:
        return f"https://{self.python_repository}/"

    @property
    def index_url(self) -> str:
        return f"https://{self.python_repository}/simple/"

    def flags(self) -> list[str]:
        return [self.environment, "--location", self.location]


def project_version(repo_root: Path) -> str:
    return str(tomllib.loads((repo_root / "pyproject.toml").read_text())["project"]["version"])


def wheel_path(repo_root: Path) -> Path:
    return repo_root / "dist" / f"quotestream-{project_version(repo_root)}-py3-none-any.whl"


def uv() -> str:
    """The project's uv (installed on first use), or the one UV names."""
    return os.environ.get("UV") or "scripts/uv"


def build_command() -> list[str]:
    # The build backend as pinned, with hashes: never whatever the index offers today.
    return [
        uv(),
        "build",
        "--wheel",
        "--out-dir",
        "dist",
        "--build-constraints",
        "build-requirements.txt",
        "--require-hashes",
    ]


def publish_command(repo_root: Path, target: Target) -> list[str]:
    return [
        uv(),
        "publish",
        "--publish-url",
        target.upload_url,
        # A file already in the repository with the same hash is skipped, not an error.
        "--check-url",
        target.index_url,
        "--username",
        TOKEN_USER,
        str(wheel_path(repo_root).relative_to(repo_root)),
    ]


def pip_conf(target: Target) -> str:
    return f"[global]\nextra-index-url = {target.index_url}\n"


def package_update_command(target: Target) -> list[str]:
    return [
        "gcloud",
        "composer",
        "environments",
        "update",
        *target.flags(),
        "--update-pypi-packages-from-file",
        REQUIREMENTS,
    ]


def sync_commands(repo_root: Path, target: Target) -> list[list[str]]:
    base = ["gcloud", "composer", "environments", "storage", "dags", "import"]
    where = ["--environment", target.environment, "--location", target.location]
    return [
        [*base, *where, "--source", str(path.relative_to(repo_root))]
        for path in sorted((repo_root / "dags").glob("*.py"))
    ]


def wanted_packages(repo_root: Path) -> dict[str, str]:
    """name -> specifier, as Composer's describe reports its `pypiPackages`."""
    packages = {}
    for line in (repo_root / REQUIREMENTS).read_text().splitlines():
        if line.strip() and not line.startswith("#"):
            name, specifier = re.split(r"(?=[=<>!~])", line.strip(), maxsplit=1)
            packages[_normalized(name)] = specifier
    return packages


def describe(target: Target) -> dict[str, object]:
    command = [
        "gcloud",
        "composer",
        "environments",
        "describe",
        *target.flags(),
        "--format=json(config.softwareConfig.pypiPackages,config.dagGcsPrefix)",
    ]
    described = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603
    config: dict[str, object] = json.loads(described.stdout or "{}").get("config", {})
    return config


def installed_packages(config: dict[str, object]) -> dict[str, str]:
    software = config.get("softwareConfig") or {}
    packages = software.get("pypiPackages", {}) if isinstance(software, dict) else {}
    return {_normalized(name): specifier for name, specifier in packages.items()}


def pip_conf_url(config: dict[str, object]) -> str:
    """The environment bucket's config/pip/pip.conf, beside its dags/ folder."""
    dags_prefix = str(config.get("dagGcsPrefix") or "")
    if not dags_prefix.startswith("gs://"):
        raise RuntimeError(f"the environment reports no DAGs folder in its bucket: {config}")
    bucket = dags_prefix.removeprefix("gs://").split("/", 1)[0]
    return f"gs://{bucket}/config/pip/pip.conf"


def _packages_match(wanted: dict[str, str], installed: dict[str, str]) -> bool:
    # The update adds and changes packages; others the environment has may stay.
    return all(installed.get(name) == specifier for name, specifier in wanted.items())


def _normalized(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def deploy(repo_root: Path, target: Target, dry_run: bool) -> int:
    update = package_update_command(target)
    wanted = wanted_packages(repo_root)
    version = project_version(repo_root)
    if wanted.get("quotestream") != f"=={version}":
        raise RuntimeError(f"{REQUIREMENTS} does not name quotestream=={version}: run make lock")
    print(f"PyPI packages of {target.environment}:")
    for name, specifier in wanted.items():
        print(f"  {name}{specifier}")
    if dry_run:
        print(f"would run: {shlex.join(build_command())}")
        print(f"would run: {shlex.join(publish_command(repo_root, target))}")
        print(
            f"would write the environment bucket's config/pip/pip.conf: "
            f"extra-index-url = {target.index_url}"
        )
        print(f"would run (when the environment's PyPI packages differ): {shlex.join(update)}")
        for command in sync_commands(repo_root, target):
            print(f"would run: {shlex.join(command)}")
        return 0
    _run(build_command(), repo_root)
    token = subprocess.run(
        ["gcloud", "auth", "print-access-token"],  # noqa: S607 - gcloud from PATH, as every step
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    _run(publish_command(repo_root, target), repo_root, {"UV_PUBLISH_PASSWORD": token})
    config = describe(target)
    with tempfile.TemporaryDirectory() as scratch:
        conf = Path(scratch) / "pip.conf"
        conf.write_text(pip_conf(target))
        _run(["gcloud", "storage", "cp", str(conf), pip_conf_url(config)], repo_root)
    if _packages_match(wanted, installed_packages(config)):
        print(f"PyPI packages of {target.environment} already match {REQUIREMENTS}")
    else:
        print("(Composer rebuilds its image for a package update: this takes minutes)")
        _run(update, repo_root)
    for command in sync_commands(repo_root, target):
        _run(command, repo_root)
    return 0


def _run(command: list[str], cwd: Path, secrets: dict[str, str] | None = None) -> None:
    print(f"+ {shlex.join(command)}", flush=True)
    env = {**os.environ, **secrets} if secrets else None
    subprocess.run(command, cwd=cwd, env=env, check=True)  # noqa: S603
