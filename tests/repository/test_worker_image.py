"""The Dataflow worker image's install logic, without Docker: beam_pipelines/Dockerfile's own
install commands (beam_pipelines/install.sh) run into a brand-new venv, which must then
unpickle every DoFn of both pipelines as Dataflow ships them to the workers.

Before the project is installed (what Beam's stock worker image amounts to) the project's
DoFns must fail with ModuleNotFoundError: that is what proves this test can fail.
"""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import zipfile
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import REPO

pytestmark = pytest.mark.integration

DOCKERFILE = REPO / "beam_pipelines" / "Dockerfile"
API_DOCKERFILE = REPO / "api" / "Dockerfile"
INSTALL_SCRIPT = "beam_pipelines/install.sh"
# Where the Dockerfile puts the project's sources for install.sh to build.
SOURCE_IN_IMAGE = "/tmp/quotestream"
UV = REPO / "scripts" / "uv"

# How a flex-template launch runs the entry points on Dataflow. --dry_run stops short of
# submitting; it also skips the GCS soft-delete check of temp_location, which without it
# retries for credentials for minutes offline, at Pipeline() already.
DATAFLOW_ARGV = [
    "--runner=DataflowRunner",
    "--project=quotestream-test",
    "--region=us-central1",
    "--temp_location=gs://quotestream-test/tmp",
    "--dry_run=True",
    # The launcher would run `pip freeze` for a list staged beside the job; no DoFn changes.
    "--experiments=disable_logging_submission_environment",
]

# The project's own DoFns that must be among them: parsing, the BigQuery writes, the bars,
# and the extract's fetch and publish.
PROJECT_DOFNS = {
    "quotestream.beam.parse.ParseQuoteFn",
    "quotestream.beam.sinks.WriteShardFn",
    "quotestream.beam.bars.MinuteBarsFn",
    "quotestream.beam.extract.FetchNewQuotesFn",
    "quotestream.beam.extract.PublishQuotesFn",
}

# Run by the venv's python with -I: no PYTHONPATH, no user site, no current directory.
UNPICKLE = """
import importlib.util, json, sys
from pathlib import Path
from apache_beam.internal import pickler
for path in sorted(Path(sys.argv[1]).glob("*.dofn")):
    try:
        fn = pickler.loads(path.read_bytes())[0]
    except Exception as error:
        print(json.dumps({"file": path.name, "error": type(error).__name__,
                          "module": getattr(error, "name", None), "message": str(error)}))
    else:
        kind = type(fn)
        print(json.dumps({"file": path.name, "class": f"{kind.__module__}.{kind.__qualname__}"}))
project = sys.modules.get("quotestream")
print(json.dumps({"prefix": sys.prefix, "quotestream": getattr(project, "__file__", None),
                  "quotestream_dev": importlib.util.find_spec("quotestream_dev") is not None}))
"""


@dataclass(frozen=True)
class ShippedDoFn:
    file: str
    pipeline: str
    transform: str
    class_name: str
    payload: bytes


def shipped_dofns() -> list[ShippedDoFn]:
    """Every ParDo's pickled DoFn in the jobs DataflowRunner would submit for both pipelines."""
    from apache_beam.internal import pickler
    from apache_beam.portability import common_urns
    from apache_beam.portability.api import beam_runner_api_pb2

    from quotestream.beam.run import extract_pipeline, load_pipeline
    from quotestream.settings import Settings

    # As launch() passes them: the push relay's key never reaches the workers.
    settings = Settings(
        target="gcp", project="quotestream-test", api_url="https://api.quotestream.example"
    ).model_copy(update={"api_key": None})
    found: list[ShippedDoFn] = []
    for name, build in (("load", load_pipeline), ("extract", extract_pipeline)):
        job = build(DATAFLOW_ARGV, settings).run().job.proto_pipeline
        for transform in job.components.transforms.values():
            if transform.spec.urn != common_urns.primitives.PAR_DO.urn:
                continue
            do_fn = beam_runner_api_pb2.ParDoPayload.FromString(transform.spec.payload).do_fn
            kind = type(pickler.loads(do_fn.payload)[0])
            found.append(
                ShippedDoFn(
                    file=f"{len(found):03d}-{name}.dofn",
                    pipeline=name,
                    transform=transform.unique_name,
                    class_name=f"{kind.__module__}.{kind.__qualname__}",
                    payload=do_fn.payload,
                )
            )
    return found


def dockerfile_instructions(dockerfile: Path = DOCKERFILE) -> list[tuple[str, str]]:
    text = re.sub(r"\\\n", " ", dockerfile.read_text())
    lines = (line.strip() for line in text.splitlines())
    return [
        (keyword.upper(), rest.strip())
        for keyword, _, rest in (line.partition(" ") for line in lines)
        if keyword and not keyword.startswith("#")
    ]


def copy_project_sources(destination: Path) -> None:
    """What the Dockerfile COPYs into SOURCE_IN_IMAGE, copied the same way: a file the build
    needs and the Dockerfile forgets fails here as it would in the image."""
    for keyword, rest in dockerfile_instructions():
        args = shlex.split(rest)
        if keyword != "COPY" or any(arg.startswith("--") for arg in args):
            continue
        *sources, target = args
        if not target.startswith(SOURCE_IN_IMAGE + "/"):
            continue
        local = destination / target.removeprefix(SOURCE_IN_IMAGE + "/")
        for source in sources:
            path = REPO / source
            if path.is_dir():
                shutil.copytree(path, local, ignore=shutil.ignore_patterns("__pycache__"))
            else:
                local.mkdir(parents=True, exist_ok=True)
                shutil.copy2(path, local / path.name)


def dockerfile_install_commands() -> list[list[str]]:
    """The Dockerfile's RUN commands that call install.sh, each up to its first `&&`."""
    commands = []
    for keyword, rest in dockerfile_instructions():
        if keyword == "RUN" and rest.startswith(INSTALL_SCRIPT):
            words = shlex.split(rest)
            commands.append(words[: words.index("&&")] if "&&" in words else words)
    return commands


def run_install(command: list[str], python: Path, source: Path) -> None:
    """One of the Dockerfile's install.sh commands, aimed at the venv and the copied sources;
    with uv instead of the image's pip (same pins and hashes, and its cache is warm)."""
    # `python` is the image's interpreter in the Dockerfile's commands.
    here = {"python": str(python), SOURCE_IN_IMAGE: str(source)}
    argv = [str(REPO / INSTALL_SCRIPT), *(here.get(word, word) for word in command[1:])]
    env = {**os.environ, "UV": str(UV)}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        argv, env=env, cwd=source.parent, capture_output=True, text=True, timeout=900, check=False
    )
    assert done.returncode == 0, f"{shlex.join(argv)} failed:\n{done.stdout}\n{done.stderr}"
    assert "[worker image] done" in done.stdout, done.stdout


def unpickle_all(python: Path, dofn_dir: Path) -> tuple[dict[str, dict[str, Any]], dict[str, Any]]:
    # No PYTHON* variables either (-I ignores them too); cwd outside the repository.
    env = {name: value for name, value in os.environ.items() if not name.startswith("PYTHON")}
    env.pop("VIRTUAL_ENV", None)
    done = subprocess.run(
        [str(python), "-I", "-c", UNPICKLE, str(dofn_dir)],
        env=env,
        cwd=dofn_dir,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    *records, where = (json.loads(line) for line in done.stdout.splitlines())
    return {record["file"]: record for record in records}, where


def test_dockerfile_is_a_launcher_and_worker_image() -> None:
    instructions = dockerfile_instructions()
    beam_pin = re.search(
        r"^apache-beam==(\S+)", (REPO / "beam_pipelines/requirements.txt").read_text(), re.M
    )
    assert beam_pin
    # The workers' boot binary comes with the base; it must be the Beam that is installed.
    assert ("FROM", f"apache/beam_python3.12_sdk:{beam_pin.group(1)}") in instructions
    assert any(
        keyword == "COPY"
        and rest.startswith("--from=launcher")
        and "python_template_launcher" in rest
        for keyword, rest in instructions
    )
    env = " ".join(rest for keyword, rest in instructions if keyword == "ENV")
    assert "FLEX_TEMPLATE_PYTHON_PY_FILE=/template/beam_pipelines/${PIPELINE}_quotes.py" in env
    # Installed at build time: the launch must not install anything again.
    assert "FLEX_TEMPLATE_PYTHON_REQUIREMENTS_FILE" not in env
    assert "FLEX_TEMPLATE_PYTHON_SETUP_FILE" not in env
    entrypoints = [rest for keyword, rest in instructions if keyword == "ENTRYPOINT"]
    assert entrypoints == ['["/opt/apache/beam/boot"]']


def test_installed_image_unpickles_every_dofn_of_both_pipelines(tmp_path: Path) -> None:
    dofns = shipped_dofns()
    by_file = {dofn.file: dofn for dofn in dofns}
    classes = {dofn.class_name for dofn in dofns}
    assert classes >= PROJECT_DOFNS, f"DoFns shipped: {sorted(classes)}"
    assert {dofn.pipeline for dofn in dofns} == {"load", "extract"}
    assert len(dofns) > 20, [dofn.transform for dofn in dofns]
    dofn_dir = tmp_path / "dofns"
    dofn_dir.mkdir()
    for dofn in dofns:
        (dofn_dir / dofn.file).write_bytes(dofn.payload)

    source = tmp_path / "src"
    copy_project_sources(source)
    assert (source / "pyproject.toml").is_file(), "the Dockerfile copies no pyproject.toml"
    deps_only, project_only = dockerfile_install_commands()
    assert "--deps-only" in deps_only, deps_only
    assert "--project-only" in project_only, project_only

    venv = tmp_path / "venv"
    interpreter = subprocess.run(
        [str(REPO / "scripts" / "find-python"), "3.12"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    subprocess.run(
        [str(UV), "venv", "--quiet", "--python", interpreter, str(venv)], check=True, timeout=120
    )
    python = venv / "bin" / "python"

    # Only the pinned dependencies: Beam's stock worker image has no more of this project.
    run_install(deps_only, python, source)
    before, where = unpickle_all(python, dofn_dir)
    assert where["quotestream"] is None
    failed = {name for name, record in before.items() if "error" in record}
    assert {by_file[name].class_name for name in failed} >= PROJECT_DOFNS
    for name in failed:
        record = before[name]
        assert record["error"] == "ModuleNotFoundError", record
        assert record["module"].split(".")[0] == "quotestream", record
    for name in before.keys() - failed:
        assert not before[name]["class"].startswith("quotestream."), before[name]

    run_install(project_only, python, source)
    after, where = unpickle_all(python, dofn_dir)
    assert [record for record in after.values() if "error" in record] == []
    assert {name: record["class"] for name, record in after.items()} == {
        dofn.file: dofn.class_name for dofn in dofns
    }
    # The project came from what the script installed into the venv, nowhere else.
    assert Path(where["quotestream"]).is_relative_to(Path(where["prefix"])), where
    assert Path(where["prefix"]).resolve() == venv.resolve(), where
    assert where["quotestream_dev"] is False, "the development harness is in the image"

    counts = Counter(f"{dofn.pipeline}: {dofn.class_name}" for dofn in dofns)
    print(
        f"unpickled {len(after)} DoFns in the installed venv "
        f"({len(failed)} failed before the project was installed):"
    )
    for line, count in sorted(counts.items()):
        print(f"  {count} x {line}")


def test_the_wheel_and_the_images_carry_nothing_of_the_development_harness(
    tmp_path: Path,
) -> None:
    """The wheel (`make wheel`, and what both images install) holds the core and the API, and
    neither image copies dev/ in: quotestream_dev, and its commands, ship nowhere."""
    subprocess.run(
        [str(UV), "build", "--quiet", "--wheel", "--out-dir", str(tmp_path), str(REPO)],
        check=True,
        timeout=300,
    )
    (wheel,) = tmp_path.glob("quotestream-*.whl")
    with zipfile.ZipFile(wheel) as archive:
        names = archive.namelist()
        entry_points = next(
            archive.read(name).decode() for name in names if name.endswith("entry_points.txt")
        )
    packages = {name.split("/")[0] for name in names if ".dist-info/" not in name}
    assert packages == {"quotestream", "quotestream_api"}
    assert not any("quotestream_dev" in name for name in names)
    assert "quotestream.commands" not in entry_points

    for dockerfile in (DOCKERFILE, API_DOCKERFILE):
        copied = [
            shlex.split(rest)[:-1]
            for keyword, rest in dockerfile_instructions(dockerfile)
            if keyword == "COPY" and not rest.startswith("--from")
        ]
        sources = [REPO / source for sources in copied for source in sources]
        assert sources, dockerfile
        assert not any(source.is_relative_to(REPO / "dev") for source in sources), dockerfile
