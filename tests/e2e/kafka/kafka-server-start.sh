#!/bin/sh
# Stands in for /opt/kafka/bin/kafka-server-start.sh of the apache/kafka image, which the node
# agent bind-mounts at that path: what the real script does (bin/kafka-server-start.sh, then
# kafka-run-class.sh), with the jars of tests/e2e/kafka/fetch-kafka.sh. A usage error without
# a properties file (-daemon is not built); KAFKA_HEAP_OPTS as given, else the real script's
# 1 GiB; then kafka.Kafka,
# which loads the file and applies each --override over it. The image's log4j setup is not
# built: the jars log through slf4j-simple, at warn.
set -eu
: "${KLI_KAFKA_LIBS:?the node agent sets KLI_KAFKA_LIBS}"
if [ $# -lt 1 ]; then
  echo "USAGE: $0 server.properties [--override property=value]*" >&2
  exit 1
fi
# shellcheck disable=SC2086
exec java ${KAFKA_HEAP_OPTS:--Xmx1G -Xms1G} -XX:+UseSerialGC -XX:TieredStopAtLevel=1 \
  -Dorg.slf4j.simpleLogger.defaultLogLevel=warn -cp "$KLI_KAFKA_LIBS/*" kafka.Kafka "$@"
