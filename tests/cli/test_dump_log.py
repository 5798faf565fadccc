"""`pylog dump-log` (kafka-dump-log.sh) on real segment files: Kafka's lines,
what compaction left (offset gaps, empty batches kept for producer state),
the decoders, the index checks, damaged files reported and never a crash."""
from __future__ import annotations

import base64
import glob
import json
import os
import re
import struct
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from pylog import _engine
from pylog.log.log import Log
from pylog.log.txn_index import ENTRY
from pylog.protocol import coordinator_records as cr
from pylog.protocol.control_records import build_end_txn_marker
from pylog.transactions.batches import transactional_batch

NOW = 10_000_000
BATCH_LINE = re.compile(
    r"^baseOffset: (\d+) lastOffset: (\d+) count: (\d+) baseSequence: (-?\d+) lastSequence: (-?\d+) "
    r"producerId: (-?\d+) producerEpoch: (-?\d+) partitionLeaderEpoch: (-?\d+) isTransactional: (true|false) "
    r"isControl: (true|false) deleteHorizonMs: (OptionalLong\.empty|OptionalLong\[-?\d+\]) position: (\d+) "
    r"(CreateTime|LogAppendTime): (-?\d+) size: (\d+) magic: 2 compresscodec: (\w+) crc: (\d+) "
    r"isvalid: (true|false)$")


def run(*args, timeout=120):
    return subprocess.run([sys.executable, "-m", "pylog", "dump-log", *args], capture_output=True, text=True,
                          timeout=timeout)


def seg(path, base=0, suffix="log"):
    return os.path.join(path, f"{base:020d}.{suffix}")


def batches(stdout):
    return [BATCH_LINE.match(line) for line in stdout.splitlines() if line.startswith("baseOffset:")]


def records(stdout):
    return [line for line in stdout.splitlines() if line.startswith("| offset:")]


def test_batch_and_record_lines_are_kafkas(tmp_path):
    path = os.fspath(tmp_path / "t-0")
    with Log.open(path) as log:
        log.append(b"v", key=b"k", headers=[("h", b"1"), ("g", b"2")], timestamp=1000)
        log.append_batch([b"a", b"bb"], timestamps=[2000, 2001], compression="gzip")
    r = run("--files", seg(path), "--print-data-log")
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == [f"Dumping {seg(path)}", "Log starting offset: 0"]
    (b0, b1) = batches(r.stdout)
    assert b0 and b1, r.stdout
    assert (b0[1], b0[2], b0[3], b0[12], b0[13], b0[14], b0[16], b0[18]) == \
        ("0", "0", "1", "0", "CreateTime", "1000", "none", "true")
    size0 = int(b0[15])
    assert (b1[1], b1[2], b1[3], b1[12], b1[14], b1[16]) == ("1", "2", "2", str(size0), "2001", "gzip")
    assert records(r.stdout) == [
        "| offset: 0 CreateTime: 1000 keySize: 1 valueSize: 1 sequence: -1 headerKeys: [h,g] key: k payload: v",
        "| offset: 1 CreateTime: 2000 keySize: -1 valueSize: 1 sequence: -1 headerKeys: [] payload: a",
        "| offset: 2 CreateTime: 2001 keySize: -1 valueSize: 2 sequence: -1 headerKeys: [] payload: bb",
    ]
    # Without --deep-iteration (or a print option): batches only.
    shallow = run(seg(path))
    assert shallow.returncode == 0 and len(batches(shallow.stdout)) == 2 and not records(shallow.stdout)
    deep = run(seg(path), "--deep-iteration")
    assert records(deep.stdout)[0].endswith("headerKeys: [h,g]")   # no content without --print-data-log
    # --max-bytes: whole batches within the bound, and no "invalid bytes" for the rest.
    cut = run("--files", seg(path), "--max-bytes", str(size0 + 10))
    assert len(batches(cut.stdout)) == 1 and "invalid bytes" not in cut.stdout and cut.returncode == 0
    # --skip-record-metadata: the contents only.
    skip = run("--files", seg(path), "--print-data-log", "--skip-record-metadata")
    assert "| key: k payload: v" in skip.stdout.splitlines()


def test_compaction_shows_as_offset_gaps_and_empty_producer_batches(tmp_path):
    path = os.fspath(tmp_path / "t-0")
    with Log.open(path) as log:
        log.append_batches(transactional_batch([b"k1", b"k2"], [b"aborted", b"aborted"], 7, 0))   # 0-1
        log.append_batches(build_end_txn_marker(7, 0, 5, False, NOW), allow_control=True)        # 2 ABORT
        with open(seg(path, suffix="txnindex"), "wb") as f:
            f.write(ENTRY.pack(0, 7, 0, 2, 3))
        log.append_batches(transactional_batch([b"k1", b"k3"], [b"old", b"c1"], 8, 0))          # 3-4
        log.append_batches(build_end_txn_marker(8, 0, 5, True, NOW), allow_control=True)         # 5 COMMIT
        log.append(b"new", b"k1", timestamp=NOW)                                                  # 6
        log.roll()
        before = run("--files", seg(path), "--deep-iteration")
        log.compact(now_ms=NOW)
    after = run("--files", f"{seg(path)},{seg(path, suffix='txnindex')}", "--deep-iteration")
    assert before.returncode == 0 and after.returncode == 0, after.stderr
    # Before cleaning every offset is there; after, the batches keep theirs and
    # the records that went leave gaps, listed as Kafka lists them.
    assert "Non-consecutive" not in before.stderr
    assert [int(line.split()[2]) for line in records(after.stdout)] == [2, 4, 5, 6]
    assert f"Non-consecutive offsets in {os.path.abspath(seg(path))}" in after.stderr
    assert "  -1 is followed by 2" in after.stderr and "  2 is followed by 4" in after.stderr
    # Producer 7's last batch stays for its state: empty, its ids and offsets kept.
    first = batches(after.stdout)[0]
    assert (first[1], first[2], first[3], first[6], first[9], first[10]) == ("0", "1", "0", "7", "true", "false")
    assert "| offset: 2 CreateTime: %d keySize: 4 valueSize: 6 sequence: -1 headerKeys: [] " \
           "endTxnMarker: ABORT coordinatorEpoch: 5" % NOW in after.stdout
    assert " endTxnMarker: COMMIT coordinatorEpoch: 5" in after.stdout
    assert "version: 0 producerId: 7 firstOffset: 0 lastOffset: 2 lastStableOffset: 3" in after.stdout


def test_a_cleaned_tombstone_shows_its_delete_horizon(tmp_path):
    path = os.fspath(tmp_path / "t-0")
    with Log.open(path) as log:
        log.append(b"v1", b"a", timestamp=NOW)
        log.append(b"v2", b"b", timestamp=NOW)
        log.append(None, b"a", timestamp=NOW + 1)
        log.roll()
        log.compact(now_ms=NOW + 5, delete_retention_ms=1000)
    r = run("--files", seg(path), "--print-data-log")
    assert r.returncode == 0, r.stderr
    kept = batches(r.stdout)
    assert [(m[1], m[11]) for m in kept] == [("1", "OptionalLong.empty"), ("2", f"OptionalLong[{NOW + 1005}]")]
    assert records(r.stdout)[-1] == f"| offset: 2 CreateTime: {NOW + 1} keySize: 1 valueSize: -1 sequence: -1 " \
                                    "headerKeys: [] key: a"
    assert "  -1 is followed by 1" in r.stderr


def _group_record(rtype, key_cls, key, value_cls=None, value=None, version=0):
    k = struct.pack(">h", rtype) + key_cls.encode(key, key_cls.VALID_VERSIONS[0])
    v = None if value is None else struct.pack(">h", version) + value_cls.encode(value, version)
    return k, v


def test_offsets_decoder_on_kip848_records_and_bad_ones(tmp_path):
    topic_id = uuid.UUID("12345678-1234-5678-1234-567812345678")
    A = cr.ConsumerGroupCurrentMemberAssignmentValue
    recs = [
        _group_record(3, cr.ConsumerGroupMetadataKey, cr.ConsumerGroupMetadataKey(group_id="g1"),
                      cr.ConsumerGroupMetadataValue, cr.ConsumerGroupMetadataValue(epoch=4, metadata_hash=9)),
        _group_record(8, cr.ConsumerGroupCurrentMemberAssignmentKey,
                      cr.ConsumerGroupCurrentMemberAssignmentKey(group_id="g1", member_id="m1"), A,
                      A(member_epoch=4, previous_member_epoch=3, state=0,
                        assigned_partitions=[A.TopicPartitions(topic_id=topic_id, partitions=[0, 2]),
                                             A.TopicPartitions(topic_id=topic_id, partitions=[1],
                                                               assignment_epochs=[3])])),
        _group_record(3, cr.ConsumerGroupMetadataKey, cr.ConsumerGroupMetadataKey(group_id="g1")),  # tombstone
        (struct.pack(">h", 9) + b"\x00\x01x", b"\x00\x00"),         # a record type Kafka retired
        (struct.pack(">h", 3) + b"\x00\x02g1", b"\x00\x07\x00"),    # a value version that does not exist
        (None, b"no key"),
    ]
    path = os.fspath(tmp_path / "__consumer_offsets-0")
    with Log.open(path) as log:
        for k, v in recs:
            log.append(v, key=k, timestamp=NOW)
    r = run("--files", seg(path), "--offsets-decoder")
    lines = records(r.stdout)
    assert r.returncode == 0, r.stderr
    assert len(lines) == 6 and "Traceback" not in r.stderr

    def parts(line):
        key, _, payload = line.split(" key: ", 1)[1].partition(" payload: ")
        return json.loads(key), (json.loads(payload) if payload.startswith("{") else payload)
    assert parts(lines[0]) == ({"type": "3", "data": {"groupId": "g1"}},
                               {"version": "0", "data": {"epoch": 4, "metadataHash": 9}})
    tid = base64.urlsafe_b64encode(topic_id.bytes).decode().rstrip("=")
    key, value = parts(lines[1])
    assert key == {"type": "8", "data": {"groupId": "g1", "memberId": "m1"}}
    # A tagged field at its default (null) is left out, as Kafka's JSON converter does.
    assert value["data"]["assignedPartitions"] == [{"topicId": tid, "partitions": [0, 2]},
                                                   {"topicId": tid, "partitions": [1], "assignmentEpochs": [3]}]
    assert value["data"]["memberEpoch"] == 4 and value["data"]["partitionsPendingRevocation"] == []
    assert parts(lines[2]) == ({"type": "3", "data": {"groupId": "g1"}}, "<DELETE>")
    assert lines[3].endswith(" key: Unknown record type 9 at offset 3, skipping.")
    assert " key: Error at offset 4, skipping. " in lines[4] and "payload" not in lines[4]
    assert lines[5].endswith(" key: Failed to decode message at offset 5 using the specified decoder "
                             "(message had a missing key)")


def test_offsets_decoder_on_a_brokers_consumer_offsets(tmp_path):
    from confluent_kafka import Consumer, Producer

    from pylog.testing import running_broker
    data = tmp_path / "data"
    with running_broker(data_dir=str(data), config={"num.partitions": "1", "offsets.topic.num.partitions": "1"}) as b:
        p = Producer({"bootstrap.servers": b.bootstrap, "enable.idempotence": True, "linger.ms": 0})
        for i in range(5):
            p.produce("dl-topic", value=b"v%d" % i)
        assert p.flush(60) == 0
        c = Consumer({"bootstrap.servers": b.bootstrap, "group.id": "dl-group", "auto.offset.reset": "earliest",
                      "enable.auto.commit": False})
        c.subscribe(["dl-topic"])
        got, deadline = 0, time.monotonic() + 120
        while got < 5 and time.monotonic() < deadline:
            m = c.poll(1.0)
            if m is not None and m.error() is None:
                got += 1
        assert got == 5
        c.commit(asynchronous=False)
        c.close()
    # The broker stopped: its files are whole, its producer state snapshotted.
    files = sorted(glob.glob(os.path.join(data, "__consumer_offsets-*", "*.log")))
    r = run("--files", ",".join(files), "--offsets-decoder")
    assert r.returncode == 0, r.stderr
    (snapshot,) = glob.glob(os.path.join(data, "dl-topic-0", "*.snapshot"))
    snap = run("--files", snapshot)
    assert snap.returncode == 0, snap.stderr
    (entry,) = [line for line in snap.stdout.splitlines() if line.startswith("producerId: ")]
    assert re.fullmatch(r"producerId: \d+ producerEpoch: 0 coordinatorEpoch: -1 currentTxnFirstOffset: "
                        r"OptionalLong.empty lastTimestamp: \d+ firstSequence: \d+ lastSequence: 4 "
                        r"lastOffset: 4 offsetDelta: \d+ timestamp: \d+", entry), entry
    commits, groups = [], []
    for line in records(r.stdout):
        key = json.loads(line.split(" key: ", 1)[1].split(" payload: ")[0])
        payload = line.split(" payload: ", 1)[1]
        if key["type"] == "1":
            commits.append((key["data"], json.loads(payload)["data"]))
        elif key["type"] == "2" and payload != "<DELETE>":
            groups.append(json.loads(payload)["data"])
    assert ({"group": "dl-group", "topic": "dl-topic", "partition": 0}, 5) in \
        [(k, v["offset"]) for k, v in commits]
    # A consumer group's members carry their subscription and assignment as
    # ConsumerProtocol bytes; Kafka's decoder shows them decoded.
    members = [m for g in groups if g["protocolType"] == "consumer" for m in g["members"]]
    assert members, r.stdout
    assert members[-1]["subscription"]["topics"] == ["dl-topic"]
    assert members[-1]["assignment"]["assignedPartitions"] == [{"topic": "dl-topic", "partitions": [0]}]


def test_index_files_dumped_and_checked_against_the_log(tmp_path):
    path = os.fspath(tmp_path / "t-0")
    with Log.open(path, index_interval_bytes=1) as log:
        for i in range(5):
            log.append_batch([b"x" * 20, b"y" * 20], timestamps=[1000 + 10 * i, 1001 + 10 * i])
        log.roll()
    r = run("--files", f"{seg(path, suffix='index')},{seg(path, suffix='timeindex')}")
    assert r.returncode == 0, r.stderr
    offsets = [line for line in r.stdout.splitlines() if line.startswith("offset: ")]
    assert [int(line.split()[1]) for line in offsets] == [3, 5, 7, 9]   # each batch's last offset; as Kafka, none for the first
    assert "timestamp: 1041 offset: 9" in r.stdout
    quiet = run("--files", seg(path, suffix="index"), "--verify-index-only")
    assert quiet.returncode == 0 and not [x for x in quiet.stdout.splitlines() if x.startswith("offset")]
    sane = run("--files", f"{seg(path, suffix='index')},{seg(path, suffix='timeindex')}", "--index-sanity-check")
    assert f"{seg(path, suffix='index')} passed sanity check." in sane.stdout
    assert f"{seg(path, suffix='timeindex')} passed sanity check." in sane.stdout
    # An entry that points at the wrong batch is a mismatch; a torn file fails the sanity check.
    raw = bytearray(Path(seg(path, suffix="index")).read_bytes())
    struct.pack_into(">i", raw, 8, 6)                        # entry 1 says offset 6, at batch 2's position
    Path(seg(path, suffix="index")).write_bytes(bytes(raw) + b"\x00\x01")
    bad = run("--files", seg(path, suffix="index"), "--verify-index-only")
    assert bad.returncode == 1
    assert f"Mismatches in :{os.path.abspath(seg(path, suffix='index'))}" in bad.stderr
    assert "  Index offset: 6, log offset: 5" in bad.stderr
    torn = run("--files", seg(path, suffix="index"), "--index-sanity-check")
    assert torn.returncode == 1
    assert f"found {len(raw) + 2} bytes which is neither positive nor a multiple of 8." in torn.stderr


@pytest.mark.parametrize("damage", ["crc", "torn_tail", "bad_length", "garbage_records"])
def test_damaged_segments_are_reported_never_a_crash(tmp_path, damage):
    path = os.fspath(tmp_path / "t-0")
    with Log.open(path) as log:
        log.append_batch([b"a" * 50] * 3)
        log.append_batch([b"b" * 50] * 3, compression="gzip")
        log.append_batch([b"c" * 50] * 3)
    data = bytearray(Path(seg(path)).read_bytes())
    first_size = 12 + struct.unpack_from(">i", data, 8)[0]
    second_size = 12 + struct.unpack_from(">i", data, first_size + 8)[0]
    if damage == "crc":
        data[first_size - 5] ^= 0xFF            # a value byte of batch 0
    elif damage == "torn_tail":
        data = data[:-7]
    elif damage == "bad_length":
        struct.pack_into(">i", data, first_size + 8, 3)
    else:  # the gzip stream of batch 1 overwritten, its CRC made to match
        for i in range(first_size + 61, first_size + second_size):
            data[i] = 0x5A
        struct.pack_into(">I", data, first_size + 17, _engine.crc32c(bytes(data[first_size + 21:first_size + second_size])))
    Path(seg(path)).write_bytes(bytes(data))
    r = run("--files", seg(path), "--print-data-log")
    assert r.returncode == 1 and "Traceback" not in r.stderr, r.stderr
    found = batches(r.stdout)
    if damage == "crc":
        assert [m[18] for m in found] == ["false", "true", "true"]
        # As Kafka's tool, the records of the batch whose CRC fails are read too.
        assert len(records(r.stdout)) == 9 and "not readable" not in r.stdout
    elif damage == "torn_tail":
        assert len(found) == 2
        assert f"Found {len(data) - first_size - second_size} invalid bytes at the end of {os.path.basename(seg(path))}" \
            in r.stdout
    elif damage == "bad_length":
        assert len(found) == 1
        assert "Found record size 3 smaller than minimum record overhead (14)" in r.stderr
        assert f"Found {len(data) - first_size} invalid bytes at the end of" in r.stdout
    else:
        assert len(found) == 3 and [m[18] for m in found] == ["true", "true", "true"]
        assert f"| records of the batch at position {first_size} not readable" in r.stdout
        assert len(records(r.stdout)) == 6      # batches 0 and 2 still printed


def test_transaction_log_decoder_and_markers_of_a_brokers_transaction(tmp_path):
    from confluent_kafka import Producer

    from pylog.testing import running_broker
    data = tmp_path / "data"
    with running_broker(data_dir=str(data), config={"num.partitions": "1", "transaction.state.log.num.partitions": "1",
                                                    "transaction.state.log.replication.factor": "1",
                                                    "transaction.state.log.min.isr": "1"}) as b:
        p = Producer({"bootstrap.servers": b.bootstrap, "transactional.id": "dl-txn"})
        p.init_transactions(60)
        p.begin_transaction()
        for i in range(3):
            p.produce("dl-txn-topic", value=b"t%d" % i, key=b"k")
        p.commit_transaction(60)
    state = run("--files", ",".join(sorted(glob.glob(os.path.join(data, "__transaction_state-*", "*.log")))),
                "--transaction-log-decoder")
    assert state.returncode == 0, state.stderr
    statuses = []
    for line in records(state.stdout):
        key = json.loads(line.split(" key: ", 1)[1].split(" payload: ")[0])
        assert key == {"type": "0", "data": {"transactionalId": "dl-txn"}}
        statuses.append(json.loads(line.split(" payload: ", 1)[1])["data"]["transactionStatus"])
    # Empty (init), Ongoing, PrepareCommit, CompleteCommit: TransactionState's ids.
    assert statuses[0] == 0 and statuses[-2:] == [2, 4] and 1 in statuses
    topic = run("--files", seg(os.path.join(data, "dl-txn-topic-0")), "--deep-iteration")
    assert topic.returncode == 0, topic.stderr
    first, marker = batches(topic.stdout)
    assert (first[3], first[9], first[10]) == ("3", "true", "false")
    assert (marker[1], marker[9], marker[10], marker[6]) == ("3", "true", "true", first[6])
    assert re.search(r"^\| offset: 3 CreateTime: \d+ keySize: 4 valueSize: 6 sequence: -1 headerKeys: \[\] "
                     r"endTxnMarker: COMMIT coordinatorEpoch: \d+$", topic.stdout, re.M)
