#define _GNU_SOURCE /* memmem */
#include "delivery.h"

#include <string.h>

#include "pl_common.h"
#include "varint.h"

/* Decimal ASCII to int64; 0 when v[0,n) is not one (or has more than 18 digits,
 * which no epoch-ms time or priority needs, so it cannot overflow). */
static int parse_decimal(const uint8_t *v, int32_t n, int64_t *out) {
    int neg = 0;
    int64_t x = 0;
    int32_t i = 0;
    if (n > 0 && v[0] == '-') { neg = 1; i = 1; }
    if (i == n || n - i > 18) return 0;
    for (; i < n; i++) {
        if (v[i] < '0' || v[i] > '9') return 0;
        x = x * 10 + (v[i] - '0');
    }
    *out = neg ? -x : x;
    return 1;
}

/* Read a zigzag varint/varlong at *pos within [0,end); 0 on a short or overlong one. */
static int rd32(const uint8_t *buf, size_t *pos, size_t end, int32_t *out) {
    size_t n = pl_varint_read(buf + *pos, end - *pos, out);
    *pos += n;
    return n != 0;
}
static int rd64(const uint8_t *buf, size_t *pos, size_t end, int64_t *out) {
    size_t n = pl_varlong_read(buf + *pos, end - *pos, out);
    *pos += n;
    return n != 0;
}

int pl_records_find_headers(const uint8_t *buf, size_t len, int32_t count, const uint8_t *const *keys,
                            const int32_t *key_lens, int nkeys, const uint8_t *prefix, size_t prefix_len,
                            pl_header_hit *out, int32_t cap, int32_t *found) {
    *found = 0;
    if (nkeys < 1 || nkeys > PL_HEADER_FIND_MAX_KEYS || count < 0 || cap < 0) return PL_EINVAL;
    if (prefix_len > 0 && (len < prefix_len || memmem(buf, len, prefix, prefix_len) == NULL)) return PL_OK;
    size_t pos = 0;
    int32_t hits = 0;
    for (int32_t r = 0; r < count; r++) {
        int32_t rec_len, offset_delta, klen, vlen, nheaders;
        int64_t ts_delta;
        if (!rd32(buf, &pos, len, &rec_len) || rec_len < 0 || (size_t)rec_len > len - pos) return PL_ECORRUPT;
        size_t end = pos + (size_t)rec_len;
        if (pos >= end) return PL_ECORRUPT;
        pos += 1; /* attributes */
        if (!rd64(buf, &pos, end, &ts_delta) || !rd32(buf, &pos, end, &offset_delta)) return PL_ECORRUPT;
        if (!rd32(buf, &pos, end, &klen) || klen < -1 || (klen > 0 && (size_t)klen > end - pos)) return PL_ECORRUPT;
        if (klen > 0) pos += (size_t)klen;
        if (!rd32(buf, &pos, end, &vlen) || vlen < -1 || (vlen > 0 && (size_t)vlen > end - pos)) return PL_ECORRUPT;
        if (vlen > 0) pos += (size_t)vlen;
        if (!rd32(buf, &pos, end, &nheaders) || nheaders < 0) return PL_ECORRUPT;
        int32_t first_hit = hits;
        for (int32_t h = 0; h < nheaders; h++) {
            int32_t hk, hv;
            if (!rd32(buf, &pos, end, &hk) || hk < 0 || (size_t)hk > end - pos) return PL_ECORRUPT;
            const uint8_t *k = buf + pos;
            pos += (size_t)hk;
            if (!rd32(buf, &pos, end, &hv) || hv < -1 || (hv > 0 && (size_t)hv > end - pos)) return PL_ECORRUPT;
            const uint8_t *v = buf + pos;
            if (hv > 0) pos += (size_t)hv;
            for (int i = 0; i < nkeys; i++) {
                int64_t value;
                if (key_lens[i] != hk || memcmp(keys[i], k, (size_t)hk) != 0) continue;
                if (hv < 0 || !parse_decimal(v, hv, &value)) break;
                int32_t j = first_hit;
                while (j < hits && out[j].key != i) j++;
                if (j == hits) {
                    if (hits >= cap) return PL_EFULL;
                    hits++;
                }
                out[j].offset_delta = offset_delta;
                out[j].key = i;
                out[j].timestamp_delta = ts_delta;
                out[j].value = value;
                break;
            }
        }
        if (pos != end) return PL_ECORRUPT;
    }
    if (pos != len) return PL_ECORRUPT;
    *found = hits;
    return PL_OK;
}
