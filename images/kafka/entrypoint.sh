#!/bin/bash
# KAFKA_* environment variables → server.properties, as the official apache/kafka image does:
# KAFKA_LOG_DIRS → log.dirs ('_' → '.', '__' → '_', '___' → '-'); CLUSTER_ID formats the storage once.
set -euo pipefail
props=/etc/kafka/server.properties
: > "$props"
while IFS='=' read -r name value; do
  case "$name" in
    KAFKA_HEAP_OPTS|KAFKA_OPTS|KAFKA_JVM_PERFORMANCE_OPTS|KAFKA_LOG4J_OPTS|KAFKA_VERSION) continue ;;
    KAFKA_*) ;;
    *) continue ;;
  esac
  key="${name#KAFKA_}"
  key="${key,,}"
  key="${key//___/-}"
  key="${key//__/@}"
  key="${key//_/.}"
  key="${key//@/_}"
  printf '%s=%s\n' "$key" "$value" >> "$props"
done < <(env)
: "${CLUSTER_ID:?set CLUSTER_ID (a 22-character base64 UUID) to format the storage}"
java_opts=(-XX:+UseSerialGC -XX:SharedArchiveFile=/opt/kafka/kafka.jsa -Xshare:auto -Djava.awt.headless=true
  -Dlog4j2.configurationFile=/opt/kafka/config/log4j2.properties -Dkafka.logs.dir=/tmp)
# shellcheck disable=SC2206
heap=(${KAFKA_HEAP_OPTS:--Xmx1g -Xms256m})
log_dir="$(sed -n 's/^log\.dirs=//p' "$props" | cut -d, -f1)"
if [[ ! -f "${log_dir:-/tmp/kraft-combined-logs}/meta.properties" ]]; then
  java "${java_opts[@]}" -cp '/opt/kafka/libs/*' kafka.tools.StorageTool format --ignore-formatted \
    "--cluster-id=$CLUSTER_ID" -c "$props"
fi
# shellcheck disable=SC2086
exec java "${java_opts[@]}" "${heap[@]}" ${KAFKA_OPTS:-} -cp '/opt/kafka/libs/*' kafka.Kafka "$props"
