"""`quotestream release` against the stand-in tools, on a project `gcp bootstrap` set up: the
images pushed under one tag, the two flex-template specs naming exactly those images, the core
and the DAGs shipped to Composer, the release recorded in the environment. A second run builds
nothing; `--tag` of an earlier release points the environment back at it; on Cloud Build the
same steps run from cloudbuild.json."""

from __future__ import annotations

import json
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from quotestream.entrypoints.cloud_build import build_steps
from quotestream.entrypoints.composer import project_version
from quotestream.entrypoints.release import release_tag
from tests.conftest import REPO
from tests.support.standins.google_apis import GoogleApis
from tests.support.standins.project import REGION, Quotestream, bootstrap_args, release_args

pytestmark = pytest.mark.integration

DAG_FILES = sorted(path.name for path in (REPO / "dags").glob("*.py"))


def registry(project: str) -> str:
    return f"{REGION}-docker.pkg.dev/{project}/quotestream"


def spec(apis: GoogleApis, project: str, tag: str, kind: str) -> dict[str, object]:
    data = apis.storage.read(f"{project}-quotestream-templates", f"{tag}/{kind}_quotes.json")
    assert data is not None, f"no {kind} spec for {tag}"
    loaded: dict[str, object] = json.loads(data)
    return loaded


def test_cloudbuild_json_builds_pushes_then_writes_the_specs_of_those_images() -> None:
    values = {"_REGISTRY": "R", "_TAG": "T", "_TEMPLATES": "gs://B/T", "PROJECT_ID": "P"}
    commands = [shlex.join(step.command) for step in build_steps(REPO, values)]

    assert commands == [
        "docker build -f api/Dockerfile -t R/api:T .",
        "docker push R/api:T",
        "docker build -f beam_pipelines/Dockerfile --build-arg PIPELINE=load -t R/load:T .",
        "docker push R/load:T",
        "docker build -f beam_pipelines/Dockerfile --build-arg PIPELINE=extract -t R/extract:T .",
        "docker push R/extract:T",
        "gcloud dataflow flex-template build gs://B/T/load_quotes.json --image=R/load:T "
        "--sdk-language=PYTHON --metadata-file=beam_pipelines/load_quotes.metadata.json "
        "--project=P",
        "gcloud dataflow flex-template build gs://B/T/extract_quotes.json --image=R/extract:T "
        "--sdk-language=PYTHON --metadata-file=beam_pipelines/extract_quotes.metadata.json "
        "--project=P",
    ]


def test_the_dry_run_prints_every_step_and_changes_nothing(
    google_apis: GoogleApis, project: str, quotestream: Quotestream
) -> None:
    printed = quotestream(*release_args(project, "--tag=r1", "--dry-run")).splitlines()

    would = [line.removeprefix("would run: ") for line in printed if line.startswith("would ")]
    assert would[0] == f"docker build -f api/Dockerfile -t {registry(project)}/api:r1 ."
    assert sum(line.startswith("gcloud dataflow flex-template build") for line in would) == 2
    assert any("dags import" in line for line in would)
    assert would[-1].startswith("gcloud composer environments update quotestream")
    assert "QUOTESTREAM_DATAFLOW_TEMPLATES=gs://" in would[-1]
    changing = [line for line in google_apis.cli.lines() if " describe " not in line]
    assert changing == [], "a dry run only looks"


def test_a_release_ships_everything_once_and_an_earlier_tag_rolls_back_to_it(
    google_apis: GoogleApis, project: str, quotestream: Quotestream
) -> None:
    quotestream(*bootstrap_args(project))
    quotestream(*release_args(project, "--tag=r1"))

    built = {image.rsplit("/", 1)[1] for image in google_apis.cli.built}
    assert built == {"api:r1", "load:r1", "extract:r1"}
    for image in google_apis.cli.built:
        assert google_apis.registry.digest_of(image) == google_apis.cli.built[image], "pushed"
    for kind in ("load", "extract"):
        written = spec(google_apis, project, "r1", kind)
        assert written["image"] == f"{registry(project)}/{kind}:r1"
        metadata = json.loads((REPO / f"beam_pipelines/{kind}_quotes.metadata.json").read_text())
        assert written["metadata"] == metadata
    environment = google_apis.cli.environments["quotestream"]
    assert environment.variables["QUOTESTREAM_API_IMAGE"] == f"{registry(project)}/api:r1"
    assert environment.variables["QUOTESTREAM_DATAFLOW_IMAGE"] == (
        f"{registry(project)}/{{pipeline}}:r1"
    )
    assert environment.variables["QUOTESTREAM_DATAFLOW_TEMPLATES"] == (
        f"gs://{project}-quotestream-templates/r1"
    )
    assert sorted(environment.dags) == DAG_FILES
    assert environment.packages["quotestream"] == f"=={project_version(REPO)}"
    assert google_apis.cli.published == [
        f"dist/quotestream-{project_version(REPO)}-py3-none-any.whl"
    ]

    google_apis.cli.calls.clear()
    again = quotestream(*release_args(project, "--tag=r1"))
    assert not google_apis.cli.lines("docker"), "nothing built again"
    assert not [line for line in google_apis.cli.lines() if "flex-template build" in line]
    assert not [line for line in google_apis.cli.lines() if "--update-env-variables" in line]
    assert "exists: release r1" in again

    quotestream(*release_args(project, "--tag=r2"))
    google_apis.cli.calls.clear()
    quotestream(*release_args(project, "--tag=r1"))
    assert environment.variables["QUOTESTREAM_API_IMAGE"] == f"{registry(project)}/api:r1"
    assert not google_apis.cli.lines("docker"), "a rollback builds nothing"


def test_on_cloud_build_the_same_images_and_specs_come_from_cloudbuild_json(
    google_apis: GoogleApis, project: str, quotestream: Quotestream
) -> None:
    quotestream(*bootstrap_args(project))
    google_apis.cli.calls.clear()

    quotestream(*release_args(project, "--tag=r1", "--cloud-build"))

    (submit,) = [line for line in google_apis.cli.lines("gcloud") if " builds submit " in line]
    assert "--config=cloudbuild.json" in submit
    docker = google_apis.cli.lines("docker")
    assert len(docker) == 6, "the config's three builds and three pushes, run by the build"
    for kind in ("load", "extract"):
        assert spec(google_apis, project, "r1", kind)["image"] == f"{registry(project)}/{kind}:r1"


def test_the_tag_is_the_commit_of_a_checkout_without_uncommitted_changes(tmp_path: Path) -> None:
    def git(*args: str) -> str:
        return subprocess.run(
            ["git", "-c", "user.name=t", "-c", "user.email=t@example.com", *args],
            cwd=tmp_path,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()

    git("init", "-q")
    (tmp_path / "file").write_text("one")
    git("add", "file")
    git("commit", "-q", "-m", "one")

    assert release_tag(tmp_path, None) == git("rev-parse", "--short=12", "HEAD")
    (tmp_path / "file").write_text("two")
    with pytest.raises(ValueError, match="uncommitted changes"):
        release_tag(tmp_path, None)
    assert release_tag(tmp_path, "hotfix-1") == "hotfix-1"
    with pytest.raises(ValueError, match="not a Docker tag"):
        release_tag(tmp_path, "no/slashes")


def test_ci_builds_the_releases_images_with_the_standard_library_alone(tmp_path: Path) -> None:
    """What the CI workflow runs, on a Python without site-packages, a recording `docker`."""
    calls = tmp_path / "calls"
    docker = tmp_path / "docker"
    docker.write_text(f'#!/bin/sh\necho "docker $*" >> {calls}\n')
    docker.chmod(0o755)
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "PYTHONPATH": "plugins"}
    command = [sys.executable, "-S", "-m", "quotestream.entrypoints.cloud_build", "--tag", "ci"]

    subprocess.run(command, cwd=REPO, env=env, check=True, capture_output=True)

    assert calls.read_text().splitlines() == [
        "docker build -f api/Dockerfile -t quotestream-ci/api:ci .",
        "docker build -f beam_pipelines/Dockerfile --build-arg PIPELINE=load "
        "-t quotestream-ci/load:ci .",
        "docker build -f beam_pipelines/Dockerfile --build-arg PIPELINE=extract "
        "-t quotestream-ci/extract:ci .",
    ]
    workflow = (REPO / ".github" / "workflows" / "ci.yml").read_text()
    assert "PYTHONPATH=plugins python -m quotestream.entrypoints.cloud_build --tag ci" in workflow
