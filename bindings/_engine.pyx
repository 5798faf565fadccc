# cython: language_level=3
# pylog._engine: the one native module. It includes every binding file so the
# cdef classes see each other directly (as asyncpg's protocol.pyx does).
cimport cython
from cpython.buffer cimport PyBuffer_FillInfo
from libc.stdint cimport int16_t, int32_t, int64_t, uint8_t, uint32_t
from libc.string cimport memcpy
from cpython.list cimport PyList_GET_ITEM, PyList_GET_SIZE

from c.common cimport *
from c.crc32c cimport *
from c.batch cimport *
from c.index cimport *
from c.segment cimport *
from c.murmur2 cimport *
from c.cleaner cimport *
from c.delivery cimport *

include "errors.pxi"
include "crc.pyx"
include "records.pyx"
include "producer.pyx"
include "consumer.pyx"
include "segment.pyx"
include "logcore.pyx"
include "hash.pyx"
include "validate.pyx"
include "cleaner.pyx"
include "delivery.pyx"
