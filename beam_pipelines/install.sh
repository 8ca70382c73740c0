#!/usr/bin/env bash
# The Dataflow image's whole Python install: the hash-pinned dependencies, then the project.
# beam_pipelines/Dockerfile runs it with pip; tests/repository/test_worker_image.py runs the
# same two steps with uv into a fresh venv, so what that test proves is what the image gets.
#
# Usage: beam_pipelines/install.sh [--deps-only | --project-only] PYTHON [SOURCE]
#   PYTHON          the interpreter to install into (the image's python, a venv's bin/python)
#   SOURCE          the project: a quotestream wheel, or a directory with its pyproject.toml
#                   (built into a wheel first, by the build backend its
#                   build-requirements.txt pins with hashes); not needed with --deps-only
#   --deps-only     only beam_pipelines/requirements.txt
#   --project-only  only the project, without dependencies
#   The two steps are separate so the image keeps the dependencies in a layer of their own,
#   which a change to the project does not rebuild.
# Env:
#   UV  the uv command (may be several words, e.g. "python3.12 -m uv"): install with uv.
#       Unset: PYTHON's own pip, or uv from PATH when PYTHON has none (a venv made by uv).
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
requirements="$here/requirements.txt"
usage="usage: $0 [--deps-only | --project-only] PYTHON [SOURCE]"

log() { echo "[worker image] $*"; }
die() {
  echo "[worker image] ERROR: $*" >&2
  exit 1
}

step=all
case "${1:-}" in
  --deps-only) step=deps && shift ;;
  --project-only) step=project && shift ;;
  -h | --help) echo "$usage" && exit 0 ;;
  -*) die "unknown option $1; $usage" ;;
esac
(($# >= 1 && $# <= 2)) || die "$usage"
project="${2:-}"
[[ $step == deps || -n $project ]] || die "SOURCE is missing; $usage"
python="$("$1" -c 'import sys; print(sys.executable)' 2>/dev/null)" \
  || die "$1 is not a working Python"

if [[ -n ${UV:-} ]]; then
  read -r -a uv <<<"$UV"
  "${uv[@]}" --version >/dev/null 2>&1 || die "UV='$UV' does not run"
  installer=uv
elif "$python" -m pip --version >/dev/null 2>&1; then
  installer=pip
elif uv --version >/dev/null 2>&1; then
  uv=(uv)
  installer=uv
else
  die "$python has no pip and uv is not on PATH; set UV (e.g. UV=scripts/uv)"
fi
# Measured: pip 23.2.1 refuses requirements.txt in hash-checking mode (it takes google-auth's
# [pyopenssl] extra for an unpinned requirement); 23.3.2 and later install it.
if [[ $installer == pip ]] && ! "$python" -c '
import re, sys
from importlib.metadata import version
major, minor = re.match(r"(\d+)\.(\d+)", version("pip")).groups()
sys.exit((int(major), int(minor)) < (23, 3))'; then
  die "pip $("$python" -m pip --version | cut -d' ' -f2) is too old for hash-checking mode; 23.3 or later"
fi

# Bytecode is compiled at install time: the environment may forbid writing it later
# (PYTHONDONTWRITEBYTECODE), and every worker would otherwise compile on each import.
install_deps() {
  local packages
  packages="$(grep -c '^[A-Za-z0-9]' "$requirements")"
  log "installing $packages pinned packages from $requirements into $python with $installer"
  if [[ $installer == uv ]]; then
    "${uv[@]}" pip install --quiet --python "$python" --compile-bytecode --require-hashes \
      -r "$requirements"
  else
    "$python" -m pip install --quiet --no-input --compile --require-hashes -r "$requirements"
  fi
}

install_project() {
  local wheel
  if [[ -f $project && $project == *.whl ]]; then
    wheel="$project"
  elif [[ -f $project/pyproject.toml ]]; then
    # A wheel, never the tree itself: an editable or path install would leave the workers
    # depending on a source directory, and uv would reuse a cached build of an unchanged
    # pyproject.toml however much the code had changed. The build backend is the one
    # build-requirements.txt pins, checked against its hashes: a build never takes whatever
    # hatchling the index offers that day.
    local backend="$project/build-requirements.txt"
    [[ -f $backend ]] || die "$backend is missing: the build backend is installed only from it"
    build_dir="$(mktemp -d)"
    trap 'rm -rf "$build_dir"' EXIT
    log "building the project's wheel from $project"
    if [[ $installer == uv ]]; then
      "${uv[@]}" build --quiet --wheel --python "$python" --build-constraints "$backend" \
        --require-hashes --out-dir "$build_dir" "$project"
    else
      # pip checks no hash of what it installs for an isolated build: the backend goes into a
      # venv of its own from its hashes, and the build uses that venv without isolation.
      "$python" -m venv "$build_dir/backend"
      "$build_dir/backend/bin/python" -m pip install --quiet --no-input --require-hashes \
        -r "$backend"
      "$build_dir/backend/bin/python" -m pip wheel --quiet --no-input --no-deps \
        --no-build-isolation --wheel-dir "$build_dir" "$project"
    fi
    wheel="$(echo "$build_dir"/quotestream-*.whl)"
    [[ -f $wheel ]] || die "building $project made no single quotestream wheel"
  else
    die "SOURCE $project is neither a .whl file nor a directory with pyproject.toml"
  fi
  # Reinstalled every time: the version number stays the same while the code changes.
  log "installing $(basename "$wheel") into $python without dependencies"
  if [[ $installer == uv ]]; then
    "${uv[@]}" pip install --quiet --python "$python" --compile-bytecode --no-deps \
      --reinstall "$wheel"
  else
    "$python" -m pip install --quiet --no-input --compile --no-deps --force-reinstall "$wheel"
  fi
  # -I: no PYTHONPATH, no current directory, so only what was installed can answer.
  local where
  where="$("$python" -I -c 'import quotestream.beam.run, quotestream; print(quotestream.__file__)')" \
    || die "the pipelines' module quotestream.beam.run does not import in $python"
  log "quotestream.beam.run imports from $(dirname "$where")"
}

start=$SECONDS
[[ $step == project ]] || install_deps
[[ $step == deps ]] || install_project
log "done in $((SECONDS - start)) s"
