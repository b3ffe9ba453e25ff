#!/usr/bin/env bash
# Builds the libFuzzer targets (tests/fuzz/fuzz_*.cpp) with clang in build/fuzz and runs each for
# SECONDS_PER_TARGET seconds (default 20) over its seed corpus, tests/fuzz/corpus/<target>/.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...]      e.g. scripts/fuzz.sh 60 fuzz_reference
#   FUZZ_RUNS=10000000 scripts/fuzz.sh 0 [TARGET...]      a long run: N executions per target
#                                                         (SECONDS 0: no time bound)
#
# New inputs and crash artifacts go to a temporary folder (printed), never into the repository;
# the folders of targets that passed are removed unless FUZZ_KEEP=1. Exits 1 when any target
# crashed, leaked, timed out or failed a check (the artifact path and the reproduce command are
# printed), 2 when the build cannot be done.
#
# Environment: FUZZ_BUILD_DIR (build/fuzz), CXX for the compiler (clang++), JOBS (2),
# FUZZ_TIMEOUT seconds one input may take before it counts as a hang (25), FUZZ_RUNS (executions
# per target, unbounded by default), FUZZ_KEEP=1, FUZZ_NO_INSTALL=1 to skip the install step.
# Needs clang with the compiler-rt runtimes: on Debian 12, apt packages clang-14 (or clang) and
# libclang-rt-14-dev (which holds libclang_rt.fuzzer*.a and the sanitizer runtimes). On Debian
# the script installs them when missing (scripts/install-fuzz-deps.sh, as root or with sudo),
# with the project's own build dependencies (scripts/install-deps.sh).
set -uo pipefail

cd "$(dirname "$0")/.."
SECS=${1:-20}
shift || true
RUNS=${FUZZ_RUNS:-}
if ! [[ "$SECS" =~ ^[0-9]+$ ]] || { [ "$SECS" -lt 1 ] && [ -z "$RUNS" ]; } ||
   { [ -n "$RUNS" ] && ! [[ "$RUNS" =~ ^[1-9][0-9]*$ ]]; }; then
  echo "usage: scripts/fuzz.sh [SECONDS_PER_TARGET] [TARGET...] (SECONDS 0 only with FUZZ_RUNS=N)" >&2
  exit 2
fi

if [ "${FUZZ_NO_INSTALL:-0}" != 1 ] && command -v dpkg-query >/dev/null 2>&1; then
  scripts/install-deps.sh && scripts/install-fuzz-deps.sh || {
    echo "fuzz.sh: installing the build dependencies failed" >&2
    exit 2
  }
fi
BUILD=${FUZZ_BUILD_DIR:-build/fuzz}
JOBS=${JOBS:-2}
TIMEOUT=${FUZZ_TIMEOUT:-25}

CXX_BIN=${CXX:-}
if [ -z "$CXX_BIN" ]; then
  for c in clang++ clang++-14; do
    if command -v "$c" >/dev/null 2>&1; then CXX_BIN=$c; break; fi
  done
fi
if [ -z "$CXX_BIN" ] || ! "$CXX_BIN" --version 2>/dev/null | grep -q clang; then
  echo "fuzz.sh: clang++ not found (Debian: apt-get install clang-14 libclang-rt-14-dev)" >&2
  exit 2
fi

# libFuzzer and the sanitizer runtimes come with compiler-rt, packaged apart from clang.
probe=$(mktemp -d)
printf 'extern "C" int LLVMFuzzerTestOneInput(const unsigned char*, unsigned long) { return 0; }\n' > "$probe/p.cpp"
if ! "$CXX_BIN" -fsanitize=fuzzer,address,undefined "$probe/p.cpp" -o "$probe/p" >"$probe/log" 2>&1; then
  cat "$probe/log" >&2
  echo "fuzz.sh: $CXX_BIN cannot link -fsanitize=fuzzer,address,undefined (Debian: apt-get install libclang-rt-14-dev)" >&2
  rm -rf "$probe"
  exit 2
fi
rm -rf "$probe"

GEN=()
command -v ninja >/dev/null 2>&1 && [ ! -f "$BUILD/Makefile" ] && GEN=(-G Ninja)
echo "== configure $BUILD ($("$CXX_BIN" --version | head -1))"
cmake -S . -B "$BUILD" "${GEN[@]}" -DCMAKE_CXX_COMPILER="$CXX_BIN" -DCMAKE_BUILD_TYPE=Sanitize -DSIDEKEY_FUZZ=ON \
  >"$BUILD.configure.log" 2>&1 || { cat "$BUILD.configure.log" >&2; exit 2; }
rm -f "$BUILD.configure.log"
echo "== build fuzz targets (-j $JOBS)"
cmake --build "$BUILD" -j "$JOBS" --target fuzz_targets || exit 2

if [ $# -gt 0 ]; then
  TARGETS=("$@")
else
  TARGETS=()
  for src in tests/fuzz/fuzz_*.cpp; do TARGETS+=("$(basename "$src" .cpp)"); done
fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/sidekey-fuzz-XXXXXX")
echo "== findings go to $WORK"
export ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}
export UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}

failed=()
summary=()
for t in "${TARGETS[@]}"; do
  bin="$BUILD/tests/fuzz/$t"
  seeds="tests/fuzz/corpus/$t"
  if [ ! -x "$bin" ]; then
    echo "fuzz.sh: no target $t" >&2
    failed+=("$t")
    continue
  fi
  dir="$WORK/$t"
  mkdir -p "$dir/corpus" "$dir/artifacts"
  corpus=("$dir/corpus")
  [ -d "$seeds" ] && corpus+=("$seeds")
  # Scratch space for targets that need files (fuzz_api_body's store): in memory when possible,
  # removed here even when the target died without cleaning up.
  if [ -w /dev/shm ]; then scratch=$(mktemp -d /dev/shm/sidekey-fuzz-XXXXXX); else scratch=$(mktemp -d "$dir/scratch-XXXXXX"); fi
  bound=(-max_total_time="$SECS")
  [ -n "$RUNS" ] && bound+=(-runs="$RUNS")
  echo "== $t: ${bound[*]}"
  start=$(date +%s)
  SIDEKEY_FUZZ_TMPDIR="$scratch" "$bin" "${bound[@]}" -timeout="$TIMEOUT" -print_final_stats=1 \
    -artifact_prefix="$dir/artifacts/" "${corpus[@]}" >"$dir/log" 2>&1
  rc=$?
  wall=$(($(date +%s) - start))
  rm -rf "$scratch"
  execs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$dir/log" | tail -1)
  rate=$(sed -n 's/^stat::average_exec_per_sec: *//p' "$dir/log" | tail -1)
  cov=$(grep -o 'cov: [0-9]*' "$dir/log" | tail -1 | cut -d' ' -f2)
  ft=$(grep -o 'ft: [0-9]*' "$dir/log" | tail -1 | cut -d' ' -f2)
  new=$(find "$dir/corpus" -type f | wc -l)
  size=$(grep -o 'corp: [0-9]*/[0-9]*[a-zA-Z]*' "$dir/log" | tail -1 | cut -d' ' -f2)
  artifacts=$(find "$dir/artifacts" -type f | sort)
  if [ $rc -ne 0 ] || [ -n "$artifacts" ]; then
    failed+=("$t")
    summary+=("$(printf '%-24s FAILED (exit %s)' "$t" "$rc")")
    echo "---- $t failed (exit $rc); last lines of $dir/log:"
    tail -n 40 "$dir/log"
    for a in $artifacts; do echo "artifact: $a   reproduce: $bin $a"; done
  else
    summary+=("$(printf '%-24s ok  %9s execs  %6ss  %7s exec/s  cov %-6s ft %-6s corpus %-12s new inputs %s' \
      "$t" "${execs:-?}" "$wall" "${rate:-?}" "${cov:-?}" "${ft:-?}" "${size:-?}" "$new")")
    [ "${FUZZ_KEEP:-0}" = 1 ] || rm -rf "$dir"
  fi
done

echo
limit="${SECS}s"
[ "$SECS" = 0 ] && limit="no time bound"
echo "== summary ($limit${RUNS:+, at most $RUNS runs} per target)"
printf '%s\n' "${summary[@]}"
if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz.sh: failed: ${failed[*]} (logs and artifacts in $WORK)" >&2
  exit 1
fi
[ "${FUZZ_KEEP:-0}" = 1 ] || rmdir "$WORK" 2>/dev/null || true
exit 0
