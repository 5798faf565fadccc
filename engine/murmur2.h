/* Kafka's murmur2 (org.apache.kafka.common.utils.Utils.murmur2), the hash of
 * the Java client's default partitioner and of librdkafka's "murmur2_random":
 * a keyed record goes to (murmur2(key) & 0x7fffffff) % partition_count.
 * Header-only: one small pure function, no state. */
#ifndef PL_MURMUR2_H
#define PL_MURMUR2_H

#include <stddef.h>
#include <stdint.h>

static inline int32_t pl_murmur2(const uint8_t *data, size_t len) {
    const uint32_t m = 0x5bd1e995u;
    uint32_t h = 0x9747b28cu ^ (uint32_t)len;
    size_t end4 = len & ~(size_t)3;
    for (size_t i = 0; i < end4; i += 4) {
        uint32_t k = (uint32_t)data[i] | ((uint32_t)data[i + 1] << 8) |
                     ((uint32_t)data[i + 2] << 16) | ((uint32_t)data[i + 3] << 24);
        k *= m;
        k ^= k >> 24;
        k *= m;
        h *= m;
        h ^= k;
    }
    switch (len & 3) { /* falls through, as Java's switch does */
    case 3: h ^= (uint32_t)data[end4 + 2] << 16; /* fall through */
    case 2: h ^= (uint32_t)data[end4 + 1] << 8;  /* fall through */
    case 1: h ^= (uint32_t)data[end4]; h *= m;
    default: break;
    }
    h ^= h >> 13;
    h *= m;
    h ^= h >> 15;
    return (int32_t)h;
}

#endif
