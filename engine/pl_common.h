/*
 * pl_common.h: error codes and small helpers shared by every engine file.
 *
 * The engine is a plain C11 library (it never includes Python.h). Every fallible
 * function returns an int: PL_OK (0) or a negative PL_E* code. Outputs go through
 * out-pointers. When a code stands for a failed system call (PL_EIO, PL_ENOSPC),
 * errno still holds the system's reason when the function returns.
 * bindings/errors.pxi is the single place that turns these codes into Python
 * exceptions; pl_strerror() gives the text for each.
 */
#ifndef PL_COMMON_H
#define PL_COMMON_H

#include <stddef.h>
#include <stdint.h>

enum {
    PL_OK = 0,
    PL_EIO = -1,        /* a system call failed; errno says why */
    PL_ENOSPC = -2,     /* the disk (or file size limit) is full; nothing partial was kept */
    PL_ENOMEM = -3,     /* allocation failed */
    PL_ECORRUPT = -4,   /* bytes fail a length, magic or CRC check */
    PL_ETRUNCATED = -5, /* a batch is cut short by the end of the data (a torn tail) */
    PL_EMAGIC = -6,     /* record batch magic is not 2 */
    PL_ERANGE = -7,     /* offset or position outside what is stored */
    PL_EINVAL = -8,     /* invalid argument */
    PL_EFULL = -9,      /* segment or index full: the caller must roll */
    PL_EOVERFLOW = -10, /* offset does not fit relative to the segment base: roll */
    PL_EBUSY = -11,     /* views into the mapping are alive */
    PL_ECLOSED = -12,   /* handle already closed */
    PL_ELOCKED = -13,   /* another process holds the lock */
    PL_EINVALREC = -14, /* an intact batch a producer may not send: records_count !=
                           last_offset_delta + 1, or a control batch; or a record
                           that fails Kafka's record checks (validate.h) */
    PL_EINVALTS = -15,  /* a record's timestamp is outside the topic's window */
    PL_ECODEC = -16,    /* unknown compression codec, or one the request version may not use */
};

/* Text for a PL_E* code (never NULL). */
const char *pl_strerror(int rc);

#if defined(__GNUC__)
#define PL_LIKELY(x) __builtin_expect(!!(x), 1)
#define PL_UNLIKELY(x) __builtin_expect(!!(x), 0)
#else
#define PL_LIKELY(x) (x)
#define PL_UNLIKELY(x) (x)
#endif

/* Big-endian loads and stores: Kafka's on-disk and wire integers are big-endian. */
static inline uint16_t pl_load_be16(const uint8_t *p) { return (uint16_t)((p[0] << 8) | p[1]); }
static inline uint32_t pl_load_be32(const uint8_t *p) {
    return ((uint32_t)p[0] << 24) | ((uint32_t)p[1] << 16) | ((uint32_t)p[2] << 8) | (uint32_t)p[3];
}
static inline uint64_t pl_load_be64(const uint8_t *p) {
    return ((uint64_t)pl_load_be32(p) << 32) | (uint64_t)pl_load_be32(p + 4);
}
static inline void pl_store_be16(uint8_t *p, uint16_t v) { p[0] = (uint8_t)(v >> 8); p[1] = (uint8_t)v; }
static inline void pl_store_be32(uint8_t *p, uint32_t v) {
    p[0] = (uint8_t)(v >> 24); p[1] = (uint8_t)(v >> 16); p[2] = (uint8_t)(v >> 8); p[3] = (uint8_t)v;
}
static inline void pl_store_be64(uint8_t *p, uint64_t v) {
    pl_store_be32(p, (uint32_t)(v >> 32)); pl_store_be32(p + 4, (uint32_t)v);
}

/* Debug-build counters of native resources (mmaps and fds opened vs closed), so
 * tests can assert that nothing leaks. In release builds they stay zero. */
typedef struct pl_debug_counters {
    int64_t maps_opened, maps_closed, fds_opened, fds_closed;
} pl_debug_counters;
void pl_debug_get_counters(pl_debug_counters *out);
#ifdef PL_DEBUG
void pl_debug_count(int64_t *field);
#define PL_DEBUG_COUNT(field) pl_debug_count(&pl__debug_counters.field)
extern pl_debug_counters pl__debug_counters;
#else
#define PL_DEBUG_COUNT(field) ((void)0)
#endif

#endif
