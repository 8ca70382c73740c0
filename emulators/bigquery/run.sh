#!/usr/bin/env bash
# Run the BigQuery emulator (local-bigquery) in the foreground; exec, so $$ is the emulator's pid.
#
# Usage: emulators/bigquery/run.sh PORT [GRPC_PORT]
#   PORT       REST port on 127.0.0.1 (client: api_endpoint=http://127.0.0.1:PORT)
#   GRPC_PORT  Storage Read/Write API (plain gRPC) port; default $BIGQUERY_EMULATOR_GRPC_PORT,
#              else 0 = any free port (so several emulators never collide on 9060)
# Env:
#   BIGQUERY_EMULATOR_DIR      install dir (default <repo>/.local/emulators/bigquery)
#   BIGQUERY_EMULATOR_DATA     data dir (default $BIGQUERY_EMULATOR_DIR/data); persists across runs
#   BIGQUERY_EMULATOR_PROJECT  project created at start (default "local"); any other project id
#                              also works, it is created on first use
#   BIGQUERY_EMULATOR_DATASET  dataset created at start in that project (default "local")
# Install first with emulators/bigquery/install.sh.
set -euo pipefail

port="${1:?usage: run.sh PORT [GRPC_PORT]}"
grpc_port="${2:-${BIGQUERY_EMULATOR_GRPC_PORT:-0}}"
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
target="${BIGQUERY_EMULATOR_DIR:-$here/../../.local/emulators/bigquery}"
target="$(cd "$target" 2>/dev/null && pwd)" \
  || { echo "BigQuery emulator not installed: run emulators/bigquery/install.sh" >&2; exit 1; }
data="${BIGQUERY_EMULATOR_DATA:-$target/data}"
[[ -x "$target/venv/bin/local-bigquery" && -f "$target/venv/.requirements.sha256" ]] \
  || { echo "BigQuery emulator not installed in $target: run emulators/bigquery/install.sh" >&2; exit 1; }
mkdir -p "$data"

# HOME private to the emulator: DuckDB finds icu/ducklake/spatial under
# $HOME/.duckdb/extensions (put there by install.sh), so it never tries to download them.
# local-bigquery also reads settings from env vars of the same names as its fields
# (pydantic-settings, no prefix); the flags below take precedence for host/port/project/data.
exec env HOME="$target/home" PATH="$target/venv/bin:$PATH" VIRTUAL_ENV="$target/venv" \
  PYTHONNOUSERSITE=1 PYTHONUNBUFFERED=1 \
  "$target/venv/bin/local-bigquery" serve \
  --host 127.0.0.1 --port "$port" --grpc-port "$grpc_port" \
  --project "${BIGQUERY_EMULATOR_PROJECT:-local}" \
  --dataset "${BIGQUERY_EMULATOR_DATASET:-local}" \
  --data-dir "$data"
