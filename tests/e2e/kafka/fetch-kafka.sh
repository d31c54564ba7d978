#!/usr/bin/env bash
# Resolves the Apache Kafka jars (broker, tools, their dependencies) from Maven Central once and
# caches them; prints the directory. The version is KAFKA_VERSION in ../versions.env.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
# shellcheck source=../versions.env
. "$here/../versions.env"
libs=${KLI_E2E_CACHE:-$HOME/.cache/kafka-listener-injector}/kafka-$KAFKA_VERSION/libs
if [ -f "$libs/kafka_2.13-$KAFKA_VERSION.jar" ]; then
  echo "$libs"
  exit 0
fi
command -v mvn >/dev/null || { echo "fetch-kafka: Maven (mvn) is required" >&2; exit 1; }
command -v java >/dev/null || { echo "fetch-kafka: Java 17+ is required" >&2; exit 1; }
echo "fetch-kafka: resolving org.apache.kafka:kafka_2.13:$KAFKA_VERSION from Maven Central" >&2
rm -rf "$libs.tmp"
mvn -q -B -f "$here/pom.xml" -Dkafka.version="$KAFKA_VERSION" dependency:copy-dependencies \
  -DoutputDirectory="$libs.tmp" >&2
mv "$libs.tmp" "$libs"
echo "$libs"
