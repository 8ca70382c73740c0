"""cloudbuild.json, the one list of what a release builds: the API image, one image per
pipeline (launcher and workers at once), each pushed under the release's tag, then the two
flex-template specs naming exactly those images. Cloud Build runs it as it is (`gcloud builds
submit --config=cloudbuild.json`); `quotestream release` without Cloud Build runs the same steps
with the local docker and gcloud; CI runs its image builds (this module's `main`).

JSON rather than YAML, which Cloud Build takes as well: it is read here, in CI before anything
is installed, with the standard library alone."""

from __future__ import annotations

import argparse
import json
import re
import shlex
import subprocess
import sys
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

CONFIG = "cloudbuild.json"
DOCKER = "gcr.io/cloud-builders/docker"
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class BuildStep:
    id: str
    command: tuple[str, ...]  # as the local tools take it: docker ..., gcloud ...

    @property
    def image(self) -> str | None:
        """The image a docker build tags or a push pushes."""
        args = self.command
        if args[:2] == ("docker", "build"):
            return args[args.index("-t") + 1]
        if args[:2] == ("docker", "push"):
            return args[2]
        return None

    @property
    def spec(self) -> str | None:
        """The gs:// path a flex-template build writes."""
        if self.command[1:4] == ("dataflow", "flex-template", "build"):
            return self.command[4]
        return None


def substitutions(registry: str, tag: str, templates: str) -> dict[str, str]:
    """The config's own (Cloud Build wants them to start with `_`)."""
    return {"_REGISTRY": registry, "_TAG": tag, "_TEMPLATES": templates}


def build_steps(repo_root: Path, values: Mapping[str, str]) -> list[BuildStep]:
    """The config's steps with `values` substituted (PROJECT_ID among them, which Cloud Build
    fills in by itself), as commands for the local docker and gcloud."""
    config = json.loads((repo_root / CONFIG).read_text())
    steps = []
    for step in config["steps"]:
        program = "docker" if step["name"] == DOCKER else step["entrypoint"]
        args = [_substituted(arg, values) for arg in step["args"]]
        steps.append(BuildStep(step["id"], (program, *args)))
    return steps


def _substituted(text: str, values: Mapping[str, str]) -> str:
    def value(match: re.Match[str]) -> str:
        name = match[1] or match[2]
        if name not in values:
            raise KeyError(f"{CONFIG} uses ${name}, which has no value")
        return values[name]

    return _VARIABLE.sub(value, text)


def main(argv: Sequence[str] | None = None) -> int:
    """CI: build the release's images exactly as the release does, and push nothing."""
    parser = argparse.ArgumentParser(description=main.__doc__)
    parser.add_argument("--registry", default="quotestream-ci")
    parser.add_argument("--tag", default="ci")
    args = parser.parse_args(argv)
    repo_root = Path(__file__).resolve().parents[3]
    values = substitutions(args.registry, args.tag, "gs://unused") | {"PROJECT_ID": "unused"}
    for step in build_steps(repo_root, values):
        if step.command[:2] == ("docker", "build"):
            print(f"+ {shlex.join(step.command)}", flush=True)
            subprocess.run(step.command, cwd=repo_root, check=True)  # noqa: S603
    return 0


if __name__ == "__main__":
    sys.exit(main())
