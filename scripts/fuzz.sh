#!/usr/bin/env bash
# `make fuzz` and `make fuzz-ci`: build every fuzz target (fuzz/) once with
# cargo-fuzz, run each for FUZZ_SECONDS, FUZZ_JOBS at a time, and print a
# Markdown table of what each did. Any crash, panic, hang (an input running
# over 10 s), leak or out-of-memory fails the run; the input is saved under
# fuzz/artifacts/<target>/ and the log's end is printed.
#
# The committed seeds (fuzz/corpus/<target>/) are read but never written:
# what a run finds goes to fuzz/target/corpus/<target>/ (not in git), which
# the next run starts from. Logs: fuzz/target/logs/<target>.log.
#
# Environment: FUZZ_SECONDS (600), FUZZ_JOBS (1), FUZZ_TARGETS (all),
# FUZZ_PROFILE (release; `dev` builds in a third of the time and runs
# slower, as CI wants), FUZZ_SANITIZER (none; `address` builds with
# nightly, see fuzz/README.md), FUZZ_TARGET_DIR (fuzz/target).
set -euo pipefail
cd "$(dirname "$0")/.."

seconds=${FUZZ_SECONDS:-600}
jobs=${FUZZ_JOBS:-1}
profile=${FUZZ_PROFILE:-release}
sanitizer=${FUZZ_SANITIZER:-none}
all="filter_decision config_parse import_traefik import_certbot pem_bundle dns_answers xds_request"
targets=${FUZZ_TARGETS:-$all}

# Longest input per target: above its largest realistic input (an acme.json
# with three chains is 9 KB), small enough that every execution stays fast.
max_len() {
  case $1 in
    import_traefik) echo 32768 ;;
    config_parse | import_certbot) echo 16384 ;;
    filter_decision | pem_bundle) echo 8192 ;;
    *) echo 4096 ;;
  esac
}

cargo_fuzz=(cargo fuzz)
if [ "$sanitizer" != none ]; then
  cargo_fuzz=(cargo +nightly fuzz)
fi
# Overflow checks and debug assertions in both profiles: an overflow is a bug
# found, not a number silently wrapped.
build_flags=(-s "$sanitizer" --debug-assertions)
dir=release
if [ "$profile" = dev ]; then
  build_flags+=(--dev)
  dir=debug
fi
# FUZZ_TARGET_DIR: where the build goes (fuzz/target, as cargo-fuzz does).
target_dir=${FUZZ_TARGET_DIR:-fuzz/target}
build_flags+=(--target-dir "$target_dir")
triple=$(rustc -vV | sed -n 's/^host: //p')
bin=$target_dir/$triple/$dir
logs=$target_dir/logs
mkdir -p "$logs"

echo "== build ($profile, sanitizer $sanitizer)"
build_started=$(date +%s)
"${cargo_fuzz[@]}" build "${build_flags[@]}"
echo "build: $(( $(date +%s) - build_started )) s"

# One target; its exit status goes to $logs/<target>.rc.
run() {
  local target=$1 work=$target_dir/corpus/$1 artifacts=fuzz/artifacts/$1/ rc=0
  mkdir -p "$work" "$artifacts"
  "$bin/$target" "$work" "fuzz/corpus/$target" \
    -max_total_time="$seconds" -timeout=10 -max_len="$(max_len "$target")" \
    -artifact_prefix="$artifacts" -print_final_stats=1 >"$logs/$target.log" 2>&1 || rc=$?
  echo "$rc" >"$logs/$target.rc"
}

stat() { sed -n "s/^stat::$2: *//p" "$logs/$1.log" | tail -1; }

echo "== fuzz: ${seconds} s per target, $jobs at a time"
started=$(date +%s)
for target in $targets; do
  rm -f "$logs/$target.rc"
  while [ "$(jobs -rp | wc -l)" -ge "$jobs" ]; do wait -n || true; done
  run "$target" &
done
wait
failed=()
for target in $targets; do
  [ "$(cat "$logs/$target.rc" 2>/dev/null)" = 0 ] || failed+=("$target")
done

echo
echo "| target | executions | per second | corpus (files) | crashes, panics, hangs |"
echo "| --- | ---: | ---: | ---: | --- |"
for target in $targets; do
  corpus=$(find "$target_dir/corpus/$target" -type f | wc -l)
  verdict=0
  if [[ " ${failed[*]} " == *" $target "* ]]; then verdict="FAILED: see fuzz/artifacts/$target/"; fi
  echo "| $target | $(stat "$target" number_of_executed_units) | $(stat "$target" average_exec_per_sec) | $corpus | $verdict |"
done
echo
echo "fuzzing: $(( $(date +%s) - started )) s"

if [ ${#failed[@]} -gt 0 ]; then
  for target in "${failed[@]}"; do
    echo "== $target failed; the end of $logs/$target.log:"
    tail -40 "$logs/$target.log"
  done
  exit 1
fi
