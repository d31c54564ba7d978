# Sourced by run.sh after the Kafka stage (whose helpers it uses: kafka_network, start_node_agent,
# outside, wait_ready, metadata_brokers, count_through_broker, kafka_logs): a chart nobody here
# wrote, with its own init container. tests/corpus/bitnami-32.4.4-d.yaml is the Bitnami chart's
# `helm template` output (the command is in its header; the chart's source is not reachable from
# CI, so the rendering is kept), with the docs/charts.md recipe in its pod annotations. The node
# agent runs its prepare-config init container for real: the chart's script, with the env the
# webhook stored, writes server.properties, and the broker starts from that file alone (the
# image's start code, tests/e2e/kafka/bitnami-run.sh, ignores env when the file is mounted).

BITNAMI_NS=bitnami
BITNAMI_CHART=tests/corpus/bitnami-32.4.4-d.yaml

bitnami_written_advertised() { # the advertised.listeners line prepare-config wrote for POD
  sed -n 's/^advertised\.listeners=//p' "$bdir/pods/$BITNAMI_NS/$1/volumes/kafka-config/server.properties" 2>/dev/null
}

init_env_of() { # init_env_of POD CONTAINER VAR: the value the API server stored
  kubectl get pod -n "$BITNAMI_NS" "$1" -o json | jq -r --arg c "$2" --arg v "$3" \
    '.spec.initContainers[] | select(.name == $c) | [.env[]? | select(.name == $v) | .value] | join(",")'
}

run_bitnami_stage() {
  bdir=$work/bitnami
  kdir=$bdir # for kafka_logs
  mkdir -p "$bdir/pods"
  kafka_libs=$(tests/e2e/kafka/fetch-kafka.sh) || { fail "resolving the Kafka jars"; return; }
  kafka_cleanup
  kafka_network "$bdir"
  start_node_agent "$BITNAMI_NS" "$bdir" "$bdir/outside-dns/hosts"

  log "B1. the Bitnami chart (32.4.4, three combined-mode nodes): its prepare-config init container builds each broker's listeners from the injected EXTERNAL_ACCESS_HOST"
  local started=$SECONDS i
  kubectl create namespace "$BITNAMI_NS" >/dev/null
  kubectl apply -f "$BITNAMI_CHART" >"$bdir/apply.log" 2>&1 || { fail "applying $BITNAMI_CHART: $(tail -n 3 "$bdir/apply.log")"; return; }
  # The chart's own external Services, adopted by name, with each broker's DNS name added.
  "$kli" services -f "$BITNAMI_CHART" --name-template '{pod}-external' --port 9095 \
    >"$bdir/services.yaml" 2>"$bdir/services.err" || fail "services: $(cat "$bdir/services.err")"
  kubectl apply -f "$bdir/services.yaml" >/dev/null 2>"$bdir/services-apply.err" \
    || fail "applying the output of services: $(cat "$bdir/services-apply.err")"
  for i in 0 1 2; do
    wait_ready "$BITNAMI_NS" "my-kafka-controller-$i" 240 \
      || { fail "$BITNAMI_NS/my-kafka-controller-$i did not become ready"; kafka_logs; return; }
  done
  log "   three nodes ready after $((SECONDS - started)) s"
  for i in 0 1 2; do
    expect_eq "my-kafka-controller-$i: the webhook gave its init container EXTERNAL_ACCESS_HOST" \
      "$(init_env_of "my-kafka-controller-$i" prepare-config EXTERNAL_ACCESS_HOST)" \
      "my-kafka-controller-$i.$DOMAIN"
    expect_eq "my-kafka-controller-$i: the chart's script wrote its own name into server.properties" \
      "$(bitnami_written_advertised "my-kafka-controller-$i")" \
      "CLIENT://my-kafka-controller-$i.my-kafka-controller-headless.$BITNAMI_NS.svc.cluster.local:9092,INTERNAL://my-kafka-controller-$i.my-kafka-controller-headless.$BITNAMI_NS.svc.cluster.local:9094,EXTERNAL://my-kafka-controller-$i.$DOMAIN:9094"
  done
  local bootstrap="my-kafka-controller-0.$DOMAIN:9094" expected got
  expected=$(printf '%s\n' "0 my-kafka-controller-0.$DOMAIN:9094" "1 my-kafka-controller-1.$DOMAIN:9094" "2 my-kafka-controller-2.$DOMAIN:9094")
  got=$(metadata_until 60 "$expected")
  expect_eq "an outside client bootstraps from my-kafka-controller-0.$DOMAIN:9094 and sees each broker at its own name" \
    "$got" "$expected"
  for i in 0 1 2; do
    expect_eq "through broker $i's own name and load balancer: 100 messages produced and consumed from outside" \
      "$(count_through_broker "$i" "e2e-bitnami-$i")" 100
  done
  outside "$kli" probe --bootstrap "$bootstrap" >"$bdir/probe.txt" 2>&1
  expect_eq "probe from outside: every broker reachable as itself at the name it advertises" \
    "$(grep -c '^broker [012] my-kafka-controller-[012]\.'"$DOMAIN"':9094 -> .*: ok$' "$bdir/probe.txt")" 3
  sed 's/^/       /' "$bdir/probe.txt"
}
