from libc.stdint cimport int32_t, uint8_t

cdef extern from "murmur2.h" nogil:
    int32_t pl_murmur2(const uint8_t *data, size_t len)
