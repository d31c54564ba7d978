#!/bin/sh
# Stands in for /opt/kafka/bin/kafka-storage.sh of the apache/kafka image (bind-mounted there by
# the node agent): the real script runs kafka.tools.StorageTool through kafka-run-class.sh; this
# one runs it from the jars of tests/e2e/kafka/fetch-kafka.sh, with a small heap.
set -eu
: "${KLI_KAFKA_LIBS:?the node agent sets KLI_KAFKA_LIBS}"
exec java -Xmx128m -XX:TieredStopAtLevel=1 -Dorg.slf4j.simpleLogger.defaultLogLevel=warn \
  -cp "$KLI_KAFKA_LIBS/*" kafka.tools.StorageTool "$@"
