# Kafka's murmur2 key hash, in C: the producer's per-record partition choice.

def murmur2(key):
    """Kafka's Utils.murmur2 of key (any bytes-like object): a signed 32-bit int."""
    cdef const uint8_t[::1] view = key
    if view.shape[0] == 0:
        return pl_murmur2(NULL, 0)
    return pl_murmur2(&view[0], view.shape[0])


def partition_for_key(key, int partition_count):
    """The partition of a keyed record, as the Java client and librdkafka's
    murmur2_random place it: (murmur2(key) & 0x7fffffff) % partition_count."""
    if partition_count <= 0:
        raise ValueError("partition_count must be positive")
    cdef const uint8_t[::1] view = key
    cdef int32_t h = pl_murmur2(&view[0] if view.shape[0] else NULL, view.shape[0])
    return (h & 0x7fffffff) % partition_count
