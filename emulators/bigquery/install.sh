#!/usr/bin/env bash
# Install the BigQuery emulator (local-bigquery, DuckDB-backed) so it runs fully offline.
#
# Usage: emulators/bigquery/install.sh [TARGET_DIR]
#   TARGET_DIR  defaults to $BIGQUERY_EMULATOR_DIR, else <repo>/.local/emulators/bigquery
# Env:
#   UV                        uv command (may be several words, e.g. "python3.12 -m uv"); default "uv"
#   BIGQUERY_EMULATOR_PYTHON  a Python >= 3.13 to use instead of searching for one
#
# Layout of TARGET_DIR:
#   venv/                               the emulator's own venv (Python >= 3.13)
#   venv/.requirements.sha256           stamp: hash of requirements.txt + this script
#   home/.duckdb/extensions/vX/PLATFORM DuckDB extensions (icu, ducklake, spatial) copied from
#                                       the duckdb-extension-* packages; run.sh sets HOME=home
#   data/                               emulator data (created by run.sh)
# Idempotent: a second run with the same requirements is a fast no-op.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
repo_root="$(cd "$here/../.." && pwd)"
target="${1:-${BIGQUERY_EMULATOR_DIR:-$repo_root/.local/emulators/bigquery}}"
mkdir -p "$target"
target="$(cd "$target" && pwd)"
req="$here/requirements.txt"
venv="$target/venv"
home="$target/home"
stamp="$venv/.requirements.sha256"
read -r -a uv_cmd <<<"${UV:-uv}"

log() { echo "[bigquery-emulator install] $*"; }
die() { echo "[bigquery-emulator install] ERROR: $*" >&2; exit 1; }

want="$(cat "$req" "$here/install.sh" | sha256sum | cut -d' ' -f1)"

ext_ok() {
  # every extension file recorded at install time is present in the private HOME
  [[ -s "$target/.extensions" ]] || return 1
  local f
  while read -r f; do [[ -s "$home/$f" ]] || return 1; done <"$target/.extensions"
}

if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" && -x "$venv/bin/local-bigquery" ]] \
  && "$venv/bin/python" -c '' 2>/dev/null && ext_ok; then
  log "already installed in $target (requirements unchanged); nothing to do"
  exit 0
fi

# --- find a Python >= 3.13 ---------------------------------------------------
py_ok() { "$1" -c 'import sys; sys.exit(0 if (3, 13) <= sys.version_info[:2] < (3, 16) else 1)' 2>/dev/null; }
python=""
if [[ -n "${BIGQUERY_EMULATOR_PYTHON:-}" ]]; then
  py_ok "$BIGQUERY_EMULATOR_PYTHON" || die "BIGQUERY_EMULATOR_PYTHON=$BIGQUERY_EMULATOR_PYTHON is not a working Python 3.13-3.15"
  python="$BIGQUERY_EMULATOR_PYTHON"
fi
if [[ -z "$python" ]] && command -v python3.13 >/dev/null 2>&1 && python3.13 -c '' 2>/dev/null; then
  # a pyenv shim exists even when 3.13 is not the selected version; it then fails: skip it
  cand="$(python3.13 -c 'import sys; print(sys.executable)')"
  py_ok "$cand" && python="$cand"
fi
if [[ -z "$python" ]]; then
  if command -v pyenv >/dev/null 2>&1; then pyroot="$(pyenv root)"; else pyroot="${PYENV_ROOT:-$HOME/.pyenv}"; fi
  for cand in $(ls -d "$pyroot"/versions/3.13*/bin/python3.13 2>/dev/null | sort -V -r); do
    if py_ok "$cand"; then python="$cand"; break; fi
  done
fi
[[ -n "$python" ]] || die "no Python >= 3.13 found (local-bigquery 0.4.0 needs 3.13-3.15).
  Install one, e.g. 'pyenv install 3.13' or the Debian package python3.13,
  or point BIGQUERY_EMULATOR_PYTHON at a python3.13 binary."
log "using Python $("$python" -c 'import platform; print(platform.python_version())') at $python"

"${uv_cmd[@]}" --version >/dev/null 2>&1 || die "uv not found (UV='${UV:-uv}'); install uv or set UV, e.g. UV='python3.12 -m uv'"

# --- venv + packages ---------------------------------------------------------
start=$SECONDS
rm -f "$stamp"
log "creating venv $venv"
"${uv_cmd[@]}" venv --quiet --clear --python "$python" "$venv"
log "installing pinned requirements from $req"
# requirements.txt is also the override file: it forces duckdb==1.5.5 although local-bigquery
# 0.4.0 declares duckdb>=2.0.0 (no duckdb 2.0 extension packages exist; see requirements.txt).
"${uv_cmd[@]}" pip install --quiet --python "$venv/bin/python" --compile-bytecode \
  -r "$req" --override "$req"

# --- DuckDB extensions into the emulator's private HOME ----------------------
log "copying DuckDB extensions into $home/.duckdb/extensions"
rel_list="$("$venv/bin/python" - "$home" <<'PY'
import glob, os, shutil, sys
import duckdb
home = sys.argv[1]
version = "v" + duckdb.__version__
platform = duckdb.execute("PRAGMA platform").fetchone()[0]
dest = os.path.join(home, ".duckdb", "extensions", version, platform)
os.makedirs(dest, exist_ok=True)
site = os.path.dirname(os.path.dirname(duckdb.__file__))
files = sorted(glob.glob(os.path.join(site, "duckdb_extension_*", "extensions", version, "*.duckdb_extension")))
if not files:
    sys.exit(f"no extension files for duckdb {version} found under {site}/duckdb_extension_*")
for f in files:
    shutil.copy2(f, os.path.join(dest, os.path.basename(f)))
    print(os.path.relpath(os.path.join(dest, os.path.basename(f)), home))
PY
)"
printf '%s\n' "$rel_list" >"$target/.extensions"
while read -r f; do log "  $f"; done <"$target/.extensions"

# --- offline smoke test: extensions load from the private HOME, no download --
HOME="$home" "$venv/bin/python" - <<'PY' || die "DuckDB extensions do not load offline from the private HOME"
import duckdb
con = duckdb.connect(config={"TimeZone": "UTC", "autoinstall_known_extensions": False})
con.execute("LOAD icu; LOAD ducklake; LOAD spatial")
PY

echo "$want" >"$stamp"
log "installed in $target in $((SECONDS - start))s; start with: emulators/bigquery/run.sh PORT"
