#!/usr/bin/env bash
# Stands in for the bitnami/kafka 4.0 image's entrypoint (/opt/bitnami/scripts/kafka/entrypoint.sh
# with run.sh as its argument), which the node agent bind-mounts at that path. It does what the
# image does when the chart mounts server.properties, in the image's order (as read in
# bitnami/containers: kafka-env.sh, setup.sh, libkafka.sh's kafka_kraft_storage_initialize,
# run.sh), and no more:
#   - kafka-env.sh: each VAR_FILE variable read into VAR; KAFKA_CLUSTER_ID from
#     KAFKA_KRAFT_CLUSTER_ID; the heap 1 GiB unless KAFKA_HEAP_OPTS says otherwise;
#   - setup.sh: with the file mounted, no configuration from env at all (kafka_initialize is
#     skipped); when the file has process.roles, the storage is formatted (kept if formatted,
#     the cluster id of an existing meta.properties first), with --initial-controllers from
#     KAFKA_INITIAL_CONTROLLERS on a node whose KAFKA_CFG_PROCESS_ROLES names controller;
#   - run.sh: the broker started on that file.
# Not built (it stops with a message instead): SCRAM users bootstrapped at format time, and the
# configuration from env that the image does when no file is mounted.
set -euo pipefail
: "${KLI_KAFKA_LIBS:?the node agent sets KLI_KAFKA_LIBS}"
conf=/opt/bitnami/kafka/config/server.properties
data=/bitnami/kafka/data
yes() { [[ ${1,,} == 1 || ${1,,} == yes || ${1,,} == true ]]; }

for var in KAFKA_CLUSTER_ID KAFKA_KRAFT_CLUSTER_ID KAFKA_INITIAL_CONTROLLERS KAFKA_HEAP_OPTS \
  KAFKA_SKIP_KRAFT_STORAGE_INIT; do
  file_var=${var}_FILE
  if [[ -n ${!file_var:-} ]]; then
    if [[ -r ${!file_var} ]]; then
      export "$var=$(<"${!file_var}")"
      unset "$file_var"
    else
      echo "kafka WARN ==> Skipping export of '$var'. '${!file_var}' is not readable." >&2
    fi
  fi
done
KAFKA_CLUSTER_ID=${KAFKA_CLUSTER_ID:-${KAFKA_KRAFT_CLUSTER_ID:-}}
mkdir -p /opt/bitnami/kafka/logs "$data"

if [[ ! -f $conf ]]; then
  echo "bitnami-run.sh: no $conf mounted; the image's configuration from env is not built in the rig" >&2
  exit 1
fi
if yes "${KAFKA_KRAFT_BOOTSTRAP_SCRAM_USERS:-false}"; then
  echo "bitnami-run.sh: KAFKA_KRAFT_BOOTSTRAP_SCRAM_USERS: SCRAM users at format time are not built in the rig" >&2
  exit 1
fi
classpath="$KLI_KAFKA_LIBS/*"
if grep -q '^process.roles=' "$conf" && ! yes "${KAFKA_SKIP_KRAFT_STORAGE_INIT:-false}"; then
  if [[ -f $data/meta.properties ]]; then
    KAFKA_CLUSTER_ID=$(sed -n 's/^cluster\.id=//p' "$data/meta.properties")
  fi
  : "${KAFKA_CLUSTER_ID:?no KAFKA_KRAFT_CLUSTER_ID (the image would make a random one; the rig refuses)}"
  args=(--config "$conf" --ignore-formatted "--cluster-id=$KAFKA_CLUSTER_ID")
  if [[ ${KAFKA_CFG_PROCESS_ROLES:-} == *controller* ]]; then
    args+=(--feature=kraft.version=1)
    if [[ -n ${KAFKA_INITIAL_CONTROLLERS:-} ]]; then
      args+=("--initial-controllers=$KAFKA_INITIAL_CONTROLLERS")
    else
      args+=(--no-initial-controllers)
    fi
  fi
  java -Xmx128m -cp "$classpath" kafka.tools.StorageTool format "${args[@]}"
fi
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xmx1024m -Xms1024m} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$classpath" kafka.Kafka "$conf"
