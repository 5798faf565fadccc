"""The embedded store validates a batch as the broker's Produce does: the same
per-partition body (Handlers.produce_partition). Every corrupt-but-CRC-valid
batch of tests/broker/test_record_validation.py, handed to the public
LocalStore.append, is refused with the error code a real broker answers for it
over the wire (a transactional batch included: the embedded store has no
transactional id, like a request without one), and nothing is appended. Before
the embedded path ran that body it appended most of them with no error (only
the CRC was checked), making later records of the partition unreadable."""
from __future__ import annotations

import pytest
from broker.test_record_validation import CASES, batch, ensure_topic, good_records, log_end_offset, produce_raw

from pylog import _engine
from pylog.embedded import LocalStore
from pylog.errors import PylogError, code_for
from pylog.testing import running_broker

TOPIC = "validated"


def test_corrupt_batches_refused_embedded_with_the_wire_code_and_nothing_appended(tmp_path):
    good = _engine.encode_batch([b"before-0", b"before-1"])
    with running_broker(tmp_path / "broker") as broker, LocalStore.open(tmp_path / "embedded") as store:
        store.create_topic(TOPIC)
        store.append(TOPIC, 0, good)
        stored = store.read(TOPIC, 0, 0, 1 << 20)[0]
        ensure_topic(broker, TOPIC)
        wire_leo = log_end_offset(broker, TOPIC)
        differ = {}
        for case in sorted(CASES):
            bad, _kafka_code = CASES[case]
            # No transactional id on either side (the embedded producer has none).
            wire = produce_raw(broker, TOPIC, bad).error_code
            with pytest.raises(PylogError) as refused:
                store.append(TOPIC, 0, bad)
            embedded = code_for(refused.value)
            if wire == 0 or embedded != wire:
                differ[case] = (wire, embedded)
        assert not differ, f"(wire code, embedded code) per case: {differ}"
        assert log_end_offset(broker, TOPIC) == wire_leo
        assert store.high_watermark(TOPIC, 0) == 2, "a refused batch was appended"
        assert store.read(TOPIC, 0, 0, 1 << 20)[0] == stored
        # The partition still takes good batches after the refused ones.
        assert store.append(TOPIC, 0, _engine.encode_batch([b"after"]))[0] == 2


def test_an_out_of_order_sequence_is_refused_embedded_as_on_the_wire(tmp_path):
    with LocalStore.open(tmp_path) as store:
        store.create_topic(TOPIC)
        pid, epoch = store.init_producer_id()
        store.append(TOPIC, 0, batch(good_records(1), 1, producer_id=pid, producer_epoch=epoch, base_sequence=0))
        with pytest.raises(PylogError) as refused:
            store.append(TOPIC, 0, batch(good_records(1), 1, producer_id=pid, producer_epoch=epoch,
                                         base_sequence=5))
        assert code_for(refused.value) == 45   # OUT_OF_ORDER_SEQUENCE_NUMBER
        assert store.high_watermark(TOPIC, 0) == 1
