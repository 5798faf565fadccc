"""A truncation inside a batch (a follower cutting its divergent tail) keeps
the records before the cut in a batch that is still the producer's: its
producer id, epoch, base sequence, codec, timestamp type, transactional bit,
base timestamp and leader epoch survive; only the count, last offset delta,
max timestamp (CreateTime) and CRC change. It used to be re-encoded
uncompressed with the producer fields gone, so an idempotent producer's
state rebuilt from the log lost its sequence."""
from __future__ import annotations

import struct

import pytest

from pylog import _engine
from pylog.protocol import batch_layout as L

from loghelpers import log_file, rec_tuple

T0 = 1_700_000_000_000
PID, EPOCH, BASE_SEQ = 4242, 7, 100


def producer_batch(n, compression, log_append_time=False):
    """An idempotent producer's batch: encode_batch's, with producer fields set."""
    b = bytearray(_engine.encode_batch([b"v%d" % i * 10 for i in range(n)], keys=[b"k%d" % i for i in range(n)],
                                       headers=[[("h", b"%d" % i)] for i in range(n)],
                                       timestamps=[T0 + 10 - i for i in range(n)], compression=compression))
    struct.pack_into(">qhi", b, L.PRODUCER_ID_OFFSET, PID, EPOCH, BASE_SEQ)
    attrs = struct.unpack_from(">h", b, L.ATTRIBUTES_OFFSET)[0] | L.ATTR_TRANSACTIONAL
    struct.pack_into(">h", b, L.ATTRIBUTES_OFFSET, attrs)
    if log_append_time:
        _engine.stamp_log_append_time(b, T0 + 99)  # reseals
    else:
        struct.pack_into(">I", b, L.CRC_OFFSET, _engine.crc32c(bytes(b[L.CRC_START:])))
    return bytes(b)


@pytest.mark.parametrize("log_append_time", [False, True], ids=["create-time", "log-append-time"])
@pytest.mark.parametrize("compression", [None, "lz4", "gzip", "zstd"])
def test_cut_batch_keeps_the_producers_fields_and_codec(open_log, log_dir, compression, log_append_time):
    pytest.importorskip("zstandard")
    log = open_log()
    log.append_batch([b"a0", b"a1"], timestamps=[T0, T0 + 1])                  # 0..1
    log.append_batches(producer_batch(5, compression, log_append_time), 3)    # 2..6, leader epoch 3
    before = [rec_tuple(r) for r in log.scan()]
    log.truncate_to(5)  # keeps 2, 3, 4 of the producer's batch
    assert log.log_end_offset == 5
    assert [rec_tuple(r) for r in log.scan()] == before[:5]
    log.close()
    with open(log_file(log_dir, 0), "rb") as f:
        data = f.read()
    heads = _engine.batch_headers(data)
    assert len(heads) == 2
    pos, base, lod, max_ts, pid, epoch, seq, count, attrs = heads[1]
    assert (base, lod, count) == (2, 2, 3)
    assert (pid, epoch, seq) == (PID, EPOCH, BASE_SEQ)
    assert attrs & L.ATTR_COMPRESSION_MASK == {None: 0, "gzip": 1, "lz4": 3, "zstd": 4}[compression]
    assert attrs & L.ATTR_TRANSACTIONAL
    assert bool(attrs & L.ATTR_LOG_APPEND_TIME) == log_append_time
    # CreateTime: the kept records' max (T0 + 10 of the first); LogAppendTime: the broker's stamp.
    assert max_ts == (T0 + 99 if log_append_time else T0 + 10)
    assert struct.unpack_from(">i", data, pos + L.PARTITION_LEADER_EPOCH_OFFSET)[0] == 3
    assert struct.unpack_from(">q", data, pos + L.BASE_TIMESTAMP_OFFSET)[0] == T0 + 10
    assert _engine.validate_batches(data[pos:])[4] is None  # the CRC holds
