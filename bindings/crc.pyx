# CRC-32C over any buffer; the GIL is let go only for large inputs, where the
# hand-off costs less than the work (the threshold follows aiokafka's 5 KiB).
cdef enum:
    CRC_NOGIL_THRESHOLD = 5 * 1024


def crc32c(data, unsigned int crc=0):
    """CRC-32C (Castagnoli) of data, continuing from a previous finished crc."""
    cdef const uint8_t[::1] view = data
    cdef size_t n = view.shape[0]
    cdef uint32_t out
    if n == 0:
        return crc
    if n > CRC_NOGIL_THRESHOLD:
        with nogil:
            out = pl_crc32c(crc, &view[0], n)
    else:
        out = pl_crc32c(crc, &view[0], n)
    return out


def crc32c_sw(data, unsigned int crc=0):
    """The portable table path only (for tests and benchmarks)."""
    cdef const uint8_t[::1] view = data
    if view.shape[0] == 0:
        return crc
    return pl_crc32c_sw(crc, &view[0], view.shape[0])


def crc32c_hw_available():
    return bool(pl_crc32c_hw_available())
