#!/usr/bin/env bash
# Stands in for /etc/kafka/docker/run of the official apache/kafka image (4.x), which the node
# agent bind-mounts at that path inside each pod's mount namespace. It does what the image does,
# in the image's order, and no more:
#   - the `configure` step: KRaft needs CLUSTER_ID; a controller-only node refuses advertised
#     listeners; KAFKA_LISTENERS defaults to the advertised listeners with 0.0.0.0 hosts;
#   - `kafka.docker.KafkaDockerWrapper setup` from the broker jar itself: the image's own code that
#     turns KAFKA_* env into server.properties (prefix dropped, `_` -> `.`, `__` -> `_`,
#     `___` -> `-`) and formats the log directories with CLUSTER_ID;
#   - `launch`: kafka.Kafka on the final server.properties.
# The broker's configuration therefore comes only from the env the pod was stored with.
set -euo pipefail
: "${KLI_KAFKA_LIBS:?the node agent sets KLI_KAFKA_LIBS}" "${KLI_POD_DIR:?the node agent sets KLI_POD_DIR}"

if [[ -n "${KAFKA_PROCESS_ROLES-}" ]]; then
  : "${CLUSTER_ID:?CLUSTER_ID environment variable not set}"
  if [[ $KAFKA_PROCESS_ROLES == controller && -n "${KAFKA_ADVERTISED_LISTENERS-}" ]]; then
    echo "KAFKA_ADVERTISED_LISTENERS is not supported on a KRaft controller." >&2
    exit 1
  fi
fi
if [[ -z "${KAFKA_LISTENERS-}" && "${KAFKA_PROCESS_ROLES-}" != controller && -n "${KAFKA_ADVERTISED_LISTENERS-}" ]]; then
  KAFKA_LISTENERS=$(echo "$KAFKA_ADVERTISED_LISTENERS" | sed -e 's|://[^:]*:|://0.0.0.0:|g')
  export KAFKA_LISTENERS
fi

config=$KLI_POD_DIR/config
mkdir -p "$config/default" "$config/mounted" "$config/final"
classpath="$KLI_KAFKA_LIBS/*"
# The rig runs several brokers on two cores: a small heap instead of kafka-server-start.sh's 1 GiB.
heap=${KAFKA_HEAP_OPTS:--Xms64m -Xmx320m}
# A broker pod re-created on its old volume finds its log directories formatted; the image's
# launch script lets that pass, and only that.
if ! setup=$(java -Xmx128m -cp "$classpath" kafka.docker.KafkaDockerWrapper setup \
  --default-configs-dir "$config/default" --mounted-configs-dir "$config/mounted" \
  --final-configs-dir "$config/final" 2>&1); then
  grep -qi "already formatted" <<<"$setup" || { echo "$setup" >&2; exit 1; }
fi
# shellcheck disable=SC2086
exec java $heap -XX:+UseSerialGC -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -cp "$classpath" kafka.Kafka "$config/final/server.properties"
