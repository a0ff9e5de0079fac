#!/usr/bin/env bash
# Configures and builds the project with CMake.
#
# Usage: scripts/build.sh [--sanitize] [BUILD_DIR] [-- EXTRA_CMAKE_ARGS...]
#
#   (default)    RelWithDebInfo build in build/
#   --sanitize   Debug build with AddressSanitizer + UBSan (-DSANITIZE=ON),
#                in build-asan/ unless BUILD_DIR is given
#
# BUILD_DIR is taken relative to the project root. BUILD_JOBS sets the
# parallelism (default 2, the size of the machines this runs on).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

sanitize=0
build_dir=""
extra=()
while (($# > 0)); do
    case "$1" in
    --sanitize) sanitize=1 ;;
    --)
        shift
        extra=("$@")
        break
        ;;
    -h | --help)
        sed -n '2,/^set -euo/p' "${BASH_SOURCE[0]}" | sed -e '$d' -e 's/^# \{0,1\}//'
        exit 0
        ;;
    -*)
        echo "build: unknown option $1" >&2
        exit 2
        ;;
    *)
        [[ -z "$build_dir" ]] || {
            echo "build: only one BUILD_DIR" >&2
            exit 2
        }
        build_dir="$1"
        ;;
    esac
    shift
done

if ((sanitize)); then
    build_dir="${build_dir:-build-asan}"
    # Debug: no optimisation, so sanitizer reports point at the right lines.
    cfg=(-DCMAKE_BUILD_TYPE=Debug -DSANITIZE=ON)
else
    build_dir="${build_dir:-build}"
    cfg=(-DCMAKE_BUILD_TYPE=RelWithDebInfo)
fi

echo "build: configuring $build_dir (${cfg[*]})" >&2
cmake -S . -B "$build_dir" "${cfg[@]}" "${extra[@]}"
cmake --build "$build_dir" -j "${BUILD_JOBS:-2}"
