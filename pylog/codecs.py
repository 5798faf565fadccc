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

NONE, GZIP, SNAPPY, LZ4, ZSTD = 0, 1, 2, 3, 4
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


def decompress(codec: int, data) -> bytes:
    """Inflate a batch's records section; CorruptRecordError if it does not inflate."""
    try:
        if codec == LZ4:
            import lz4.frame
            return lz4.frame.decompress(bytes(data))
        if codec == GZIP:
            return zlib.decompress(bytes(data), 16 + zlib.MAX_WBITS)
        if codec == ZSTD:
            zstd = _need("zstandard", "zstd")
            return zstd.ZstdDecompressor().decompressobj().decompress(bytes(data))
        if codec == SNAPPY:
            return _snappy_decompress(bytes(data))
    except UnsupportedCompressionError:
        raise
    except Exception as exc:  # each codec library raises its own error type
        raise CorruptRecordError(f"records do not inflate as codec {codec}: {exc}") from exc
    raise UnsupportedCompressionError(f"unknown compression id {codec}")


def _snappy_decompress(data: bytes) -> bytes:
    snappy = _need("cramjam", "snappy").snappy
    if not data.startswith(_XERIAL_MAGIC):
        return bytes(snappy.decompress_raw(data))
    # xerial framing: 8-byte magic, int32 version, int32 compatible, then
    # [int32 length][raw snappy block] until the end.
    out = []
    pos = 16
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("xerial block length cut short")
        (n,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if n < 0 or pos + n > len(data):
            raise ValueError("xerial block longer than the data")
        out.append(bytes(snappy.decompress_raw(data[pos:pos + n])))
        pos += n
    return b"".join(out)


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
    pos = 16
    while pos < len(data):
        if pos + 4 > len(data):
            raise ValueError("xerial block length cut short")
        (n,) = struct.unpack_from(">i", data, pos)
        pos += 4
        if n < 0 or pos + n > len(data):
            raise ValueError("xerial block longer than the data")
        block = data[pos:pos + n]
        _raw_snappy_length(block)
        yield from _pieces(bytes(snappy.decompress_raw(bytes(block))), chunk)
        pos += n


def _pieces(out: bytes, chunk: int):
    # In chunk-sized views, so that a search can stop early and the caller's
    # bound counts what was walked.
    view = memoryview(out)
    for i in range(0, len(out), chunk):
        yield view[i:i + chunk]
