# Sourced by run.sh after the Bitnami stage (it uses the Kafka stage's helpers: kafka_network,
# start_node_agent, outside, wait_ready, metadata_until, kafka_logs): a second chart nobody here
# wrote, one that bypasses the image's env handling. tests/corpus/cloudpirates-kafka-0.1.4-e2e.yaml
# is the CloudPirates chart's `helm template` output with the docs/charts.md recipe in its own
# values (the command is in its header). Its container runs the chart's `sh -ec` script, which
# copies server.properties from a ConfigMap, formats the log directory with kafka-storage.sh and
# execs kafka-server-start.sh with `--override advertised.listeners=...EXTERNAL://${EXTERNAL_HOST}`:
# the broker's name comes only from the EXTERNAL_HOST the webhook injects. Every listener is
# SASL_PLAINTEXT with the chart's random passwords, so the outside client signs in as the chart's
# client user, with the password from the chart's Secret.

CLOUDPIRATES_NS=cloudpirates
CLOUDPIRATES_CHART=tests/corpus/cloudpirates-kafka-0.1.4-e2e.yaml

# kcat from outside, signed in as the chart's client user (a broker out of reach would hold a
# consumer's -e for ever: at most 120 s).
sasl_kcat() { outside timeout 120 kcat -X security.protocol=SASL_PLAINTEXT -X sasl.mechanism=PLAIN -X sasl.username=user \
  -X "sasl.password=$(cat "$cdir/client-password")" "$@"; }

cloudpirates_brokers() { # the brokers as the outside client sees them: "<id> <host:port>" lines
  sasl_kcat -b "my-kafka-0.$DOMAIN:9094" -L -m 10 2>/dev/null \
    | sed -n 's/^ *broker \([0-9]*\) at \([^ ]*\).*/\1 \2/p' | sort -n
}

# The advertised.listeners override on the command line of the running broker of POD.
cloudpirates_override() {
  local pid
  pid=$(pgrep -f "kafka\.Kafka .*advertised\.listeners=CLIENT://$1\.my-kafka-headless\." | head -n 1)
  [ -n "$pid" ] && tr '\0' '\n' <"/proc/$pid/cmdline" | sed -n 's/^advertised\.listeners=//p'
}

run_cloudpirates_stage() {
  cdir=$work/cloudpirates
  kdir=$cdir # for kafka_logs
  mkdir -p "$cdir/pods"
  kafka_libs=$(tests/e2e/kafka/fetch-kafka.sh) || { fail "resolving the Kafka jars"; return; }
  kafka_cleanup
  kafka_network "$cdir"
  start_node_agent "$CLOUDPIRATES_NS" "$cdir" "$cdir/outside-dns/hosts"

  log "C1. the CloudPirates chart (0.1.4, three combined-mode nodes): its own script starts kafka-server-start.sh with an --override naming the injected EXTERNAL_HOST"
  local started=$SECONDS i
  kubectl create namespace "$CLOUDPIRATES_NS" >/dev/null
  kubectl apply -f "$CLOUDPIRATES_CHART" >"$cdir/apply.log" 2>&1 \
    || { fail "applying $CLOUDPIRATES_CHART: $(tail -n 3 "$cdir/apply.log")"; return; }
  "$kli" services -f "$CLOUDPIRATES_CHART" >"$cdir/services.yaml" 2>"$cdir/services.err" \
    || fail "services: $(cat "$cdir/services.err")"
  kubectl apply -f "$cdir/services.yaml" >/dev/null 2>"$cdir/services-apply.err" \
    || fail "applying the output of services: $(cat "$cdir/services-apply.err")"
  for i in 0 1 2; do
    wait_ready "$CLOUDPIRATES_NS" "my-kafka-$i" 240 \
      || { fail "$CLOUDPIRATES_NS/my-kafka-$i did not become ready"; kafka_logs; return; }
  done
  log "   three nodes ready after $((SECONDS - started)) s"
  kubectl get secret -n "$CLOUDPIRATES_NS" my-kafka -o jsonpath='{.data.client-password}' | base64 -d >"$cdir/client-password"
  [ -s "$cdir/client-password" ] || { fail "reading the client password from the chart's Secret my-kafka"; return; }
  for i in 0 1 2; do
    expect_eq "my-kafka-$i: the webhook gave container kafka EXTERNAL_HOST, and no KAFKA_ADVERTISED_LISTENERS (env-name none)" \
      "$(kubectl get pod -n "$CLOUDPIRATES_NS" "my-kafka-$i" -o json | jq -r '[.spec.containers[0].env[] | select(.name == "EXTERNAL_HOST" or .name == "KAFKA_ADVERTISED_LISTENERS") | "\(.name)=\(.value)"] | join(" ")')" \
      "EXTERNAL_HOST=my-kafka-$i.$DOMAIN"
    expect_eq "my-kafka-$i: the chart's script started Kafka with its own name in the override" \
      "$(cloudpirates_override "my-kafka-$i")" \
      "CLIENT://my-kafka-$i.my-kafka-headless.$CLOUDPIRATES_NS.svc.cluster.local:9092,INTERNAL://my-kafka-$i.my-kafka-headless.$CLOUDPIRATES_NS.svc.cluster.local:9095,EXTERNAL://my-kafka-$i.$DOMAIN:9094"
  done
  local expected got
  expected=$(printf '%s\n' "0 my-kafka-0.$DOMAIN:9094" "1 my-kafka-1.$DOMAIN:9094" "2 my-kafka-2.$DOMAIN:9094")
  got=$(metadata_until 60 "$expected" cloudpirates_brokers)
  expect_eq "an outside client signed in over SASL bootstraps from my-kafka-0.$DOMAIN:9094 and sees each broker at its own name" \
    "$got" "$expected"
  printf '%s\n' "security.protocol=SASL_PLAINTEXT" "sasl.mechanism=PLAIN" \
    "sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required username=\"user\" password=\"$(cat "$cdir/client-password")\";" \
    >"$cdir/client.properties"
  for i in 0 1 2; do
    kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "my-kafka-0.$DOMAIN:9094" \
      --command-config "$cdir/client.properties" --create --topic "e2e-cloudpirates-$i" \
      --replica-assignment "$i" >/dev/null 2>"$cdir/topic.err" \
      || fail "creating a topic on broker $i: $(tail -n 3 "$cdir/topic.err")"
    seq 1 100 | sasl_kcat -P -b "my-kafka-0.$DOMAIN:9094" -t "e2e-cloudpirates-$i" 2>"$cdir/produce.err"
    expect_eq "through broker $i's own name and load balancer: 100 messages produced and consumed from outside over SASL" \
      "$(sasl_kcat -C -b "my-kafka-0.$DOMAIN:9094" -t "e2e-cloudpirates-$i" -o beginning -e -q -m 30 2>/dev/null | wc -l)" 100
  done
  KLI_SASL_PASSWORD=$(cat "$cdir/client-password") outside "$kli" probe --bootstrap "my-kafka-0.$DOMAIN:9094" \
    --sasl-mechanism PLAIN --sasl-username user --allow-plaintext-password >"$cdir/probe.txt" 2>&1
  local probe_code=$?
  sed 's/^/       /' "$cdir/probe.txt"
  expect_eq "probe from outside over SASL: exit 0" "$probe_code" 0
  for i in 0 1 2; do
    expect_eq "probe: broker $i reachable as itself at my-kafka-$i.$DOMAIN:9094" \
      "$(grep -c "^broker $i my-kafka-$i\.$DOMAIN:9094 -> .*: ok\$" "$cdir/probe.txt")" 1
  done
  expect_eq "the password appears nowhere in probe's output" \
    "$(grep -c -F -f "$cdir/client-password" "$cdir/probe.txt")" 0

  kubectl delete namespace "$CLOUDPIRATES_NS" --wait=false >/dev/null
  kafka_cleanup
}
