#!/usr/bin/env bash
# make e2e: the shipped manifests and the real binary against a real kube-apiserver and the real
# StatefulSet controller (versions in versions.env), then real Apache Kafka brokers reached from
# an outside network namespace (kafka-stage.sh). Builds the control plane and resolves the Kafka
# jars once (cached under ~/.cache), then runs every scenario.
set -uo pipefail
cd "$(dirname "$0")/../.."
repo=$PWD
work=$repo/tests/e2e/.work
rm -rf "$work"
mkdir -p "$work"

bin=$(tests/e2e/build-control-plane.sh) || { echo "e2e: building the control plane failed" >&2; exit 1; }
cargo build --quiet --locked || exit 1
kli=$repo/target/debug/kafka-listener-injector
source tests/e2e/cluster.sh

WEBHOOK_PORT=${WEBHOOK_PORT:-28443}
ADMIN_PORT=${ADMIN_PORT:-29090}
WEBHOOK_PID=
REGISTRY_PID=
passed=0
failed=0
started=$(date +%s)

cleanup() {
  [ -n "$WEBHOOK_PID" ] && kill "$WEBHOOK_PID" 2>/dev/null
  [ -n "$REGISTRY_PID" ] && kill "$REGISTRY_PID" 2>/dev/null
  declare -F reconcile_cleanup >/dev/null && reconcile_cleanup
  declare -F gateway_cleanup >/dev/null && gateway_cleanup
  declare -F kafka_cleanup >/dev/null && kafka_cleanup
  stop_cluster
}
trap cleanup EXIT

log() { echo "e2e: $*"; }
pass() { passed=$((passed + 1)); echo "  ok   $*"; }
fail() { failed=$((failed + 1)); echo "  FAIL $*"; }
expect_eq() { # expect_eq WHAT ACTUAL EXPECTED
  if [ "$2" == "$3" ]; then pass "$1"; else fail "$1: got '$2', expected '$3'"; fi
}
expect_contains() { # expect_contains WHAT HAYSTACK NEEDLE
  if [[ "$2" == *"$3"* ]]; then pass "$1"; else fail "$1: '$3' not in '$2'"; fi
}

# --- certificates: two pairs, both CAs in the caBundle, served through a Secret-style symlink ---
for pair in a b; do
  "$kli" certs --service kafka-listener-injector --namespace kafka-listener-injector \
    --dns localhost --ip 127.0.0.1 --out "$work/certs/$pair" >/dev/null
done
mkdir -p "$work/certs/live"
ln -s ../a "$work/certs/live/..data"
ln -s ..data/tls.crt "$work/certs/live/tls.crt"
ln -s ..data/tls.key "$work/certs/live/tls.key"
ca_bundle=$(cat "$work/certs/a/ca.crt" "$work/certs/b/ca.crt" | base64 -w0)

start_webhook() { # start_webhook [EXTRA SERVE FLAG...]
  "$kli" serve --listen "127.0.0.1:$WEBHOOK_PORT" --admin-listen "127.0.0.1:$ADMIN_PORT" \
    --tls-cert "$work/certs/live/tls.crt" --tls-key "$work/certs/live/tls.key" \
    --cert-check-interval 500ms --log-format json "$@" >>"$work/webhook.log" 2>&1 &
  WEBHOOK_PID=$!
  local i
  for i in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$ADMIN_PORT/readyz" >/dev/null && return 0
    sleep 0.1
  done
  echo "e2e: the webhook did not become ready" >&2
  return 1
}

stop_webhook() {
  kill -TERM "$WEBHOOK_PID"
  wait "$WEBHOOK_PID"
  local code=$?
  WEBHOOK_PID=
  return $code
}

# The shipped manifests, with the one change a control plane without cluster networking needs:
# the webhook is called by URL on loopback.
overlay() { # overlay MODE -> directory
  local dir=$work/overlays/$1
  mkdir -p "$dir"
  cat >"$dir/kustomization.yaml" <<KUST
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
resources:
  - ../../../../../manifests/$1
patches:
  - target: {kind: MutatingWebhookConfiguration}
    patch: |-
      - op: remove
        path: /webhooks/0/clientConfig/service
      - op: add
        path: /webhooks/0/clientConfig/url
        value: https://127.0.0.1:$WEBHOOK_PORT/mutate
      - op: add
        path: /webhooks/0/clientConfig/caBundle
        value: $ca_bundle
KUST
  echo "$dir"
}

# A StatefulSet manifest from a file, moved to namespace NS and optionally renamed, with pods
# created in parallel (no kubelet runs here, so OrderedReady would stop at the first pending pod).
# Other objects of the file come along; an optional sed expression edits the text first.
statefulset() { # statefulset FILE NS [NAME] [sed expression]
  sed -e "${4:-s/^//}" "$1" | python3 -c '
import sys, yaml
namespace, name = sys.argv[1], sys.argv[2]
docs = [d for d in yaml.safe_load_all(sys.stdin) if d and d.get("kind") != "Namespace"]
for d in docs:
    d["metadata"]["namespace"] = namespace
    if d.get("kind") == "StatefulSet":
        d["spec"]["podManagementPolicy"] = "Parallel"
        if name:
            d["metadata"]["name"] = name
            d["spec"]["selector"] = {"matchLabels": {"e2e/statefulset": name}}
            d["spec"]["template"]["metadata"]["labels"]["e2e/statefulset"] = name
print(yaml.safe_dump_all(docs))' "$2" "${3:-}"
}

wait_pod() { # wait_pod NAMESPACE NAME [seconds]
  local i
  for i in $(seq 1 $((${3:-60} * 5))); do
    kubectl get pod -n "$1" "$2" >/dev/null 2>&1 && return 0
    sleep 0.2
  done
  return 1
}

env_of() { # env_of NAMESPACE POD VAR [container]
  kubectl get pod -n "$1" "$2" -o json \
    | jq -r --arg v "$3" --arg c "${4:-kafka}" '.spec.containers[] | select(.name == $c) | [.env[]? | select(.name == $v) | .value] | join(",")'
}

record_of() { # record_of NAMESPACE POD
  kubectl get pod -n "$1" "$2" -o json | jq -r '.metadata.annotations["kafka-listener-injector.io/advertised-listeners"] // ""'
}

failed_create_events() { # failed_create_events NAMESPACE STATEFULSET
  kubectl get events -n "$1" --field-selector "involvedObject.name=$2,reason=FailedCreate" -o json \
    | jq -r '.items[].message'
}

first_failed_create() { # first_failed_create NAMESPACE STATEFULSET: waits up to 20 s for one
  local message
  for _ in $(seq 1 100); do
    message=$(failed_create_events "$1" "$2" | head -n 1)
    [ -n "$message" ] && break
    sleep 0.2
  done
  echo "$message"
}

log "starting etcd, kube-apiserver and kube-controller-manager"
start_cluster "$bin" "$work/cluster" || exit 1
start_webhook || exit 1
example=$repo/manifests/examples/kafka/kafka.yaml
expected() { echo "INTERNAL://kafka-$2.kafka-headless.$1.svc:9092,EXTERNAL://kafka-$2.kafka.example.com:9094"; }

# KLI_E2E_ONLY=nodes, bitnami, cloudpirates or gateway: the webhook in cluster-wide mode and one
# stage alone (the node scenarios N1, Z1; the Bitnami chart; the CloudPirates chart; the TLS
# gateway), to iterate on it; by default every stage runs.
if [ -n "${KLI_E2E_ONLY:-}" ]; then
  kubectl apply -k "$(overlay cluster-wide)" >/dev/null || fail "applying manifests/cluster-wide"
  source tests/e2e/kafka-stage.sh
  case $KLI_E2E_ONLY in
    nodes) run_nodes_stage ;;
    bitnami) source tests/e2e/bitnami-stage.sh && run_bitnami_stage ;;
    cloudpirates) source tests/e2e/cloudpirates-stage.sh && run_cloudpirates_stage ;;
    gateway) source tests/e2e/gateway-stage.sh && run_gateway_stage ;;
    *) fail "KLI_E2E_ONLY=$KLI_E2E_ONLY: nodes, bitnami, cloudpirates or gateway" ;;
  esac
  stop_webhook || fail "the webhook exited non-zero at the end"
  echo "e2e: finished in $(($(date +%s) - started))s (KLI_E2E_ONLY=$KLI_E2E_ONLY)"
  echo "$passed passed, $failed failed"
  [ "$failed" -eq 0 ]
  exit
fi

log "1. namespace opt-in"
apply_out=$(kubectl apply -k "$(overlay namespace-opt-in)" 2>&1) || fail "applying manifests/namespace-opt-in: $apply_out"
expect_eq "the namespace opt-in manifests apply with no warning" "$(echo "$apply_out" | grep -i warning)" ""
kubectl create namespace optin >/dev/null
kubectl label namespace optin kafka-listener-injector.io/injection=enabled >/dev/null
kubectl create namespace plain >/dev/null
statefulset "$example" optin | kubectl apply -f - >/dev/null
statefulset "$example" plain | kubectl apply -f - >/dev/null
for i in 0 1 2; do
  wait_pod optin "kafka-$i" || fail "optin/kafka-$i was not created"
  expect_eq "optin/kafka-$i advertises its own name" "$(env_of optin kafka-$i KAFKA_ADVERTISED_LISTENERS)" "$(expected optin $i)"
  expect_eq "optin/kafka-$i records the value" "$(record_of optin kafka-$i)" "$(expected optin $i)"
  expect_eq "optin/kafka-$i gets its node id" "$(env_of optin kafka-$i KAFKA_NODE_ID)" "$((100 + i))"
  expect_eq "optin/kafka-$i carries the pod-index label" \
    "$(kubectl get pod -n optin kafka-$i -o jsonpath="{.metadata.labels['apps\.kubernetes\.io/pod-index']}")" "$i"
done
wait_pod plain kafka-0 || fail "plain/kafka-0 was not created"
expect_eq "an unlabelled namespace is untouched" "$(env_of plain kafka-0 KAFKA_ADVERTISED_LISTENERS)$(record_of plain kafka-0)" ""
wait_pod kafka-listener-injector "$(kubectl get pods -n kafka-listener-injector -o name 2>/dev/null | head -n1 | cut -d/ -f2)" 5 \
  && pass "the shipped Deployment creates its pods (no RBAC, no token)" \
  || fail "the shipped Deployment created no pod: $(kubectl get events -n kafka-listener-injector -o json | jq -r '.items[].message' | tail -n 3)"

log "3. opt-out and Bitnami-style env names"
statefulset "$example" optin optout 's/kafka-listener-injector.io\/inject: "true"/kafka-listener-injector.io\/inject: "false"/' \
  | kubectl apply -f - >/dev/null
wait_pod optin optout-0 || fail "optin/optout-0 was not created"
expect_eq "the opt-out label is respected" "$(env_of optin optout-0 KAFKA_ADVERTISED_LISTENERS)" ""
statefulset "$example" optin annotated 's/kafka-listener-injector.io\/node-id-env: KAFKA_NODE_ID/kafka-listener-injector.io\/inject: "false"/' \
  | kubectl apply -f - >/dev/null
wait_pod optin annotated-0 || fail "optin/annotated-0 was not created"
expect_eq "the opt-out annotation is respected" "$(env_of optin annotated-0 KAFKA_ADVERTISED_LISTENERS)" ""
statefulset tests/fixtures/charts/bitnami.yaml optin | kubectl apply -f - >/dev/null
wait_pod optin my-kafka-broker-0 || fail "optin/my-kafka-broker-0 was not created"
expect_eq "Bitnami KAFKA_CFG_ADVERTISED_LISTENERS from annotations" \
  "$(env_of optin my-kafka-broker-0 KAFKA_CFG_ADVERTISED_LISTENERS broker)" \
  "CLIENT://my-kafka-broker-0.my-kafka-broker-headless.optin.svc.cluster.local:9092,EXTERNAL://my-kafka-broker-0.kafka.bitnami.example.com:9095"
expect_eq "the Bitnami init container is untouched" \
  "$(kubectl get pod -n optin my-kafka-broker-0 -o json | jq -r '.spec.initContainers[0].env[0].value')" "untouched"

log "4. invalid settings are denied and shown in the StatefulSet's events"
statefulset tests/fixtures/charts/apache-kraft.yaml optin bad 's/EXTERNAL:PLAINTEXT/OUTSIDE:PLAINTEXT/' \
  | kubectl apply -f - >/dev/null
message=$(first_failed_create optin bad)
expect_contains "the denial reaches the StatefulSet's FailedCreate event" "$message" \
  "pod optin/bad-0: --listeners renders"
expect_contains "the denial names the fault" "$message" "listener EXTERNAL is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
expect_eq "no pod of the invalid StatefulSet exists" "$(kubectl get pods -n optin -l e2e/statefulset=bad -o name)" ""

log "5. server-side dry run: a StatefulSet's pod and a bare Pod"
# The StatefulSet's pod: kafka-0 as stored, renamed to ordinal 7 and stripped of what we injected.
kubectl get pod -n optin kafka-0 -o json \
  | jq '{apiVersion, kind, metadata: {name: "kafka-7", namespace: "optin", ownerReferences: .metadata.ownerReferences,
         labels: (.metadata.labels + {"apps.kubernetes.io/pod-index": "7", "statefulset.kubernetes.io/pod-name": "kafka-7"}),
         annotations: (.metadata.annotations | del(.["kafka-listener-injector.io/advertised-listeners"]))},
        spec: {subdomain: .spec.subdomain, hostname: "kafka-7",
               containers: [.spec.containers[0] | {name, image, env: [.env[] | select(.name != "KAFKA_ADVERTISED_LISTENERS" and .name != "KAFKA_NODE_ID")]}]}}' \
  >"$work/dry-run-sts-pod.json"
dry=$(kubectl create --dry-run=server -o json -f "$work/dry-run-sts-pod.json" 2>&1)
expect_eq "dry run of a StatefulSet's pod returns it injected" \
  "$(echo "$dry" | jq -r '.spec.containers[0].env[] | select(.name == "KAFKA_ADVERTISED_LISTENERS" or .name == "KAFKA_NODE_ID") | .value' | tr '\n' ' ')" \
  "$(expected optin 7) 107 "
# A bare Pod (no owner, no StatefulSet labels) named like a broker, labelled for injection.
jq '.metadata.name = "kafka-9" | del(.metadata.ownerReferences) | .spec.hostname = "kafka-9"
    | .metadata.labels |= del(.["apps.kubernetes.io/pod-index"], .["statefulset.kubernetes.io/pod-name"], .["controller-revision-hash"])' \
  "$work/dry-run-sts-pod.json" >"$work/dry-run-pod.json"
dry=$(kubectl create --dry-run=server -o json -f "$work/dry-run-pod.json" 2>&1)
expect_eq "dry run of a bare Pod returns it injected" \
  "$(echo "$dry" | jq -r '.spec.containers[0].env[] | select(.name == "KAFKA_ADVERTISED_LISTENERS") | .value')" "$(expected optin 9)"
expect_eq "dry run creates nothing" "$(kubectl get pod -n optin kafka-7 kafka-9 -o name 2>/dev/null)" ""

log "6. scale from 3 to 5"
kubectl scale statefulset -n optin kafka --replicas 5 >/dev/null
for i in 3 4; do
  wait_pod optin "kafka-$i" || fail "optin/kafka-$i was not created"
  expect_eq "optin/kafka-$i after scale-up" "$(env_of optin kafka-$i KAFKA_ADVERTISED_LISTENERS)" "$(expected optin $i)"
done

log "9. preview prints exactly what the cluster stored"
statefulset "$example" optin >"$work/optin-kafka.yaml"
preview=$("$kli" preview -o yaml --replicas 5 -f "$work/optin-kafka.yaml")
for i in 0 1 2 3 4; do
  stored=$(kubectl get pod -n optin "kafka-$i" -o json | jq -c '[.spec.containers[0].env, .metadata.annotations]')
  previewed=$(echo "$preview" | python3 -c '
import sys, json, yaml
pods = [d for d in yaml.safe_load_all(sys.stdin) if d]
pod = next(p for p in pods if p["metadata"]["name"] == sys.argv[1])
print(json.dumps([pod["spec"]["containers"][0]["env"], pod["metadata"]["annotations"]], separators=(",", ":")))' "kafka-$i" | jq -c .)
  expect_eq "preview equals the stored env and annotations of optin/kafka-$i" "$previewed" "$stored"
done

log "10. the real pod-index label and spec.ordinals.start"
statefulset "$example" optin kafka-7 's/replicas: 3/replicas: 2/' | kubectl apply -f - >/dev/null
for i in 0 1; do
  wait_pod optin "kafka-7-$i" || fail "optin/kafka-7-$i was not created"
  expect_eq "optin/kafka-7-$i (a StatefulSet named like a pod) gets ordinal $i" \
    "$(env_of optin "kafka-7-$i" KAFKA_NODE_ID) $(kubectl get pod -n optin "kafka-7-$i" -o jsonpath="{.metadata.labels['apps\.kubernetes\.io/pod-index']}")" "$((100 + i)) $i"
done
statefulset "$example" optin from-one 's/  replicas: 3/  replicas: 3\n  ordinals: {start: 1}/' | kubectl apply -f - >/dev/null
for i in 1 2 3; do
  wait_pod optin "from-one-$i" || fail "optin/from-one-$i was not created"
  expect_eq "ordinals.start 1: optin/from-one-$i advertises its own name and node id $((100 + i))" \
    "$(env_of optin "from-one-$i" KAFKA_ADVERTISED_LISTENERS) $(env_of optin "from-one-$i" KAFKA_NODE_ID)" \
    "INTERNAL://from-one-$i.kafka-headless.optin.svc:9092,EXTERNAL://from-one-$i.kafka.example.com:9094 $((100 + i))"
done
expect_eq "ordinals.start 1: there is no from-one-0" "$(kubectl get pod -n optin from-one-0 -o name 2>/dev/null)" ""

log "11. webhook down in namespace opt-in mode: only broker pods wait"
statefulset "$repo/manifests/examples/kafka/controllers.yaml" optin | kubectl apply -f - >/dev/null
for i in 0 1 2; do wait_pod optin "kafka-controller-$i" || fail "optin/kafka-controller-$i was not created"; done
uids_before=$(kubectl get pods -n optin -l app.kubernetes.io/name=kafka-controller -o jsonpath='{.items[*].metadata.uid}')
stop_webhook || fail "SIGTERM: the webhook exited non-zero"
kubectl scale statefulset -n optin kafka --replicas 6 >/dev/null
expect_contains "a broker pod is refused while the webhook is down" "$(first_failed_create optin kafka)" "failed calling webhook"
kubectl run plain-pod -n optin --image=busybox --restart=Never >/dev/null 2>"$work/plain-pod.err"
expect_eq "an ordinary pod in the opted-in namespace is created" "$(kubectl get pod -n optin plain-pod -o name 2>/dev/null)" "pod/plain-pod"
kubectl delete pods -n optin -l app.kubernetes.io/name=kafka-controller --wait=false >/dev/null
recreated=0
for _ in $(seq 1 100); do
  uids_after=$(kubectl get pods -n optin -l app.kubernetes.io/name=kafka-controller -o jsonpath='{.items[*].metadata.uid}')
  recreated=0
  for uid in $uids_after; do [[ " $uids_before " == *" $uid "* ]] || recreated=$((recreated + 1)); done
  [ "$recreated" -eq 3 ] && break
  sleep 0.2
done
expect_eq "deleted KRaft controller pods are recreated while the webhook is down" "$recreated" 3
expect_eq "no broker pod was created without the webhook" "$(kubectl get pod -n optin kafka-5 -o name 2>/dev/null)" ""
start_webhook || exit 1
if wait_pod optin kafka-5 120; then
  expect_eq "once the webhook is back the StatefulSet controller creates the broker" \
    "$(env_of optin kafka-5 KAFKA_ADVERTISED_LISTENERS)" "$(expected optin 5)"
else
  fail "optin/kafka-5 was not created after the webhook came back"
fi

log "2. cluster-wide"
kubectl delete mutatingwebhookconfiguration kafka-listener-injector >/dev/null
apply_out=$(kubectl apply -k "$(overlay cluster-wide)" 2>&1) || fail "applying manifests/cluster-wide: $apply_out"
expect_eq "the cluster-wide manifests apply with no warning" "$(echo "$apply_out" | grep -i warning)" ""
kubectl create namespace anywhere >/dev/null
statefulset "$example" anywhere | kubectl apply -f - >/dev/null
statefulset "$example" anywhere unlabelled '/kafka-listener-injector.io\/inject: "true"/d' \
  | kubectl apply -f - >/dev/null
statefulset "$example" kube-system | kubectl apply -f - >/dev/null
wait_pod anywhere kafka-0 || fail "anywhere/kafka-0 was not created"
expect_eq "a labelled pod in any namespace is injected" "$(env_of anywhere kafka-0 KAFKA_ADVERTISED_LISTENERS)" "$(expected anywhere 0)"
wait_pod anywhere unlabelled-0 || fail "anywhere/unlabelled-0 was not created"
expect_eq "an unlabelled pod is not injected" "$(env_of anywhere unlabelled-0 KAFKA_ADVERTISED_LISTENERS)" ""
wait_pod kube-system kafka-0 || fail "kube-system/kafka-0 was not created"
expect_eq "kube-system is never injected" "$(env_of kube-system kafka-0 KAFKA_ADVERTISED_LISTENERS)" ""

log "7. webhook down with failurePolicy Fail, then back"
stop_webhook && pass "SIGTERM: the webhook exits 0" || fail "SIGTERM: the webhook exited non-zero"
kubectl scale statefulset -n anywhere kafka --replicas 4 >/dev/null
message=$(first_failed_create anywhere kafka)
expect_contains "creation fails while the webhook is down" "$message" "failed calling webhook"
expect_eq "no broker starts without its listeners" "$(kubectl get pod -n anywhere kafka-3 -o name 2>/dev/null)" ""
start_webhook || exit 1
if wait_pod anywhere kafka-3 120; then
  expect_eq "the controller's retry succeeds once the webhook is back" "$(env_of anywhere kafka-3 KAFKA_ADVERTISED_LISTENERS)" "$(expected anywhere 3)"
else
  fail "anywhere/kafka-3 was not created after the webhook came back"
fi

log "8. certificate rotated while the API server keeps creating pods"
statefulset "$example" anywhere rotate 's/replicas: 3/replicas: 0/' \
  | kubectl apply -f - >/dev/null
for n in $(seq 1 20); do
  kubectl scale statefulset -n anywhere rotate --replicas "$n" >/dev/null
  if [ "$n" -eq 10 ]; then
    ln -s ../b "$work/certs/live/..data_tmp" && mv -T "$work/certs/live/..data_tmp" "$work/certs/live/..data"
  fi
  sleep 0.2
done
for n in $(seq 0 19); do wait_pod anywhere "rotate-$n" 60 || break; done
injected=0
for n in $(seq 0 19); do
  [ -n "$(env_of anywhere "rotate-$n" KAFKA_ADVERTISED_LISTENERS 2>/dev/null)" ] && injected=$((injected + 1))
done
expect_eq "all 20 pods created across the rotation are injected" "$injected" "20"
expect_eq "no admission failed during the rotation" "$(failed_create_events anywhere rotate | wc -l)" "0"
served=$(echo | openssl s_client -connect "127.0.0.1:$WEBHOOK_PORT" -servername localhost 2>/dev/null | openssl x509 -noout -fingerprint -sha256)
expect_eq "the webhook now serves the new certificate" "$served" "$(openssl x509 -noout -fingerprint -sha256 -in "$work/certs/b/tls.crt")"
expect_contains "the rotation was counted" "$(curl -s "http://127.0.0.1:$ADMIN_PORT/metrics")" \
  'kafka_listener_injector_certificate_reloads_total{result="success"} 1'

log "12. the native MutatingAdmissionPolicy injects what the webhook injects"
# Env of the broker container and annotations (less the settings hash, which the policy cannot
# compute) of every pod of a StatefulSet, as one JSON line per pod.
stored_state() { # stored_state NAMESPACE
  kubectl get pods -n "$1" -l e2e/statefulset=twin -o json \
    | jq -c '.items | sort_by(.metadata.name)[] | [.metadata.name, (.spec.containers[] | select(.name == "kafka") | .env),
             (.metadata.annotations | del(.["kafka-listener-injector.io/settings"]))]'
}
twin_up() {
  statefulset "$example" twin twin | kubectl apply -f - >/dev/null
  for i in 0 1 2; do wait_pod twin "twin-$i" || fail "twin/twin-$i was not created"; done
}
twin_down() {
  kubectl delete statefulset -n twin twin --wait=true >/dev/null
  kubectl delete pods -n twin --all --grace-period=0 --force >/dev/null 2>&1
  for _ in $(seq 1 100); do [ -z "$(kubectl get pods -n twin -o name)" ] && break; sleep 0.2; done
}
kubectl create namespace twin >/dev/null
twin_up
stored_state twin >"$work/twin-webhook.json"
twin_down
kubectl delete mutatingwebhookconfiguration kafka-listener-injector >/dev/null
"$kli" policy --node-id-env KAFKA_NODE_ID --node-id-offset 100 2>"$work/policy.err" >"$work/policy.yaml"
policy_out=$(kubectl apply -f "$work/policy.yaml" 2>&1) || fail "applying the generated policy: $policy_out"
# Bindings take effect once the API server's policy cache has them: wait for a dry-run pod.
for _ in $(seq 1 50); do
  dry=$(kubectl create --dry-run=server -o json -f "$work/dry-run-sts-pod.json" --namespace optin 2>/dev/null \
    | jq -r '.metadata.annotations["kafka-listener-injector.io/settings"] // ""')
  [ "$dry" == native-policy ] && break
  sleep 0.2
done
twin_up
stored_state twin >"$work/twin-policy.json"
expect_eq "the policy stored what the webhook stored, for $(wc -l <"$work/twin-webhook.json") pods" \
  "$(cat "$work/twin-policy.json")" "$(cat "$work/twin-webhook.json")"
expect_eq "the pods carry the policy's mark" \
  "$(kubectl get pod -n twin twin-0 -o jsonpath="{.metadata.annotations['kafka-listener-injector\.io/settings']}")" native-policy
head -n 1 "$work/twin-policy.json" | cut -c1-220 | sed 's/^/       /'
statefulset tests/fixtures/charts/apache-kraft.yaml twin bad 's/EXTERNAL:PLAINTEXT/OUTSIDE:PLAINTEXT/' \
  | kubectl apply -f - >/dev/null
expect_contains "the companion ValidatingAdmissionPolicy denies a listener missing from the protocol map" \
  "$(first_failed_create twin bad)" "name a listener that is not in the container's KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"
kubectl delete -f "$work/policy.yaml" >/dev/null
kubectl delete namespace twin --wait=false >/dev/null
kubectl apply -k "$(overlay cluster-wide)" >/dev/null || fail "re-applying manifests/cluster-wide"

if [ "${KLI_E2E_KAFKA:-1}" == 1 ]; then
  source tests/e2e/kafka-stage.sh
  source tests/e2e/reconcile-stage.sh
  run_kafka_stage
  run_nodes_stage
  source tests/e2e/bitnami-stage.sh
  run_bitnami_stage
  source tests/e2e/cloudpirates-stage.sh
  run_cloudpirates_stage
  if [ "${KLI_E2E_GATEWAY:-1}" == 1 ]; then
    source tests/e2e/gateway-stage.sh
    run_gateway_stage
  else
    log "the gateway stage is off (KLI_E2E_GATEWAY=0)"
  fi
else
  log "the real-Kafka stage is off (KLI_E2E_KAFKA=0)"
fi

log "13. Helm: the chart as a signed OCI artifact, verified, then installed, upgraded and uninstalled"
helm=$(tests/tools/go-tool.sh helm) || fail "building helm"
kubectl delete -k "$(overlay cluster-wide)" --wait=true >/dev/null 2>&1
# Published as a release publishes it (helm package --sign, helm push, cosign sign) to a loopback
# registry, and verified with the public keys alone before the install.
chart_version=$(sed -n 's/^version: *//p' charts/kafka-listener-injector/Chart.yaml)
source tests/tools/local-registry.sh
start_registry "$(tests/tools/go-tool.sh crane)" "$work/registry.log" "${REGISTRY_PORT:-25000}" \
  || fail "starting the loopback registry on ${REGISTRY_PORT:-25000}"
chart_ref=$(tests/image/publish-chart.sh "127.0.0.1:$REGISTRY_PORT" 2>"$work/publish-chart.log") \
  || fail "publishing the chart: $(tail -n 3 "$work/publish-chart.log")"
source tests/image/signing.sh
if "$cosign" verify "${cosign_verify[@]}" "127.0.0.1:$REGISTRY_PORT/charts/kafka-listener-injector:$chart_version" \
    >"$work/chart-verify.json" 2>"$work/chart-verify.err"; then
  expect_eq "cosign verify of the chart, by its tag, finds the signed digest" \
    "127.0.0.1:$REGISTRY_PORT/charts/kafka-listener-injector@$(jq -r '.[0].critical.image["docker-manifest-digest"]' "$work/chart-verify.json")" \
    "$chart_ref"
else
  fail "cosign verify of the chart: $(grep -m1 '^Error:' "$work/chart-verify.err")"
fi
chart=oci://127.0.0.1:$REGISTRY_PORT/charts/kafka-listener-injector
# The chart, called by URL on loopback like the manifests above; its caBundle is the running
# webhook's CA (certificates.mode=secret).
# The Secret is a real one, made by the user before the install as the chart's README says: the
# running webhook's certificate and key.
chart_values=(--set webhook.url="https://127.0.0.1:$WEBHOOK_PORT/mutate" --set certificates.mode=secret
  --set certificates.existingSecret=e2e-webhook-tls --set certificates.caBundle="$ca_bundle")
kubectl create namespace kafka-listener-injector --dry-run=client -o yaml | kubectl apply -f - >/dev/null
kubectl create secret tls -n kafka-listener-injector e2e-webhook-tls \
  --cert "$work/certs/live/tls.crt" --key "$work/certs/live/tls.key" >/dev/null || fail "creating the webhook's Secret"
# --verify: helm itself checks the chart's provenance (.prov, pushed with it) before installing.
if out=$("$helm" install kli "$chart" --version "$chart_version" --plain-http --verify --keyring "$helm_pub" \
    -n kafka-listener-injector "${chart_values[@]}" 2>&1); then
  pass "helm install $chart --version $chart_version --verify"
else
  fail "helm install $chart --version $chart_version: $out"
fi
expect_contains "NOTES show the next step" "$out" 'kafka-listener-injector.io/inject: "true"'
expect_eq "the webhook's pods mount the user's Secret" \
  "$(kubectl get deployment -n kafka-listener-injector kafka-listener-injector -o json \
    | jq -r '[.spec.template.spec.volumes[]? | .secret.secretName // empty] | join(" ")')" e2e-webhook-tls
kubectl create namespace helm-installed >/dev/null
statefulset "$example" helm-installed | kubectl apply -f - >/dev/null
wait_pod helm-installed kafka-0 || fail "helm-installed/kafka-0 was not created"
expect_eq "the chart's webhook injects the example StatefulSet" \
  "$(env_of helm-installed kafka-0 KAFKA_ADVERTISED_LISTENERS)" "$(expected helm-installed 0)"
out=$("$helm" upgrade kli "$chart" --version "$chart_version" --plain-http -n kafka-listener-injector \
  "${chart_values[@]}" --set replicaCount=3 2>&1) || fail "helm upgrade: $out"
expect_eq "helm upgrade changes the Deployment" \
  "$(kubectl get deployment -n kafka-listener-injector kafka-listener-injector -o jsonpath='{.spec.replicas}')" 3
kubectl delete pod -n helm-installed kafka-1 --wait=false >/dev/null
wait_pod helm-installed kafka-1 || fail "helm-installed/kafka-1 was not re-created"
expect_eq "and injection goes on" "$(env_of helm-installed kafka-1 KAFKA_ADVERTISED_LISTENERS)" "$(expected helm-installed 1)"
out=$("$helm" uninstall kli -n kafka-listener-injector --wait 2>&1) || fail "helm uninstall: $out"
expect_eq "helm uninstall leaves no webhook configuration (no orphaned failurePolicy Fail)" \
  "$(kubectl get mutatingwebhookconfigurations -o name | grep -c kafka-listener-injector)" 0
kubectl delete pod -n helm-installed kafka-2 --wait=false >/dev/null
wait_pod helm-installed kafka-2 || fail "helm-installed/kafka-2 was not re-created"
expect_eq "broker pods are created again, uninjected, once it is gone" \
  "$(env_of helm-installed kafka-2 KAFKA_ADVERTISED_LISTENERS)" ""
kubectl delete secret -n kafka-listener-injector e2e-webhook-tls >/dev/null
expect_eq "nothing of the release is left in its namespace" \
  "$(kubectl get deployment,service,secret,networkpolicy,poddisruptionbudget,resourcequota -n kafka-listener-injector -o name 2>/dev/null | grep -c kafka-listener-injector)" 0

# Helm-generated certificates: one CA, kept by upgrades (through lookup).
ca_of_release() {
  kubectl get mutatingwebhookconfiguration kafka-listener-injector -o jsonpath='{.webhooks[0].clientConfig.caBundle}'
}
# The webhook is called at 127.0.0.1 here (webhook.url), so the generated certificate also covers
# that address; a second webhook serves the chart's own Secret, and the API server must trust it
# through the chart's caBundle for a broker pod to be created at all (failurePolicy Fail).
CHART_WEBHOOK_PORT=28444
"$helm" install kli charts/kafka-listener-injector -n kafka-listener-injector --set certificates.mode=helm \
  --set 'certificates.helmExtraIPs={127.0.0.1}' \
  --set webhook.url="https://127.0.0.1:$CHART_WEBHOOK_PORT/mutate" >/dev/null 2>&1 || fail "helm install (certificates.mode=helm)"
ca_first=$(ca_of_release)
# The caBundle the API server trusts must verify the certificate the webhook's pods serve, for the
# name the API server calls (the Service's), as openssl checks it.
echo "$ca_first" | base64 -d >"$work/helm-ca.crt"
kubectl get secret -n kafka-listener-injector kafka-listener-injector-tls -o jsonpath='{.data.tls\.crt}' \
  | base64 -d >"$work/helm-tls.crt"
expect_eq "the caBundle verifies the Secret's certificate for kafka-listener-injector.kafka-listener-injector.svc" \
  "$(openssl verify -CAfile "$work/helm-ca.crt" -verify_hostname kafka-listener-injector.kafka-listener-injector.svc \
    "$work/helm-tls.crt" 2>&1)" "$work/helm-tls.crt: OK"
expect_contains "and no other name" \
  "$(openssl verify -CAfile "$work/helm-ca.crt" -verify_hostname kafka.example.com "$work/helm-tls.crt" 2>&1)" \
  "hostname mismatch"
kubectl get secret -n kafka-listener-injector kafka-listener-injector-tls -o jsonpath='{.data.tls\.key}' \
  | base64 -d >"$work/helm-tls.key"
"$kli" serve --listen "127.0.0.1:$CHART_WEBHOOK_PORT" --admin-listen 127.0.0.1:29091 \
  --tls-cert "$work/helm-tls.crt" --tls-key "$work/helm-tls.key" >>"$work/chart-webhook.log" 2>&1 &
chart_webhook=$!
for _ in $(seq 1 100); do curl -fs http://127.0.0.1:29091/readyz >/dev/null && break; sleep 0.1; done
kubectl create namespace helm-cert >/dev/null
statefulset "$example" helm-cert | kubectl apply -f - >/dev/null
wait_pod helm-cert kafka-0 || fail "helm-cert/kafka-0 was not created: the API server did not accept the chart's certificate"
expect_eq "the API server called the webhook serving the chart's own certificate, trusted through the chart's caBundle" \
  "$(env_of helm-cert kafka-0 KAFKA_ADVERTISED_LISTENERS)" "$(expected helm-cert 0)"
kill -TERM "$chart_webhook"; wait "$chart_webhook"
kubectl delete namespace helm-cert --wait=false >/dev/null
"$helm" upgrade kli charts/kafka-listener-injector -n kafka-listener-injector --reuse-values \
  --set replicaCount=3 >/dev/null 2>&1 || fail "helm upgrade (certificates.mode=helm)"
expect_eq "helm upgrade keeps the CA" "$(ca_of_release | sha256sum)" "$(echo -n "$ca_first" | sha256sum)"
"$helm" uninstall kli -n kafka-listener-injector --wait >/dev/null 2>&1 || fail "helm uninstall (certificates.mode=helm)"
expect_eq "and uninstall removes the webhook configuration and the Secret" \
  "$(kubectl get mutatingwebhookconfigurations -o name | grep -c kafka-listener-injector) $(kubectl get secret -n kafka-listener-injector -o name | grep -c kafka-listener-injector-tls)" "0 0"

stop_webhook || fail "the webhook exited non-zero at the end"
log "the webhook's log never holds env values"
if grep -q "kafka-0.kafka.example.com\|PLAINTEXT" "$work/webhook.log"; then
  fail "an env value appears in the webhook log"
else
  pass "no env value in $(wc -l <"$work/webhook.log") log lines"
fi

echo "e2e: finished in $(($(date +%s) - started))s"
echo "$passed passed, $failed failed"
[ "$failed" -eq 0 ]
