#!/bin/sh
# librdkafka's tests run "$KAFKA_PATH/bin/kafka-acls.sh --bootstrap-server B
# --add|--remove [--force] --allow-principal|--deny-principal P --operation O
# --allow-host|--deny-host H --topic T" (0109, 0115, 0119); `pylog acls` takes
# Kafka's options under the same names.
exec "${PYLOG:-pylog}" acls "$@"
