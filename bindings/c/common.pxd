from libc.stdint cimport int64_t

cdef extern from "pl_common.h" nogil:
    enum:
        PL_OK
        PL_EIO
        PL_ENOSPC
        PL_ENOMEM
        PL_ECORRUPT
        PL_ETRUNCATED
        PL_EMAGIC
        PL_ERANGE
        PL_EINVAL
        PL_EFULL
        PL_EOVERFLOW
        PL_EBUSY
        PL_ECLOSED
        PL_ELOCKED
        PL_EINVALREC
        PL_EINVALTS
        PL_ECODEC
    const char *pl_strerror(int rc)
    ctypedef struct pl_debug_counters:
        int64_t maps_opened, maps_closed, fds_opened, fds_closed
    void pl_debug_get_counters(pl_debug_counters *out)
