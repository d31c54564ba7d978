# Sourced by run.sh; run at the end of the real-Kafka stage, on its brokers, node agent and networks:
# the Services reconciler (`kafka-listener-injector reconcile`) against the real StatefulSet
# controller and real brokers. Two reconcilers share one Lease and run as the reconciler's service
# account (impersonated), with exactly the RBAC of manifests/services-reconciler. A DNS server
# (dnsmasq) serves the outside resolver's records, which the rig's "cloud" publishes a few seconds
# after each load balancer, as external-dns does: two addresses per load balancer, in an order
# that changes from answer to answer, with a 5 s TTL. The webhook adds the external-name readiness
# gate.

RECONCILE_PIDS=()
DNS_PID=
PUBLIC_DNS_PIDS=()
DNS_PORT=25354
RECONCILER_SA=system:serviceaccount:kafka-listener-injector:kafka-listener-injector-services

reconcile_cleanup() {
  local pid
  cut_api_proxy
  for pid in "${RELAY_PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
  for pid in "${RECONCILE_PIDS[@]}" $DNS_PID "${PUBLIC_DNS_PIDS[@]}"; do
    kill -TERM "$pid" 2>/dev/null
    wait "$pid" 2>/dev/null
  done
  RECONCILE_PIDS=()
  DNS_PID=
  PUBLIC_DNS_PIDS=()
}

start_reconciler() { # start_reconciler NAME ADMIN_PORT [FLAG...]: prints the pid
  KUBECONFIG=${RECONCILE_KUBECONFIG:-$rdir/kubeconfig} "$kli" reconcile "${@:3}" --bootstrap-host 'bootstrap-{statefulset}.{domain}' \
    --dns-server "127.0.0.1:$DNS_PORT" --dns-check-interval 1s --scale-down-grace 20s \
    --lease-name kli-services --lease-namespace kafka-listener-injector --identity "$1" \
    --admin-listen "127.0.0.1:$2" --log-format json >>"$rdir/$1.log" 2>&1 &
  echo $!
}

API_PROXY_PORT=29190 # below the ephemeral port range, where no client connection holds it
API_PROXY_PID=
open_api_proxy() { # a TCP relay to the API server, which cut_api_proxy takes down with its connections
  setsid socat "TCP-LISTEN:$API_PROXY_PORT,bind=127.0.0.1,reuseaddr,fork" "TCP:127.0.0.1:$APISERVER_PORT" \
    2>>"$rdir/api-proxy.log" &
  API_PROXY_PID=$!
  wait_for 10 port_open "$API_PROXY_PORT" >/dev/null
}
port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }
cut_api_proxy() {
  [ -n "$API_PROXY_PID" ] || return 0
  kill -KILL -- "-$API_PROXY_PID" 2>/dev/null
  wait "$API_PROXY_PID" 2>/dev/null
  API_PROXY_PID=
}

metric() { # metric ADMIN_PORT NAME: the sample's value, or nothing
  curl -fs "http://127.0.0.1:$1/metrics" 2>/dev/null | awk -v m="$2" '$1 == m {print $2}'
}

managed_services() { # the Services the reconciler keeps for StatefulSet kafka, by name
  kubectl get services -n "$KAFKA_NS" -o json \
    | jq -r '.items[] | select(any(.metadata.ownerReferences[]?; .kind == "StatefulSet" and .name == "kafka"))
             | .metadata.name' | sort | tr '\n' ' '
}

events_of() { # events_of NAMESPACE OBJECT REASON
  kubectl get events -n "$1" --field-selector "involvedObject.name=$2,reason=$3" -o json | jq -r '.items[].message'
}

wait_for() { # wait_for SECONDS COMMAND...: until COMMAND succeeds; prints the seconds it took
  local start=$SECONDS
  while ! "${@:2}" >/dev/null 2>&1; do
    [ $((SECONDS - start)) -ge "$1" ] && { echo timeout; return 1; }
    sleep 0.5
  done
  echo $((SECONDS - start))
}

touch_statefulset() { # touch_statefulset COUNT SECONDS TAG: a metadata change (no rollout) every SECONDS
  local touch
  for touch in $(seq "$1"); do
    kubectl annotate statefulset -n "$KAFKA_NS" kafka e2e.example.com/touched="$3-$touch" --overwrite >/dev/null
    sleep "$2"
  done
}
has_service() { kubectl get service -n "$KAFKA_NS" "$1" >/dev/null 2>&1; }
service_uids() { # the uids of StatefulSet kafka's Services, by name
  kubectl get services -n "$KAFKA_NS" -l app.kubernetes.io/instance=kafka -o json \
    | jq -r '.items[] | "\(.metadata.name)=\(.metadata.uid)"' | sort | tr '\n' ' '
}
no_service() { ! has_service "$1"; }
pod_ready() {
  [ "$(kubectl get pod -n "$KAFKA_NS" "$1" -o jsonpath='{.status.conditions[?(@.type=="Ready")].status}' 2>/dev/null)" == True ]
}
# A broker pod's state for R4c: "replaced" when it is deleted and not gone yet, gone, or recreated
# with its containers not ready yet; "running" otherwise, and when the API server cannot say.
# (Not the pod's Ready: with --readiness-gate a running broker waits for its DNS name there.)
broker_pod_state() { # POD
  local state
  state=$(kubectl get pod -n "$KAFKA_NS" "$1" --ignore-not-found \
    -o jsonpath='{.metadata.deletionTimestamp}/{.status.conditions[?(@.type=="ContainersReady")].status}') \
    || { echo running; return; }
  [ "$state" == "/True" ] && echo running || echo replaced
}
containers_ready() {
  [ "$(kubectl get pod -n "$KAFKA_NS" "$1" -o jsonpath='{.status.conditions[?(@.type=="ContainersReady")].status}' 2>/dev/null)" == True ]
}
dig_outside() { # the addresses the reconciler's DNS server answers for a name, in its order, on one line
  python3 - "$1" "$DNS_PORT" <<'PY'
import socket, struct, sys
name, port = sys.argv[1], int(sys.argv[2])
query = struct.pack(">HHHHHH", 1, 0x100, 1, 0, 0, 0) + b"".join(
    bytes([len(label)]) + label.encode() for label in name.split(".")) + b"\0" + struct.pack(">HH", 1, 1)
sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
sock.settimeout(2)
sock.sendto(query, ("127.0.0.1", port))
reply = sock.recv(4096)
offset, addresses = len(query), []
for _ in range(struct.unpack(">H", reply[6:8])[0]):
    offset += 2  # a compressed pointer to the name
    kind, _, _, length = struct.unpack(">HHIH", reply[offset:offset + 10])
    offset += 10
    if kind == 1:
        addresses.append(".".join(map(str, reply[offset:offset + length])))
    offset += length
print(" ".join(addresses))
PY
}
name_resolves() { # as the reconciler's resolver answers
  [ -n "$(outside getent hosts "$1")" ]
}
events_exist() { [ -n "$(events_of "$@")" ]; }
our_events() { # the events the reconciler published in the namespace: reason, object, repeats
  kubectl get events -n "$KAFKA_NS" -o json \
    | jq -r '.items[] | select(.reportingComponent == "kafka-listener-injector")
             | "\(.reason)/\(.involvedObject.name)x\(.series.count // .count // 1)"' | sort | tr '\n' ' '
}
service_versions() { # name=resourceVersion of StatefulSet kafka's Services
  kubectl get services -n "$KAFKA_NS" -l app.kubernetes.io/instance=kafka -o json \
    | jq -r '.items[] | "\(.metadata.name)=\(.metadata.resourceVersion)"' | sort | tr '\n' ' '
}
broker_pod_uids() { # name=uid of the brokers kafka-0..2, on one line
  kubectl get pods -n "$KAFKA_NS" kafka-0 kafka-1 kafka-2 -o json \
    | jq -r '.items[] | "\(.metadata.name)=\(.metadata.uid)"' | sort | tr '\n' ' '
}
partitions_in_sync() { # no partition under-replicated, as the outside client's admin tool sees it
  local out
  out=$(kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "kafka-0.$DOMAIN:9094" \
    --describe --under-replicated-partitions 2>&1) && [ -z "$out" ]
}
services_are() { [ "$(managed_services)" == "$1" ]; }
leads() { [ "$(metric "$1" kafka_listener_injector_reconcile_leader)" == 1 ]; }
external_name_ready() {
  kubectl get service -n "$KAFKA_NS" "$1" -o jsonpath='{.metadata.annotations.kafka-listener-injector\.io/external-name}' | grep -q '^ready'
}
AWS_LB_TYPE=service.beta.kubernetes.io/aws-load-balancer-type
external_name_of() {
  kubectl get service -n "$KAFKA_NS" "$1" -o jsonpath='{.metadata.annotations.kafka-listener-injector\.io/external-name}'
}
external_name_is() { [[ "$(external_name_of "$1")" == "$2"* ]]; } # external_name_is SERVICE PREFIX
lb_reported_by_name() { # the hostname in SERVICE's load balancer status; fails while there is none
  local name
  name=$(kubectl get service -n "$KAFKA_NS" "$1" -o jsonpath='{.status.loadBalancer.ingress[0].hostname}')
  [ -n "$name" ] && echo "$name"
}
leader_count() { # how many of the reconcilers say they lead
  local port n=0
  for port in "$@"; do [ "$(metric "$port" kafka_listener_injector_reconcile_leader)" == 1 ] && n=$((n + 1)); done
  echo "$n"
}

# The leader cut off from the API server for 20 s while a standby reaches it: the standby takes
# the Lease once it runs out, so the old leader must have stopped writing by then. Sampled twice a
# second, the replicas that say they lead are never two. Leaves RECONCILE_PIDS as the two replicas.
# DNS as a client on the internet meets it: the zone's authoritative server (the cloud's records,
# as the reconciler's dnsmasq serves them), which the pods reach at 10.77.1.1 and the outside at
# 10.78.0.1, and in the outside namespace a caching resolver in front of it that keeps a "no such
# name" for the zone's negative TTL (NEGATIVE_TTL s), as every recursive resolver does (RFC 2308).
NEGATIVE_TTL=60
start_public_dns() {
  ip netns exec "$BRIDGE_NS" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts \
    --no-poll --hostsdir="$kdir/outside-dns" --local="/$DOMAIN/" --listen-address=10.77.1.1,10.78.0.1 \
    --bind-interfaces --port=53 --cache-size=0 --local-ttl=5 --user=root --pid-file= \
    --log-facility=- >"$rdir/dns-authoritative.log" 2>&1 &
  PUBLIC_DNS_PIDS+=($!)
  # Not through `outside` (a function: $! would be its subshell, and the cleanup would miss it).
  ip netns exec "$OUTSIDE_NS" dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    --server=10.78.0.1 --listen-address=127.0.0.1 --bind-interfaces --port=53 \
    --neg-ttl="$NEGATIVE_TTL" --user=root --pid-file= --log-queries --log-facility=- \
    >"$rdir/dns-caching.log" 2>&1 &
  PUBLIC_DNS_PIDS+=($!)
  mkdir -p "$rdir/public-client"
  echo "127.0.0.1 localhost" >"$rdir/public-client/hosts"
  echo "nameserver 127.0.0.1" >"$rdir/public-client/resolv.conf"
}
public() { # a command in the outside namespace that resolves through the caching resolver alone
  outside unshare --mount --propagation private sh -c \
    'mount --bind "$0/hosts" /etc/hosts && mount --bind "$0/resolv.conf" /etc/resolv.conf && exec "$@"' \
    "$rdir/public-client" "$@"
}

# Watches a new broker from outside, in seconds since the call: when broker ID is in the outside
# client's metadata (REGISTERED), when its NAME is published at the authoritative server
# (PUBLISHED), what the caching resolver said when first asked right after the registration
# (FIRST_ANSWER) and when it first gave the address (RESOLVED).
watch_new_broker() { # watch_new_broker ID NAME
  local start=$SECONDS
  REGISTERED= PUBLISHED= FIRST_ANSWER= RESOLVED=
  while [ $((SECONDS - start)) -lt 240 ]; do
    [ -z "$PUBLISHED" ] && [ -n "$(dig_outside "$2")" ] && PUBLISHED=$((SECONDS - start))
    if [ -z "$REGISTERED" ] && public timeout 10 kcat -b "kafka-0.$DOMAIN:9094" -L -m 5 2>/dev/null \
      | grep -q "broker $1 at"; then
      REGISTERED=$((SECONDS - start))
    fi
    if [ -n "$REGISTERED" ]; then
      if public getent hosts "$2" >/dev/null; then
        FIRST_ANSWER=${FIRST_ANSWER:-an address}
        RESOLVED=$((SECONDS - start))
        [ -n "$PUBLISHED" ] && return 0
      fi
      FIRST_ANSWER=${FIRST_ANSWER:-no such name}
    fi
    sleep 0.5
  done
}

# R2b: the gap no readiness gate closes. A broker registers in the metadata as soon as it starts,
# before its load balancer's record exists; a client that looks the name up then is told "no such
# name", and its resolver keeps that for the negative TTL. With --wait-for-name-image the broker
# waits in an init container until the authoritative server has the record, so the first lookup
# finds it.
run_negative_cache_scenario() {
  log "R2b. a new broker's name looked up by an outside client as soon as the broker registers (a caching resolver, negative TTL ${NEGATIVE_TTL} s)"
  start_public_dns
  echo 25 >"$kdir/dns-delay"
  kubectl scale statefulset -n "$KAFKA_NS" kafka --replicas 4 >/dev/null
  watch_new_broker 103 "kafka-3.$DOMAIN"
  pass "without the wait: broker 103 registered at ${REGISTERED:-never} s, its name published at ${PUBLISHED:-never} s, the outside resolver gave the address at ${RESOLVED:-never} s"
  expect_eq "so the outside resolver's first answer was 'no such name'" "$FIRST_ANSWER" "no such name"
  expect_eq "and it kept that answer past the record's publication, for its negative TTL" \
    "$([ -n "$RESOLVED" ] && [ -n "$PUBLISHED" ] && [ $((RESOLVED - REGISTERED)) -ge $((NEGATIVE_TTL - 10)) ] \
      && [ "$RESOLVED" -gt $((PUBLISHED + 5)) ] && echo yes)" yes
  wait_for 120 pod_ready kafka-3 >/dev/null || fail "kafka-3 did not turn ready"

  stop_webhook || fail "the webhook exited non-zero"
  start_webhook --readiness-gate --wait-for-name-image kafka-listener-injector:e2e \
    --wait-for-name-dns-server 10.77.1.1 --wait-for-name-timeout 3m || { fail "the webhook did not restart"; return; }
  kubectl scale statefulset -n "$KAFKA_NS" kafka --replicas 5 >/dev/null
  wait_for 60 kubectl get pod -n "$KAFKA_NS" kafka-4 >/dev/null
  expect_eq "with --wait-for-name-image kafka-4 has the init container, waiting for its external name" \
    "$(kubectl get pod -n "$KAFKA_NS" kafka-4 -o json | jq -r '.spec.initContainers[] | select(.name == "kli-wait-for-name") | "\(.image) \(.args[-1])"')" \
    "kafka-listener-injector:e2e kafka-4.$DOMAIN"
  watch_new_broker 104 "kafka-4.$DOMAIN"
  pass "with the wait: its name published at ${PUBLISHED:-never} s, broker 104 registered at ${REGISTERED:-never} s, the outside resolver gave the address at ${RESOLVED:-never} s"
  expect_eq "broker 104 registered only once its name was published" \
    "$([ -n "$REGISTERED" ] && [ -n "$PUBLISHED" ] && [ "$REGISTERED" -ge "$PUBLISHED" ] && echo yes)" yes
  expect_eq "so the outside resolver's first answer was its address" "$FIRST_ANSWER" "an address"
  expect_contains "the init container said what it waited for" \
    "$(cat "$kdir/pods/$KAFKA_NS/kafka-4/init-kli-wait-for-name.log" 2>/dev/null)" \
    "kafka-4.$DOMAIN answers at every authoritative server"
  wait_for 120 pod_ready kafka-4 >/dev/null || fail "kafka-4 did not turn ready"

  stop_webhook || fail "the webhook exited non-zero"
  start_webhook --readiness-gate || { fail "the webhook did not restart"; return; }
  echo 15 >"$kdir/dns-delay"
  kubectl scale statefulset -n "$KAFKA_NS" kafka --replicas 3 >/dev/null
  wait_for 120 no_service kafka-4-external >/dev/null
  wait_for 60 no_service kafka-3-external >/dev/null
  expect_eq "back at 3 brokers after the grace" \
    "$(managed_services)" "kafka-0-external kafka-1-external kafka-2-external kafka-bootstrap "
  local pid
  for pid in "${PUBLIC_DNS_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; wait "$pid" 2>/dev/null; done
  PUBLIC_DNS_PIDS=()
}

run_partition_scenario() {
  log "R5. the leader cut off from the API server for 20 s: never two writers, and it stands by"
  local kubeconfig_via_proxy=$rdir/kubeconfig-via-proxy
  sed "s#127.0.0.1:$APISERVER_PORT#127.0.0.1:$API_PROXY_PORT#" "$rdir/kubeconfig" >"$kubeconfig_via_proxy"
  open_api_proxy || { fail "the API proxy did not start"; return; }
  local p q took
  p=$(RECONCILE_KUBECONFIG=$kubeconfig_via_proxy start_reconciler reconciler-p 29194)
  kill -TERM "${RECONCILE_PIDS[@]}" 2>/dev/null
  wait "${RECONCILE_PIDS[@]}" 2>/dev/null
  RECONCILE_PIDS=("$p")
  took=$(wait_for 60 leads 29194)
  expect_eq "the replica behind the proxy leads (after ${took} s)" "$(leader_count 29194)" 1
  q=$(start_reconciler reconciler-q 29195)
  RECONCILE_PIDS=("$p" "$q")
  wait_for 30 curl -fs http://127.0.0.1:29195/readyz >/dev/null
  cut_api_proxy
  local most=0 count stepped_down= took_over= start=$SECONDS
  while [ $((SECONDS - start)) -lt 20 ]; do
    count=$(leader_count 29194 29195)
    [ "$count" -gt "$most" ] && most=$count
    [ -z "$stepped_down" ] && [ "$(metric 29194 kafka_listener_injector_reconcile_leader)" == 0 ] && stepped_down=$((SECONDS - start))
    [ -z "$took_over" ] && leads 29195 && took_over=$((SECONDS - start))
    sleep 0.5
  done
  open_api_proxy || { fail "the API proxy did not start again"; return; }
  expect_eq "never two replicas said they lead (the cut-off one stopped at ${stepped_down:-never} s, the standby led at ${took_over:-never} s)" \
    "$most" 1
  expect_eq "the standby took over while the leader was cut off" "$([ -n "$took_over" ] && echo yes)" yes
  sleep 5
  expect_eq "with the API server back, the old leader stands by (it did not exit)" \
    "$(kill -0 "$p" 2>/dev/null && echo running) $(leader_count 29194) $(leader_count 29195)" "running 0 1"
}

# The domain changed on the running StatefulSet as docs/reconcile.md says: held by a partition
# until the new names resolve (each broker's Service publishes the name its next pod will
# advertise beside the one it advertises now), then rolled pod by pod by the StatefulSet
# controller. Sampled every few seconds, every broker in the outside client's metadata answers as
# itself at the name it advertises. A broker whose own pod is being replaced (deleted, or recreated
# with its containers not ready yet) may not answer: that is the restart any roll has, and
# clients retry it. A name that reaches another broker, or a running broker that does not answer
# at its name, is a miss.
run_domain_change_scenario() {
  log "R4c. a new domain rolled pod by pod: every broker stays reachable by the name it advertises"
  local new_domain=kafka.example.net
  kubectl patch statefulset -n "$KAFKA_NS" kafka --type merge -p "{\"spec\":{
    \"updateStrategy\":{\"type\":\"RollingUpdate\",\"rollingUpdate\":{\"partition\":3}},
    \"template\":{\"metadata\":{\"annotations\":{\"kafka-listener-injector.io/domain\":\"$new_domain\"}}}}}" >/dev/null \
    || { fail "patching the StatefulSet's domain"; return; }
  local i held=$SECONDS
  for i in 0 1 2; do wait_for 90 name_resolves "kafka-$i.$new_domain" >/dev/null; done
  expect_eq "held by the partition, the brokers' new names resolve before any pod is recreated ($((SECONDS - held)) s)" \
    "$(for i in 0 1 2; do name_resolves "kafka-$i.$new_domain" && name_resolves "kafka-$i.$DOMAIN" && echo -n "$i "; done)" "0 1 2 "
  expect_eq "kafka-0-external names both: the old name first, for the broker that runs" \
    "$(kubectl get service -n "$KAFKA_NS" kafka-0-external -o jsonpath='{.metadata.annotations.external-dns\.alpha\.kubernetes\.io/hostname}')" \
    "kafka-0.$DOMAIN,kafka-0.$new_domain"
  kubectl patch statefulset -n "$KAFKA_NS" kafka --type merge \
    -p '{"spec":{"updateStrategy":{"rollingUpdate":{"partition":0}}}}' >/dev/null
  local start=$SECONDS samples=0 misses=() restarting=() id address before answered done_rolling=
  local bootstrap="kafka-0.$DOMAIN:9094,kafka-1.$DOMAIN:9094,kafka-2.$DOMAIN:9094,kafka-0.$new_domain:9094,kafka-1.$new_domain:9094,kafka-2.$new_domain:9094"
  while [ $((SECONDS - start)) -lt 420 ]; do
    local listed
    listed=$(outside kcat -b "$bootstrap" -L -m 5 2>/dev/null | sed -n 's/^ *broker \([0-9]*\) at \([^ ]*\).*/\1 \2/p')
    while read -r id address; do
      [ -n "$id" ] || continue
      # The broker behind the name must answer as itself: its own metadata names it the one
      # it is connected to (kcat marks it "(controller)" only for the controller; the id of the
      # connection's broker is in the "from broker" line).
      # The pod's state before and after the attempt: the attempt may take kcat's 5 s, in which
      # a pod being replaced can finish.
      before=$(broker_pod_state "${address%%.*}")
      answered=$(outside kcat -b "$address" -L -m 5 2>/dev/null | sed -n 's/.*(from broker \([0-9]*\):.*/\1/p')
      if [ "$answered" == "$id" ]; then
        continue
      elif [ -z "$answered" ] && [ "$before $(broker_pod_state "${address%%.*}")" != "running running" ]; then
        restarting+=("$((SECONDS - start))s:$id@$address")
      else
        misses+=("$((SECONDS - start))s:$id@$address${answered:+ answered as $answered}")
      fi
    done <<<"$listed"
    samples=$((samples + 1))
    if [ "$(echo "$listed" | grep -c "\.$new_domain:")" == 3 ] \
      && [ "$(kubectl get statefulset -n "$KAFKA_NS" kafka -o jsonpath='{.status.updatedReplicas}/{.status.readyReplicas}')" == 3/3 ]; then
      done_rolling=$((SECONDS - start))
      break
    fi
    sleep 2
  done
  expect_eq "the roll finished: all three advertise *.$new_domain (after ${done_rolling:-never} s, $samples samples)" \
    "$([ -n "$done_rolling" ] && echo done)" done
  echo "       not answering while their own pod was replaced: ${restarting[*]:-none}"
  expect_eq "at every sample each broker answered as itself at its advertised name" "${misses[*]}" ""
  took=$(wait_for 60 services_are "kafka-0-external kafka-1-external kafka-2-external kafka-bootstrap ")
  expect_eq "each broker's Service names only its new name now" \
    "$(kubectl get services -n "$KAFKA_NS" kafka-0-external kafka-1-external kafka-2-external \
      -o jsonpath='{range .items[*]}{.metadata.annotations.external-dns\.alpha\.kubernetes\.io/hostname}{" "}{end}')" \
    "kafka-0.$new_domain kafka-1.$new_domain kafka-2.$new_domain "
}

# `roll`, run from the outside namespace as a user's laptop would (the API server reached through
# a unix socket, which network namespaces share): the domain changed back on an OnDelete
# StatefulSet, under an outside producer with acks=all and idempotence on a topic with
# replication factor 3 and min.insync.replicas=2. Then the same change again by
# `kubectl rollout restart`, measured the same way.
RELAY_PIDS=()
relay_api_into_outside() {
  rm -f "$rdir/api.sock"
  setsid socat "UNIX-LISTEN:$rdir/api.sock,fork" "TCP:127.0.0.1:$APISERVER_PORT" 2>>"$rdir/api-relay.log" &
  RELAY_PIDS+=($!)
  disown
  wait_for 10 test -S "$rdir/api.sock" >/dev/null
  # Not through the `outside` function: $! must be the relay itself (ip execs setsid, which execs
  # socat as a group leader), so that the cleanup's group kill reaches it.
  ip netns exec "$OUTSIDE_NS" setsid socat "TCP-LISTEN:$APISERVER_PORT,bind=127.0.0.1,reuseaddr,fork" \
    "UNIX-CONNECT:$rdir/api.sock" 2>>"$rdir/api-relay.log" &
  RELAY_PIDS+=($!)
  disown
  wait_for 10 outside bash -c "exec 3<>/dev/tcp/127.0.0.1/$APISERVER_PORT" >/dev/null
}

# produce_while NAME COMMAND...: an idempotent acks=all producer from outside for as long as
# COMMAND runs; prints "<failed sends> <acked> <acked but not consumed> <duplicates>" for NAME.
produce_while() {
  local topic=$1 bootstrap="kafka-0.$DOMAIN:9094,kafka-0.kafka.example.net:9094"
  # A send fails when it cannot be written within 20 s: a leader moved by one restart is found
  # again well within that, a partition with no in-sync quorum for longer is a failure.
  printf 'enable.idempotence=true\nacks=all\nretries=2147483647\nrequest.timeout.ms=5000\ndelivery.timeout.ms=20000\n' \
    >"$rdir/producer.properties"
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$bootstrap" --create --topic "$topic" \
    --partitions 6 --replication-factor 3 --config min.insync.replicas=2 >/dev/null 2>>"$rdir/$topic.err"
  kafka_tool org.apache.kafka.tools.VerifiableProducer --bootstrap-server "$bootstrap" --topic "$topic" \
    --throughput 50 --max-messages -1 --command-config "$rdir/producer.properties" \
    >"$rdir/$topic.jsonl" 2>>"$rdir/$topic.err" &
  local producer=$!
  sleep 5
  "${@:2}"
  sleep 5
  # $! is the subshell that runs kafka_tool; the producer is its child (ip netns exec execs java):
  # stop that first, or it outlives the run.
  pkill -TERM -P "$producer" 2>/dev/null
  kill -TERM "$producer" 2>/dev/null
  wait "$producer" 2>/dev/null
  local send_errors acked lost duplicates
  send_errors=$(grep -c '"producer_send_error"' "$rdir/$topic.jsonl")
  grep '"producer_send_success"' "$rdir/$topic.jsonl" | sed -n 's/.*"value":"\([0-9]*\)".*/\1/p' \
    | sort >"$rdir/$topic.acked"
  acked=$(wc -l <"$rdir/$topic.acked")
  outside timeout 180 kcat -C -b "$bootstrap" -t "$topic" -o beginning -e -q -f '%s\n' 2>/dev/null | sort >"$rdir/$topic.consumed"
  # Sends still in flight when the producer stopped may be written without an ack printed: more
  # consumed than acked is fine, an acked message missing is not.
  lost=$(comm -23 "$rdir/$topic.acked" <(sort -u "$rdir/$topic.consumed") | wc -l)
  duplicates=$(uniq -d "$rdir/$topic.consumed" | wc -l)
  echo "$send_errors $acked $lost $duplicates"
}

# Old and new names, as a client configured across a domain change has them.
ROLL_BOOTSTRAP="kafka-0.kafka.example.net:9094,kafka-1.kafka.example.net:9094,kafka-0.$DOMAIN:9094,kafka-1.$DOMAIN:9094"
roll_to_new_domain() {
  outside env KUBECONFIG="$KUBECONFIG" "$kli" roll statefulset/kafka -n "$KAFKA_NS" \
    --bootstrap "$ROLL_BOOTSTRAP" --timeout 4m >"$rdir/roll.txt" 2>&1
  echo $? >"$rdir/roll.code"
}

run_roll_scenario() {
  log "R4d. roll: the domain changed under an acks=all producer; one broker at a time"
  relay_api_into_outside || { fail "relaying the API server into the outside namespace"; return; }
  kubectl patch statefulset -n "$KAFKA_NS" kafka --type merge -p "{\"spec\":{
    \"updateStrategy\":{\"type\":\"OnDelete\",\"rollingUpdate\":null},
    \"template\":{\"metadata\":{\"annotations\":{\"kafka-listener-injector.io/domain\":\"$DOMAIN\"}}}}}" >/dev/null \
    || { fail "patching the StatefulSet"; return; }
  local i
  for i in 0 1 2; do wait_for 90 name_resolves "kafka-$i.$DOMAIN" >/dev/null; done
  outside env KUBECONFIG="$KUBECONFIG" "$kli" roll statefulset/kafka -n "$KAFKA_NS" \
    --bootstrap "$ROLL_BOOTSTRAP" --dry-run >"$rdir/roll-plan.txt" 2>&1
  expect_contains "roll --dry-run lists each broker with its new name, highest ordinal first" \
    "$(head -n 1 "$rdir/roll-plan.txt")" "kafka/kafka-2 (broker 102): to recreate: advertised listeners"
  local measured
  measured=$(produce_while e2e-roll roll_to_new_domain)
  sed 's/^/       /' "$rdir/roll.txt"
  expect_eq "roll exits 0" "$(cat "$rdir/roll.code")" 0
  expect_contains "and says so" "$(tail -n 1 "$rdir/roll.txt")" "done: 3 brokers recreated"
  expect_eq "between brokers it waited --settle for the peers' DNS caches (twice: not after the last)" \
    "$(grep -c 'settled, every partition still in sync' "$rdir/roll.txt")" 2
  # (not "failed": that is the rig's count of failed checks)
  local send_errors acked lost duplicates
  read -r send_errors acked lost duplicates <<<"$measured"
  expect_eq "the producer wrote throughout the roll (at least 1000 messages acked: $acked)" \
    "$([ "$acked" -ge 1000 ] && echo yes)" yes
  expect_eq "during the roll: no failed send, no acked message lost, none duplicated ($acked acked)" \
    "$send_errors $lost $duplicates" "0 0 0"
  expect_eq "every broker advertises its new name" \
    "$(metadata_brokers | awk '$1 ~ /^10[0-9]$/ {print $2}' | tr '\n' ' ')" "kafka-0.$DOMAIN:9094 kafka-1.$DOMAIN:9094 kafka-2.$DOMAIN:9094 "
  outside "$kli" probe --bootstrap "kafka-0.$DOMAIN:9094" --namespace "$KAFKA_NS" --statefulset kafka \
    --expect-template "INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{pod}.{domain}:9094" \
    --service kafka-headless --domain "$DOMAIN" --node-id-offset 100 >"$rdir/probe-after-roll.txt" 2>&1
  expect_eq "probe with the new template: brokers 100-102 reachable as themselves at their new names" \
    "$(grep -c '^broker 10[012] kafka-[012]\.'"$DOMAIN"':9094 -> .*: ok$' "$rdir/probe-after-roll.txt")" 3
  outside env KUBECONFIG="$KUBECONFIG" "$kli" roll statefulset/kafka -n "$KAFKA_NS" \
    --bootstrap "kafka-0.$DOMAIN:9094" >"$rdir/roll-again.txt" 2>&1
  expect_contains "a second roll finds nothing to do" "$(cat "$rdir/roll-again.txt")" "every broker is on the current settings"

  log "R4e. the same kind of change by kubectl rollout restart, measured the same way"
  kubectl patch statefulset -n "$KAFKA_NS" kafka --type merge \
    -p '{"spec":{"updateStrategy":{"type":"RollingUpdate"}}}' >/dev/null
  measured=$(produce_while e2e-rollout-restart rollout_restart)
  read -r send_errors acked lost duplicates <<<"$measured"
  expect_eq "the producer wrote throughout the restart (at least 1000 messages acked: $acked)" \
    "$([ "$acked" -ge 1000 ] && echo yes)" yes
  pass "kubectl rollout restart under the same producer: $send_errors failed sends, $acked acked, $lost acked but lost, $duplicates duplicated (a measurement, not a check)"

  log "R4f. roll stops at a broker that cannot start with the new settings; a second run, once they are mended, resumes"
  # A listener the protocol map lacks, slipped past the webhook's denial by setting the variable
  # through env.NAME with env-name none (a value it only warns about): Kafka refuses to start on it.
  local bogus="INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{pod}.{domain}:9094,BOGUS://{pod}.{domain}:9096"
  kubectl patch statefulset -n "$KAFKA_NS" kafka --type merge -p "{\"spec\":{
    \"updateStrategy\":{\"type\":\"OnDelete\",\"rollingUpdate\":null},
    \"template\":{\"metadata\":{\"annotations\":{\"kafka-listener-injector.io/env-name\":\"none\",
      \"kafka-listener-injector.io/env.KAFKA_ADVERTISED_LISTENERS\":\"$bogus\"}}}}}" >/dev/null \
    || { fail "patching the StatefulSet"; return; }
  wait_for 120 partitions_in_sync >/dev/null || fail "partitions still under-replicated after the restart"
  local uids_before
  uids_before=$(broker_pod_uids)
  outside env KUBECONFIG="$KUBECONFIG" "$kli" roll statefulset/kafka -n "$KAFKA_NS" \
    --bootstrap "kafka-0.$DOMAIN:9094" --timeout 60s >"$rdir/roll-broken.txt" 2>&1
  local code=$?
  sed 's/^/       /' "$rdir/roll-broken.txt"
  # The first broker it recreates: the highest ordinal, unless the metadata's controller is on it.
  local first broker
  first=$(sed -n "s|^$KAFKA_NS/\(kafka-[0-9]\) (broker [0-9]*): deleted;.*|\1|p" "$rdir/roll-broken.txt" | head -n 1)
  broker=$((100 + ${first#kafka-}))
  expect_eq "roll exits 1" "$code" 1
  expect_contains "it stops at the first broker it recreated, ${first:-none}, naming what it waited for" \
    "$(tail -n 1 "$rdir/roll-broken.txt")" \
    "stopped: $KAFKA_NS/$first (broker $broker) did not come back within 1m: waiting for its pod to be recreated with the new settings and Ready"
  expect_contains "and the cause the pod's status gives, with the command that shows the broker's own words" \
    "$(tail -n 1 "$rdir/roll-broken.txt")" \
    "last exit code 1 (Error): see kubectl logs -n $KAFKA_NS $first -c kafka --previous"
  expect_eq "the other brokers keep their pods" \
    "$(broker_pod_uids | tr ' ' '\n' | grep -v -e "^$first=" -e '^$' | tr '\n' ' ')" \
    "$(tr ' ' '\n' <<<"$uids_before" | grep -v -e "^$first=" -e '^$' | tr '\n' ' ')"
  expect_eq "the broker's own log names the listener it refused" \
    "$(grep -c 'BOGUS' "$kdir/pods/$KAFKA_NS/$first/container.log" 2>/dev/null | awk '{print ($1 > 0) ? "named" : "not named"}')" named
  kubectl patch statefulset -n "$KAFKA_NS" kafka --type merge -p '{"spec":{"template":{"metadata":{"annotations":{
    "kafka-listener-injector.io/env-name":null,"kafka-listener-injector.io/env.KAFKA_ADVERTISED_LISTENERS":null}}}}}' \
    >/dev/null || { fail "mending the StatefulSet"; return; }
  outside env KUBECONFIG="$KUBECONFIG" "$kli" roll statefulset/kafka -n "$KAFKA_NS" \
    --bootstrap "kafka-0.$DOMAIN:9094" >"$rdir/roll-resumed.txt" 2>&1
  code=$?
  sed 's/^/       /' "$rdir/roll-resumed.txt"
  expect_eq "mended, a second roll exits 0" "$code" 0
  expect_contains "it recreates the broker that was down first, and only it" "$(cat "$rdir/roll-resumed.txt")" \
    "not in the metadata, so down already: $KAFKA_NS/$first (broker $broker); recreated first"
  expect_contains "and says so" "$(tail -n 1 "$rdir/roll-resumed.txt")" "done: 1 brokers recreated"
  expect_eq "every broker is back at its name" \
    "$(metadata_brokers | awk '$1 ~ /^10[0-9]$/ {print $2}' | tr '\n' ' ')" "kafka-0.$DOMAIN:9094 kafka-1.$DOMAIN:9094 kafka-2.$DOMAIN:9094 "
  kubectl patch statefulset -n "$KAFKA_NS" kafka --type merge \
    -p '{"spec":{"updateStrategy":{"type":"RollingUpdate"}}}' >/dev/null
  local pid
  for pid in "${RELAY_PIDS[@]}"; do kill -KILL -- "-$pid" 2>/dev/null; done
  RELAY_PIDS=()
}

rollout_restart() {
  kubectl rollout restart statefulset -n "$KAFKA_NS" kafka >/dev/null
  kubectl rollout status statefulset -n "$KAFKA_NS" kafka --timeout 5m >/dev/null 2>&1
}

run_reconcile_stage() {
  rdir=$work/reconcile
  mkdir -p "$rdir"
  command -v dnsmasq >/dev/null || { fail "dnsmasq is not installed (.ci/install-deps installs it)"; return; }

  log "R0. the reconciler's RBAC, two replicas on one Lease, DNS with a 15 s publication delay"
  kubectl apply -f manifests/services-reconciler/serviceaccount.yaml \
    -f manifests/services-reconciler/rbac.yaml >/dev/null || fail "applying the reconciler's RBAC"
  python3 - "$KUBECONFIG" "$RECONCILER_SA" >"$rdir/kubeconfig" <<'PY'
import sys, yaml
config = yaml.safe_load(open(sys.argv[1]))
for user in config["users"]:
    user["user"]["as"] = sys.argv[2]
print(yaml.safe_dump(config))
PY
  expect_eq "the reconciler's account may not read Secrets" \
    "$(KUBECONFIG=$rdir/kubeconfig kubectl auth can-i list secrets -A 2>/dev/null)" no
  expect_eq "nor patch a pod's spec" \
    "$(KUBECONFIG=$rdir/kubeconfig kubectl auth can-i patch pods -n "$KAFKA_NS" 2>/dev/null)" no
  dnsmasq --keep-in-foreground --conf-file=/dev/null --no-resolv --no-hosts --no-poll \
    --hostsdir="$kdir/outside-dns" --local="/$DOMAIN/" --listen-address=127.0.0.1 \
    --bind-interfaces --port="$DNS_PORT" --cache-size=0 --local-ttl=5 --user=root \
    --pid-file= --log-facility=- >"$rdir/dnsmasq.log" 2>&1 &
  DNS_PID=$!
  echo 15 >"$kdir/dns-delay"
  stop_webhook || fail "the webhook exited non-zero"
  start_webhook --readiness-gate || { fail "the webhook did not restart"; return; }

  # A Service of someone else's, under the name broker 4's Service would have.
  kubectl create service clusterip -n "$KAFKA_NS" kafka-4-external --tcp=9094:9094 >/dev/null
  local foreign_version
  foreign_version=$(kubectl get service -n "$KAFKA_NS" kafka-4-external -o jsonpath='{.metadata.resourceVersion}')
  local uid_before
  uid_before=$(kubectl get service -n "$KAFKA_NS" kafka-0-external -o jsonpath='{.metadata.uid}')

  local a b
  a=$(start_reconciler reconciler-a 29191 --adopt)
  b=$(start_reconciler reconciler-b 29192 --adopt)
  RECONCILE_PIDS=("$a" "$b")

  log "R1. the Services kubectl applied from \`services\` are adopted; a bootstrap Service appears"
  local took
  took=$(wait_for 60 services_are "kafka-0-external kafka-1-external kafka-2-external kafka-bootstrap ")
  expect_eq "the reconciler keeps kafka-0..2 and the bootstrap Service (after ${took} s)" \
    "$(managed_services)" "kafka-0-external kafka-1-external kafka-2-external kafka-bootstrap "
  expect_eq "kafka-0-external is the same object (its load balancer stays)" \
    "$(kubectl get service -n "$KAFKA_NS" kafka-0-external -o jsonpath='{.metadata.uid}')" "$uid_before"
  expect_eq "exactly one reconciler leads" "$(leader_count 29191 29192)" 1
  expect_eq "both replicas are ready (the standby too)" \
    "$(curl -fs http://127.0.0.1:29191/readyz) $(curl -fs http://127.0.0.1:29192/readyz)" "ready ready"
  took=$(wait_for 60 name_resolves "bootstrap-kafka.$DOMAIN")
  expect_eq "an outside client bootstraps from bootstrap-kafka.$DOMAIN:9094 (its name after ${took} s)" \
    "$(outside kcat -b "bootstrap-kafka.$DOMAIN:9094" -L -m 10 2>/dev/null | sed -n 's/^ *broker \([0-9]*\) at.*/\1/p' | sort -n | tr '\n' ' ')" \
    "$(metadata_brokers | cut -d' ' -f1 | tr '\n' ' ')"
  expect_contains "a StatefulSet the webhook denies gets an event, not Services" \
    "$(wait_for 30 events_exist "$KAFKA_NS" kafka-bad RenderFailed >/dev/null; events_of "$KAFKA_NS" kafka-bad RenderFailed | head -n 1)" \
    "listener EXTERNAL is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
  wait_for 30 external_name_ready kafka-2-external >/dev/null
  expect_contains "kafka-2-external says its name resolves to its load balancer" \
    "$(kubectl get service -n "$KAFKA_NS" kafka-2-external -o jsonpath='{.metadata.annotations.kafka-listener-injector\.io/external-name}')" \
    "ready: kafka-2.$DOMAIN resolves to its load balancer (10.77.2."

  local service
  for service in kafka-0-external kafka-1-external kafka-2-external; do
    wait_for 60 external_name_ready "$service" >/dev/null
  done
  local versions_before events_before answers
  versions_before=$(service_versions)
  events_before=$(our_events)
  answers=$(for _ in 1 2 3 4; do dig_outside "kafka-0.$DOMAIN"; sleep 1; done | sort -u | wc -l)
  expect_eq "kafka-0.$DOMAIN has two addresses, answered in changing order" "$answers" 2
  # Names that all resolve are checked again only every 5 min: a change of the StatefulSet's
  # metadata every 5 s (no rollout) makes a dozen reconciles run in the window.
  touch_statefulset 12 5 rotating
  expect_eq "60 s of rotating answers and 12 reconciles: no Service of kafka was written" \
    "$(service_versions)" "$versions_before"
  expect_eq "and the reconciler published no event" "$(our_events)" "$events_before"

  log "R1b. kafka-1's load balancer known by name only, as AWS reports it; the name answers with one of its addresses, another each second"
  kubectl annotate service -n "$KAFKA_NS" kafka-1-external "$AWS_LB_TYPE=external" >/dev/null
  local lb_name
  lb_name=$(wait_for 30 lb_reported_by_name kafka-1-external >/dev/null; lb_reported_by_name kafka-1-external)
  took=$(wait_for 60 external_name_is kafka-1-external "ready: kafka-1.$DOMAIN resolves to its load balancer ($lb_name)")
  expect_eq "kafka-1-external: ready, recorded against its load balancer's name ${lb_name:-(none)} (after ${took} s)" \
    "$(external_name_of kafka-1-external)" "ready: kafka-1.$DOMAIN resolves to its load balancer ($lb_name)"
  answers=$(for _ in 1 2 3 4; do dig_outside "$lb_name"; sleep 1; done)
  expect_eq "its name answers with one address at a time, and not always the same one" \
    "$(awk '{print NF}' <<<"$answers" | sort -u) $(sort -u <<<"$answers" | wc -l)" "1 2"
  versions_before=$(service_versions)
  events_before=$(our_events)
  touch_statefulset 6 5 by-name
  expect_eq "30 s of changing answers and 6 reconciles: no Service of kafka was written" \
    "$(service_versions)" "$versions_before"
  expect_eq "and the reconciler published no event" "$(our_events)" "$events_before"
  kubectl annotate service -n "$KAFKA_NS" kafka-1-external "$AWS_LB_TYPE-" >/dev/null
  wait_for 60 external_name_is kafka-1-external "ready: kafka-1.$DOMAIN resolves to its load balancer (10.77.2." >/dev/null \
    || fail "kafka-1-external did not return to its addresses: $(external_name_of kafka-1-external)"

  log "R2. scale 3 -> 5 with the readiness gate: each new broker waits for its name"
  local scaled=$SECONDS
  kubectl scale statefulset -n "$KAFKA_NS" kafka --replicas 5 >/dev/null
  took=$(wait_for 60 has_service kafka-3-external)
  expect_eq "kafka-3-external created ${took} s after the scale" "$(has_service kafka-3-external && echo yes)" yes
  expect_eq "kafka-3-external names kafka-3.$DOMAIN" \
    "$(kubectl get service -n "$KAFKA_NS" kafka-3-external -o jsonpath='{.metadata.annotations.external-dns\.alpha\.kubernetes\.io/hostname}')" \
    "kafka-3.$DOMAIN"
  expect_eq "kafka-3 carries the readiness gate" \
    "$(kubectl get pod -n "$KAFKA_NS" kafka-3 -o jsonpath='{.spec.readinessGates[*].conditionType}')" \
    kafka-listener-injector.io/external-name-ready
  local ready resolved
  # Until its name resolves, kafka-3 is never Ready, however soon its broker starts.
  local ready_early=no at_containers=
  while ! name_resolves "kafka-3.$DOMAIN" && [ $((SECONDS - scaled)) -lt 240 ]; do
    [ -z "$at_containers" ] && containers_ready kafka-3 && at_containers=$((SECONDS - scaled))
    pod_ready kafka-3 && ready_early=yes
    sleep 0.5
  done
  resolved=$((SECONDS - scaled))
  expect_eq "kafka-3 was never ready while its name did not resolve" "$ready_early" no
  wait_for 240 containers_ready kafka-3 >/dev/null
  at_containers=${at_containers:-$((SECONDS - scaled))}
  wait_for 60 pod_ready kafka-3 >/dev/null
  ready=$((SECONDS - scaled))
  if pod_ready kafka-3; then
    pass "kafka-3: containers ready at ${at_containers} s, name resolved at ${resolved} s, pod ready at ${ready} s"
  else
    fail "kafka-3 did not turn ready once its name resolved"; kafka_logs
  fi
  expect_contains "its condition says why" \
    "$(kubectl get pod -n "$KAFKA_NS" kafka-3 -o jsonpath='{.status.conditions[?(@.type=="kafka-listener-injector.io/external-name-ready")].message}')" \
    "ready: kafka-3.$DOMAIN resolves to its load balancer (10.77.2."
  expect_eq "the outside client sees broker 103 by its own name" "$(advertised_by 103)" "103 kafka-3.$DOMAIN:9094"

  log "R3. a Service the reconciler did not create is never modified"
  wait_for 120 containers_ready kafka-4 >/dev/null
  expect_contains "the name collision is an event on the StatefulSet" \
    "$(events_of "$KAFKA_NS" kafka ServiceNameTaken | head -n 1)" "Service $KAFKA_NS/kafka-4-external exists and is not this StatefulSet's"
  sleep 3
  expect_eq "the foreign kafka-4-external is untouched" \
    "$(kubectl get service -n "$KAFKA_NS" kafka-4-external -o jsonpath='{.metadata.resourceVersion}')" "$foreign_version"
  expect_eq "so kafka-4 stays unready: no load balancer, no name" "$(pod_ready kafka-4 && echo ready || echo waiting)" waiting
  expect_eq "and its readiness-gate condition says why" \
    "$(kubectl get pod -n "$KAFKA_NS" kafka-4 -o jsonpath='{.status.conditions[?(@.type=="kafka-listener-injector.io/external-name-ready")].reason}')" \
    ServiceNameTaken
  kubectl delete service -n "$KAFKA_NS" kafka-4-external >/dev/null
  took=$(wait_for 60 pod_ready kafka-4)
  expect_eq "once it is gone, the reconciler's own Service and name follow; kafka-4 ready after ${took} s" \
    "$(pod_ready kafka-4 && echo ready)" ready
  expect_eq "messages reach broker 104 through its own load balancer" "$(count_through_broker 104 e2e-reconciled)" 100
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "kafka-0.$DOMAIN:9094" \
    --delete --topic e2e-reconciled >/dev/null 2>&1

  log "R4. scale back to 3 and kill the leader: the standby takes over and converges"
  local leader_pid leader_port standby_port
  if [ "$(metric 29191 kafka_listener_injector_reconcile_leader)" == 1 ]; then
    leader_pid=$a; leader_port=29191; standby_port=29192
  else
    leader_pid=$b; leader_port=29192; standby_port=29191
  fi
  kubectl scale statefulset -n "$KAFKA_NS" kafka --replicas 3 >/dev/null
  scaled=$SECONDS
  kill -KILL "$leader_pid"
  wait "$leader_pid" 2>/dev/null
  took=$(wait_for 60 leads "$standby_port")
  expect_eq "the standby leads ${took} s after the leader died" \
    "$(metric "$standby_port" kafka_listener_injector_reconcile_leader)" 1
  sleep 2
  expect_eq "within the 20 s grace, kafka-3/4-external stay" \
    "$(has_service kafka-3-external && has_service kafka-4-external && echo kept)" kept
  expect_contains "and say since when they have no broker" \
    "$(kubectl get service -n "$KAFKA_NS" kafka-4-external -o jsonpath='{.metadata.annotations.kafka-listener-injector\.io/scaled-down-at}')" \
    "$(date -u +%Y-)"
  wait_for 90 no_service kafka-4-external >/dev/null
  expect_eq "after the grace both are deleted ($((SECONDS - scaled)) s after the scale-down)" \
    "$(managed_services)" "kafka-0-external kafka-1-external kafka-2-external kafka-bootstrap "
  expect_eq "the leader's metrics count the Services it keeps, in every namespace" \
    "$(metric "$standby_port" kafka_listener_injector_reconcile_services_managed)" \
    "$(kubectl get services -A -l app.kubernetes.io/managed-by=kafka-listener-injector -o json \
      | jq '[.items[] | select(any(.metadata.ownerReferences[]?; .kind == "StatefulSet"))] | length')"

  local uids_before
  uids_before=$(service_uids)

  log "R4b. the namespace opted out while its brokers run: their load balancers and names stay"
  kubectl label namespace "$KAFKA_NS" kafka-listener-injector.io/injection=disabled --overwrite >/dev/null \
    || fail "labelling the namespace"
  expect_eq "the namespace is opted out" \
    "$(kubectl get namespace "$KAFKA_NS" -o jsonpath='{.metadata.labels.kafka-listener-injector\.io/injection}')" disabled
  # Changes of the StatefulSet's metadata (no rollout) make reconciles run past the 20 s grace.
  touch_statefulset 13 2 opted-out
  expect_eq "kafka-0..2-external and the bootstrap Service are the same objects after the grace" \
    "$(service_uids)" "$uids_before"
  expect_eq "none is marked scaled down" \
    "$(kubectl get services -n "$KAFKA_NS" -l app.kubernetes.io/instance=kafka -o json \
      | jq '[.items[] | select(.metadata.annotations["kafka-listener-injector.io/scaled-down-at"] != null)] | length')" 0
  expect_eq "and outside clients still reach broker 100 by its name" "$(advertised_by 100)" "100 kafka-0.$DOMAIN:9094"
  kubectl label namespace "$KAFKA_NS" kafka-listener-injector.io/injection- >/dev/null

  run_negative_cache_scenario
  run_domain_change_scenario
  run_roll_scenario
  run_partition_scenario

  log "R6. the StatefulSet deleted with --cascade=orphan and re-created: its Services are owned again"
  # A reconciler without --adopt: its own Services, orphaned, are still its own.
  kill -TERM "${RECONCILE_PIDS[@]}" 2>/dev/null
  wait "${RECONCILE_PIDS[@]}" 2>/dev/null
  local c
  c=$(start_reconciler reconciler-c 29193)
  RECONCILE_PIDS=("$c")
  took=$(wait_for 60 leads 29193)
  if [ "$took" != timeout ] && [ "$took" -le 5 ]; then
    pass "the replica stopped by SIGTERM released the Lease: the next one leads after ${took} s"
  else
    fail "the next replica led after ${took} s: the Lease was not released on SIGTERM"
  fi
  local taken_before
  taken_before=$(events_of "$KAFKA_NS" kafka ServiceNameTaken | wc -l)
  kubectl get statefulset -n "$KAFKA_NS" kafka -o json \
    | jq 'del(.metadata.uid, .metadata.resourceVersion, .metadata.creationTimestamp, .metadata.managedFields, .metadata.generation, .status)' \
    >"$rdir/kafka-statefulset.json"
  kubectl delete statefulset -n "$KAFKA_NS" kafka --cascade=orphan >/dev/null
  kubectl create -f "$rdir/kafka-statefulset.json" >/dev/null
  took=$(wait_for 60 services_are "kafka-0-external kafka-1-external kafka-2-external kafka-bootstrap ")
  expect_eq "the new StatefulSet owns kafka-0..2-external and the bootstrap Service (after ${took} s)" \
    "$(managed_services)" "kafka-0-external kafka-1-external kafka-2-external kafka-bootstrap "
  expect_eq "the same objects: their load balancer addresses stay" "$(service_uids)" "$uids_before"
  expect_eq "no name was called taken" \
    "$(events_of "$KAFKA_NS" kafka ServiceNameTaken | wc -l)" "$taken_before"
  expect_contains "an event says they were owned again" \
    "$(wait_for 30 events_exist "$KAFKA_NS" kafka ServiceReowned >/dev/null; events_of "$KAFKA_NS" kafka ServiceReowned | head -n 1)" \
    "owned again after its StatefulSet was re-created"

  log "R7. deleting the StatefulSet leaves no Service of it behind"
  kubectl delete statefulset -n "$KAFKA_NS" kafka --wait=false >/dev/null
  took=$(wait_for 60 services_are "")
  expect_eq "no Service of kafka remains (${took} s)" "$(managed_services)" ""
  expect_eq "and the reconciler did not re-create any" \
    "$(sleep 3; kubectl get services -n "$KAFKA_NS" -l app.kubernetes.io/instance=kafka -o name)" ""
  reconcile_cleanup
}
