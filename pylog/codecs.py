"""Compression codecs of record batch v2 (attributes bits 0-2).

pylog writes none or lz4; it reads all five where a package exists: gzip (zlib,
stdlib), snappy (cramjam, Java's "xerial" framing or a raw block), lz4 (the lz4
frame format, independent blocks, as Kafka requires) and zstd (zstandard).
A batch's records section is compressed as one stream (KAFKA-NOTES §2.5).
"""
from __future__ import annotations

import struct
import zlib

from .errors import CorruptRecordError, UnsupportedCompressionError

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4  # not an error code
NAMES = {"none": NONE, "gzip": GZIP, "snappy": SNAPPY, "lz4": LZ4, "zstd": ZSTD}
_XERIAL_MAGIC = b"\x82SNAPPY\x00"


def codec_id(compression) -> int:
    """0..4 for None, a name ("lz4") or an id."""
    if compression is None:
        return NONE
    if isinstance(compression, str):
        try:
            return NAMES[compression.lower()]
        except KeyError:
            raise UnsupportedCompressionError(f"unknown compression {compression!r}") from None
    if compression in (NONE, GZIP, SNAPPY, LZ4, ZSTD):
        return int(compression)
    raise UnsupportedCompressionError(f"unknown compression id {compression!r}")


def _need(module: str, codec: str):
    try:
        return __import__(module, fromlist=["_"])
    except ImportError:
        raise UnsupportedCompressionError(
            f"{codec} needs the '{module.split('.')[0]}' package (pip install pylog[codecs])") from None


def compress(codec: int, data) -> bytes:
    if codec == LZ4:
        import lz4.frame
        # Kafka's reader refuses linked blocks; 64 KiB blocks as the Java client writes.
        return lz4.frame.compress(bytes(data), block_size=lz4.frame.BLOCKSIZE_MAX64KB,
                                  block_linked=False, content_checksum=False, store_size=False)
    if codec == GZIP:
        c = zlib.compressobj(6, zlib.DEFLATED, 16 + zlib.MAX_WBITS)
        return c.compress(data) + c.flush()
    if codec == ZSTD:
        return _need("zstandard", "zstd").ZstdCompressor().compress(bytes(data))
    if codec == SNAPPY:
        snappy = _need("cramjam", "snappy").snappy
        return bytes(snappy.compress_raw(bytes(data)))
    if codec == NONE:
        return bytes(data)
    raise UnsupportedCompressionError(f"unknown compression id {codec}")


# The engine addresses a records section with int32 positions, so nothing
# larger can be decoded: a batch that inflates past this is refused before its
# output is allocated (a few bytes of snappy or zstd can claim gigabytes).
MAX_INFLATED = 0x7FFFFFFF
# What a reader (Log.scan, the consumers, `pylog dump-log`) lets one stored
# batch inflate to unless told otherwise: the broker's produce-side default
# (pylog.message.max.decompressed.bytes, 64 MiB), so a bomb that got into a
# log by other means (a file copied in, a broker with a larger bound) costs a
# reader at most this much memory and work, then a CorruptRecordError.
READ_MAX_INFLATED = 64 << 20
_ZSTD_SLICE = 1024


def decompress(codec: int, data, max_bytes: int = MAX_INFLATED) -> bytes:
    """Inflate a batch's records section; CorruptRecordError if it does not
    inflate or would inflate past max_bytes."""
    try:
        if codec == LZ4:
            import lz4.frame
            d = lz4.frame.LZ4FrameDecompressor()
            out = d.decompress(bytes(data), max_length=max_bytes + 1)
            _check_size(out, max_bytes)
            if not d.eof:
                raise ValueError("lz4 frame incomplete")
            return out
        if codec == GZIP:
            d = zlib.decompressobj(16 + zlib.MAX_WBITS)
            out = d.decompress(bytes(data), max_bytes + 1)
            _check_size(out, max_bytes)
            if not d.eof:
                raise ValueError("gzip stream incomplete or truncated")
            return out
        if codec == ZSTD:
            zstd = _need("zstandard", "zstd")
            # Fed in slices, checking the size between them: the library has
            # no output limit, and a zstd block inflates at most 32768-fold,
            # so the overshoot is bounded by _ZSTD_SLICE * 32768.
            d = zstd.ZstdDecompressor().decompressobj()
            src = bytes(data)
            parts, total = [], 0
            for pos in range(0, len(src), _ZSTD_SLICE):
                if d.eof:  # bytes after the frame are ignored, as one call would
                    break
                chunk = d.decompress(src[pos:pos + _ZSTD_SLICE])
                total += len(chunk)
                _check_size(b"", max_bytes, total)
                parts.append(chunk)
            return b"".join(parts)
        if codec == SNAPPY:
            return _snappy_decompress(bytes(data), max_bytes)
    except (UnsupportedCompressionError, CorruptRecordError):
        raise
    except Exception as exc:  # each codec library raises its own error type
        raise CorruptRecordError(f"records do not inflate as codec {codec}: {exc}") from exc
    raise UnsupportedCompressionError(f"unknown compression id {codec}")


def _check_size(out, max_bytes, size=None):
    size = len(out) if size is None else size
    if size > max_bytes:
        raise CorruptRecordError(f"a compressed batch's records inflate past {max_bytes} bytes, the most one "
                                 f"batch may inflate to (a broker's pylog.message.max.decompressed.bytes)")


def _snappy_raw(snappy, block, max_bytes):
    # A raw block starts with its inflated length, which the library allocates
    # before decoding: check it first.
    n = snappy.decompress_raw_len(block)
    if n > max_bytes:
        raise CorruptRecordError(f"a snappy block claims {n} bytes, over the limit of {max_bytes}")
    return bytes(snappy.decompress_raw(block))


def _snappy_decompress(data: bytes, max_bytes: int = MAX_INFLATED) -> bytes:
    snappy = _need("cramjam", "snappy").snappy
    if not data.startswith(_XERIAL_MAGIC):
        return _snappy_raw(snappy, data, max_bytes)
    out = []
    left = max_bytes
    for framed in _xerial_blocks(data):
        block = _snappy_raw(snappy, framed, left)
        left -= len(block)
        out.append(block)
    return b"".join(out)


def _xerial_blocks(data):
    """The raw snappy blocks of xerial framing: 8-byte magic, int32 version,
    int32 compatible, then [int32 length][raw snappy block] until the end."""
    pos = 16
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("xerial block length cut short")
        (n,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if n < 0 or pos + n > len(data):
            raise ValueError("xerial block longer than the data")
        yield data[pos:pos + n]
        pos += n


def inflate_stream(codec: int, data, chunk: int):
    """Inflate a batch's records section as a stream: yields pieces of at most
    about chunk bytes, so that a caller can stop (and free everything) as soon
    as a bound is passed; the whole inflated section is never held. Raises
    CorruptRecordError if the bytes do not inflate, UnsupportedCompressionError
    for an unknown codec."""
    try:
        if codec == GZIP:
            yield from _inflate_gzip(data, chunk)
        elif codec == ZSTD:
            yield from _inflate_zstd(data, chunk)
        elif codec == LZ4:
            yield from _inflate_lz4(data, chunk)
        elif codec == SNAPPY:
            yield from _inflate_snappy(data, chunk)
        elif codec == NONE:
            yield bytes(data)
        else:
            raise UnsupportedCompressionError(f"Unknown compression type id: {codec}")
    except (UnsupportedCompressionError, CorruptRecordError, GeneratorExit):
        raise
    except Exception as exc:  # each codec library raises its own error type
        raise CorruptRecordError(f"records do not inflate as codec {codec}: {exc}") from exc


def _inflate_gzip(data, chunk):
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    tail = data
    while not d.eof:
        out = d.decompress(tail, chunk)
        tail = d.unconsumed_tail
        if out:
            yield out
        elif not tail:
            break
    if not d.eof:
        raise ValueError("gzip stream cut short")


def _inflate_zstd(data, chunk):
    zstd = _need("zstandard", "zstd")
    # Kafka's zstd reader reads frame after frame, as read_across_frames does.
    reader = zstd.ZstdDecompressor().stream_reader(data, read_across_frames=True)
    while True:
        out = reader.read(chunk)
        if not out:
            return
        yield out


def _inflate_lz4(data, chunk):
    import lz4.frame
    d = lz4.frame.LZ4FrameDecompressor()
    out = d.decompress(bytes(data), max_length=chunk)
    while True:
        if out:
            yield out
        if d.eof or d.needs_input:
            break
        out = d.decompress(b"", max_length=chunk)
    if not d.eof:
        raise ValueError("lz4 frame cut short")


def _raw_snappy_length(block) -> int:
    """The inflated length a raw snappy block declares (its leading varint),
    refused when no snappy block of this size could inflate to it."""
    n = shift = 0
    for i in range(min(5, len(block))):
        b = block[i]
        n |= (b & 0x7F) << shift
        if not b & 0x80:
            if n > 32 * len(block) + 64:
                raise ValueError(f"snappy block of {len(block)} bytes declares {n} inflated bytes")
            return n
        shift += 7
    raise ValueError("snappy block length varint is invalid")


def _inflate_snappy(data, chunk):
    # A raw snappy block inflates whole; snappy cannot inflate more than ~21x
    # (a copy of at most 64 bytes costs 3), so a block is bounded by its own
    # compressed size, once its declared size (allocated up front) is checked.
    snappy = _need("cramjam", "snappy").snappy
    data = memoryview(data)
    if bytes(data[:8]) != _XERIAL_MAGIC:
        _raw_snappy_length(data)
        yield from _pieces(bytes(snappy.decompress_raw(bytes(data))), chunk)
        return
    for block in _xerial_blocks(data):
        _raw_snappy_length(block)
        yield from _pieces(bytes(snappy.decompress_raw(bytes(block))), chunk)


def _pieces(out: bytes, chunk: int):
    # In chunk-sized views, so that a search can stop early and the caller's
    # bound counts what was walked.
    view = memoryview(out)
    for i in range(0, len(out), chunk):
        yield view[i:i + chunk]
