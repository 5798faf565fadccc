"""pylog/protocol/coordinator_records.py (the group coordinator records of
Kafka 4.5 that `dump-log --offsets-decoder` reads) is what the generator
makes of shared/kafka-protocol-4.5/group-coordinator, and every record of it
goes through the decoder's JSON form."""
from __future__ import annotations

import json
import struct
from pathlib import Path

import pytest

from pylog.cli.log_decoders import _group_record_classes, decode_offsets_record, message_json
from pylog.protocol import codegen, coordinator_records

SCHEMAS_45 = codegen.DEFAULT_SCHEMAS.parent.parent / "kafka-protocol-4.5" / "group-coordinator"


def _patched_copy(dst: Path) -> Path:
    """The two edits the module's header names: this codegen knows the
    "data" type, and a field's "versions" (a tagged-only field lacks it)."""
    dst.mkdir()
    for src in SCHEMAS_45.glob("*.json"):
        text = src.read_text(encoding="utf-8")
        text = text.replace('"type": "coordinator-key"', '"type": "data"')
        text = text.replace('"type": "coordinator-value"', '"type": "data"')
        text = text.replace('{ "name": "LastAssignmentConfigs","taggedVersions": "0+"',
                            '{ "name": "LastAssignmentConfigs", "versions": "0+", "taggedVersions": "0+"')
        (dst / src.name).write_text(text, encoding="utf-8")
    return dst


@pytest.mark.skipif(not SCHEMAS_45.is_dir(), reason="shared/kafka-protocol-4.5 not present")
def test_coordinator_records_py_is_up_to_date(tmp_path):
    names = sorted(p.stem for p in SCHEMAS_45.glob("*.json")
                   if not p.stem.startswith(("GroupMetadata", "OffsetCommit")))
    generated = codegen.generate(_patched_copy(tmp_path / "group-coordinator"), names)
    committed = Path(coordinator_records.__file__).read_text(encoding="utf-8")
    # The committed header says where the schemas are; the rest is the generator's.
    body = committed.split('"""Kafka protocol messages', 1)[1]
    assert generated.split('"""Kafka protocol messages', 1)[1] == body, (
        "pylog/protocol/coordinator_records.py is stale: regenerate it as its header says")


@pytest.mark.parametrize("rtype", sorted(_group_record_classes()))
def test_every_record_type_decodes_to_json(rtype):
    key_cls, value_cls = _group_record_classes()[rtype]
    key = struct.pack(">h", rtype) + key_cls.encode(key_cls(), key_cls.VALID_VERSIONS[0])
    for version in range(value_cls.VALID_VERSIONS[0], value_cls.VALID_VERSIONS[1] + 1):
        value = struct.pack(">h", version) + value_cls.encode(value_cls(), version)
        (t, kdata), (v, vdata) = decode_offsets_record(key, value)
        assert t == rtype and v == version
        assert vdata == message_json(value_cls(), version)
        json.dumps([kdata, vdata])   # plain JSON all the way down
