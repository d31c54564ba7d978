# Sourced: start_registry CRANE LOG [PORT] starts `crane registry serve` on loopback and waits
# until it answers /v2/, then sets REGISTRY_PORT and REGISTRY_PID. Without PORT it picks one
# below the kernel's ephemeral range (so no outgoing connection holds it) and, when the registry
# dies at start (the port was taken after all), tries another: five tries in all. Each try waits
# up to 30 s, since a cold machine can be slow to start a Go binary for the first time. Returns 1
# with the registry's log on stderr when none answered.
start_registry() {
  local crane=$1 log=$2 wanted=${3:-} try port pid
  for try in 1 2 3 4 5; do
    port=${wanted:-$((20000 + RANDOM % 12000))}
    "$crane" registry serve --address "127.0.0.1:$port" >"$log" 2>&1 &
    pid=$!
    for _ in $(seq 1 300); do
      # The answer must come from this registry, not from another process holding the port.
      if curl -fs "http://127.0.0.1:$port/v2/" >/dev/null && sleep 0.2 && kill -0 "$pid" 2>/dev/null
      then
        REGISTRY_PORT=$port REGISTRY_PID=$pid
        return 0
      fi
      kill -0 "$pid" 2>/dev/null || break
      sleep 0.1
    done
    kill "$pid" 2>/dev/null
    echo "local registry: no answer on 127.0.0.1:$port (try $try): $(tail -n 2 "$log")" >&2
    [ -n "$wanted" ] && [ "$try" -ge 2 ] && break
  done
  return 1
}
