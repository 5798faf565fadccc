#!/usr/bin/env python3
"""Writes the seed corpora into fuzz/corpus/<target>/ (generated, not committed).

Seeds come from frames captured from real clients (tests/protocol/golden:
librdkafka and kafka-python), plus, for the advertised (api_key, version)
pairs no client sent, a request the generated encoder writes with one element
in every array, so that each pair has a seed of its own shape.

    python fuzz/seeds.py [--out fuzz/corpus]
"""
from __future__ import annotations

import argparse
import hashlib
import os
import struct
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
sys.path.insert(0, ROOT)
sys.path.insert(0, HERE)

from pylog import _engine, codecs  # noqa: E402
from pylog.protocol import batch_layout as L  # noqa: E402
from pylog.protocol.framing import decode_request, decode_request_header  # noqa: E402
from pylog.protocol.messages import REQUESTS  # noqa: E402
from pylog.protocol.schema import fields_in_version, struct_type  # noqa: E402

import fuzz_requests  # noqa: E402

GOLDEN = os.path.join(ROOT, "tests", "protocol", "golden")
TARGETS = ("requests", "decompress", "records", "batch")


def golden_frames():
    """(name, frame without its size prefix) of every captured request."""
    for client in sorted(os.listdir(GOLDEN)):
        d = os.path.join(GOLDEN, client)
        if not os.path.isdir(d):
            continue
        for f in sorted(os.listdir(d)):
            if f.endswith("-request.bin"):
                with open(os.path.join(d, f), "rb") as fh:
                    yield f"{client}-{f[:-4]}", fh.read()[4:]


def _sample(cls, f, version, depth):
    """A value for field f: one element per array, 'x' for strings."""
    t = f.type
    if t.startswith("[]"):
        elem = t[2:]
        st = struct_type(f)
        if st is not None:
            return [populated(getattr(cls, st), version, depth + 1)]
        return [_scalar(elem)]
    st = struct_type(f)
    if st is not None:
        return populated(getattr(cls, st), version, depth + 1)
    return _scalar(t, f.default)


def _scalar(t, default=None):
    if t in ("int8", "int16", "int32", "int64", "uint16"):
        return 1
    if t == "float64":
        return 1.0
    if t == "bool":
        return True
    if t == "string":
        return "x"
    if t == "bytes":
        return b"x"
    if t == "records":
        return _engine.encode_batch([b"v"], keys=[b"k"])
    return default


def populated(cls, version, depth=0):
    obj = cls()
    if depth > 4:
        return obj
    for f in fields_in_version(cls, version):
        if f.tag is not None:
            continue
        try:
            setattr(obj, f.name, _sample(cls, f, version, depth))
        except AttributeError:
            pass
    return obj


def request_seeds():
    seen_pairs = set()
    for name, frame in golden_frames():
        header, pos = decode_request_header(frame)
        pair = (header.request_api_key, header.request_api_version)
        yield name + "-frame", fuzz_requests.frame_input(frame)
        if pair in fuzz_requests.PAIRS:
            seen_pairs.add(pair)
            yield name + "-body", fuzz_requests.body_input(*pair, frame[pos:])
    for key, version in fuzz_requests.PAIRS:
        cls = REQUESTS[key]
        for label, obj in (("default", cls()), ("populated", populated(cls, version))):
            try:
                body = cls.encode(obj, version)
            except Exception:
                continue
            yield f"{key}-{cls.__name__}-v{version}-{label}", fuzz_requests.body_input(key, version, body)
    # An unknown api key and an unsupported ApiVersions version, whole frames.
    yield "unknown-key", fuzz_requests.frame_input(struct.pack(">hhih", 999, 0, 1, -1))
    yield "apiversions-v99", fuzz_requests.frame_input(struct.pack(">hhih", 18, 99, 1, 2) + b"ab\x00\x00")


def golden_batches():
    """The record batches of the captured Produce requests."""
    for name, frame in golden_frames():
        header, body = decode_request(frame)
        if header.request_api_key != 0:
            continue
        for t in body.topic_data:
            for p in t.partition_data:
                if p.records is not None:
                    yield name, bytes(p.records)


def built_batches():
    values = [b"value-%d" % i for i in range(5)] + [None]
    keys = [b"k%d" % i for i in range(5)] + [None]
    headers = [[("h", b"1"), ("h2", None)]] + [[] for _ in range(5)]
    for comp in (None, "gzip", "snappy", "lz4", "zstd"):
        yield f"built-{comp}", _engine.encode_batch(values, keys=keys, headers=headers, compression=comp)
    yield "built-one-empty", _engine.encode_batch([b""])


def decompress_seeds():
    sections = [b"", b"x" * 1000, bytes(range(256)) * 4]
    for _name, batch in golden_batches():
        sections.append(batch[L.RECORDS_OFFSET:])
    for i, raw in enumerate(sections):
        for j, codec in enumerate((codecs.GZIP, codecs.SNAPPY, codecs.LZ4, codecs.ZSTD)):
            packed = codecs.compress(codec, raw)
            yield f"{i}-{codec}", bytes([j]) + packed
            if codec == codecs.SNAPPY:
                xerial = b"\x82SNAPPY\x00" + b"\0\0\0\1\0\0\0\1" + struct.pack(">i", len(packed)) + packed
                yield f"{i}-{codec}-xerial", bytes([j]) + xerial


def batches():
    found = list(golden_batches()) + list(built_batches())
    yield from found
    yield "two-batches", found[0][1] + found[-2][1]


def record_seeds():
    # Byte 0 of a records input: flags (bit 0: reseal CRCs), see fuzz_records.
    for name, b in batches():
        yield name, b"\x01" + b
        yield name + "-raw", b"\x00" + b


def batch_seeds():
    # As record_seeds, plus records sections alone (flag bit 1, byte 1 the
    # record count), see batch_fuzz.c.
    yield from record_seeds()
    for name, b in batches():
        count = struct.unpack_from(">i", b, L.RECORDS_COUNT_OFFSET)[0] if len(b) > L.HEADER_SIZE else None
        uncompressed = len(b) > L.HEADER_SIZE and struct.unpack_from(">h", b, L.ATTRIBUTES_OFFSET)[0] & 0x07 == 0
        if uncompressed and count < 256:
            yield name + "-section", b"\x02" + bytes([count]) + b[L.RECORDS_OFFSET:]


SEEDS = {"requests": request_seeds, "decompress": decompress_seeds,
         "records": record_seeds, "batch": batch_seeds}


def write(out_root, targets=TARGETS):
    counts = {}
    for target in targets:
        d = os.path.join(out_root, target)
        os.makedirs(d, exist_ok=True)
        n = 0
        for _name, data in SEEDS[target]():
            h = hashlib.sha1(data).hexdigest()[:16]
            with open(os.path.join(d, h), "wb") as f:
                f.write(data)
            n += 1
        counts[target] = n
    return counts


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--out", default=os.path.join(HERE, "corpus"))
    ap.add_argument("targets", nargs="*", default=list(TARGETS))
    args = ap.parse_args()
    for target, n in write(args.out, args.targets).items():
        print(f"{target}: {n} seeds in {os.path.join(args.out, target)}")


if __name__ == "__main__":
    main()
