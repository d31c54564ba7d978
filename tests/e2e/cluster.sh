# Sourced by run.sh: a real control plane on loopback (etcd, kube-apiserver,
# kube-controller-manager), no scheduler or kubelet: pods stay Pending, and admission happens at
# creation, which is what the webhook needs.

ETCD_PORT=${ETCD_PORT:-23790}
APISERVER_PORT=${APISERVER_PORT:-36443}
PIDS=()

start_cluster() {
  local bin=$1 dir=$2
  local port
  for port in "$ETCD_PORT" "$APISERVER_PORT"; do
    if ss -ltn "sport = :$port" | grep -q LISTEN; then
      echo "e2e: port $port is taken (a control plane of an earlier run still up?): $(ss -ltnp "sport = :$port" | tail -n +2)" >&2
      return 1
    fi
  done
  mkdir -p "$dir/etcd" "$dir/pki"
  openssl genrsa -out "$dir/pki/sa.key" 2048 2>/dev/null
  openssl rsa -in "$dir/pki/sa.key" -pubout -out "$dir/pki/sa.pub" 2>/dev/null
  local token
  token=$(head -c 16 /dev/urandom | od -An -tx1 | tr -d ' \n')
  echo "$token,admin,admin,system:masters" >"$dir/pki/tokens.csv"

  "$bin/etcd" --data-dir "$dir/etcd" --name e2e \
    --listen-client-urls "http://127.0.0.1:$ETCD_PORT" --advertise-client-urls "http://127.0.0.1:$ETCD_PORT" \
    --listen-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-advertise-peer-urls "http://127.0.0.1:$((ETCD_PORT + 10))" \
    --initial-cluster "e2e=http://127.0.0.1:$((ETCD_PORT + 10))" \
    >"$dir/etcd.log" 2>&1 &
  PIDS+=($!)

  "$bin/kube-apiserver" \
    --etcd-servers "http://127.0.0.1:$ETCD_PORT" \
    --bind-address 127.0.0.1 --advertise-address 127.0.0.1 --secure-port "$APISERVER_PORT" \
    --endpoint-reconciler-type none \
    --cert-dir "$dir/pki/apiserver" \
    --token-auth-file "$dir/pki/tokens.csv" \
    --authorization-mode RBAC \
    --service-account-key-file "$dir/pki/sa.pub" \
    --service-account-signing-key-file "$dir/pki/sa.key" \
    --service-account-issuer https://kubernetes.default.svc.cluster.local \
    --service-cluster-ip-range 10.96.0.0/16 \
    --allow-privileged=true \
    --enable-admission-plugins OwnerReferencesPermissionEnforcement,AlwaysPullImages,DenyServiceExternalIPs \
    >"$dir/apiserver.log" 2>&1 &
  PIDS+=($!)

  export KUBECONFIG=$dir/kubeconfig
  cat >"$KUBECONFIG" <<KC
apiVersion: v1
kind: Config
clusters:
  - name: e2e
    cluster: {server: "https://127.0.0.1:$APISERVER_PORT", insecure-skip-tls-verify: true}
users:
  - name: admin
    user: {token: "$token"}
contexts:
  - name: e2e
    context: {cluster: e2e, user: admin}
current-context: e2e
KC
  local i
  for i in $(seq 1 120); do
    kubectl get --raw /readyz >/dev/null 2>&1 && break
    sleep 0.5
  done
  kubectl get --raw /readyz >/dev/null 2>&1 || { tail -n 30 "$dir/apiserver.log" >&2; return 1; }

  "$bin/kube-controller-manager" \
    --kubeconfig "$KUBECONFIG" --leader-elect=false \
    --service-account-private-key-file "$dir/pki/sa.key" \
    --root-ca-file "$dir/pki/apiserver/apiserver.crt" \
    --controllers '*,-nodeipam,-nodelifecycle,-attachdetach,-persistentvolume-binder,-persistentvolume-expander,-ttl,-bootstrapsigner,-tokencleaner' \
    --bind-address 127.0.0.1 --secure-port 0 \
    >"$dir/controller-manager.log" 2>&1 &
  PIDS+=($!)
  # The default ServiceAccount shows the controllers are running.
  for i in $(seq 1 120); do
    kubectl get serviceaccount default -n default >/dev/null 2>&1 && return 0
    sleep 0.5
  done
  tail -n 30 "$dir/controller-manager.log" >&2
  return 1
}

stop_cluster() {
  local pid i
  # The API server and the controllers first, etcd last: without etcd the API server can hang
  # in its graceful shutdown. Whatever is still up after 10 s is killed.
  for ((i = ${#PIDS[@]} - 1; i >= 0; i--)); do kill "${PIDS[$i]}" 2>/dev/null || true; done
  for _ in $(seq 1 50); do
    local alive=0
    for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
    [ "$alive" -eq 0 ] && break
    sleep 0.2
  done
  for pid in "${PIDS[@]}"; do kill -9 "$pid" 2>/dev/null || true; wait "$pid" 2>/dev/null || true; done
  PIDS=()
}
