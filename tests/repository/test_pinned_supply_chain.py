"""What the builds fetch is named so it cannot change under them: every GitHub action by a full
commit, the build backend (hatchling) by version and hashes wherever an image builds the
project's wheel, every other package an image installs by hashes; base images by digest,
which scripts/pin-images writes and checks (it needs a registry, which tests have not: here it
runs against a stand-in `docker`)."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from packaging.requirements import Requirement

from tests.conftest import REPO

pytestmark = pytest.mark.unit

WORKFLOWS = sorted((REPO / ".github" / "workflows").glob("*.y*ml"))
BUILD_REQUIREMENTS = REPO / "build-requirements.txt"
# Every file an image build runs pip or uv from.
IMAGE_BUILDS = [
    "api/Dockerfile",
    "beam_pipelines/Dockerfile",
    "beam_pipelines/install.sh",
    "docker/airflow/Dockerfile",
    "emulators/bigquery/Dockerfile",
    "emulators/pubsub/Dockerfile",
]
PIN_IMAGES = REPO / "scripts" / "pin-images"
DIGEST = "sha256:" + "ab" * 32


def unpinned_actions(workflow: str) -> list[str]:
    """The `uses:` of a workflow that name an action by anything but a full commit (a local
    action, ./path, is the repository's own)."""
    refs = re.findall(r"^\s*(?:-\s+)?uses:\s*['\"]?([^\s'\"#]+)", workflow, re.M)
    return [
        ref
        for ref in refs
        if not ref.startswith("./") and not re.fullmatch(r"[\w.-]+/[\w./-]+@[0-9a-f]{40}", ref)
    ]


def pinned_requirements(text: str) -> dict[str, tuple[str, list[str]]]:
    """name -> (exact version, hashes) of a requirements file; a requirement that is not
    `name==version` with at least one hash is refused."""
    pins = {}
    for entry in re.sub(r"\\\n", " ", text).splitlines():
        if not entry.strip() or entry.lstrip().startswith("#"):
            continue
        requirement, *options = entry.split()
        name, equals, version = requirement.partition("==")
        hashes = [option.removeprefix("--hash=") for option in options if "--hash=" in option]
        if not equals or not hashes:
            raise ValueError(f"not pinned with hashes: {entry.strip()}")
        pins[name.lower()] = (version, hashes)
    return pins


def unpinned_installs(script: str) -> list[str]:
    """The commands of a Dockerfile or shell script that could fetch something unverified."""
    commands = re.sub(r"\\\n\s*", " ", script).splitlines()
    return [
        step.strip()
        for command in commands
        if not command.lstrip().startswith("#")
        for step in re.split(r"&&|\|\||;", command)
        if _unverified(step)
    ]


def _unverified(step: str) -> bool:
    if "pip wheel" in step:
        # Building in an isolated environment, pip fetches the backend and checks no hash.
        return "--no-build-isolation" not in step
    if re.search(r"uv\S*\s+build\b", step):
        return not ("--build-constraints" in step and "--require-hashes" in step)
    if "pip install" in step:
        local_wheel = "--no-deps" in step and re.search(r"\.whl|\$wheel", step)
        return "--require-hashes" not in step and not local_wheel
    return False


def test_every_action_is_pinned_by_a_full_commit() -> None:
    assert WORKFLOWS
    for workflow in WORKFLOWS:
        assert unpinned_actions(workflow.read_text()) == [], workflow.name


def test_an_action_by_tag_or_branch_is_caught() -> None:
    workflow = """
    steps:
      - uses: actions/checkout@v4
      - uses: "actions/setup-python@main"
      - uses: ./.github/actions/local
      - uses: astral-sh/setup-uv@d0cc045d04ccac9d8b7881df0226f9e82c39688e  # v6.8.0
    """
    assert unpinned_actions(workflow) == ["actions/checkout@v4", "actions/setup-python@main"]


def test_the_build_backend_is_pinned_by_version_and_hashes() -> None:
    pins = pinned_requirements(BUILD_REQUIREMENTS.read_text())
    build_system = tomllib.loads((REPO / "pyproject.toml").read_text())["build-system"]
    assert build_system["build-backend"] == "hatchling.build"
    for text in build_system["requires"]:
        requirement = Requirement(text)
        assert requirement.name in pins, f"{requirement.name} is not in {BUILD_REQUIREMENTS.name}"
        assert requirement.specifier.contains(pins[requirement.name][0])
    assert "hatchling" in pins


def test_a_backend_without_an_exact_version_or_hashes_is_caught() -> None:
    with pytest.raises(ValueError, match="not pinned"):
        pinned_requirements("hatchling>=1.25 --hash=sha256:00\n")
    with pytest.raises(ValueError, match="not pinned"):
        pinned_requirements("hatchling==1.33.0\n")


@pytest.mark.parametrize("build", IMAGE_BUILDS)
def test_image_builds_install_nothing_unverified(build: str) -> None:
    assert unpinned_installs((REPO / build).read_text()) == []


def test_the_image_builds_that_build_the_wheel_use_the_pinned_backend() -> None:
    assert "--require-hashes -r build-requirements.txt" in (REPO / "api/Dockerfile").read_text()
    assert "build-requirements.txt" in (REPO / "beam_pipelines/Dockerfile").read_text()
    install = (REPO / "beam_pipelines/install.sh").read_text()
    assert '--build-constraints "$backend"' in install
    assert '-r "$backend"' in install


def test_an_unpinned_build_or_install_is_caught() -> None:
    dockerfile = """
    RUN pip wheel --no-deps --wheel-dir /wheels .
    RUN pip install "uv==0.13.9"
    RUN uv build --wheel . && pip install --no-deps /wheels/*.whl
    RUN pip install --require-hashes -r requirements.txt \\
        && pip wheel --no-deps --no-build-isolation --wheel-dir /wheels .
    """
    assert unpinned_installs(dockerfile) == [
        "RUN pip wheel --no-deps --wheel-dir /wheels .",
        'RUN pip install "uv==0.13.9"',
        "RUN uv build --wheel .",
    ]


def pin_images(*args: str, path: str = os.environ["PATH"]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(PIN_IMAGES), *args],
        env={**os.environ, "PATH": path},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


DOCKERFILE = (
    """ARG LAUNCHER
ARG SDK=528.0.0
FROM ${LAUNCHER} AS launcher
FROM python:3.12-slim AS build
FROM google/cloud-sdk:${SDK}-slim
FROM build
FROM debian:bookworm-slim@sha256:"""
    + "cd" * 32
    + "\n"
)


def test_pin_images_checks_that_every_base_image_is_named_by_digest(tmp_path: Path) -> None:
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE)
    checked = pin_images("--check", str(dockerfile))
    assert checked.returncode == 1
    assert checked.stdout.splitlines()[1:] == [
        f"  {dockerfile}:4: python:3.12-slim",
        f"  {dockerfile}:5: google/cloud-sdk:528.0.0-slim",
    ]


def test_pin_images_writes_the_digest_the_registry_gives_beside_the_tag(tmp_path: Path) -> None:
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    asked = tmp_path / "asked"
    docker = bin_dir / "docker"
    docker.write_text(
        f'#!/bin/sh\necho "$4" >> {asked}\n'
        f'echo \'{{"mediaType": "application/vnd.oci.image.index.v1+json", '
        f'"digest": "{DIGEST}", "size": 1}}\'\n'
    )
    docker.chmod(0o755)
    dockerfile = tmp_path / "Dockerfile"
    dockerfile.write_text(DOCKERFILE)
    path = f"{bin_dir}:{os.environ['PATH']}"

    assert pin_images(str(dockerfile), path=path).returncode == 0
    assert dockerfile.read_text().splitlines()[2:] == [
        "FROM ${LAUNCHER} AS launcher",
        f"FROM python:3.12-slim@{DIGEST} AS build",
        f"FROM google/cloud-sdk:${{SDK}}-slim@{DIGEST}",
        "FROM build",
        f"FROM debian:bookworm-slim@{DIGEST}",
    ]
    assert asked.read_text().split() == [
        "python:3.12-slim",
        "google/cloud-sdk:528.0.0-slim",
        "debian:bookworm-slim",
    ]
    assert pin_images("--check", str(dockerfile)).returncode == 0
