/*
 * varint.h: Kafka's zigzag varints (protobuf style): 7 bits a byte, low group
 * first, high bit = more follows. A varint (int32) takes at most 5 bytes, a
 * varlong (int64) at most 10. Decoders are bounds-checked and return the number
 * of bytes read, or 0 when the input ends early or the value is too long.
 */
#ifndef PL_VARINT_H
#define PL_VARINT_H

#include <stddef.h>
#include <stdint.h>

static inline uint64_t pl_zigzag64(int64_t v) { return ((uint64_t)v << 1) ^ (uint64_t)(v >> 63); }
static inline int64_t pl_unzigzag64(uint64_t v) { return (int64_t)(v >> 1) ^ -(int64_t)(v & 1); }

/* Bytes needed to write v as a varlong. */
static inline size_t pl_varlong_size(int64_t v) {
    uint64_t u = pl_zigzag64(v) | 1;  /* |1: zero still takes one byte */
#if defined(__GNUC__)
    /* 7 payload bits a byte: ceil(significant bits / 7), without a loop. */
    unsigned bits = 64u - (unsigned)__builtin_clzll(u);
    return (size_t)((bits + 6u) / 7u);
#else
    size_t n = 1;
    while (u >= 0x80) { u >>= 7; n++; }
    return n;
#endif
}

/* Write v at p (room for 10 bytes needed); return bytes written. */
static inline size_t pl_varlong_write(uint8_t *p, int64_t v) {
    uint64_t u = pl_zigzag64(v);
    size_t n = 0;
    while (u >= 0x80) { p[n++] = (uint8_t)(u | 0x80); u >>= 7; }
    p[n++] = (uint8_t)u;
    return n;
}

/* Read a varlong of at most max_bytes from p[0,len); 0 on truncation or overlong input. */
static inline size_t pl_varlong_read_n(const uint8_t *p, size_t len, size_t max_bytes, int64_t *out) {
    uint64_t u = 0;
    size_t i = 0;
    unsigned shift = 0;
    if (len > max_bytes) len = max_bytes;
    while (i < len) {
        uint8_t b = p[i++];
        u |= (uint64_t)(b & 0x7F) << shift;
        if (!(b & 0x80)) { *out = pl_unzigzag64(u); return i; }
        shift += 7;
    }
    return 0;
}
static inline size_t pl_varlong_read(const uint8_t *p, size_t len, int64_t *out) {
    return pl_varlong_read_n(p, len, 10, out);
}
/* A varint must also fit int32. */
static inline size_t pl_varint_read(const uint8_t *p, size_t len, int32_t *out) {
    int64_t v;
    size_t n = pl_varlong_read_n(p, len, 5, &v);
    if (n == 0 || v < INT32_MIN || v > INT32_MAX) return 0;
    *out = (int32_t)v;
    return n;
}

#endif
