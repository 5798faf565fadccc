#!/bin/sh
# librdkafka's test framework runs "$KAFKA_PATH/bin/kafka-topics.sh
# --bootstrap-server B --create|--alter|--delete|--list|--describe ..." (test.c
# test_kafka_topics); pylog's own tool takes the action as a sub-command and
# the remaining options under the same names, so only the action moves.
set -e
PYLOG="${PYLOG:-pylog}"
action=""
args=""
for a in "$@"; do
    case "$a" in
        --create|--alter|--delete|--list|--describe)
            action="${a#--}" ;;
        *)
            args="$args '$(printf '%s' "$a" | sed "s/'/'\\\\''/g")'" ;;
    esac
done
if [ -z "$action" ]; then
    echo "kafka-topics.sh shim: one of --create --alter --delete --list --describe is required" >&2
    exit 2
fi
eval "exec \"\$PYLOG\" topics $action $args"
