# Sourced by run.sh once the webhook runs in cluster-wide mode: the whole job with real Apache
# Kafka. The example cluster (manifests/examples/kafka: 3 KRaft controllers, 3 brokers, one
# LoadBalancer Service per broker) is applied unchanged; tests/e2e/kafka/node_agent.py plays the
# kubelet (one network namespace and one real broker process per pod, configured only from the
# pod as stored) and the cloud (an address per LoadBalancer Service, external-dns records for an
# "outside" namespace whose resolver knows only the Kafka subdomain). A client in that outside
# namespace bootstraps from kafka-0.kafka.example.com:9094 and must reach every broker by the name
# the webhook made it advertise.

KAFKA_NS=kafka
DOMAIN=kafka.example.com
BRIDGE_NS=kli-e2e-net
OUTSIDE_NS=kli-e2e-outside
POD_NETNS_PREFIX=kli-e2e-pod
AGENT_PID=

kafka_cleanup() {
  if [ -n "$AGENT_PID" ]; then
    kill -TERM "$AGENT_PID" 2>/dev/null
    wait "$AGENT_PID" 2>/dev/null
    AGENT_PID=
  fi
  local ns
  for ns in $(ip netns list | awk '{print $1}' | grep -E "^($BRIDGE_NS|$OUTSIDE_NS|$POD_NETNS_PREFIX)"); do
    ip netns del "$ns" 2>/dev/null
    rm -rf "/etc/netns/$ns"
  done
}

# The rig's networks: a bridge for pod IPs (10.77.1.0/24) inside BRIDGE_NS, load balancer
# addresses (10.77.2.0/24) and node addresses (10.77.3.0/24) on BRIDGE_NS's link to the outside,
# and the outside namespace that routes to those only: pod IPs are unreachable from there, as
# from a VM outside.
kafka_network() {
  local dir=$1
  ip netns add "$BRIDGE_NS"
  ip -n "$BRIDGE_NS" link set lo up
  ip -n "$BRIDGE_NS" link add br0 type bridge
  ip -n "$BRIDGE_NS" addr add 10.77.1.1/24 dev br0
  ip -n "$BRIDGE_NS" link set br0 up
  ip netns add "$OUTSIDE_NS"
  ip -n "$OUTSIDE_NS" link set lo up
  ip -n "$BRIDGE_NS" link add lbnet type veth peer name eth0 netns "$OUTSIDE_NS"
  ip -n "$BRIDGE_NS" addr add 10.78.0.1/24 dev lbnet
  ip -n "$BRIDGE_NS" link set lbnet up
  ip -n "$OUTSIDE_NS" addr add 10.78.0.2/24 dev eth0
  ip -n "$OUTSIDE_NS" link set eth0 up
  ip -n "$OUTSIDE_NS" route add 10.77.2.0/24 via 10.78.0.1
  # Node addresses (the node scenarios' --nodes), reachable from outside as a VPC's nodes are.
  ip -n "$OUTSIDE_NS" route add 10.77.3.0/24 via 10.78.0.1
  : >"$dir/cluster-hosts"
  # The outside resolver's records, in a directory of their own: the DNS server of the
  # reconciler stage serves it too (dnsmasq --hostsdir).
  mkdir -p "$dir/outside-dns"
  : >"$dir/outside-dns/hosts"
  mkdir -p "/etc/netns/$BRIDGE_NS" "/etc/netns/$OUTSIDE_NS"
  ln -sfn "$dir/cluster-hosts" "/etc/netns/$BRIDGE_NS/hosts"
  ln -sfn "$dir/outside-dns/hosts" "/etc/netns/$OUTSIDE_NS/hosts"
}

outside() { ip netns exec "$OUTSIDE_NS" "$@"; }

wait_ready() { # wait_ready NAMESPACE POD SECONDS
  local i
  for i in $(seq 1 "$3"); do
    [ "$(kubectl get pod -n "$1" "$2" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ] && return 0
    sleep 1
  done
  return 1
}

kafka_logs() { # the evidence when something fails: the agent's log and each broker's last lines
  echo "--- node agent"; tail -n 40 "$kdir/agent.log"
  local f
  for f in "$kdir"/pods/*/*/container.log; do
    echo "--- $f"; grep -v '^\s*$' "$f" | tail -n 15
  done
}

# A Kafka tool class from the broker's jars, run in the outside namespace.
kafka_tool() { outside java -Xmx256m -cp "$kafka_libs/*" -Dorg.slf4j.simpleLogger.defaultLogLevel=warn "$@"; }

# The outside client's bootstrap server in the helpers below: kafka-0's name, unless the caller
# has a local `bootstrap` (the node scenarios bootstrap from a node address).
bootstrap_server() { echo "${bootstrap:-kafka-0.$DOMAIN:9094}"; }

# Waits up to 30 s for broker ID in the outside client's metadata; prints "<id> <host:port>".
advertised_by() { # advertised_by ID
  local line
  for _ in $(seq 1 30); do
    line=$(metadata_brokers | grep "^$1 ")
    [ -n "$line" ] && break
    sleep 1
  done
  echo "$line"
}

# Creates TOPIC on broker ID alone, produces 100 messages from outside and counts what comes back:
# the outside client must reach that broker through its own name and load balancer.
count_through_broker() { # count_through_broker ID TOPIC
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$(bootstrap_server)" \
    --create --topic "$2" --replica-assignment "$1" >/dev/null 2>"$kdir/topic.err" \
    || echo "e2e: creating a topic on broker $1 failed: $(tail -n 3 "$kdir/topic.err")" >&2
  seq 1 100 | outside kcat -P -b "$(bootstrap_server)" -t "$2" 2>"$kdir/produce.err"
  # (-e waits for the end of every partition: a broker out of reach would hold it for ever.)
  outside timeout 120 kcat -C -b "$(bootstrap_server)" -t "$2" -o beginning -e -q -m 30 2>/dev/null | wc -l
}

broker_process_env() { # broker_process_env POD NAME: NAME in the environment of the pod's running broker
  local pid
  pid=$(pgrep -f "kafka.Kafka.*pods/$KAFKA_NS/$1/" | head -n 1)
  [ -n "$pid" ] && tr '\0' '\n' <"/proc/$pid/environ" | sed -n "s/^$2=//p"
}

metadata_brokers() { # the brokers as the outside client sees them: "<id> <host:port>" lines
  outside kcat -b "$(bootstrap_server)" -L -m 10 2>/dev/null \
    | sed -n 's/^ *broker \([0-9]*\) at \([^ ]*\).*/\1 \2/p' | sort -n
}

# Polls the outside client's metadata (LISTER, metadata_brokers unless named) until it is
# EXPECTED, up to SECONDS; prints what it saw last.
metadata_until() { # metadata_until SECONDS EXPECTED [LISTER]
  local seen
  for _ in $(seq 1 "$1"); do
    seen=$("${3:-metadata_brokers}")
    [ "$seen" == "$2" ] && break
    sleep 1
  done
  echo "$seen"
}

# Starts the node agent (the rig's kubelet and cloud) for NAMESPACE, with its pods and hosts
# files under DIR and the load balancers' records in OUTSIDE_HOSTS; sets AGENT_PID.
start_node_agent() { # start_node_agent NAMESPACE DIR OUTSIDE_HOSTS [FLAG...]
  python3 tests/e2e/kafka/node_agent.py --namespace "$1" --work "$2/pods" \
    --kafka-libs "$kafka_libs" --image-run "$repo/tests/e2e/kafka/image-run.sh" \
    --bridge-ns "$BRIDGE_NS" --netns-prefix "$POD_NETNS_PREFIX" --subnet 10.77.1 \
    --hosts-file "$2/cluster-hosts" --lb-subnet 10.77.2 --lb-dev lbnet \
    --outside-hosts "$3" --kli-binary "$kli" "${@:4}" >"$2/agent.log" 2>&1 &
  AGENT_PID=$!
}

run_kafka_stage() {
  kdir=$work/kafka
  mkdir -p "$kdir/pods"
  kafka_libs=$(tests/e2e/kafka/fetch-kafka.sh) || { fail "resolving the Kafka jars"; return; }
  for tool in kcat socat java; do
    command -v "$tool" >/dev/null || { fail "$tool is not installed (.ci/install-deps installs it)"; return; }
  done
  kafka_cleanup
  kafka_network "$kdir"
  start_node_agent "$KAFKA_NS" "$kdir" "$kdir/outside-dns/hosts" --dns-delay-file "$kdir/dns-delay"

  log "K1. the example cluster, applied unchanged: brokers start one by one (OrderedReady)"
  local started=$SECONDS
  kubectl apply -k manifests/examples/kafka >/dev/null || fail "applying manifests/examples/kafka"
  local i ready=0
  for i in 0 1 2; do
    if wait_ready "$KAFKA_NS" "kafka-$i" 240; then
      ready=$((ready + 1))
      log "   kafka-$i ready after $((SECONDS - started)) s"
    else
      fail "kafka-$i did not become ready"; kafka_logs; return
    fi
  done
  expect_eq "three brokers ready" "$ready" 3
  for i in 0 1 2; do
    expect_eq "controller kafka-controller-$i is not injected" \
      "$(env_of "$KAFKA_NS" "kafka-controller-$i" KAFKA_ADVERTISED_LISTENERS)$(record_of "$KAFKA_NS" "kafka-controller-$i")" ""
  done

  log "K2. an outside client bootstraps from kafka-0.$DOMAIN:9094 alone"
  local expected_brokers got
  expected_brokers=$(printf '%s\n' "100 kafka-0.$DOMAIN:9094" "101 kafka-1.$DOMAIN:9094" "102 kafka-2.$DOMAIN:9094")
  got=$(metadata_until 30 "$expected_brokers")
  outside kcat -b "kafka-0.$DOMAIN:9094" -L -m 10 >"$kdir/metadata.txt" 2>&1
  sed 's/^/       /' "$kdir/metadata.txt" | head -n 8
  expect_eq "metadata lists every broker by its own name on the Kafka subdomain" "$got" "$expected_brokers"
  expect_eq "pod IPs are not reachable from outside" \
    "$(outside timeout 2 bash -c 'exec 3<>/dev/tcp/10.77.1.10/9094' 2>/dev/null && echo reachable || echo unreachable)" unreachable

  log "K3. a topic led by every broker; 10,000 messages produced and consumed from outside"
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "kafka-0.$DOMAIN:9094" \
    --create --topic e2e --partitions 6 --replication-factor 3 >/dev/null 2>"$kdir/topic.err" \
    || { fail "creating the topic: $(tail -n 3 "$kdir/topic.err")"; kafka_logs; return; }
  local leaders
  for _ in $(seq 1 20); do
    leaders=$(outside kcat -b "kafka-0.$DOMAIN:9094" -L -t e2e -m 10 2>/dev/null \
      | sed -n 's/.*partition [0-9]*, leader \([0-9]*\),.*/\1/p' | sort -un | tr '\n' ' ')
    [ "$leaders" == "100 101 102 " ] && break
    sleep 1
  done
  expect_eq "the topic's partitions are led by every broker" "$leaders" "100 101 102 "
  seq 1 10000 | outside kcat -P -b "kafka-0.$DOMAIN:9094" -t e2e -X enable.idempotence=true \
    2>"$kdir/produce.err" || fail "producing: $(tail -n 3 "$kdir/produce.err")"
  outside timeout 180 kcat -C -b "kafka-0.$DOMAIN:9094" -t e2e -o beginning -e -q -m 30 >"$kdir/consumed.txt" 2>"$kdir/consume.err"
  expect_eq "10,000 messages consumed from outside" "$(wc -l <"$kdir/consumed.txt")" 10000
  expect_eq "none lost or duplicated" "$(sort -n "$kdir/consumed.txt" | uniq | wc -l) $(sort -n "$kdir/consumed.txt" | tail -n 1)" "10000 10000"

  log "K3b. a broker's process killed: restarted in its pod, as the kubelet does, with the same name"
  local uid_before restarted
  uid_before=$(kubectl get pod -n "$KAFKA_NS" kafka-1 -o jsonpath='{.metadata.uid}')
  pkill -KILL -f "$kdir/pods/$KAFKA_NS/kafka-1/run/config/final/server.properties" \
    || fail "no broker process of kafka-1 to kill"
  restarted=$(kubectl wait -n "$KAFKA_NS" pod/kafka-1 --timeout=120s \
      --for=jsonpath='{.status.containerStatuses[0].restartCount}'=1 >/dev/null 2>&1 \
    && wait_ready "$KAFKA_NS" kafka-1 180 && echo restarted)
  expect_eq "kafka-1 restarted in place: the same pod, restartCount 1, Ready again" \
    "$restarted $(kubectl get pod -n "$KAFKA_NS" kafka-1 -o jsonpath='{.metadata.uid}')" "restarted $uid_before"
  expect_eq "and broker 101 is back at its own name" "$(advertised_by 101)" "101 kafka-1.$DOMAIN:9094"

  log "P1. probe from outside: every broker reachable by its own name, as itself"
  local template="INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{pod}.{domain}:9094"
  run_probe() {
    outside "$kli" probe --bootstrap "kafka-0.$DOMAIN:9094" --timeout 3s --expect-template "$template" \
      --domain "$DOMAIN" --namespace "$KAFKA_NS" --node-id-offset 100 >"$kdir/probe.txt" 2>&1
    probe_code=$?
    sed 's/^/       /' "$kdir/probe.txt"
  }
  run_probe
  expect_eq "probe: exit 0 for the healthy cluster" "$probe_code" 0
  expect_contains "probe: every broker answers as itself" "$(cat "$kdir/probe.txt")" "3 brokers, 0 a client here cannot use"

  log "P2. probe: a DNS record removed (external-dns follows the Service's annotation)"
  kubectl annotate service -n "$KAFKA_NS" kafka-2-external external-dns.alpha.kubernetes.io/hostname- >/dev/null
  for _ in $(seq 1 20); do outside getent hosts "kafka-2.$DOMAIN" >/dev/null || break; sleep 0.5; done
  run_probe
  expect_eq "probe: exit 1" "$probe_code" 1
  # The outside namespace resolves from a hosts file alone, with no DNS server it can reach: a
  # name missing there is a failed lookup (EAI_AGAIN), which the probe tells from a name that a
  # DNS server says does not exist (its unit tests cover that one).
  expect_contains "probe names the broker and the fault" "$(cat "$kdir/probe.txt")" \
    "broker 102 advertises kafka-2.$DOMAIN:9094: the resolver here failed: failed to lookup address information: Temporary failure in name resolution"
  kubectl annotate service -n "$KAFKA_NS" kafka-2-external "external-dns.alpha.kubernetes.io/hostname=kafka-2.$DOMAIN" >/dev/null
  for _ in $(seq 1 20); do outside getent hosts "kafka-2.$DOMAIN" >/dev/null && break; sleep 0.5; done

  log "P3. probe: a load balancer that leads to another broker"
  kubectl patch service -n "$KAFKA_NS" kafka-2-external --type merge \
    -p '{"spec":{"selector":{"statefulset.kubernetes.io/pod-name":"kafka-0"}}}' >/dev/null
  sleep 2
  run_probe
  expect_eq "probe: exit 1" "$probe_code" 1
  expect_contains "probe names the broker that answers instead" "$(cat "$kdir/probe.txt")" "which answers as broker 100"
  kubectl patch service -n "$KAFKA_NS" kafka-2-external --type merge \
    -p '{"spec":{"selector":{"statefulset.kubernetes.io/pod-name":"kafka-2"}}}' >/dev/null
  sleep 2
  run_probe
  expect_eq "probe: green again once the Service is mended" "$probe_code" 0

  log "K4. scale the brokers 3 -> 4: no edit anywhere"
  kubectl scale statefulset -n "$KAFKA_NS" kafka --replicas 4 >/dev/null
  # (Its warnings about the example's PLAINTEXT listener go to a file: known, and not the point.)
  "$kli" services -f manifests/examples/kafka/kafka.yaml --type LoadBalancer --replicas 4 2>>"$kdir/services.err" \
    | kubectl apply -f - >/dev/null
  started=$SECONDS
  wait_ready "$KAFKA_NS" kafka-3 240 || { fail "kafka-3 did not become ready"; kafka_logs; return; }
  log "   kafka-3 ready after $((SECONDS - started)) s"
  expect_eq "kafka-3 advertises its own name" "$(env_of "$KAFKA_NS" kafka-3 KAFKA_ADVERTISED_LISTENERS)" \
    "INTERNAL://kafka-3.kafka-headless.kafka.svc:9092,EXTERNAL://kafka-3.$DOMAIN:9094"
  expect_eq "the outside client sees broker 103 by its own name" "$(advertised_by 103)" "103 kafka-3.$DOMAIN:9094"
  expect_eq "messages reach broker 103 through its own load balancer" "$(count_through_broker 103 e2e-new-broker)" 100

  log "K5. scale back to 3"
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "kafka-0.$DOMAIN:9094" \
    --delete --topic e2e-new-broker >/dev/null 2>&1
  kubectl scale statefulset -n "$KAFKA_NS" kafka --replicas 3 >/dev/null
  kubectl delete service -n "$KAFKA_NS" kafka-3-external >/dev/null
  for _ in $(seq 1 60); do
    got=$(metadata_brokers | cut -d' ' -f1 | tr '\n' ' ')
    [ "$got" == "100 101 102 " ] && break
    sleep 1
  done
  expect_eq "broker 103 left the metadata" "$got" "100 101 102 "
  expect_eq "the remaining brokers still serve every message" \
    "$(outside timeout 180 kcat -C -b "kafka-1.$DOMAIN:9094" -t e2e -o beginning -e -q -m 30 2>/dev/null | wc -l)" 10000

  log "K6. a start script that builds the listeners from a variable the webhook injects"
  kubectl apply -f tests/e2e/kafka/scripted-brokers.yaml >/dev/null
  "$kli" services -f tests/e2e/kafka/scripted-brokers.yaml --type LoadBalancer 2>>"$kdir/services.err" \
    | kubectl apply -f - >/dev/null
  wait_ready "$KAFKA_NS" scripted-0 240 || { fail "scripted-0 did not become ready"; kafka_logs; return; }
  expect_eq "scripted-0 got only EXTERNAL_HOST from the webhook" \
    "$(env_of "$KAFKA_NS" scripted-0 EXTERNAL_HOST broker) [$(env_of "$KAFKA_NS" scripted-0 KAFKA_ADVERTISED_LISTENERS broker)]" \
    "scripted-0.$DOMAIN []"
  expect_eq "the script's broker advertises its own name, seen from outside" "$(advertised_by 200)" "200 scripted-0.$DOMAIN:9094"
  expect_eq "its heap is its memory request and CPU_LIMIT the node's CPUs (resourceFieldRef, as the kubelet resolves it)" \
    "$(broker_process_env scripted-0 KAFKA_HEAP_OPTS) CPU_LIMIT=$(broker_process_env scripted-0 CPU_LIMIT)" \
    "-Xms288m -Xmx288m CPU_LIMIT=4"
  expect_eq "messages reach broker 200 through its own load balancer" "$(count_through_broker 200 e2e-scripted)" 100

  log "P4. probe: a broker started without the webhook, advertising its pod IP"
  python3 -c '
import sys, yaml
docs = [d for d in yaml.safe_load_all(sys.stdin) if d]
sts = next(d for d in docs if d["kind"] == "StatefulSet")
sts["metadata"]["name"] = "podip"
sts["spec"]["replicas"] = 1
sts["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "podip"}
meta = sts["spec"]["template"]["metadata"]
meta["labels"] = {"app.kubernetes.io/name": "podip"}
meta["annotations"] = {}
env = sts["spec"]["template"]["spec"]["containers"][0]["env"]
env[:0] = [{"name": "POD_IP", "valueFrom": {"fieldRef": {"fieldPath": "status.podIP"}}},
           {"name": "KAFKA_NODE_ID", "value": "300"},
           {"name": "KAFKA_ADVERTISED_LISTENERS", "value": "INTERNAL://$(POD_IP):9092,EXTERNAL://$(POD_IP):9094"}]
print(yaml.safe_dump(sts))' <manifests/examples/kafka/kafka.yaml | kubectl apply -f - >/dev/null
  wait_ready "$KAFKA_NS" podip-0 240 || { fail "podip-0 did not become ready"; kafka_logs; return; }
  expect_eq "the webhook left podip-0 alone (no inject label)" "$(record_of "$KAFKA_NS" podip-0)" ""
  advertised_by 300 >/dev/null
  run_probe
  expect_eq "probe: exit 1" "$probe_code" 1
  expect_contains "probe names the broker that advertises a pod IP" "$(cat "$kdir/probe.txt")" \
    "broker 300 advertises 10.77.1."
  expect_contains "probe says why a pod IP is useless outside" "$(cat "$kdir/probe.txt")" "an IP address, not a name"
  kubectl delete statefulset -n "$KAFKA_NS" podip >/dev/null

  log "K7. a StatefulSet whose protocol map lacks EXTERNAL is denied: no broker of it starts"
  python3 -c '
import sys, yaml
sts = next(d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] == "StatefulSet")
sts["metadata"]["name"] = "kafka-bad"
sts["spec"]["selector"]["matchLabels"] = {"app.kubernetes.io/name": "kafka-bad"}
sts["spec"]["template"]["metadata"]["labels"]["app.kubernetes.io/name"] = "kafka-bad"
for var in sts["spec"]["template"]["spec"]["containers"][0]["env"]:
    if var["name"] == "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP":
        var["value"] = "INTERNAL:PLAINTEXT,CONTROLLER:PLAINTEXT"
print(yaml.safe_dump(sts))' <manifests/examples/kafka/kafka.yaml \
    | kubectl apply -f - >/dev/null
  expect_contains "the denial is in the StatefulSet's events" "$(first_failed_create "$KAFKA_NS" kafka-bad)" \
    "listener EXTERNAL is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
  expect_eq "no pod of it exists" "$(kubectl get pods -n "$KAFKA_NS" -l app.kubernetes.io/name=kafka-bad -o name)" ""

  # The Services reconciler takes over from here, on these brokers (reconcile-stage.sh).
  declare -F run_reconcile_stage >/dev/null && run_reconcile_stage
  kubectl delete statefulset -n "$KAFKA_NS" kafka-bad >/dev/null

  kubectl delete namespace "$KAFKA_NS" --wait=false >/dev/null
  kafka_cleanup
}

# --- Every way to reach a broker from outside (issue 26): through its node ---
# A second run of the node agent, for namespace kafka-nodes, plays three nodes in two zones, each
# with an address of its own (10.77.3.0/24, routed from outside as a VPC's nodes are): it binds
# pods as kube-scheduler does (spread, nodeSelector, cordon), forwards node ports as kube-proxy
# does, and the API server copies each node's zone to the pods bound to it (PodTopologyLabels).
# The brokers (tests/e2e/kafka/node-brokers.yaml) advertise {hostIP}:{ordinal+30040} and carry
# their node's zone as broker.rack, both from the webhook.
NODES_NS=kafka-nodes
NODES=e2e-node-a=zone-a=10.77.3.11,e2e-node-b=zone-b=10.77.3.12,e2e-node-c=zone-a=10.77.3.13

node_of() { kubectl get pod -n "$NODES_NS" "$1" -o jsonpath='{.spec.nodeName}' 2>/dev/null; }
address_of() { kubectl get node "$1" -o jsonpath='{.status.addresses[?(@.type=="InternalIP")].address}' 2>/dev/null; }
label_of() { # label_of KIND [NAMESPACE] NAME LABEL
  kubectl get "$1" "${@:2:$#-2}" -o json 2>/dev/null | jq -r --arg l "${!#}" '.metadata.labels[$l] // "-"'
}
zone_of() { label_of node "$1" topology.kubernetes.io/zone; }

# "open" when ADDRESS:PORT accepts a connection from outside, "refused" when it is refused.
connect_from_outside() { # connect_from_outside ADDRESS PORT
  local err
  err=$(outside timeout 3 bash -c "exec 3<>/dev/tcp/$1/$2" 2>&1) && { echo open; return; }
  [[ $err == *"Connection refused"* ]] && echo refused || echo "no answer"
}

# The NodePort Services `services --type NodePort` is to render for node-brokers.yaml (issue 26),
# written out: one per broker, only its node answering (externalTrafficPolicy Local), from the
# node port the broker advertises to the container port of its EXTERNAL listener, no DNS name.
node_port_services() { # node_port_services REPLICAS
  local i
  for i in $(seq 0 $(($1 - 1))); do
    cat <<SVC
---
apiVersion: v1
kind: Service
metadata:
  name: kafka-$i-external
  namespace: $NODES_NS
spec:
  type: NodePort
  externalTrafficPolicy: Local
  publishNotReadyAddresses: true
  selector: {statefulset.kubernetes.io/pod-name: kafka-$i}
  ports:
    - {name: kafka, port: 9094, targetPort: 9094, nodePort: $((30040 + i))}
SVC
  done
}

# The fields of Services (YAML on stdin) a client's path through a node port depends on, one
# JSON line per Service.
service_shape() {
  python3 -c 'import sys, json, yaml; [print(json.dumps(d)) for d in yaml.safe_load_all(sys.stdin) if d]' \
    | jq -c '{name: .metadata.name, type: .spec.type, externalTrafficPolicy: .spec.externalTrafficPolicy,
              dns: .metadata.annotations["external-dns.alpha.kubernetes.io/hostname"], selector: .spec.selector,
              ports: [.spec.ports[] | {port, targetPort: (.targetPort // .port), nodePort}]}' | sort
}

run_nodes_stage() {
  # The webhook as shipped: the reconcile stage before this one left it with --readiness-gate,
  # whose condition only a reconciler sets, and none runs here.
  if [ -n "$WEBHOOK_PID" ]; then
    stop_webhook || fail "the webhook exited non-zero"
    start_webhook || { fail "the webhook did not restart"; return; }
  fi
  kdir=$work/kafka-nodes
  mkdir -p "$kdir/pods"
  kafka_libs=$(tests/e2e/kafka/fetch-kafka.sh) || { fail "resolving the Kafka jars"; return; }
  kafka_cleanup
  kafka_network "$kdir"
  start_node_agent "$NODES_NS" "$kdir" "$kdir/outside-dns/hosts" --nodes "$NODES"

  log "N1. NodePort: three nodes in two zones; each broker advertises {hostIP}:{ordinal+30040}"
  local started=$SECONDS i
  kubectl apply -f tests/e2e/kafka/node-brokers.yaml >/dev/null || fail "applying node-brokers.yaml"
  "$kli" services -f tests/e2e/kafka/node-brokers.yaml --type NodePort >"$kdir/services.yaml" 2>"$kdir/services.err"
  expect_eq "services --type NodePort renders a NodePort Service per broker, Local, to its EXTERNAL port" \
    "$(service_shape <"$kdir/services.yaml")" "$(node_port_services 3 | service_shape)"
  # Node ports in the default range's static band, which the API server gives to no Service that
  # names none: the port a random LoadBalancer of an earlier stage held (31092) failed CI once.
  expect_eq "and no warning: the node ports are ones no other Service is given" "$(cat "$kdir/services.err")" ""
  kubectl apply -f "$kdir/services.yaml" >/dev/null || fail "applying the output of services --type NodePort"
  for i in 0 1 2; do
    wait_ready "$NODES_NS" "kafka-$i" 240 || { fail "$NODES_NS/kafka-$i did not become ready"; kafka_logs; return; }
  done
  log "   three brokers ready after $((SECONDS - started)) s"
  local -a node addr
  for i in 0 1 2; do
    node[i]=$(node_of "kafka-$i")
    addr[i]=$(address_of "${node[i]}")
    echo "       kafka-$i on ${node[i]} (${addr[i]}, $(zone_of "${node[i]}"))"
  done
  expect_eq "the controller runs where its nodeSelector puts it" "$(node_of kafka-controller-0)" e2e-node-c
  expect_eq "the brokers are spread over three nodes" "$(printf '%s\n' "${node[@]}" | sort -u | wc -l)" 3
  for i in 0 1 2; do
    expect_eq "kafka-$i carries its node's zone and region (PodTopologyLabels at binding)" \
      "$(label_of pod -n "$NODES_NS" "kafka-$i" topology.kubernetes.io/zone) $(label_of pod -n "$NODES_NS" "kafka-$i" topology.kubernetes.io/region)" \
      "$(zone_of "${node[i]}") $(label_of node "${node[i]}" topology.kubernetes.io/region)"
  done
  local bootstrap=${addr[0]}:30040 expected_brokers got
  expected_brokers=$(printf '%s\n' "100 ${addr[0]}:30040" "101 ${addr[1]}:30041" "102 ${addr[2]}:30042")
  got=$(metadata_until 30 "$expected_brokers")
  outside kcat -b "$bootstrap" -L -m 10 2>&1 | head -n 5 | sed 's/^/       /'
  expect_eq "bootstrapped from $bootstrap, the metadata shows each broker at its own node's address and port" \
    "$got" "$expected_brokers"
  expect_eq "node port 30040 (Local): broker 0's node answers, another node refuses" \
    "$(connect_from_outside "${addr[0]}" 30040) $(connect_from_outside "${addr[1]}" 30040)" "open refused"
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
    --create --topic spread --replica-assignment 100,101,102 >/dev/null 2>"$kdir/topic.err" \
    || fail "creating topic spread: $(tail -n 3 "$kdir/topic.err")"
  seq 1 300 | outside kcat -P -b "$bootstrap" -t spread -X enable.idempotence=true -X message.timeout.ms=60000 2>"$kdir/produce.err" \
    || fail "producing: $(tail -n 3 "$kdir/produce.err")"
  outside timeout 120 kcat -C -b "$bootstrap" -t spread -o beginning -e -q -m 30 >"$kdir/consumed.txt" 2>"$kdir/consume.err"
  expect_eq "300 messages through a partition on each broker, produced and consumed from outside" \
    "$(sort -n "$kdir/consumed.txt" | uniq | wc -l)" 300

  log "Z1. racks: each broker's broker.rack is its node's zone; replicas span both zones"
  kafka_tool org.apache.kafka.tools.BrokerApiVersionsCommand --bootstrap-server "$bootstrap" \
    >"$kdir/api-versions.txt" 2>"$kdir/api-versions.err"
  sed -n 's/ -> .*//p' "$kdir/api-versions.txt" | sed 's/^/       /'
  local racks expected_racks
  racks=$(sed -n 's/^[^ ]* (id: \([0-9]*\) rack: \([^ ]*\) .*/\1 \2/p' "$kdir/api-versions.txt" | sort -n)
  expected_racks=$(printf '%s\n' "100 $(zone_of "${node[0]}")" "101 $(zone_of "${node[1]}")" "102 $(zone_of "${node[2]}")")
  expect_eq "the outside client sees every broker's rack, its node's zone" "$racks" "$expected_racks"
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" \
    --create --topic racks --partitions 6 --replication-factor 2 >/dev/null 2>"$kdir/topic.err" \
    || fail "creating topic racks: $(tail -n 3 "$kdir/topic.err")"
  local replicas spanning
  for _ in $(seq 1 20); do
    replicas=$(outside kcat -b "$bootstrap" -L -t racks -m 10 2>/dev/null | sed -n 's/.*partition \([0-9]*\),.* replicas: \([0-9,]*\),.*/\1 \2/p')
    [ "$(echo "$replicas" | grep -c .)" -eq 6 ] && break
    sleep 1
  done
  echo "$replicas" | tr '\n' ';' | sed 's/^/       partition replicas: /; s/$/\n/'
  # A partition spans both zones when its replicas' racks (by the zones above) are two.
  spanning=$(echo "$replicas" | while read -r _ ids; do
    for id in ${ids//,/ }; do echo "$expected_racks" | awk -v id="$id" '$1 == id {print $2}'; done | sort -u | wc -l
  done | grep -c '^2$')
  expect_eq "topic racks (6 partitions, replication factor 2): every partition has replicas in both zones" "$spanning" 6

  log "N1b. kafka-1's node cordoned and its pod deleted: it runs on another node, advertised and reached there"
  local old_node=${node[1]} old_addr=${addr[1]} old_uid new_node new_addr
  old_uid=$(kubectl get pod -n "$NODES_NS" kafka-1 -o jsonpath='{.metadata.uid}')
  kubectl cordon "$old_node" >/dev/null
  kubectl delete pod -n "$NODES_NS" kafka-1 --wait=false >/dev/null
  for _ in $(seq 1 120); do
    [ -n "$(kubectl get pod -n "$NODES_NS" kafka-1 -o jsonpath='{.metadata.uid}' 2>/dev/null | grep -v "^$old_uid$")" ] && break
    sleep 1
  done
  wait_ready "$NODES_NS" kafka-1 240 || {
    fail "the new kafka-1 did not become ready"; kafka_logs
    kubectl uncordon "$old_node" >/dev/null  # the stages after this one schedule there too
    return
  }
  new_node=$(node_of kafka-1)
  new_addr=$(address_of "$new_node")
  echo "       kafka-1 now on $new_node ($new_addr)"
  expect_eq "the new kafka-1 runs on a node other than the cordoned one" \
    "$([ -n "$new_node" ] && [ "$new_node" != "$old_node" ] && echo elsewhere)" elsewhere
  addr[1]=$new_addr
  expected_brokers=$(printf '%s\n' "100 ${addr[0]}:30040" "101 ${addr[1]}:30041" "102 ${addr[2]}:30042")
  got=$(metadata_until 30 "$expected_brokers")
  expect_eq "the metadata shows broker 101 at its new node's address, the others where they were" \
    "$got" "$expected_brokers"
  expect_eq "messages reach broker 101 at its new node" "$(count_through_broker 101 moved)" 100
  expect_eq "node port 30041: the new node answers, the cordoned one no longer does" \
    "$(connect_from_outside "$new_addr" 30041) $(connect_from_outside "$old_addr" 30041)" "open refused"
  outside "$kli" probe --bootstrap "$bootstrap" --timeout 3s --namespace "$NODES_NS" --node-id-offset 100 \
    --expect-template "INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{hostIP}:{ordinal+30040}" \
    >"$kdir/probe.txt" 2>&1
  probe_code=$?
  sed 's/^/       /' "$kdir/probe.txt"
  expect_eq "probe from outside, bootstrapped from a node address: exit 0" "$probe_code" 0

  log "Z2. kafka-1 recreated on a node without a zone label: it registers an empty rack, and probe says so"
  local zone other zones
  zone=$(zone_of "$new_node")
  zones="100 \"$(zone_of "${node[0]}")\" 101 \"\" 102 \"$(zone_of "${node[2]}")\" "
  other=$(kubectl get nodes -o name | cut -d/ -f2 | grep -v -x -e "$old_node" -e "$new_node" | head -n1)
  kubectl label node "$new_node" topology.kubernetes.io/zone- >/dev/null
  kubectl cordon "$other" >/dev/null
  old_uid=$(kubectl get pod -n "$NODES_NS" kafka-1 -o jsonpath='{.metadata.uid}')
  kubectl delete pod -n "$NODES_NS" kafka-1 --wait=false >/dev/null
  for _ in $(seq 1 120); do
    [ -n "$(kubectl get pod -n "$NODES_NS" kafka-1 -o jsonpath='{.metadata.uid}' 2>/dev/null | grep -v "^$old_uid$")" ] && break
    sleep 1
  done
  if wait_ready "$NODES_NS" kafka-1 240; then
    expect_eq "the new kafka-1 runs on $new_node and carries no zone label" \
      "$(node_of kafka-1) $(label_of pod -n "$NODES_NS" kafka-1 topology.kubernetes.io/zone)" "$new_node -"
    metadata_until 30 "$expected_brokers" >/dev/null
    outside "$kli" probe --bootstrap "$bootstrap" --timeout 3s >"$kdir/probe-racks.txt" 2>&1
    probe_code=$?
    sed 's/^/       /' "$kdir/probe-racks.txt"
    expect_eq "probe: broker 101's rack is empty, the others' their zones" \
      "$(sed -n 's/^broker \([0-9]*\) (rack \("[^"]*"\)).*/\1 \2/p' "$kdir/probe-racks.txt" | sort -n | tr '\n' ' ')" \
      "$zones"
    expect_contains "and a note names broker 101 and the missing zone label" "$(cat "$kdir/probe-racks.txt")" \
      "note: broker 101 registered an empty rack, which Kafka takes for a rack named \"\" (with --rack-env: its pod had no topology.kubernetes.io/zone label"
    expect_eq "a note is not a fault: exit 0" "$probe_code" 0
  else
    fail "kafka-1 did not become ready on a node without a zone label"
    kafka_logs
  fi
  kubectl label node "$new_node" "topology.kubernetes.io/zone=$zone" >/dev/null
  kubectl uncordon "$other" >/dev/null
  kubectl uncordon "$old_node" >/dev/null

  kubectl delete namespace "$NODES_NS" --wait=false >/dev/null
  kafka_cleanup
}
