"""The record batch v2 header layout for Python code (KAFKA-NOTES §2.1).

engine/batch.h names the layout; this module and bindings/c/batch.pxd mirror
it, and tests/test_batch_layout.py checks all three agree (and against the
compiled engine), so an offset is written by hand in exactly one place per
language. Python reads headers through _engine.batch_headers where it can; these
names are for the few places that patch or peek at a field directly.

Constants only; safe from any thread.
"""
from __future__ import annotations

import struct

__all__ = [
    "ATTR_COMPRESSION_MASK", "ATTR_CONTROL", "ATTR_LOG_APPEND_TIME", "ATTR_TRANSACTIONAL",
    "ATTRIBUTES_OFFSET", "BASE_OFFSET_OFFSET", "BASE_SEQUENCE_OFFSET", "BASE_TIMESTAMP_OFFSET",
    "CRC_OFFSET", "CRC_START", "HEADER_SIZE", "LAST_OFFSET_DELTA_OFFSET", "LENGTH_OFFSET",
    "LOG_OVERHEAD", "LOG_PREFIX", "MAGIC", "MAGIC_OFFSET", "MAX_TIMESTAMP_OFFSET", "MIN_LENGTH",
    "PARTITION_LEADER_EPOCH_OFFSET", "PRODUCER_EPOCH_OFFSET", "PRODUCER_ID_OFFSET",
    "RECORDS_COUNT_OFFSET", "RECORDS_OFFSET",
]

BASE_OFFSET_OFFSET = 0
LENGTH_OFFSET = 8
PARTITION_LEADER_EPOCH_OFFSET = 12
MAGIC_OFFSET = 16
CRC_OFFSET = 17
ATTRIBUTES_OFFSET = 21
LAST_OFFSET_DELTA_OFFSET = 23
BASE_TIMESTAMP_OFFSET = 27
MAX_TIMESTAMP_OFFSET = 35
PRODUCER_ID_OFFSET = 43
PRODUCER_EPOCH_OFFSET = 51
BASE_SEQUENCE_OFFSET = 53
RECORDS_COUNT_OFFSET = 57
RECORDS_OFFSET = 61

HEADER_SIZE = RECORDS_OFFSET               # Kafka's RECORD_BATCH_OVERHEAD
LOG_OVERHEAD = PARTITION_LEADER_EPOCH_OFFSET  # base_offset + batch_length, outside batch_length
CRC_START = ATTRIBUTES_OFFSET              # the CRC covers [attributes, end of batch)
MAGIC = 2
MIN_LENGTH = HEADER_SIZE - LOG_OVERHEAD       # the smallest batch_length

# The attributes' bits (PL_ATTR_* in engine/batch.h).
ATTR_COMPRESSION_MASK = 0x07
ATTR_LOG_APPEND_TIME = 0x08
ATTR_TRANSACTIONAL = 0x10
ATTR_CONTROL = 0x20

# base_offset and batch_length: all a walk over batches needs to step to the next one.
LOG_PREFIX = struct.Struct(">qi")
