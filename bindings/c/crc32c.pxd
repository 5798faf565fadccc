from libc.stdint cimport uint32_t

cdef extern from "crc32c.h" nogil:
    uint32_t pl_crc32c(uint32_t crc, const void *buf, size_t len)
    uint32_t pl_crc32c_sw(uint32_t crc, const void *buf, size_t len)
    int pl_crc32c_hw_available()
