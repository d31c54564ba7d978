# Sourced by run.sh after the Kafka stage (whose helpers it uses: kafka_network, outside,
# wait_ready, kafka_tool, kafka_logs): one TLS gateway for all brokers. A real Gateway API
# implementation (Traefik, built from its Go module by tests/tools/go-tool.sh) watches the rig's
# API server with the RBAC it documents, holds one address on the outside link, and routes each
# TLS connection by its SNI, passing TLS through, along the TLSRoutes `kafka-listener-injector
# services --gateway` renders. The brokers are tests/fixtures/layouts/kafka-tls.yaml (EXTERNAL
# on SSL, one certificate for *.kafka.example.com from a Secret); an outside client that checks
# certificate names bootstraps from bootstrap.kafka.example.com and must reach every broker
# through that one address.

source tests/e2e/versions.env
GW_BROKERS_NS=kafka-gw
GATEWAY_NS=kafka-gateway
GATEWAY_NAME=kafka-gateway
GATEWAY_IP=10.77.2.200
GATEWAY_PIDS=()

gateway_cleanup() {
  local pid
  for pid in "${GATEWAY_PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null; done
  for pid in "${GATEWAY_PIDS[@]}"; do wait "$pid" 2>/dev/null; done
  GATEWAY_PIDS=()
}

# The outside client, with TLS and the certificate's name checked against each broker's name.
gw_kcat() { outside timeout 180 kcat -X security.protocol=ssl -X "ssl.ca.location=$gdir/certs/ca.crt" \
  -X ssl.endpoint.identification.algorithm=https "$@"; }

gw_metadata_brokers() {
  gw_kcat -b "bootstrap.$DOMAIN:9094" -L -m 10 2>/dev/null \
    | sed -n 's/^ *broker \([0-9]*\) at \([^ ]*\).*/\1 \2/p' | sort -n
}

# external-dns' gateway-tlsroute source, once: each hostname of a TLSRoute the Gateway accepted,
# at the addresses in the Gateway's status, in the outside resolver's hosts file.
publish_route_records() {
  local addresses
  addresses=$(kubectl get gateway -n "$GATEWAY_NS" "$GATEWAY_NAME" -o jsonpath='{.status.addresses[*].value}')
  kubectl get tlsroutes -n "$GW_BROKERS_NS" -o json | jq -r --arg addresses "$addresses" '
    .items[] | select(any(.status.parents[]?.conditions[]?; .type == "Accepted" and .status == "True"))
    | .spec.hostnames[] as $host | ($addresses | split(" "))[] | "\(.) \($host)"' \
    >"$gdir/outside-dns/hosts"
}

accepted_routes() {
  kubectl get tlsroutes -n "$GW_BROKERS_NS" -o json \
    | jq -r '[.items[] | select(any(.status.parents[]?.conditions[]?; .type == "Accepted" and .status == "True"))
              | .metadata.name] | sort | join(" ")'
}

run_gateway_stage() {
  gdir=$work/gateway
  kdir=$gdir # for kafka_logs
  mkdir -p "$gdir/pods"
  kafka_libs=$(tests/e2e/kafka/fetch-kafka.sh) || { fail "resolving the Kafka jars"; return; }
  local traefik crds rbac
  traefik=$(tests/tools/go-tool.sh traefik) || { fail "building Traefik $TRAEFIK_VERSION"; return; }
  crds=$(go mod download -json "sigs.k8s.io/gateway-api@v$GATEWAY_API_VERSION" | jq -r .Dir)/config/crd/standard
  rbac=$(go mod download -json "github.com/traefik/traefik/v3@v$TRAEFIK_VERSION" \
    | jq -r .Dir)/docs/content/reference/dynamic-configuration/kubernetes-gateway-rbac.yml
  kafka_cleanup
  kafka_network "$gdir"
  # The agent's load balancers publish nowhere the outside reads: this stage has none, and the
  # outside resolver holds the gateway's records alone.
  start_node_agent "$GW_BROKERS_NS" "$gdir" "$gdir/load-balancer-hosts"

  log "G1. Gateway API $GATEWAY_API_VERSION (standard channel) and Traefik $TRAEFIK_VERSION as its controller, at $GATEWAY_IP"
  kubectl apply --server-side -f "$crds" >"$gdir/crds.log" 2>&1 || { fail "applying the Gateway API CRDs: $(tail -n 3 "$gdir/crds.log")"; return; }
  kubectl wait --for condition=Established --timeout 60s crd/gateways.gateway.networking.k8s.io \
    crd/tlsroutes.gateway.networking.k8s.io >/dev/null || { fail "the Gateway API CRDs are not established"; return; }
  # Traefik's own RBAC for its Gateway provider (from its module), bound to its ServiceAccount.
  kubectl apply -f "$rbac" >/dev/null || { fail "applying Traefik's RBAC"; return; }
  kubectl create serviceaccount -n default traefik-controller >/dev/null
  kubectl create token -n default traefik-controller --duration 2h >"$gdir/token" \
    || { fail "a token for Traefik's ServiceAccount"; return; }
  # The API server listens on the host's loopback; the gateway runs in the bridge namespace, as a
  # pod on the pod network. A relay through a Unix socket is its route to the API server.
  socat "UNIX-LISTEN:$gdir/apiserver.sock,fork" "TCP:127.0.0.1:$APISERVER_PORT" 2>>"$gdir/relay.log" &
  GATEWAY_PIDS+=($!)
  ip netns exec "$BRIDGE_NS" socat "TCP-LISTEN:$APISERVER_PORT,bind=127.0.0.1,fork,reuseaddr" \
    "UNIX-CONNECT:$gdir/apiserver.sock" 2>>"$gdir/relay.log" &
  GATEWAY_PIDS+=($!)
  # One address on the outside link, as the gateway's load balancer would have.
  ip -n "$BRIDGE_NS" addr add "$GATEWAY_IP/32" dev lbnet
  ip netns exec "$BRIDGE_NS" "$traefik" --global.checknewversion=false --global.sendanonymoususage=false \
    --log.level=INFO --entrypoints.kafka.address="$GATEWAY_IP:9094" \
    --providers.kubernetesgateway=true \
    --providers.kubernetesgateway.endpoint="https://127.0.0.1:$APISERVER_PORT" \
    --providers.kubernetesgateway.token="$gdir/token" \
    --providers.kubernetesgateway.certauthfilepath="$work/cluster/pki/apiserver/apiserver.crt" \
    --providers.kubernetesgateway.statusaddress.ip="$GATEWAY_IP" >"$gdir/traefik.log" 2>&1 &
  GATEWAY_PIDS+=($!)
  kubectl create namespace "$GATEWAY_NS" >/dev/null
  kubectl apply -f - >/dev/null <<YAML || { fail "applying the GatewayClass and Gateway"; return; }
apiVersion: gateway.networking.k8s.io/v1
kind: GatewayClass
metadata: {name: traefik}
spec: {controllerName: traefik.io/gateway-controller}
---
apiVersion: gateway.networking.k8s.io/v1
kind: Gateway
metadata: {name: $GATEWAY_NAME, namespace: $GATEWAY_NS}
spec:
  gatewayClassName: traefik
  listeners:
    - name: kafka
      protocol: TLS
      port: 9094
      hostname: "*.$DOMAIN"
      tls: {mode: Passthrough}
      allowedRoutes:
        namespaces: {from: Selector, selector: {matchLabels: {kubernetes.io/metadata.name: $GW_BROKERS_NS}}}
        kinds: [{kind: TLSRoute}]
YAML
  kubectl wait --for condition=Programmed --timeout 60s -n "$GATEWAY_NS" "gateway/$GATEWAY_NAME" >/dev/null 2>&1
  local programmed
  programmed=$(kubectl get gateway -n "$GATEWAY_NS" "$GATEWAY_NAME" \
    -o jsonpath='{.status.conditions[?(@.type=="Programmed")].status} {.status.addresses[*].value}')
  expect_eq "Traefik programs the Gateway and reports its address" "$programmed" "True $GATEWAY_IP"
  [ "$programmed" == "True $GATEWAY_IP" ] || { tail -n 20 "$gdir/traefik.log"; return; }

  log "G2. the TLS brokers (tests/fixtures/layouts/kafka-tls.yaml), one certificate for *.$DOMAIN, routed by \`services --gateway\`"
  "$kli" certs --dns "*.$DOMAIN" --out "$gdir/certs" >/dev/null || { fail "kafka-listener-injector certs"; return; }
  openssl pkcs12 -export -in "$gdir/certs/tls.crt" -inkey "$gdir/certs/tls.key" -certfile "$gdir/certs/ca.crt" \
    -name kafka -passout pass:e2e-keystore -out "$gdir/keystore.p12" || { fail "making the PKCS12 key store"; return; }
  kubectl create namespace "$GW_BROKERS_NS" >/dev/null
  kubectl create secret generic -n "$GW_BROKERS_NS" kafka-tls --from-file=keystore.p12="$gdir/keystore.p12" \
    --from-literal=password=e2e-keystore >/dev/null
  # The example's controllers, headless Service and ConfigMap, and the fixture's brokers, moved to
  # their namespace (the quorum's names carry it).
  local move="s/^\(  namespace:\) kafka$/\1 $GW_BROKERS_NS/; s/\.kafka\.svc:/.$GW_BROKERS_NS.svc:/g"
  sed -e "$move" manifests/examples/kafka/controllers.yaml | kubectl apply -f - >/dev/null
  sed -e "$move" manifests/examples/kafka/kafka.yaml \
    | python3 -c 'import sys, yaml; print(yaml.safe_dump_all(d for d in yaml.safe_load_all(sys.stdin) if d and d["kind"] != "StatefulSet"))' \
    | kubectl apply -f - >/dev/null
  sed -e "$move" tests/fixtures/layouts/kafka-tls.yaml >"$gdir/kafka-tls.yaml"
  kubectl apply -f "$gdir/kafka-tls.yaml" >/dev/null || { fail "applying the TLS brokers"; return; }
  "$kli" services -f "$gdir/kafka-tls.yaml" --gateway "$GATEWAY_NS/$GATEWAY_NAME" --bootstrap-host "bootstrap.{domain}" \
    >"$gdir/services.yaml" 2>"$gdir/services.err" || { fail "services --gateway: $(cat "$gdir/services.err")"; return; }
  kubectl apply -f "$gdir/services.yaml" >"$gdir/services.log" 2>&1 || { fail "applying the Services and TLSRoutes: $(tail -n 3 "$gdir/services.log")"; return; }
  local started=$SECONDS i
  for i in 0 1 2; do
    wait_ready "$GW_BROKERS_NS" "kafka-$i" 300 || { fail "$GW_BROKERS_NS/kafka-$i did not become ready"; kafka_logs; return; }
  done
  log "   three TLS brokers ready after $((SECONDS - started)) s"
  local routes="kafka-0-external kafka-1-external kafka-2-external kafka-bootstrap" got
  for _ in $(seq 1 60); do
    got=$(accepted_routes)
    [ "$got" == "$routes" ] && break
    sleep 0.5
  done
  expect_eq "the Gateway accepts every rendered TLSRoute (gateway.networking.k8s.io/v1)" "$got" "$routes"
  publish_route_records
  expect_eq "every broker name and the bootstrap name resolve, outside, to the one gateway address" \
    "$(for h in bootstrap kafka-0 kafka-1 kafka-2; do outside getent ahostsv4 "$h.$DOMAIN" | awk '{print $1}' | sort -u; done | sort -u)" \
    "$GATEWAY_IP"

  log "G3. an outside client with TLS, checking names, bootstraps from bootstrap.$DOMAIN:9094 through the gateway"
  local expected_brokers
  expected_brokers=$(printf '%s\n' "100 kafka-0.$DOMAIN:9094" "101 kafka-1.$DOMAIN:9094" "102 kafka-2.$DOMAIN:9094")
  got=$(metadata_until 30 "$expected_brokers" gw_metadata_brokers)
  gw_kcat -b "bootstrap.$DOMAIN:9094" -L -m 10 >"$gdir/metadata.txt" 2>&1
  sed 's/^/       /' "$gdir/metadata.txt" | head -n 6
  expect_eq "metadata, over TLS through the gateway, lists every broker by its own name" "$got" "$expected_brokers"
  cat >"$gdir/client.properties" <<PROPS
security.protocol=SSL
ssl.truststore.type=PEM
ssl.truststore.location=$gdir/certs/ca.crt
ssl.endpoint.identification.algorithm=https
PROPS
  kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "bootstrap.$DOMAIN:9094" \
    --command-config "$gdir/client.properties" --create --topic e2e-gateway --partitions 6 --replication-factor 3 \
    >/dev/null 2>"$gdir/topic.err" || { fail "creating the topic through the gateway: $(tail -n 3 "$gdir/topic.err")"; kafka_logs; return; }
  local leaders
  for _ in $(seq 1 20); do
    leaders=$(gw_kcat -b "bootstrap.$DOMAIN:9094" -L -t e2e-gateway -m 10 2>/dev/null \
      | sed -n 's/.*partition [0-9]*, leader \([0-9]*\),.*/\1/p' | sort -un | tr '\n' ' ')
    [ "$leaders" == "100 101 102 " ] && break
    sleep 1
  done
  expect_eq "the topic's partitions are led by every broker" "$leaders" "100 101 102 "
  seq 1 10000 | gw_kcat -P -b "bootstrap.$DOMAIN:9094" -t e2e-gateway -X enable.idempotence=true \
    2>"$gdir/produce.err" || fail "producing through the gateway: $(tail -n 3 "$gdir/produce.err")"
  gw_kcat -C -b "bootstrap.$DOMAIN:9094" -t e2e-gateway -o beginning -e -q -m 30 \
    >"$gdir/consumed.txt" 2>"$gdir/consume.err"
  expect_eq "10,000 messages produced and consumed through the one gateway, over TLS" "$(wc -l <"$gdir/consumed.txt")" 10000
  expect_eq "none lost or duplicated" "$(sort -n "$gdir/consumed.txt" | uniq | wc -l) $(sort -n "$gdir/consumed.txt" | tail -n 1)" "10000 10000"
  expect_eq "pod IPs are not reachable from outside" \
    "$(outside timeout 2 bash -c 'exec 3<>/dev/tcp/10.77.1.10/9094' 2>/dev/null && echo reachable || echo unreachable)" unreachable

  log "G4. probe --tls: every broker, through the gateway, answers as itself with a certificate for its name"
  outside "$kli" probe --bootstrap "bootstrap.$DOMAIN:9094" --timeout 3s --tls --ca-file "$gdir/certs/ca.crt" \
    --expect-template "INTERNAL://{pod}.{service}.{namespace}.svc:9092,EXTERNAL://{pod}.{domain}:9094" \
    --domain "$DOMAIN" --namespace "$GW_BROKERS_NS" --node-id-offset 100 >"$gdir/probe.txt" 2>&1
  local code=$?
  sed 's/^/       /' "$gdir/probe.txt"
  expect_eq "probe --tls: exit 0" "$code" 0
  expect_contains "probe --tls: every broker answers as itself" "$(cat "$gdir/probe.txt")" "3 brokers, 0 a client here cannot use"

  gateway_cleanup
  kubectl delete namespace "$GW_BROKERS_NS" "$GATEWAY_NS" --wait=false >/dev/null
  kafka_cleanup
}
