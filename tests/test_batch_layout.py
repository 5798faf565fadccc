"""The record batch v2 header layout is named once per language and the three agree:
engine/batch.h (C), bindings/c/batch.pxd (Cython, checked through the compiled
engine) and pylog/protocol/batch_layout.py (Python)."""
import pathlib
import re
import struct

from pylog import _engine
from pylog.protocol import batch_layout

ROOT = pathlib.Path(__file__).resolve().parent.parent

# Kafka's DefaultRecordBatch layout (KAFKA-NOTES §2.1), written out once more
# here as the independent statement the three copies are checked against.
KAFKA_LAYOUT = {
    "BASE_OFFSET_OFFSET": 0, "LENGTH_OFFSET": 8, "PARTITION_LEADER_EPOCH_OFFSET": 12,
    "MAGIC_OFFSET": 16, "CRC_OFFSET": 17, "ATTRIBUTES_OFFSET": 21, "LAST_OFFSET_DELTA_OFFSET": 23,
    "BASE_TIMESTAMP_OFFSET": 27, "MAX_TIMESTAMP_OFFSET": 35, "PRODUCER_ID_OFFSET": 43,
    "PRODUCER_EPOCH_OFFSET": 51, "BASE_SEQUENCE_OFFSET": 53, "RECORDS_COUNT_OFFSET": 57,
    "RECORDS_OFFSET": 61, "HEADER_SIZE": 61, "LOG_OVERHEAD": 12, "CRC_START": 21, "MAGIC": 2,
    "MIN_LENGTH": 49,
}


def _c_defines() -> dict[str, int]:
    """PL_BATCH_* of batch.h, with defines that name other defines resolved."""
    text = (ROOT / "engine" / "batch.h").read_text()
    raw = dict(re.findall(r"^#define PL_BATCH_(\w+) ([^/\n]+?)\s*(?:/\*.*)?$", text, re.M))
    out = {}
    for name, expr in raw.items():
        out[name] = eval(re.sub(r"PL_BATCH_(\w+)", lambda m: repr(out[m.group(1)]), expr))  # noqa: S307
    return out


def test_the_c_header_names_kafkas_layout():
    c = _c_defines()
    assert {k: c[k] for k in KAFKA_LAYOUT} == KAFKA_LAYOUT


def test_the_compiled_engine_and_the_python_module_agree_with_the_c_header():
    assert _engine.BATCH_LAYOUT == KAFKA_LAYOUT
    assert {k: getattr(batch_layout, k) for k in KAFKA_LAYOUT} == KAFKA_LAYOUT
    assert batch_layout.LOG_PREFIX.size == batch_layout.LOG_OVERHEAD


def test_the_attribute_bits_agree_with_the_c_header():
    text = (ROOT / "engine" / "batch.h").read_text()
    c = {k: int(v, 16) for k, v in re.findall(r"^#define PL_(ATTR_\w+) (0x[0-9a-fA-F]+)", text, re.M)}
    names = ("ATTR_COMPRESSION_MASK", "ATTR_LOG_APPEND_TIME", "ATTR_TRANSACTIONAL", "ATTR_CONTROL")
    assert {k: getattr(batch_layout, k) for k in names} == {k: c[k] for k in names} == \
        {"ATTR_COMPRESSION_MASK": 7, "ATTR_LOG_APPEND_TIME": 8, "ATTR_TRANSACTIONAL": 16, "ATTR_CONTROL": 32}


def test_the_pxd_mirrors_every_offset_of_the_c_header():
    pxd = (ROOT / "bindings" / "c" / "batch.pxd").read_text()
    declared = set(re.findall(r"^\s+PL_BATCH_(\w+)\s*$", pxd, re.M))
    assert {n for n in _c_defines() if n.endswith("_OFFSET")} <= declared


def test_the_offsets_read_a_real_batch():
    batch = bytes(_engine.encode_batch([b"a", b"b", b"c"], timestamps=[1000, 1001, 1005]))
    L = batch_layout
    base_offset, length = L.LOG_PREFIX.unpack_from(batch, L.BASE_OFFSET_OFFSET)
    assert (base_offset, length + L.LOG_OVERHEAD) == (0, len(batch))
    assert batch[L.MAGIC_OFFSET] == L.MAGIC
    assert struct.unpack_from(">i", batch, L.LAST_OFFSET_DELTA_OFFSET)[0] == 2
    assert struct.unpack_from(">qq", batch, L.BASE_TIMESTAMP_OFFSET) == (1000, 1005)
    assert struct.unpack_from(">i", batch, L.RECORDS_COUNT_OFFSET)[0] == 3
    assert _engine.crc32c(batch[L.CRC_START:]) == struct.unpack_from(">I", batch, L.CRC_OFFSET)[0]


def test_no_header_offset_is_written_as_a_number_in_the_engine_or_its_bindings():
    """The C files and the .pyx files that own no part of the segment code use the
    names; engine/segment.*, logcore.pyx and segment.pyx belong to the Log work
    and are listed in the report instead."""
    offsets = "|".join(str(v) for k, v in KAFKA_LAYOUT.items()
                       if k.endswith("_OFFSET") and v not in (0,))
    pointer = re.compile(rf"(?:\b(?:buf|out|batch|ptr|v)\s*(?:\+\s*(?:pos\s*\+\s*)?({offsets})\b|\[({offsets})\]))")
    files = [ROOT / "engine" / n for n in ("batch.c", "validate.c")] + \
            [ROOT / "bindings" / n for n in ("records.pyx", "consumer.pyx", "producer.pyx", "validate.pyx",
                                             "_engine.pyx")]
    hits = [f"{f.name}:{i}: {line.strip()}" for f in files
            for i, line in enumerate(f.read_text().splitlines(), 1) if pointer.search(line)]
    assert hits == []
