#!/usr/bin/env bash
# make bench: the core on real review bodies (Criterion), then `serve` under load over real TLS
# against a floor server on the same stack, with throughput ratios and memory. Prints tables.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${BENCH_DURATION:-5s}
MILLION=${BENCH_MILLION:-1000000}
BODY=${BENCH_BODY:-bench/fixtures/review-small.json}
SERVE_PORT=18443 ADMIN_PORT=19091 FLOOR_PORT=18444
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

command -v oha >/dev/null || cargo install oha --locked --version 1.16.0
command -v jq >/dev/null || { apt-get update -qq && apt-get install -y -qq jq; }
make --quiet certs >/dev/null
cargo build --release --locked --quiet --bin kafka-listener-injector --example floor

# The servers run on one core and the load generator on another, so that neither steals the
# other's cycles and the CPU figures below are the server's alone (no pinning on one core).
if [ "$(nproc)" -ge 2 ]; then
  on_server_core=(taskset -c 0)
  on_client_core=(taskset -c 1)
else
  on_server_core=()
  on_client_core=()
fi

echo "## Core: parse + decide + patch + serialize, per review (Criterion)"
echo
cargo bench --locked --quiet --bench core -- --warm-up-time 1 --measurement-time 5 2>/dev/null \
  | awk '/^review\// { name = $0; sub(/^review\//, "", name); sub(/ *time:.*/, "", name) }
         /time:/ && name != "" { match($0, /\[[^]]*\]/); split(substr($0, RSTART + 1, RLENGTH - 2), t, " ");
                                 print "| " name " | " t[3] " " t[4] " |"; name = "" }' \
  | tee "$work/core.md" | { echo "| review | median |"; echo "|---|---|"; cat; }
echo
# The load on the machine while this runs (the figures below are ratios for that reason).
load_before=$(cut -d' ' -f1-3 /proc/loadavg)

"${on_server_core[@]}" ./target/release/kafka-listener-injector serve --listen 127.0.0.1:$SERVE_PORT --admin-listen 127.0.0.1:$ADMIN_PORT \
  --tls-cert certs/dev/tls.crt --tls-key certs/dev/tls.key --domain kafka.example.com --log-format json \
  2>"$work/serve.log" &
serve_pid=$!
pids+=($serve_pid)
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null && break; sleep 0.1; done
response_bytes=$(curl -s --cacert certs/dev/ca.crt -H 'content-type: application/json' --data-binary @"$BODY" \
  "https://127.0.0.1:$SERVE_PORT/mutate" | wc -c)
"${on_server_core[@]}" ./target/release/examples/floor 127.0.0.1:$FLOOR_PORT certs/dev/tls.crt certs/dev/tls.key "$response_bytes" &
pids+=($!)
sleep 0.5

# load URL MODE CONCURRENCY [-n N] -> "rps p50_ms p99_ms p999_ms failures"
load() {
  local url=$1 mode=$2 c=$3 args=()
  case $mode in
    h1) args=(--http-version 1.1 -c "$c") ;;
    h2) local conns=$(( c < 4 ? 1 : 4 )); args=(--http2 -c "$conns" -p $(( c / conns ))) ;;
    new-tls) args=(--http-version 1.1 --disable-keepalive -c "$c") ;;
  esac
  shift 3
  local limit=(-z "$DURATION" -w)
  [ $# -gt 0 ] && limit=("$@")
  "${on_client_core[@]}" oha --no-tui "${limit[@]}" "${args[@]}" -m POST -T application/json -D "$BODY" \
    --cacert certs/dev/ca.crt --output-format json "$url" \
    | jq -r '[.summary.requestsPerSec, .latencyPercentiles.p50 * 1000, .latencyPercentiles.p99 * 1000,
              .latencyPercentiles["p99.9"] * 1000,
              ((.statusCodeDistribution | to_entries | map(select(.key != "200") | .value) | add // 0)
               + (.errorDistribution | to_entries | map(.value) | add // 0))]
             | "\(.[0] | floor) \(.[1]*1000|round/1000) \(.[2]*1000|round/1000) \(.[3]*1000|round/1000) \(.[4])"'
}

rss_kb() { awk -v k="$2" '$1 == k":" {print $2}' "/proc/$1/status"; }

echo "## serve over TLS vs the floor (same stack, fixed $response_bytes-byte answer), $(basename "$BODY"), $DURATION each"
echo
echo "| mode | conc. | serve req/s | floor req/s | ratio | serve p50 ms | p99 ms | p99.9 ms | floor p50 ms | floor p99 ms | failed |"
echo "|---|---|---|---|---|---|---|---|---|---|---|"
declare -A results
for mode in h1 h2 new-tls; do
  for c in 1 16 64; do
    read -r s_rps s_p50 s_p99 s_p999 s_fail < <(load "https://127.0.0.1:$SERVE_PORT/mutate" $mode $c)
    read -r f_rps f_p50 f_p99 _ _ < <(load "https://127.0.0.1:$FLOOR_PORT/mutate" $mode $c)
    ratio=$(awk -v a="$s_rps" -v b="$f_rps" 'BEGIN { printf "%.2f", (b > 0 ? a / b : 0) }')
    echo "| $mode | $c | $s_rps | $f_rps | $ratio | $s_p50 | $s_p99 | $s_p999 | $f_p50 | $f_p99 | $s_fail |"
    results["$mode $c"]="$ratio $s_p50 $f_p50"
  done
done
echo
# Server CPU per review: utime+stime of the server process over a fixed number of reviews, the
# figure that does not depend on how fast the load generator is.
cpu_ticks() { awk '{print $14 + $15}' "/proc/$1/stat"; }
cpu_per_review_us() { # cpu_per_review_us PID URL MODE CONC N
  local before after
  before=$(cpu_ticks "$1")
  load "$2" "$3" "$4" -n "$5" >/dev/null
  after=$(cpu_ticks "$1")
  awk -v t=$((after - before)) -v hz="$(getconf CLK_TCK)" -v n="$5" 'BEGIN { printf "%.1f", t / hz / n * 1e6 }'
}
floor_pid=${pids[1]}
REVIEWS=${BENCH_CPU_REVIEWS:-60000}
echo "## Server CPU per review ($REVIEWS reviews per cell, utime+stime from /proc)"
echo
echo "| mode | conc. | serve us | floor us | ratio |"
echo "|---|---|---|---|---|"
declare -A cpu
for cell in "h1 16" "h2 64"; do
  read -r mode c <<<"$cell"
  s_cpu=$(cpu_per_review_us $serve_pid "https://127.0.0.1:$SERVE_PORT/mutate" $mode $c $REVIEWS)
  f_cpu=$(cpu_per_review_us $floor_pid "https://127.0.0.1:$FLOOR_PORT/mutate" $mode $c $REVIEWS)
  cpu["$cell"]=$(awk -v a="$s_cpu" -v b="$f_cpu" 'BEGIN { printf "%.2f", a / b }')
  echo "| $mode | $c | $s_cpu | $f_cpu | ${cpu[$cell]} |"
done
echo
echo "## Heap allocations per review (dhat's counting allocator, tests/allocations.rs)"
echo
cargo test --release --locked --quiet --test allocations -- --nocapture 2>&1 | grep 'patched ' \
  | sed 's/^/- /'
echo

peak_load=$(rss_kb $serve_pid VmHWM)
before=$(rss_kb $serve_pid VmRSS)
read -r m_rps _ m_p99 _ m_fail < <(load "https://127.0.0.1:$SERVE_PORT/mutate" h2 64 -n "$MILLION")
after=$(rss_kb $serve_pid VmRSS)
peak=$(rss_kb $serve_pid VmHWM)
echo "## Memory of serve"
echo
echo "| measure | value |"
echo "|---|---|"
echo "| peak RSS during the load above | $((peak_load / 1024)) MiB |"
echo "| RSS before / after $MILLION more reviews (h2, 64 streams) | $((before / 1024)) MiB / $((after / 1024)) MiB |"
echo "| peak RSS overall | $((peak / 1024)) MiB |"
echo "| $MILLION reviews: req/s, p99 ms, failed | $m_rps, $m_p99, $m_fail |"
echo
# The issue's targets, side by side, from this one run.
read -r _ h1_c1_p50 h1_c1_floor_p50 <<<"${results[h1 1]}"
echo "## Against the targets (this run)"
echo
echo "| target | serve / floor |"
echo "|---|---|"
echo "| HTTP/1.1 keep-alive throughput, 16 connections (at least 0.6x) | $(cut -d' ' -f1 <<<"${results[h1 16]}")x |"
echo "| HTTP/1.1 keep-alive throughput, 64 connections | $(cut -d' ' -f1 <<<"${results[h1 64]}")x |"
echo "| server CPU per review, HTTP/1.1 c16 (at most 1.5x) | ${cpu[h1 16]}x |"
echo "| server CPU per review, HTTP/2 c64 (at most 1.5x) | ${cpu[h2 64]}x |"
echo "| c1 p50 over the floor's, HTTP/1.1 (at most +15 us) | $(awk -v a="$h1_c1_p50" -v b="$h1_c1_floor_p50" 'BEGIN { printf "%+.0f us", (a - b) * 1000 }') |"
echo "| RSS before / after $MILLION reviews (under 20 MiB) | $((before / 1024)) / $((after / 1024)) MiB |"
echo "| 20 KB review in the core bench (under 15 us) | $(awk -F'|' '/20 KB/ { gsub(/^ +| +$/, "", $3); print $3 }' "$work/core.md") |"
echo
echo "Load average (1, 5, 15 min) before the load cells: $load_before; after: $(cut -d' ' -f1-3 /proc/loadavg)."
echo "Machine: $(nproc) cores ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | xargs)), $(free -g | awk '/Mem:/{print $2}') GiB;"
echo "servers pinned to core 0 and the load generator (oha) to core 1 when there are two or more."
