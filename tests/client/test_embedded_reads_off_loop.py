"""Embedded reads run on the caller's thread (LocalStore.read_here): a fetch
that finds its records costs no trip to the store's loop, and records the log
holds above the high watermark are still never handed out (the copy is cut at
the high watermark taken before the read), as Partition.read cuts them."""
from __future__ import annotations

from pylog import Consumer, TopicPartition, _engine
from pylog.client.records import consumed_records
from pylog.embedded import LocalStore

TP = TopicPartition("t", 0)


def offsets(data):
    return [r.offset for r in consumed_records(0, data, 0)] if data else []


def append_above_the_high_watermark(store, values):
    """Records in the log but not committed: the log appends them, the high
    watermark stays (as on a leader whose followers have not fetched yet)."""
    def on_loop():
        p = store.partition_on_loop("t", 0)
        p.log.append_batches(bytearray(_engine.encode_batch(values)), p.leader_epoch)
        return p.high_watermark, p.log_end_offset
    return store.call(on_loop)


def test_reads_on_the_callers_thread_stop_at_the_high_watermark(tmp_path):
    with LocalStore.open(tmp_path) as store:
        store.create_topic("t")
        store.append("t", 0, _engine.encode_batch([b"a", b"b"]))
        assert append_above_the_high_watermark(store, [b"c", b"d", b"e"]) == (2, 5)
        data, hw, lso = store.read("t", 0, 0, 1 << 20)
        assert (hw, lso) == (2, 0)
        assert offsets(data) == [0, 1]
        assert store.read("t", 0, 2, 1 << 20) == (b"", 2, 0)
        c = Consumer(log_dir=str(tmp_path), enable_auto_commit=False)
        try:
            c.assign([TP])
            c.seek(TP, 0)
            got = [r.offset for _ in range(5) for r in c.poll(0.1)]
            assert got == [0, 1]
            store.call(lambda: store.partition_on_loop("t", 0).maybe_increment_high_watermark())
            assert store.high_watermark("t", 0) == 5
            got = []
            for _ in range(100):
                got += [r.offset for r in c.poll(0.2)]
                if len(got) >= 3:
                    break
            assert got == [2, 3, 4]
        finally:
            c.close()


def test_a_fetch_that_finds_records_makes_no_trip_to_the_loop(tmp_path):
    with LocalStore.open(tmp_path) as store:
        store.create_topic("t")
        for i in range(20):
            store.append("t", 0, _engine.encode_batch([b"v%d" % i] * 100))
        c = Consumer(log_dir=str(tmp_path), enable_auto_commit=False, max_partition_fetch_bytes=2000)
        try:
            c.assign([TP])
            c.seek(TP, 0)
            trips = []
            call = store._call
            store._call = lambda fn, *args: (trips.append(fn), call(fn, *args))[1]
            try:
                got = 0
                while got < 2000:
                    got += len(c.poll(5.0, 500))
            finally:
                del store._call
            assert got == 2000
            assert trips == [], f"fetches with records waiting went to the loop: {trips}"
        finally:
            c.close()
