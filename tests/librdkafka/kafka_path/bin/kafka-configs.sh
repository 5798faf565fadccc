#!/bin/sh
# Kafka's kafka-configs.sh (e.g. trivup's SCRAM users: --alter --add-config
# 'SCRAM-SHA-512=[iterations=4096,password=P]' --entity-type users
# --entity-name U); `pylog configs` takes the same options.
exec "${PYLOG:-pylog}" configs "$@"
