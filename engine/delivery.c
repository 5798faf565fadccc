#define _GNU_SOURCE /* memmem */
#include "delivery.h"

#include <string.h>

#include "batch.h"
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

int pl_batch_cut(const uint8_t *batch, size_t len, const int64_t *ranges, int32_t nranges, int check_crc,
                 uint8_t *out, size_t out_cap, size_t *out_len) {
    pl_batch_header h;
    *out_len = 0;
    if (nranges < 0 || out_cap < len) return PL_EINVAL;
    for (int32_t i = 0; i < nranges; i++) {
        if (ranges[2 * i] > ranges[2 * i + 1]) return PL_EINVAL;
        if (i > 0 && ranges[2 * i] <= ranges[2 * i - 1]) return PL_EINVAL;
    }
    int rc = check_crc ? pl_batch_validate(batch, len, &h) : pl_batch_parse_header(batch, len, &h);
    if (rc != PL_OK) return rc;
    if ((size_t)h.batch_length + PL_BATCH_LOG_OVERHEAD != len) return PL_EINVAL;
    if ((h.attributes & PL_ATTR_COMPRESSION_MASK) != 0 || (h.attributes & PL_ATTR_CONTROL)) return PL_EINVAL;
    if (h.records_count < 0) return PL_ECORRUPT;
    const uint8_t *rec = batch + PL_BATCH_HEADER_SIZE;
    size_t rec_len = len - PL_BATCH_HEADER_SIZE, pos = 0, w = PL_BATCH_HEADER_SIZE;
    int32_t kept = 0, r = 0, prev_delta = -1;
    int64_t max_ts = -1;
    for (int32_t i = 0; i < h.records_count; i++) {
        int32_t body, offset_delta;
        int64_t ts_delta;
        size_t start = pos;
        if (!rd32(rec, &pos, rec_len, &body) || body < 1 || (size_t)body > rec_len - pos) return PL_ECORRUPT;
        size_t end = pos + (size_t)body;
        pos += 1; /* attributes */
        if (!rd64(rec, &pos, end, &ts_delta) || !rd32(rec, &pos, end, &offset_delta)) return PL_ECORRUPT;
        /* Ascending deltas within the batch's own span, as every stored batch has. */
        if (offset_delta <= prev_delta || offset_delta > h.last_offset_delta) return PL_ECORRUPT;
        prev_delta = offset_delta;
        int64_t offset = h.base_offset + offset_delta;
        while (r < nranges && ranges[2 * r + 1] < offset) r++;
        if (r < nranges && ranges[2 * r] <= offset) {
            memcpy(out + w, rec + start, end - start);
            w += end - start;
            kept++;
            int64_t ts = (int64_t)((uint64_t)h.base_timestamp + (uint64_t)ts_delta);
            if (ts > max_ts) max_ts = ts;
        }
        pos = end;
    }
    if (pos != rec_len) return PL_ECORRUPT;
    if (kept == 0) return PL_OK;
    memcpy(out, batch, PL_BATCH_HEADER_SIZE);
    pl_store_be32(out + PL_BATCH_RECORDS_COUNT_OFFSET, (uint32_t)kept);
    if (!(h.attributes & PL_ATTR_LOG_APPEND_TIME))
        pl_store_be64(out + PL_BATCH_MAX_TIMESTAMP_OFFSET, (uint64_t)max_ts);
    pl_batch_seal(out, w);
    *out_len = w;
    return PL_OK;
}
