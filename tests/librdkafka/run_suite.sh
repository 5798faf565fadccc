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
set -euo pipefail

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
        --override delete.topic.enable=true)

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
    "$PYLOG" broker --data-dir "$work/data" --host 127.0.0.1 --port "$base_port" \
        "${common[@]}" --override default.replication.factor=1 \
        >"$work/broker.log" 2>&1 &
    broker_pid=$!
    brokers="127.0.0.1:$base_port"
    ;;
cluster)
    "$PYLOG" cluster up --brokers 3 --dir "$work/cluster" --base-port "$base_port" \
        "${common[@]}" --override default.replication.factor=3 \
        --override min.insync.replicas=1 >"$work/cluster-up.log" 2>&1
    brokers="127.0.0.1:$base_port,127.0.0.1:$((base_port+1)),127.0.0.1:$((base_port+2))"
    ;;
*) echo "mode must be single or cluster" >&2; exit 2 ;;
esac

# Wait for every broker to answer Metadata.
for _ in $(seq 1 120); do
    if "$PYLOG" topics list --bootstrap-server "$brokers" >/dev/null 2>&1; then break; fi
    sleep 0.5
done

cat >"$work/test.conf" <<CONF
bootstrap.servers=$brokers
test.timeout.multiplier=3
CONF

export RDKAFKA_TEST_CONF="$work/test.conf"
export TEST_KAFKA_VERSION="${TEST_KAFKA_VERSION:-4.0.0}"
export TEST_CONSUMER_GROUP_PROTOCOL="${TEST_CONSUMER_GROUP_PROTOCOL:-classic}"
export KAFKA_PATH="$here/kafka_path"
export BROKERS="$brokers"
export LD_LIBRARY_PATH="$rdk/src:$rdk/src-cpp${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
[ $# -gt 0 ] || set -- -L -p2

cd "$rdk/tests"
set +e
rm -f test_report_*.json
./test-runner -r -s "$scenario" "$@" 2>&1 | tee "$work/test-runner.log"
mv -f test_report_*.json "$work/" 2>/dev/null
echo "broker logs and the test report are in $work"
# The verdict comes from the JSON report: this test-runner can abort at exit
# (its "threads still active" check, a double free) after a clean run.
python3 - "$work"/test_report_*.json <<'PY'
import collections, json, sys
report = json.load(open(sys.argv[1]))
states = collections.Counter(t["state"] for n, t in report["tests"].items() if n != "<MAIN>")
print("librdkafka %s at TEST_KAFKA_VERSION=%s, scenario %s: %d passed, %d failed, %d skipped or not run"
      % (report["git_version"], report["broker_version"], report["scenario"],
         states["PASSED"], states["FAILED"], states["SKIPPED"]))
for name, t in sorted(report["tests"].items()):
    if t["state"] == "FAILED":
        print("FAILED", name)
sys.exit(1 if states["FAILED"] else 0)
PY
