# Stands in for /opt/bitnami/scripts/libkafka.sh of the bitnami/kafka 4.0 image, which the node
# agent bind-mounts at that path for the Bitnami chart's init containers (the image is not pulled
# here). Only the functions the chart's prepare-config script calls, each with the image's
# behaviour as read in bitnami/containers (libkafka.sh and the liblog, libfile and libvalidations
# libraries it sources):
#   - info, warn, error, debug: one line on stderr; none of them exits (the callers do);
#   - is_boolean_yes: 1, yes or true, in any case;
#   - replace_in_file FILE REGEX REPLACEMENT [EXTENDED]: sed over every line (extended regex
#     unless the fourth argument is false), the file rewritten in place;
#   - kafka_server_conf_set KEY VALUE: each KEY= line of $KAFKA_CONF_FILE (also a #-commented one)
#     becomes KEY=VALUE; without one, KEY=VALUE is appended after a newline.
# shellcheck shell=bash

bitnami_log() { printf 'kafka %s %-5s ==> %s\n' "$(date +%T)" "$1" "$2" >&2; }
info() { bitnami_log INFO "$*"; }
warn() { bitnami_log WARN "$*"; }
error() { bitnami_log ERROR "$*"; }
debug() { if is_boolean_yes "${BITNAMI_DEBUG:-false}"; then bitnami_log DEBUG "$*"; fi; }

is_boolean_yes() {
  shopt -s nocasematch
  [[ ${1:-} == 1 || ${1:-} =~ ^(yes|true)$ ]]
}

replace_in_file() {
  local file=$1 match=$2 replacement=$3 extended=${4:-true} separator=$'\001' result
  if [[ $extended == true ]]; then
    result=$(sed -E "s${separator}${match}${separator}${replacement}${separator}g" "$file")
  else
    result=$(sed "s${separator}${match}${separator}${replacement}${separator}g" "$file")
  fi
  echo "$result" >"$file"
}

kafka_server_conf_set() {
  local key=$1 value=${2:?missing value}
  if grep -q "^[#\\s]*${key}\s*=.*" "$KAFKA_CONF_FILE"; then
    replace_in_file "$KAFKA_CONF_FILE" "^[#\\s]*${key}\s*=.*" "${key}=${value}" false
  else
    printf '\n%s=%s' "$key" "$value" >>"$KAFKA_CONF_FILE"
  fi
}
