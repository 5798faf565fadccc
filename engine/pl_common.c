#include "pl_common.h"

const char *pl_strerror(int rc) {
    switch (rc) {
    case PL_OK: return "success";
    case PL_EIO: return "I/O error";
    case PL_ENOSPC: return "no space left on device";
    case PL_ENOMEM: return "out of memory";
    case PL_ECORRUPT: return "corrupt record batch (length, magic or CRC check failed)";
    case PL_ETRUNCATED: return "record batch cut short (torn tail)";
    case PL_EMAGIC: return "unsupported record batch magic (only magic 2 is stored)";
    case PL_ERANGE: return "offset or position out of range";
    case PL_EINVAL: return "invalid argument";
    case PL_EFULL: return "segment or index is full";
    case PL_EOVERFLOW: return "offset does not fit relative to the segment base offset";
    case PL_EBUSY: return "views into the segment are still alive";
    case PL_ECLOSED: return "segment is closed";
    case PL_ELOCKED: return "locked by another process";
    case PL_EINVALREC: return "invalid record batch (records count or control flag)";
    case PL_EINVALTS: return "record timestamp out of the allowed range";
    case PL_ECODEC: return "unsupported compression type";
    default: return "unknown error";
    }
}

#ifdef PL_DEBUG
pl_debug_counters pl__debug_counters;
void pl_debug_count(int64_t *field) { __atomic_add_fetch(field, 1, __ATOMIC_RELAXED); }
void pl_debug_get_counters(pl_debug_counters *out) { *out = pl__debug_counters; }
#else
void pl_debug_get_counters(pl_debug_counters *out) {
    out->maps_opened = out->maps_closed = out->fds_opened = out->fds_closed = 0;
}
#endif
