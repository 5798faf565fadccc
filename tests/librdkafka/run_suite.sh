#!/bin/bash
# Run librdkafka's own integration tests (tests/test-runner of a librdkafka
# checkout) against pylog: one broker, or a 3-broker `pylog cluster up`.
#
#   tests/librdkafka/run_suite.sh LIBRDKAFKA_DIR single|cluster [test-runner args...]
#
# LIBRDKAFKA_DIR is a checkout already built with ./configure && make &&
# (cd tests && make test-runner); nothing is built here.  Extra arguments go to
# test-runner (default: -L -p2, i.e. every test that needs a broker, two at a
# time; give e.g. "-L -p1 0081" for one).  Environment:
#   TEST_KAFKA_VERSION            (default 4.0.0: the version pylog claims)
#   TEST_CONSUMER_GROUP_PROTOCOL  (default classic)
#   PYLOG                         the pylog executable (default: the repo's .venv/bin/pylog)
#   WORK                          scratch dir for data, logs and reports (default /tmp/rdk-pylog-<mode>)
#   BASE_PORT                     first broker port (default 9092)
#   SCENARIO                      default, or noautocreate (the scenario of 0107 and 0111:
#                                 auto.create.topics.enable=false, test-runner -s noautocreate)
#   SASL                          empty (default: the clients connect over PLAINTEXT), or PLAIN,
#                                 SCRAM-SHA-256, SCRAM-SHA-512, OAUTHBEARER: the clients connect to a
#                                 SASL_PLAINTEXT listener (ports BASE_PORT+100 on) with that
#                                 mechanism, as librdkafka's trivup set-up does (user testuser /
#                                 testpass; OAUTHBEARER: unsecured JWTs, principal admin, which is a
#                                 super user), with connections.max.reauth.ms=10000 (0142)
#   SSL                           empty (default), or 1: the clients connect to an SSL listener
#                                 (SASL_SSL when SASL is given too; ports BASE_PORT+100 on) with
#                                 ssl.client.auth=required, as trivup's --ssl clusters: a CA, the
#                                 brokers' and the client's certificates are made in WORK/ssl
#                                 (tests/librdkafka/ssl_files.py), test.conf gets ssl.ca.location,
#                                 ssl.certificate.location, ssl.key.location, ssl.key.password and
#                                 the test-runner trivup's SSL_* variables (0097)
#   ALONE                         tests run after the others in a test-runner of their own, one at
#                                 a time (default: the socket-emulator tests 0049,0068,0075,0076,
#                                 0088,0094; empty: none). Only when no test is named (TESTS and
#                                 TESTS_SKIP_BEFORE unset, no test argument). The socket emulator (tests/sockem.c) overrides
#                                 close() for the whole process: 0076 has closed descriptor numbers
#                                 under other tests' clients, which then read each other's answers
#                                 (docs/LIBRDKAFKA-SUITE.md, 0077). The verdict counts both runs.
#
# As in librdkafka's own test clusters (trivup's KafkaBrokerApp and
# tests/cluster_testing.py), every broker runs the ACL authorizer with
# allow.everyone.if.no.acl.found=true (0081's ACL subtests, and 0109, 0115,
# 0119 through the kafka-acls.sh shim) and broker i has broker.rack=RACK<i>
# with the RackAwareReplicaSelector (0101 fetch from follower).
set -euo pipefail
# The whole script is one brace group: bash reads it completely before it
# runs, so editing this file during a run (runs take half an hour) cannot
# change what the run executes next.
{

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
rdk="${1:?usage: run_suite.sh LIBRDKAFKA_DIR single|cluster [test-runner args]}"
mode="${2:?usage: run_suite.sh LIBRDKAFKA_DIR single|cluster [test-runner args]}"
shift 2
rdk="$(cd "$rdk" && pwd)"
[ -x "$rdk/tests/test-runner" ] || { echo "$rdk/tests/test-runner is not built (cd $rdk/tests && make test-runner)" >&2; exit 2; }

export PYLOG="${PYLOG:-$repo/.venv/bin/pylog}"
base_port="${BASE_PORT:-9092}"
work="${WORK:-/tmp/rdk-pylog-$mode}"
rm -rf "$work"; mkdir -p "$work"

# The broker settings of librdkafka's default test scenario
# (tests/scenarios/default.json and trivup's broker template).
scenario="${SCENARIO:-default}"
case "$scenario" in
default) autocreate=true ;;
noautocreate) autocreate=false ;;
*) echo "SCENARIO must be default or noautocreate" >&2; exit 2 ;;
esac
common=(--override num.partitions=4 --override auto.create.topics.enable=$autocreate
        --override delete.topic.enable=true
        --override authorizer.class.name=org.apache.kafka.metadata.authorizer.StandardAuthorizer
        --override allow.everyone.if.no.acl.found=true
        --override replica.selector.class=org.apache.kafka.common.replica.RackAwareReplicaSelector)
nbrokers=1; [ "$mode" = cluster ] && nbrokers=3
# From Kafka 4.2 on, librdkafka's test clusters (tests/cluster_testing.py)
# give the share coordinator's and the transaction coordinator's topics at
# most the brokers there are, and lower the broker's floor for a share
# group's record lock to 1 s (0173 sets a 3 s lock per group).
kafka_version="${TEST_KAFKA_VERSION:-4.0.0}"
if [ "$(printf '%s\n' 4.2.0 "$kafka_version" | sort -V | head -1)" = 4.2.0 ]; then
    rf=$(( nbrokers < 3 ? nbrokers : 3 )); isr=$(( nbrokers < 2 ? nbrokers : 2 ))
    common+=(--override share.coordinator.state.topic.replication.factor=$rf
             --override share.coordinator.state.topic.min.isr=$isr
             --override group.share.min.record.lock.duration.ms=1000
             --override transaction.state.log.replication.factor=$rf
             --override transaction.state.log.min.isr=$isr)
fi

# SASL / SSL: PLAINTEXT stays the first listener (inter-broker traffic, the
# readiness check, the SCRAM set-up below); the clients get SASL_PLAINTEXT,
# SSL or SASL_SSL.
sasl="${SASL:-}"
ssl="${SSL:-}"
sasl_user=testuser sasl_pass=testpass
client_port_offset=0
client_proto=PLAINTEXT
case "$ssl" in
"") if [ -n "$sasl" ]; then client_proto=SASL_PLAINTEXT; fi ;;
1) client_proto=SSL; if [ -n "$sasl" ]; then client_proto=SASL_SSL; fi ;;
*) echo "SSL must be empty or 1" >&2; exit 2 ;;
esac
client_listener=$(echo "$client_proto" | tr A-Z a-z)
if [ -n "$ssl" ]; then
    client_port_offset=100
    mkdir -p "$work/ssl"
    "$repo/.venv/bin/python" "$here/ssl_files.py" "$work/ssl" >"$work/ssl/files.txt"
    # trivup's brokers speak TLS 1.2 and older only: there the broker's
    # refusal of a client certificate ends the handshake (0097 expects an
    # SSL error), where TLS 1.3 reports it after the handshake.
    ssl_file() { sed -n "s/^$1=//p" "$work/ssl/files.txt"; }
    common+=(--override ssl.keystore.type=PEM --override "ssl.keystore.location=$(ssl_file broker_keystore)"
             --override ssl.truststore.type=PEM --override "ssl.truststore.location=$(ssl_file broker_truststore)"
             --override ssl.client.auth=required
             --override ssl.protocol=TLSv1.2 --override ssl.enabled.protocols=TLSv1.2)
fi
if [ -n "$sasl" ]; then
    client_port_offset=100
    common+=(--override "sasl.enabled.mechanisms=$sasl" --override connections.max.reauth.ms=10000)
    case "$sasl" in
    PLAIN) common+=(--override "listener.name.$client_listener.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$sasl_user=\"$sasl_pass\";") ;;
    SCRAM-SHA-256|SCRAM-SHA-512) ;;   # credentials are written after the start, as trivup does
    OAUTHBEARER)
        common+=(--override super.users=User:admin
                 --override "listener.name.$client_listener.oauthbearer.sasl.jaas.config=org.apache.kafka.common.security.oauthbearer.OAuthBearerLoginModule required unsecuredLoginStringClaim_sub=\"admin\" unsecuredValidatorRequiredScope=\"requiredScope\";") ;;
    *) echo "SASL must be empty, PLAIN, SCRAM-SHA-256, SCRAM-SHA-512 or OAUTHBEARER" >&2; exit 2 ;;
    esac
fi
# Per-broker settings: the rack, and with SASL the two listeners.
per_broker() {  # $1: broker id -> the KEY=VALUE settings of that broker
    echo "broker.rack=RACK$1"
    if [ "$client_proto" != PLAINTEXT ]; then
        local p=$((base_port + $1 - 1))
        echo "listeners=PLAINTEXT://127.0.0.1:$p,$client_proto://127.0.0.1:$((p + client_port_offset))"
    fi
}

broker_pid=""
cleanup() {
    if [ "$mode" = cluster ]; then
        "$PYLOG" cluster down --dir "$work/cluster" >/dev/null 2>&1 || true
    elif [ -n "$broker_pid" ]; then
        kill "$broker_pid" 2>/dev/null || true
        wait "$broker_pid" 2>/dev/null || true
    fi
}
trap cleanup EXIT

case "$mode" in
single)
    one=(); while read -r kv; do one+=(--override "$kv"); done < <(per_broker 1)
    "$PYLOG" broker --data-dir "$work/data" --host 127.0.0.1 --port "$base_port" \
        "${common[@]}" "${one[@]}" --override default.replication.factor=1 \
        >"$work/broker.log" 2>&1 &
    broker_pid=$!
    ;;
cluster)
    each=(); for i in 1 2 3; do while read -r kv; do each+=(--broker-override "$i:$kv"); done < <(per_broker "$i"); done
    "$PYLOG" cluster up --brokers 3 --dir "$work/cluster" --base-port "$base_port" \
        "${common[@]}" "${each[@]}" --override default.replication.factor=3 \
        --override min.insync.replicas=1 >"$work/cluster-up.log" 2>&1 \
        || { cat "$work/cluster-up.log" >&2; exit 2; }
    ;;
*) echo "mode must be single or cluster" >&2; exit 2 ;;
esac
plain_brokers=$(for i in $(seq 1 $nbrokers); do printf '127.0.0.1:%d,' $((base_port + i - 1)); done)
plain_brokers=${plain_brokers%,}
brokers=$(for i in $(seq 1 $nbrokers); do printf '127.0.0.1:%d,' $((base_port + client_port_offset + i - 1)); done)
brokers=${brokers%,}

# Wait for every broker to answer Metadata.
for _ in $(seq 1 120); do
    # (one broker: its own "listening" line first, as another process's broker
    # may answer on a port this one could not take)
    if { [ -z "$broker_pid" ] || grep -q " listening on " "$work/broker.log"; } &&
       "$PYLOG" topics list --bootstrap-server "$plain_brokers" >/dev/null 2>&1; then break; fi
    # A broker that could not start (a port taken: BASE_PORT inside the
    # host's ephemeral range can meet a client's port) ends the run here.
    if [ -n "$broker_pid" ] && ! kill -0 "$broker_pid" 2>/dev/null; then
        tail -3 "$work/broker.log" >&2; exit 2
    fi
    sleep 0.5
done
if [ -n "$broker_pid" ] && ! kill -0 "$broker_pid" 2>/dev/null; then tail -3 "$work/broker.log" >&2; exit 2; fi

cat >"$work/test.conf" <<CONF
bootstrap.servers=$brokers
test.timeout.multiplier=3
CONF
case "$sasl" in
"") ;;
OAUTHBEARER)
    printf '%s\n' security.protocol=$client_proto sasl.mechanisms=OAUTHBEARER \
        enable.sasl.oauthbearer.unsecure.jwt=true \
        'sasl.oauthbearer.config=scope=requiredScope principal=admin' >>"$work/test.conf" ;;
*)
    if [ "${sasl#SCRAM}" != "$sasl" ]; then
        "$PYLOG" configs --bootstrap-server "$plain_brokers" --alter --entity-type users \
            --entity-name "$sasl_user" --add-config "$sasl=[iterations=4096,password=$sasl_pass]"
    fi
    printf '%s\n' security.protocol=$client_proto "sasl.mechanisms=$sasl" \
        "sasl.username=$sasl_user" "sasl.password=$sasl_pass" >>"$work/test.conf" ;;
esac

if [ -n "$ssl" ]; then
    if [ -z "$sasl" ]; then echo security.protocol=SSL >>"$work/test.conf"; fi
    sed -n 's/^conf://p' "$work/ssl/files.txt" >>"$work/test.conf"
    while IFS== read -r k v; do export "$k=$v"; done < <(grep '^SSL_' "$work/ssl/files.txt")
fi

export RDKAFKA_TEST_CONF="$work/test.conf"
export TEST_KAFKA_VERSION="${TEST_KAFKA_VERSION:-4.0.0}"
export TEST_CONSUMER_GROUP_PROTOCOL="${TEST_CONSUMER_GROUP_PROTOCOL:-classic}"
export KAFKA_PATH="$here/kafka_path"
export BROKERS="$brokers"
export LD_LIBRARY_PATH="$rdk/src:$rdk/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ $# -gt 0 ] || set -- -L -p2

# The test-runner writes its report and stats files into its working
# directory: a private (hard-linked) copy of tests/ lets several runs share one
# librdkafka build at once.
cp -al "$rdk/tests" "$work/rdk-tests" 2>/dev/null || cp -a "$rdk/tests" "$work/rdk-tests"
ln -s "$rdk/src" "$work/src"   # 0053 reads ../src/statistics_schema.json
cd "$work/rdk-tests"
alone="${ALONE-0049,0068,0075,0076,0088,0094}"
if [ -n "${TESTS:-}${TESTS_SKIP_BEFORE:-}" ]; then alone=""; fi
for a in "$@"; do case "$a" in -*) ;; *) alone="" ;; esac; done
set +e
rm -f test_report_*.json stats_*.json
if [ -n "$alone" ]; then
    TESTS_SKIP="${TESTS_SKIP:+$TESTS_SKIP,}$alone" ./test-runner -r -s "$scenario" "$@" 2>&1 | tee "$work/test-runner.log"
    mv -f test_report_*.json "$work/test_report_main.json" 2>/dev/null
    TESTS="$alone" ./test-runner -r -s "$scenario" "$@" -p1 2>&1 | tee "$work/test-runner-alone.log"
    mv -f test_report_*.json "$work/test_report_alone.json" 2>/dev/null
else
    ./test-runner -r -s "$scenario" "$@" 2>&1 | tee "$work/test-runner.log"
    mv -f test_report_*.json "$work/" 2>/dev/null
fi
echo "broker logs and the test report are in $work"
# The verdict comes from the JSON reports: this test-runner can abort at exit
# (its "threads still active" check, a double free) after a clean run. A test
# the alone run ran takes its state from there (each run skips the other's tests).
python3 - "$work"/test_report_*.json <<'PY'
import collections, json, sys
reports = [json.load(open(f)) for f in sys.argv[1:]]
tests = {}
for r in reports:   # a test filtered out of a run is SKIPPED in its report
    for name, t in r["tests"].items():
        if name != "<MAIN>" and (name not in tests or t["state"] != "SKIPPED"):
            tests[name] = t
report = reports[0]
states = collections.Counter(t["state"] for t in tests.values())
print("librdkafka %s at TEST_KAFKA_VERSION=%s, scenario %s: %d passed, %d failed, %d skipped or not run"
      % (report["git_version"], report["broker_version"], report["scenario"],
         states["PASSED"], states["FAILED"], states["SKIPPED"]))
for name, t in sorted(tests.items()):
    if t["state"] == "FAILED":
        print("FAILED", name)
sys.exit(1 if states["FAILED"] else 0)
PY
exit
}
