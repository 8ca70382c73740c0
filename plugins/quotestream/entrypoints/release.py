"""`quotestream release`: everything a bootstrapped project runs, under one immutable tag.

1. Builds and pushes the API image and the two pipeline images as REGISTRY/NAME:TAG (the
   Docker repository's tags are immutable), then writes both flex-template specs for exactly
   those images to gs://TEMPLATES_BUCKET/TAG/: the steps of cloudbuild.json, run with the
   local docker and gcloud, or on Cloud Build (--cloud-build) from the same file.
2. Ships the core to the Composer environment and syncs dags/ (`composer deploy`).
3. Records QUOTESTREAM_API_IMAGE, QUOTESTREAM_DATAFLOW_IMAGE and QUOTESTREAM_DATAFLOW_TEMPLATES
   in the environment: the next deploy and launches use this release.

TAG is the commit (a clean checkout's short hash) or --tag. What exists already is not built
again: a second run changes nothing, and `--tag` of an earlier release points the environment
back at its images and specs (a rollback). `--dry-run` looks, and prints what it would do."""

from __future__ import annotations

import json
import os
import re
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from quotestream.entrypoints import composer
from quotestream.entrypoints.cloud_build import CONFIG, BuildStep, build_steps, substitutions
from quotestream.entrypoints.gcloud_steps import Shell, Step, carry_out, gcloud_dict, succeeds
from quotestream.entrypoints.gcp_bootstrap import Layout

_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}")  # Docker's tag grammar


def release_tag(repo_root: Path, given: str | None) -> str:
    if given:
        if not _TAG.fullmatch(given):
            raise ValueError(f"--tag {given!r} is not a Docker tag")
        return given
    status = subprocess.run(
        ["git", "status", "--porcelain"],  # noqa: S607
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    if status.strip():
        raise ValueError("the checkout has uncommitted changes: commit, or name the release --tag")
    return subprocess.run(
        ["git", "rev-parse", "--short=12", "HEAD"],  # noqa: S607
        cwd=repo_root,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


@dataclass(frozen=True)
class Release:
    layout: Layout
    tag: str

    @property
    def api_image(self) -> str:
        return f"{self.layout.registry}/api:{self.tag}"

    @property
    def dataflow_image(self) -> str:
        """Each pipeline's image, as the job runner fills in `{pipeline}`."""
        return f"{self.layout.registry}/{{pipeline}}:{self.tag}"

    @property
    def templates(self) -> str:
        return f"gs://{self.layout.templates_bucket}/{self.tag}"

    def substitutions(self) -> dict[str, str]:
        values = substitutions(self.layout.registry, self.tag, self.templates)
        return values | {"PROJECT_ID": self.layout.project}

    def environment_variables(self) -> dict[str, str]:
        return {
            "QUOTESTREAM_API_IMAGE": self.api_image,
            "QUOTESTREAM_DATAFLOW_IMAGE": self.dataflow_image,
            "QUOTESTREAM_DATAFLOW_TEMPLATES": self.templates,
        }


def _exists(step: BuildStep) -> tuple[str, ...]:
    """The read-only command that succeeds once what `step` makes is there."""
    if step.image is not None:
        return ("gcloud", "artifacts", "docker", "images", "describe", step.image)
    if step.spec is not None:
        return ("gcloud", "storage", "objects", "describe", step.spec)
    raise ValueError(f"{CONFIG}: step {step.id} makes neither an image nor a spec")


def build(release: Release, repo_root: Path, on_cloud_build: bool) -> Iterator[Step]:
    made = build_steps(repo_root, release.substitutions())
    if on_cloud_build:
        values = {k: v for k, v in release.substitutions().items() if k.startswith("_")}
        yield Step(
            f"images and specs of {release.tag}",
            f"{CONFIG}'s steps, on Cloud Build",
            (
                "gcloud",
                "builds",
                "submit",
                f"--config={CONFIG}",
                f"--substitutions={gcloud_dict(values)}",
                f"--project={release.layout.project}",
                ".",
            ),
            done=lambda shell: all(shell.succeeds(_exists(step)) for step in made),
        )
        return
    for step in made:
        yield Step(
            f"{step.id} ({step.image or step.spec})",
            f"{CONFIG}'s step {step.id}",
            step.command,
            done=succeeds(*_exists(step)),
        )


def record(release: Release, shell: Shell) -> Step:
    layout = release.layout
    where = [layout.environment, f"--location={layout.region}", f"--project={layout.project}"]
    describe = ["gcloud", "composer", "environments", "describe", *where]
    describe.append("--format=json(config.softwareConfig.envVariables)")
    wanted = release.environment_variables()

    def recorded(shell: Shell) -> bool:
        described = shell.output(describe)
        if described is None:
            return False  # no environment yet (a dry run before the bootstrap)
        config = json.loads(described or "{}").get("config", {})
        current = (config.get("softwareConfig") or {}).get("envVariables") or {}
        return all(current.get(key) == value for key, value in wanted.items())

    return Step(
        f"release {release.tag} in {layout.environment}'s settings",
        "the next API deploy and job launches use its images and specs",
        (
            "gcloud",
            "composer",
            "environments",
            "update",
            *where,
            f"--update-env-variables={gcloud_dict(wanted)}",
        ),
        done=recorded,
    )


def release(
    layout: Layout, tag: str | None, on_cloud_build: bool, repo_root: Path, dry_run: bool
) -> int:
    made = Release(layout, release_tag(repo_root, tag))
    print(f"release {made.tag} to {layout.project}: {made.api_image}, {made.dataflow_image}")
    # composer deploy's gcloud commands take the project from gcloud's configuration.
    os.environ["CLOUDSDK_CORE_PROJECT"] = layout.project
    shell = Shell(repo_root, layout.project)
    carry_out(build(made, repo_root, on_cloud_build), shell, dry_run)
    target = composer.Target(layout.environment, layout.region, layout.python_index)
    composer.deploy(repo_root, target, dry_run)
    carry_out([record(made, shell)], shell, dry_run)
    return 0
