"""The share coordinator's WriteShareGroupState round trip over the wire:
what a share-partition leader of another broker waits for before it answers
an acknowledgement (pylog/share/persister.py). One lone in-process broker
(__share_group_state replication factor 1), or three around the embedded
controller (replication factor 3, min ISR 2: the write answers once both
followers have it); --writes sequential writes of one share-partition after
20 warm-up ones, sent to the broker FindCoordinator key type 2 names. The
figure is the median per round, and the median of the rounds.

    .venv/bin/python bench/share_persister_latency.py --mode lone,cluster --rounds 3
"""
from __future__ import annotations

import argparse
import statistics
import sys
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from pylog.share.coordinator import topic_id_text  # noqa: E402
from pylog.testing import running_broker  # noqa: E402
from tests.cluster.zkcluster import embedded_cluster  # noqa: E402
from tests.share.test_share_cluster import BASE  # noqa: E402
from tests.share.test_share_cluster_rpcs import find_share_coordinator, initialize, write  # noqa: E402
from tests.share.wire import CONFIG, connect  # noqa: E402

WARM_UP = 20


def run_once(bootstrap, writes) -> float:
    conn = connect(bootstrap)
    tid, group = uuid.uuid4(), "latency-g"
    key = f"{group}:{topic_id_text(tid)}:0"
    port = find_share_coordinator(conn, [key])[key].port
    conn.close()
    conn = connect(f"127.0.0.1:{port}")
    assert initialize(conn, group, tid, 0, 0, 0).error_code == 0
    took = []
    for i in range(WARM_UP + writes):
        t = time.perf_counter()
        assert write(conn, group, tid, 0, 0, 1, i, [(i, i, 2, 1)]).error_code == 0
        took.append(time.perf_counter() - t)
    conn.close()
    return statistics.median(took[WARM_UP:]) * 1000


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--mode", default="lone,cluster")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--writes", type=int, default=300)
    args = ap.parse_args()
    for mode in args.mode.split(","):
        medians = []
        for _ in range(args.rounds):
            if mode == "lone":
                with running_broker(config=CONFIG) as b:
                    medians.append(run_once(b, args.writes))
            else:
                with embedded_cluster(3, base=BASE) as bs:
                    medians.append(run_once(bs[0], args.writes))
        print(f"{mode}: WriteShareGroupState median {statistics.median(medians):.2f} ms "
              f"(rounds: {', '.join(f'{x:.2f}' for x in medians)})", flush=True)


if __name__ == "__main__":
    main()
