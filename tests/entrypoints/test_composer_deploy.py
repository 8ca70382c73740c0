"""`quotestream composer deploy` against a fake `gcloud` and a fake `uv` on the way, which
record every call: the wheel is published to the Artifact Registry repository with a token
that never appears on a command line, pip is pointed at that repository, the PyPI packages are
set only when they differ, and only dags/ is synced."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from quotestream.entrypoints.composer import project_version, wanted_packages
from tests.conftest import REPO

pytestmark = pytest.mark.unit

REPOSITORY = "us-central1-python.pkg.dev/prod-project/quotestream"
DEPLOY = [
    sys.executable,
    "-m",
    "quotestream.entrypoints.cli",
    "composer",
    "deploy",
    "--environment",
    "prod-composer",
    "--location",
    "us-central1",
    "--python-repository",
    REPOSITORY,
]
TOKEN = "ya29.not-a-real-token"  # what the fake gcloud hands out
DAG_FILES = sorted(p.name for p in (REPO / "dags").glob("*.py"))


def test_the_dry_run_prints_the_packages_and_every_step_and_runs_nothing() -> None:
    result = subprocess.run(
        [*DEPLOY, "--dry-run"], cwd=REPO, capture_output=True, text=True, check=True
    )
    version = project_version(REPO)
    where = "--environment prod-composer --location us-central1"
    assert result.stdout.splitlines() == [
        "PyPI packages of prod-composer:",
        *(f"  {name}{specifier}" for name, specifier in wanted_packages(REPO).items()),
        "would run: scripts/uv build --wheel --out-dir dist --build-constraints "
        "build-requirements.txt --require-hashes",
        f"would run: scripts/uv publish --publish-url https://{REPOSITORY}/ --check-url "
        f"https://{REPOSITORY}/simple/ --username oauth2accesstoken "
        f"dist/quotestream-{version}-py3-none-any.whl",
        "would write the environment bucket's config/pip/pip.conf: "
        f"extra-index-url = https://{REPOSITORY}/simple/",
        "would run (when the environment's PyPI packages differ): gcloud composer environments "
        "update prod-composer --location us-central1 --update-pypi-packages-from-file "
        "composer/requirements.txt",
        *(
            f"would run: gcloud composer environments storage dags import {where} "
            f"--source dags/{name}"
            for name in DAG_FILES
        ),
    ]
    assert wanted_packages(REPO)["quotestream"] == f"=={version}"


def _fakes(tmp_path: Path, installed: dict[str, str]) -> dict[str, str]:
    """gcloud and uv that append their arguments (and uv its password's presence) to `calls`;
    gcloud describes an environment with `installed` as its PyPI packages, and `storage cp`
    keeps what it was given."""
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir(exist_ok=True)
    (tmp_path / "describe.json").write_text(
        json.dumps(
            {
                "config": {
                    "softwareConfig": {"pypiPackages": installed},
                    "dagGcsPrefix": "gs://us-central1-prod-composer-bucket/dags",
                }
            }
        )
    )
    gcloud = bin_dir / "gcloud"
    gcloud.write_text(
        "#!/bin/sh\n"
        f'echo "gcloud $*" >> {tmp_path}/calls\n'
        'case "$1 $2" in\n'
        f'  "auth print-access-token") echo {TOKEN};;\n'
        f'  "storage cp") cp "$3" {tmp_path}/copied;;\n'
        "esac\n"
        f'case "$3" in describe) cat {tmp_path}/describe.json;; esac\n'
    )
    uv = bin_dir / "uv"
    uv.write_text(
        f'#!/bin/sh\necho "uv $* password=${{UV_PUBLISH_PASSWORD:-none}}" >> {tmp_path}/calls\n'
    )
    for fake in (gcloud, uv):
        fake.chmod(fake.stat().st_mode | stat.S_IEXEC)
    return {**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}", "UV": str(uv)}


def test_a_deploy_publishes_the_wheel_points_pip_at_it_and_syncs_only_the_dags(
    tmp_path: Path,
) -> None:
    env = _fakes(tmp_path, {})
    done = subprocess.run(DEPLOY, cwd=REPO, env=env, capture_output=True, text=True, check=True)

    calls = (tmp_path / "calls").read_text().splitlines()
    published = [call for call in calls if call.startswith("uv publish")]
    assert len(published) == 1
    assert published[0].endswith(f"password={TOKEN}")
    assert TOKEN not in done.stdout + done.stderr
    assert not any(TOKEN in call for call in calls if not call.startswith("uv publish"))
    assert calls.index(published[0]) > calls.index(
        "uv build --wheel --out-dir dist --build-constraints build-requirements.txt "
        "--require-hashes password=none"
    )
    assert (tmp_path / "copied").read_text() == (
        f"[global]\nextra-index-url = https://{REPOSITORY}/simple/\n"
    )
    assert any(
        call.endswith("gs://us-central1-prod-composer-bucket/config/pip/pip.conf") for call in calls
    )
    imports = [call for call in calls if " import " in call]
    assert [call.split("--source ")[1] for call in imports] == [f"dags/{n}" for n in DAG_FILES]
    assert not any("plugins" in call for call in calls)


def test_a_deploy_updates_the_packages_only_when_the_environment_lacks_them(
    tmp_path: Path,
) -> None:
    wanted = wanted_packages(REPO)
    for installed, updates in (({}, 1), ({**wanted, "extra-package": "==1.0"}, 0)):
        calls = tmp_path / "calls"
        calls.unlink(missing_ok=True)
        env = _fakes(tmp_path, installed)
        subprocess.run(DEPLOY, cwd=REPO, env=env, capture_output=True, check=True)
        made = calls.read_text().splitlines()
        assert sum(" environments update " in call for call in made) == updates
