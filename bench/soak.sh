#!/usr/bin/env bash
# make soak: steady load with a mix of valid and invalid reviews against `serve` (release), while
# RSS and open file descriptors are sampled. Fails if either keeps growing. Not part of make test.
set -euo pipefail
cd "$(dirname "$0")/.."

DURATION=${SOAK_SECONDS:-600}
SAMPLE=${SOAK_SAMPLE_SECONDS:-30}
PORT=18453 ADMIN=19093
work=$(mktemp -d)
pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; rm -rf "$work"' EXIT

command -v oha >/dev/null || cargo install oha --locked --version 1.16.0
make --quiet certs >/dev/null
cargo build --release --locked --quiet --bin kafka-listener-injector

# One body per line: patched (small and 20 KB), denied, allowed unchanged (UPDATE), rejected (400).
small=bench/fixtures/review-small.json
{
  jq -c . "$small"
  jq -c . bench/fixtures/review-20k.json
  jq -c '.request.object.spec.containers[0].env += [{"name": "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP", "value": "INTERNAL:PLAINTEXT"}]' "$small"
  jq -c '.request.operation = "UPDATE"' "$small"
  echo '{"kind": "AdmissionReview", "apiVersion": "admission.k8s.io/v1", "request": {'
} >"$work/bodies"

./target/release/kafka-listener-injector serve --listen 127.0.0.1:$PORT --admin-listen 127.0.0.1:$ADMIN \
  --tls-cert certs/dev/tls.crt --tls-key certs/dev/tls.key --domain kafka.example.com --log-format json \
  2>/dev/null &
pid=$!
pids+=($pid)
for _ in $(seq 1 50); do curl -fs "http://127.0.0.1:$ADMIN/readyz" >/dev/null && break; sleep 0.1; done

# h2 with 32 streams on 4 connections plus HTTP/1.1 with a new TLS connection per request.
oha --no-tui -z "${DURATION}s" -w --http2 -c 4 -p 8 -m POST -T application/json -Z "$work/bodies" \
  --cacert certs/dev/ca.crt --output-format json "https://127.0.0.1:$PORT/mutate" >"$work/h2.json" &
h2_load=$!
pids+=($h2_load)
oha --no-tui -z "${DURATION}s" -w --http-version 1.1 --disable-keepalive -c 4 -m POST -T application/json \
  -Z "$work/bodies" --cacert certs/dev/ca.crt --output-format json "https://127.0.0.1:$PORT/mutate" >"$work/h1.json" &
load=$!
pids+=($load)

echo "| elapsed s | RSS MiB | open fds | requests answered |"
echo "|---|---|---|---|"
samples=()
elapsed=0
while kill -0 "$load" 2>/dev/null; do
  sleep "$SAMPLE"
  elapsed=$((elapsed + SAMPLE))
  rss=$(awk '/VmRSS/ {print $2}' /proc/$pid/status)
  fds=$(ls /proc/$pid/fd | wc -l)
  answered=$(curl -s "http://127.0.0.1:$ADMIN/metrics" | awk '/^kafka_listener_injector_admission_requests_total/ {s += $2} END {print s}')
  awk -v e="$elapsed" -v r="$rss" -v f="$fds" -v a="$answered" 'BEGIN { printf "| %s | %.1f | %s | %s |\n", e, r / 1024, f, a }'
  samples+=("$rss:$fds")
done
wait "$load" "$h2_load" || true
echo
jq -r '"h2 (32 streams): \(.summary.requestsPerSec | floor) req/s, p99 \(.latencyPercentiles.p99 * 1000 | . * 1000 | round / 1000) ms, status \(.statusCodeDistribution), errors \(.errorDistribution)"' "$work/h2.json"
jq -r '"h1 new TLS per request: \(.summary.requestsPerSec | floor) req/s, p99 \(.latencyPercentiles.p99 * 1000 | . * 1000 | round / 1000) ms, status \(.statusCodeDistribution), errors \(.errorDistribution)"' "$work/h1.json"

# Flat: from the second sample (after warm-up) to the last, RSS grows under 20% and fds under 50.
first=${samples[1]:-${samples[0]}}
last=${samples[-1]}
rss_growth=$(( (${last%%:*} - ${first%%:*}) * 100 / ${first%%:*} ))
fd_growth=$(( ${last##*:} - ${first##*:} ))
echo "RSS growth after warm-up: ${rss_growth}%, fd growth: ${fd_growth}"
[ "$rss_growth" -lt 20 ] && [ "$fd_growth" -lt 50 ]
