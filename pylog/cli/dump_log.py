"""`pylog dump-log`: kafka-dump-log.sh (Kafka's DumpLogSegments) for pylog's
files, which are Kafka's: its options and its output lines.

    pylog dump-log --files 00000000000000000000.log[,…] [--deep-iteration]
        [--print-data-log] [--offsets-decoder | --transaction-log-decoder]
        [--skip-record-metadata] [--max-bytes N]
    pylog dump-log --files 00000000000000000000.index,….timeindex
        [--index-sanity-check | --verify-index-only] [--max-message-size N]
    pylog dump-log --files 00000000000000000000.txnindex,00000000000000000005.snapshot

Per file `Dumping <file>`; a .log prints `Log starting offset: N` and one
`baseOffset: … lastOffset: … count: …` line per batch; with
--deep-iteration (implied by --print-data-log and the decoders) one
`| offset: … CreateTime: … keySize: …` line per record, control records
with `endTxnMarker: COMMIT coordinatorEpoch: N`. What the cleaner did
shows as it does in Kafka: the batches keep their offsets, so a cleaned
segment's records skip offsets (each jump is listed on stderr under
`Non-consecutive offsets in <file>` after the dump, as Kafka lists them),
a batch emptied for its producer's state is a `count: 0` batch with no
records, and a batch that carries a delete horizon prints it as
`deleteHorizonMs: OptionalLong[…]`.

Damaged files are reported, never a crash: a CRC mismatch is `isvalid:
false`; a batch whose records do not decode (or inflate past
--max-inflated-bytes) gets a line saying why, and the dump goes on with
the next batch; a length field that cannot be right ends the file's walk,
the bytes from there are counted as Kafka counts a torn tail (`Found N
invalid bytes at the end of …`). The exit code is 1 when anything was
damaged (Kafka's is 1 only where it stops with an exception), 0 otherwise.

A tool, not the hot path: batches are walked in Python, each read with
pread (never the whole file, never a mapping a concurrent truncation could
fault), records decoded by the engine (_engine.decode_batches, bounded
inflation). One thread.
"""
from __future__ import annotations

import bisect
import json
import os
import struct
import sys

from ..protocol import batch_layout as L
from .log_decoders import (  # noqa: F401  (decode_* re-exported: older imports)
    decode_transaction_key,
    decode_transaction_value,
    offsets_text,
    transaction_log_text,
)

__all__ = ["add_dump_log_parser", "dump_log"]

# Kafka's FileLogInputStream: a batch needs this much to be looked at, and a
# size below a v0 record's overhead is corrupt.
_HEADER_UP_TO_MAGIC = L.LOG_OVERHEAD + 5
_MIN_RECORD_OVERHEAD = 14
_HEADER = struct.Struct(">qiibIhiqqqhii")
_INT32, _INT8 = struct.Struct(">i"), struct.Struct(">b")
# Read whole, so bounded: a snapshot holds a few hundred bytes per producer.
_MAX_SNAPSHOT_BYTES = 256 << 20
_CODECS = {0: "none", 1: "gzip", 2: "snappy", 3: "lz4", 4: "zstd"}
_ATTR_DELETE_HORIZON = 0x40
_INT32_MAX = 0x7FFFFFFF
_CONTROL_TYPES = {0: "ABORT", 1: "COMMIT", 2: "LEADER_CHANGE", 3: "SNAPSHOT_HEADER",
                  4: "SNAPSHOT_FOOTER", 5: "KRAFT_VERSION", 6: "KRAFT_VOTERS"}
_OFFSET_ENTRY = struct.Struct(">ii")
_TIME_ENTRY = struct.Struct(">qi")
_TXN_ENTRY = struct.Struct(">hqqqq")


def add_dump_log_parser(sub) -> None:
    d = sub.add_parser(
        "dump-log", help="print and check .log, .index, .timeindex and .txnindex files (kafka-dump-log)",
        description="Parse log segment and index files and dump their contents, as kafka-dump-log.sh; "
                    "useful for a seemingly corrupt segment and to see what compaction kept.")
    d.add_argument("paths", nargs="*", metavar="FILE", help="files to dump (as --files)")
    d.add_argument("--files", action="append", default=[], metavar="file1,file2,...",
                   help="REQUIRED (or FILE arguments): comma separated data and index log files")
    d.add_argument("--print-data-log", "--records", dest="print_data_log", action="store_true",
                   help="print the records' content (implies --deep-iteration); set by any decoder")
    d.add_argument("--deep-iteration", action="store_true", help="print every record, not only batches")
    d.add_argument("--skip-record-metadata", action="store_true",
                   help="print only the records' content (no offset, timestamp, ...; control records skipped)")
    dec = d.add_mutually_exclusive_group()
    dec.add_argument("--offsets-decoder", action="store_true",
                     help="decode records as __consumer_offsets' keys and values")
    dec.add_argument("--transaction-log-decoder", action="store_true",
                     help="decode records as __transaction_state's keys and values")
    d.add_argument("--verify-index-only", action="store_true",
                   help="check the index against the log without printing its entries")
    d.add_argument("--index-sanity-check", action="store_true",
                   help="only the check a broker makes on start to decide whether to rebuild an index")
    d.add_argument("--max-message-size", type=int, default=5 * 1024 * 1024, metavar="size",
                   help="size of the largest batch (default 5242880)")
    d.add_argument("--max-bytes", type=int, default=_INT32_MAX, metavar="size",
                   help="read at most this many bytes of each .log file (whole batches)")
    d.add_argument("--max-inflated-bytes", type=int, default=-1, metavar="N",
                   help="the most one compressed batch may inflate to (default 64 MiB, a broker's "
                        "pylog.message.max.decompressed.bytes); a batch past it is reported, not inflated")
    d.set_defaults(tool=dump_log)


def dump_log(args) -> int:
    files = list(args.paths) + [f for arg in args.files for f in arg.split(",") if f]
    if not files:
        print("Missing required argument \"[files]\"", file=sys.stderr)
        return 1
    d = _Dumper(args)
    for path in files:
        print(f"Dumping {path}")
        d.dump(path)
    d.print_errors()
    return 1 if d.damaged else 0


class _Dumper:
    """One run over the files: what is printed as it goes, and what Kafka's
    tool lists on stderr at the end. One thread."""

    def __init__(self, args):
        self.args = args
        self.decoder = (offsets_text if args.offsets_decoder
                        else transaction_log_text if args.transaction_log_decoder else None)
        self.print_data = args.print_data_log or self.decoder is not None
        self.deep = args.deep_iteration or self.print_data
        self.damaged = False
        self.non_consecutive: dict[str, dict[int, int]] = {}
        self.index_mismatches: dict[str, dict[int, int]] = {}
        self.time_mismatches: dict[str, list] = {}
        self.time_out_of_order: dict[str, list] = {}
        self.time_not_found: dict[str, list] = {}

    def dump(self, path: str) -> None:
        name = os.path.basename(path)
        suffix = name[name.rfind("."):] if "." in name else ""
        try:
            if suffix == ".log":
                self.dump_log(path)
            elif suffix == ".index":
                self.dump_index(path)
            elif suffix == ".timeindex":
                self.dump_time_index(path)
            elif suffix == ".txnindex":
                self.dump_txn_index(path)
            elif suffix == ".snapshot":
                self.dump_producer_snapshot(path)
            else:
                print(f"Ignoring unknown file {path}", file=sys.stderr)
        except (OSError, ValueError) as e:
            self.damaged = True
            print(f"{path}: {e}", file=sys.stderr)

    # ---- .log ----

    def dump_log(self, path: str) -> None:
        name = os.path.basename(path)
        print(f"Log starting offset: {_base_offset(name)}")
        with _File(path) as data:
            self._walk(path, name, data)

    def _walk(self, path: str, name: str, data) -> None:
        max_bytes = self.args.max_bytes
        end = min(data.size, max(max_bytes, 0))
        pos, last_offset = 0, [-1]
        while end - pos >= _HEADER_UP_TO_MAGIC:
            length = data.unpack(_INT32, pos + L.LENGTH_OFFSET)[0]
            if length < _MIN_RECORD_OVERHEAD:
                self._damage(f"Found record size {length} smaller than minimum record overhead "
                             f"({_MIN_RECORD_OVERHEAD}) in file {name} at position {pos}.")
                break
            size = length + L.LOG_OVERHEAD
            if pos + size > end:
                break  # a torn tail, or past --max-bytes
            magic = data.unpack(_INT8, pos + L.MAGIC_OFFSET)[0]
            if magic != L.MAGIC or size < L.HEADER_SIZE:
                self._damage(f"Found a batch of magic {magic} and size {size} at position {pos} of {name}: "
                             "not a record batch v2.")
                break
            self._batch(path, data.read_all(pos, size), pos, last_offset)
            pos += size
        trailing = data.size - pos
        if trailing > 0 and max_bytes == _INT32_MAX:
            self.damaged = True
            print(f"Found {trailing} invalid bytes at the end of {name}")

    def _damage(self, message: str) -> None:
        self.damaged = True
        print(message, file=sys.stderr)

    def _batch(self, path, batch, pos: int, last_offset: list) -> None:
        from .. import _engine
        (base_offset, _length, leader_epoch, magic, crc, attrs, last_delta, base_ts, max_ts,
         producer_id, producer_epoch, base_seq, count) = _HEADER.unpack_from(batch, 0)
        valid = _engine.crc32c(batch[L.CRC_START:]) == crc
        if not valid:
            self.damaged = True
        ts_type = "LogAppendTime" if attrs & L.ATTR_LOG_APPEND_TIME else "CreateTime"
        control = bool(attrs & L.ATTR_CONTROL)
        horizon = f"OptionalLong[{base_ts}]" if attrs & _ATTR_DELETE_HORIZON else "OptionalLong.empty"
        codec = attrs & L.ATTR_COMPRESSION_MASK
        print(f"baseOffset: {base_offset} lastOffset: {base_offset + last_delta} count: {count} "
              f"baseSequence: {base_seq} lastSequence: {_sequence(base_seq, last_delta)} "
              f"producerId: {producer_id} producerEpoch: {producer_epoch} "
              f"partitionLeaderEpoch: {leader_epoch} isTransactional: {str(bool(attrs & L.ATTR_TRANSACTIONAL)).lower()} "
              f"isControl: {str(control).lower()} deleteHorizonMs: {horizon} position: {pos} "
              f"{ts_type}: {max_ts} size: {len(batch)} magic: {magic} "
              f"compresscodec: {_CODECS.get(codec, f'unknown({codec})')} crc: {crc} isvalid: {str(valid).lower()}")
        if not self.deep:
            return
        from ..errors import PylogError
        if not valid:
            # Kafka's tool reads the records of a batch whose CRC is wrong
            # too (the damage may be in one value): so do we, from a copy
            # carrying the CRC the bytes have, the engine checking the rest.
            batch = bytearray(batch)
            struct.pack_into(">I", batch, L.CRC_OFFSET, _engine.crc32c(bytes(batch[L.CRC_START:])))
            batch = bytes(batch)
        try:
            records = _engine.decode_batches(batch, self.args.max_inflated_bytes)
        except (PylogError, ValueError, MemoryError) as e:
            self.damaged = True
            print(f"| records of the batch at position {pos} not readable: {e}")
            return
        skip_meta = self.args.skip_record_metadata
        for r in records:
            if r.offset != last_offset[0] + 1:
                self.non_consecutive.setdefault(os.path.abspath(path), {})[last_offset[0]] = r.offset
            last_offset[0] = r.offset
            line = ""
            if not skip_meta:
                ts = max_ts if attrs & L.ATTR_LOG_APPEND_TIME else r.timestamp
                seq = -1 if base_seq == -1 else _sequence(base_seq, r.offset - base_offset)
                line = (f"| offset: {r.offset} {ts_type}: {ts} "
                        f"keySize: {-1 if r.key is None else len(r.key)} "
                        f"valueSize: {-1 if r.value is None else len(r.value)} "
                        f"sequence: {seq} headerKeys: [{','.join(k for k, _ in r.headers)}]")
                if control:
                    line += _control_text(r.key, r.value)
            elif control:
                continue
            if self.print_data and not control:
                line += self._contents(r, "| " if skip_meta else " ")
            print(line)

    def _contents(self, r, prefix: str) -> str:
        if self.decoder is not None:
            text = self.decoder(r.key, r.value, r.offset)
            return prefix + text[1:]
        parts = []
        if r.key is not None:
            parts.append("key: " + bytes(r.key).decode("utf-8", "replace"))
        if r.value is not None:
            parts.append("payload: " + bytes(r.value).decode("utf-8", "replace"))
        return prefix + " ".join(parts) if parts else ""

    # ---- .index / .timeindex / .txnindex ----

    def dump_index(self, path: str) -> None:
        with _File(_log_beside(path)) as log, _File(path) as raw:
            self._index(path, _base_offset(os.path.basename(path)), log, raw)

    def _index(self, path: str, base: int, log, raw) -> None:
        n = raw.size // _OFFSET_ENTRY.size
        if n == 0:
            print(f"{path} is empty.")
            return
        if self.args.index_sanity_check:
            last = base + raw.unpack(_OFFSET_ENTRY, (n - 1) * _OFFSET_ENTRY.size)[0]
            if last < base:
                return self._damage(f"Corrupt index found, index file ({path}) has non-zero size but the last "
                                    f"offset is {last} which is less than the base offset {base}.")
            if raw.size % _OFFSET_ENTRY.size:
                return self._damage(f"Index file {os.path.basename(path)} is corrupt, found {raw.size} bytes "
                                    f"which is neither positive nor a multiple of {_OFFSET_ENTRY.size}.")
            print(f"{path} passed sanity check.")
            return
        for i in range(n):
            rel, position = raw.unpack(_OFFSET_ENTRY, i * _OFFSET_ENTRY.size)
            offset = base + rel
            if offset == base and i > 0:
                return  # the preallocated, never written part
            found = _last_offset_at(log, position, self.args.max_message_size)
            if found != offset:
                self.damaged = True
                self.index_mismatches.setdefault(os.path.abspath(path), {})[offset] = found
            if not self.args.verify_index_only:
                print(f"offset: {offset} position: {position}")

    def dump_time_index(self, path: str) -> None:
        with _File(_log_beside(path)) as log, _File(path) as raw:
            self._time_index(path, _base_offset(os.path.basename(path)), log, raw)

    def _time_index(self, path: str, base: int, log, raw) -> None:
        n = raw.size // _TIME_ENTRY.size
        if self.args.index_sanity_check:
            if n:
                first_ts = raw.unpack(_TIME_ENTRY, 0)[0]
                last_ts, last_rel = raw.unpack(_TIME_ENTRY, (n - 1) * _TIME_ENTRY.size)
                if last_ts < first_ts:
                    return self._damage(f"Corrupt time index found, time index file ({path}) has non-zero size "
                                        f"but the last timestamp is {last_ts} which is less than the first "
                                        f"timestamp {first_ts}")
                if base + last_rel < base:
                    return self._damage(f"Corrupt time index found, time index file ({path}) has non-zero size "
                                        f"but the last offset is {base + last_rel} which is less than the base "
                                        f"offset {base}")
            if raw.size % _TIME_ENTRY.size:
                return self._damage(f"Time index file {os.path.basename(path)} is corrupt, found {raw.size} "
                                    f"bytes which is neither positive nor a multiple of {_TIME_ENTRY.size}.")
            print(f"{path} passed sanity check.")
            return
        key = os.path.abspath(path)
        batches = _batch_spans(log)
        lasts = [b[1] for b in batches]
        prev_ts = -1
        for i in range(n):
            ts, rel = raw.unpack(_TIME_ENTRY, i * _TIME_ENTRY.size)
            offset = base + rel
            if offset == base and i > 0:
                return
            at = bisect.bisect_left(lasts, offset)
            match = batches[at] if at < len(batches) else None
            if match is None:
                self.damaged = True
                self.time_not_found.setdefault(key, []).append((offset, -1))
            elif match[1] != offset:
                self.damaged = True
                self.time_not_found.setdefault(key, []).append((offset, match[1]))
            else:
                max_ts = _max_record_timestamp(log.read_all(match[0], match[2] - match[0]))
                if max_ts != ts:
                    self.damaged = True
                    self.time_mismatches.setdefault(key, []).append((ts, max_ts))
                if prev_ts >= ts:
                    self.damaged = True
                    self.time_out_of_order.setdefault(key, []).append((ts, prev_ts))
            if not self.args.verify_index_only:
                print(f"timestamp: {ts} offset: {offset}")
            prev_ts = ts

    def dump_txn_index(self, path: str) -> None:
        with _File(path) as raw:
            self._txn_index(path, raw)

    def _txn_index(self, path: str, raw) -> None:
        for i in range(raw.size // _TXN_ENTRY.size):
            version, pid, first, last, lso = raw.unpack(_TXN_ENTRY, i * _TXN_ENTRY.size)
            print(f"version: {version} producerId: {pid} firstOffset: {first} lastOffset: {last} "
                  f"lastStableOffset: {lso}")
        if raw.size % _TXN_ENTRY.size:
            self._damage(f"{path}: {raw.size % _TXN_ENTRY.size} bytes after the last whole entry")

    def dump_producer_snapshot(self, path: str) -> None:
        """pylog's producer-state snapshot (broker/producer_state.py: a CRC-32C
        line, then JSON) in Kafka's lines for its .snapshot; the batch shown is
        the producer's newest, the one Kafka's snapshot keeps."""
        from .. import _engine
        with _File(path) as f:
            if f.size > _MAX_SNAPSHOT_BYTES:
                return self._damage(f"Snapshot {path} is corrupt: {f.size} bytes, more than a producer "
                                    f"state snapshot of pylog holds ({_MAX_SNAPSHOT_BYTES})")
            data = f.read_all(0, f.size)
        crc, _, body = data.partition(b"\n")
        try:
            if int(crc, 16) != _engine.crc32c(body):
                raise ValueError("CRC mismatch")
            doc = json.loads(body)
            entries = doc["producers"]
        except (ValueError, KeyError, TypeError) as e:
            return self._damage(f"Snapshot {path} is corrupt: {e}")
        for fields in entries:
            try:
                pid, epoch, last_ts, batches = fields[:4]
                coordinator_epoch, txn_first = (fields[4], fields[5]) if len(fields) >= 6 else (-1, -1)
                line = (f"producerId: {pid} producerEpoch: {epoch} coordinatorEpoch: {coordinator_epoch} "
                        f"currentTxnFirstOffset: {'OptionalLong.empty' if txn_first < 0 else f'OptionalLong[{txn_first}]'} "
                        f"lastTimestamp: {last_ts}")
                if batches:
                    first_seq, last_seq, first_offset, last_offset, ts = batches[-1]
                    line += (f" firstSequence: {first_seq} lastSequence: {last_seq} lastOffset: {last_offset} "
                             f"offsetDelta: {last_offset - first_offset} timestamp: {ts}")
            except (ValueError, TypeError) as e:
                self._damage(f"Snapshot {path}: an unreadable producer entry: {e}")
                continue
            print(line)

    # ---- after every file, on stderr, as Kafka ----

    def print_errors(self) -> None:
        err = sys.stderr
        for name, by_offset in self.index_mismatches.items():
            print(f"Mismatches in :{name}", file=err)
            for index_offset in sorted(by_offset, reverse=True):
                print(f"  Index offset: {index_offset}, log offset: {by_offset[index_offset]}", file=err)
        for name, pairs in self.time_mismatches.items():
            print(f"Found timestamp mismatch in :{name}", file=err)
            for index_ts, log_ts in pairs:
                print(f"  Index timestamp: {index_ts}, log timestamp: {log_ts}", file=err)
        for name, pairs in self.time_out_of_order.items():
            print(f"Found out of order timestamp in :{name}", file=err)
            for index_ts, prev in pairs:
                print(f"  Index timestamp: {index_ts}, Previously indexed timestamp: {prev}", file=err)
        for pairs in self.time_not_found.values():
            print("The following indexed offsets are not found in the log.", file=err)
            for index_offset, found in pairs:
                print(f"Indexed offset: {index_offset}, found log offset: {found}", file=err)
        for name, pairs in self.non_consecutive.items():
            print(f"Non-consecutive offsets in {name}", file=err)
            for prev in sorted(pairs):
                print(f"  {prev} is followed by {pairs[prev]}", file=err)


class _Shrunk(ValueError):
    pass


class _File:
    """A file read where asked with pread, never whole: a 1 GiB segment costs
    one batch at a time, and a file a broker truncates meanwhile reads short
    (reported) where a mapping would fault. size is taken at open."""

    def __init__(self, path: str):
        self.path = path
        self.fd = os.open(path, os.O_RDONLY)
        self.size = os.fstat(self.fd).st_size

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        os.close(self.fd)

    def read_all(self, pos: int, n: int) -> bytes:
        data = os.pread(self.fd, n, pos)
        if len(data) < n:
            raise _Shrunk(f"{self.path} ends at byte {pos + len(data)} now, not {self.size}: it shrank "
                          "while being read (a broker truncating it?)")
        return data

    def unpack(self, st: struct.Struct, pos: int) -> tuple:
        return st.unpack(self.read_all(pos, st.size))


def _log_beside(path: str) -> str:
    d, name = os.path.split(os.path.abspath(path))
    return os.path.join(d, name.split(".")[0] + ".log")


def _base_offset(name: str) -> int:
    stem = name.split(".")[0]
    try:
        return int(stem)
    except ValueError:
        raise ValueError(f"{name}: not a segment file name (20-digit base offset)") from None


def _sequence(base_seq: int, delta: int) -> int:
    """Kafka's DefaultRecordBatch.incrementSequence: sequences wrap at int32's max."""
    if base_seq == -1:
        return -1
    if base_seq > _INT32_MAX - delta:
        return delta - (_INT32_MAX - base_seq) - 1
    return base_seq + delta


def _control_text(key, value) -> str:
    if key is None or len(key) < 4:
        return " controlType: unreadable (key shorter than 4 bytes)"
    ctype = struct.unpack_from(">h", key, 2)[0]
    name = _CONTROL_TYPES.get(ctype, "UNKNOWN")
    if ctype in (0, 1):
        if value is None or len(value) < 6:
            return f" endTxnMarker: {name} coordinatorEpoch: unreadable (value shorter than 6 bytes)"
        return f" endTxnMarker: {name} coordinatorEpoch: {struct.unpack_from('>i', value, 2)[0]}"
    return f" controlType: {name}({ctype})"


def _batch_spans(log) -> list:
    """(start, last offset, end) of each whole batch of a .log (a _File)."""
    out, pos, n = [], 0, log.size
    while n - pos >= L.HEADER_SIZE:
        base, length = log.unpack(L.LOG_PREFIX, pos)
        end = pos + L.LOG_OVERHEAD + length
        if length < L.MIN_LENGTH or end > n:
            break
        delta = log.unpack(_INT32, pos + L.LAST_OFFSET_DELTA_OFFSET)[0]
        out.append((pos, base + delta, end))
        pos = end
    return out


def _last_offset_at(log, position: int, max_size: int) -> int:
    """The last offset of the batch at position (-1: none readable there)."""
    if position < 0 or position + L.HEADER_SIZE > log.size:
        return -1
    base, length = log.unpack(L.LOG_PREFIX, position)
    if length < L.MIN_LENGTH or length + L.LOG_OVERHEAD > max_size:
        return -1
    return base + log.unpack(_INT32, position + L.LAST_OFFSET_DELTA_OFFSET)[0]


def _max_record_timestamp(batch) -> int:
    from .. import _engine
    from ..errors import PylogError
    try:
        return max((r.timestamp for r in _engine.decode_batches(batch)), default=-1)
    except (PylogError, ValueError):
        return -1
