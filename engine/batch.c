/*
 * batch.c: record batch v2 parse, validate, patch, encode and decode.
 * The byte layout is in batch.h. Every read is bounds-checked against the
 * batch's own length and the caller's buffer: a corrupt length can make a
 * parse fail, never read outside the buffer.
 */
#include "batch.h"

#include <string.h>

#include "crc32c.h"
#include "pl_common.h"
#include "varint.h"

int pl_batch_parse_header(const uint8_t *buf, size_t len, pl_batch_header *out) {
    if (len < PL_BATCH_MAGIC_END) return PL_ETRUNCATED;
    int32_t batch_length = (int32_t)pl_load_be32(buf + PL_BATCH_LENGTH_OFFSET);
    int8_t magic = (int8_t)buf[PL_BATCH_MAGIC_OFFSET];
    if (magic != PL_BATCH_MAGIC) {
        /* A zero-filled tail (preallocated or a torn page) reads as magic 0
         * with length 0: report it as truncation, not as a legacy batch. */
        if (batch_length == 0) return PL_ETRUNCATED;
        return PL_EMAGIC;
    }
    if (batch_length < PL_BATCH_MIN_LENGTH) return PL_ECORRUPT;
    if (len < PL_BATCH_HEADER_SIZE) return PL_ETRUNCATED;
    out->base_offset = (int64_t)pl_load_be64(buf + PL_BATCH_BASE_OFFSET_OFFSET);
    out->batch_length = batch_length;
    out->partition_leader_epoch = (int32_t)pl_load_be32(buf + PL_BATCH_PARTITION_LEADER_EPOCH_OFFSET);
    out->magic = magic;
    out->crc = pl_load_be32(buf + PL_BATCH_CRC_OFFSET);
    out->attributes = (int16_t)pl_load_be16(buf + PL_BATCH_ATTRIBUTES_OFFSET);
    out->last_offset_delta = (int32_t)pl_load_be32(buf + PL_BATCH_LAST_OFFSET_DELTA_OFFSET);
    out->base_timestamp = (int64_t)pl_load_be64(buf + PL_BATCH_BASE_TIMESTAMP_OFFSET);
    out->max_timestamp = (int64_t)pl_load_be64(buf + PL_BATCH_MAX_TIMESTAMP_OFFSET);
    out->producer_id = (int64_t)pl_load_be64(buf + PL_BATCH_PRODUCER_ID_OFFSET);
    out->producer_epoch = (int16_t)pl_load_be16(buf + PL_BATCH_PRODUCER_EPOCH_OFFSET);
    out->base_sequence = (int32_t)pl_load_be32(buf + PL_BATCH_BASE_SEQUENCE_OFFSET);
    out->records_count = (int32_t)pl_load_be32(buf + PL_BATCH_RECORDS_COUNT_OFFSET);
    if (out->last_offset_delta < 0 || out->records_count < 0) return PL_ECORRUPT;
    if ((size_t)batch_length + PL_BATCH_LOG_OVERHEAD > len) return PL_ETRUNCATED;
    return PL_OK;
}

int pl_batch_validate(const uint8_t *buf, size_t len, pl_batch_header *out) {
    int rc = pl_batch_parse_header(buf, len, out);
    if (rc != PL_OK) return rc;
    size_t total = (size_t)out->batch_length + PL_BATCH_LOG_OVERHEAD;
    uint32_t crc = pl_crc32c(0, buf + PL_BATCH_CRC_START, total - PL_BATCH_CRC_START);
    return crc == out->crc ? PL_OK : PL_ECORRUPT;
}

void pl_batch_set_base_offset(uint8_t *batch, int64_t base_offset) {
    pl_store_be64(batch + PL_BATCH_BASE_OFFSET_OFFSET, (uint64_t)base_offset);
}

void pl_batch_set_leader_epoch(uint8_t *batch, int32_t leader_epoch) {
    pl_store_be32(batch + PL_BATCH_PARTITION_LEADER_EPOCH_OFFSET, (uint32_t)leader_epoch);
}

static void info_init(pl_batches_info *out) {
    out->valid_bytes = 0;
    out->batches = 0;
    out->records = 0;
    out->first_offset = -1;
    out->last_offset = -1;
    out->max_timestamp = -1;
    out->offset_of_max_timestamp = -1;
    out->stop_rc = PL_OK;
}

static void info_add(pl_batches_info *out, const pl_batch_header *h, size_t total) {
    int64_t last = h->base_offset + h->last_offset_delta;
    if (out->batches == 0) out->first_offset = h->base_offset;
    out->last_offset = last;
    out->batches++;
    out->records += h->records_count;
    out->valid_bytes += total;
    /* Kafka's shallow offset of the max timestamp is the batch's last offset. */
    if (h->max_timestamp > out->max_timestamp) {
        out->max_timestamp = h->max_timestamp;
        out->offset_of_max_timestamp = last;
    }
}

int pl_batches_scan(const uint8_t *buf, size_t len, int check_crc, pl_batches_info *out) {
    info_init(out);
    size_t pos = 0;
    while (pos < len) {
        pl_batch_header h;
        int rc = check_crc ? pl_batch_validate(buf + pos, len - pos, &h)
                           : pl_batch_parse_header(buf + pos, len - pos, &h);
        if (rc != PL_OK) { out->stop_rc = rc; return PL_OK; }
        size_t total = (size_t)h.batch_length + PL_BATCH_LOG_OVERHEAD;
        info_add(out, &h, total);
        pos += total;
    }
    return PL_OK;
}

int pl_batches_assign_offsets(uint8_t *buf, size_t len, int64_t next_offset, int32_t leader_epoch,
                              int allow_control, pl_batches_info *out) {
    return pl_batches_assign_offsets_crc(buf, len, next_offset, leader_epoch, allow_control, 1, out);
}

int pl_batches_assign_offsets_crc(uint8_t *buf, size_t len, int64_t next_offset, int32_t leader_epoch,
                                  int allow_control, int check_crc, pl_batches_info *out) {
    /* First pass validates everything, so a failure leaves buf untouched. */
    size_t pos = 0;
    info_init(out);
    if (len == 0) return PL_EINVAL;
    while (pos < len) {
        pl_batch_header h;
        int rc = check_crc ? pl_batch_validate(buf + pos, len - pos, &h)
                           : pl_batch_parse_header(buf + pos, len - pos, &h);
        if (rc != PL_OK) { out->stop_rc = rc; return rc; }
        if (h.records_count == 0 || (int64_t)h.records_count != (int64_t)h.last_offset_delta + 1 ||
            ((h.attributes & PL_ATTR_CONTROL) && !allow_control)) {
            out->stop_rc = PL_EINVALREC;
            return PL_EINVALREC;
        }
        pos += (size_t)h.batch_length + PL_BATCH_LOG_OVERHEAD;
    }
    pos = 0;
    int64_t offset = next_offset;
    while (pos < len) {
        pl_batch_header h;
        (void)pl_batch_parse_header(buf + pos, len - pos, &h);
        pl_batch_set_base_offset(buf + pos, offset);
        if (leader_epoch >= 0) pl_batch_set_leader_epoch(buf + pos, leader_epoch);
        h.base_offset = offset;
        size_t total = (size_t)h.batch_length + PL_BATCH_LOG_OVERHEAD;
        info_add(out, &h, total);
        offset += (int64_t)h.last_offset_delta + 1;
        pos += total;
    }
    return PL_OK;
}

int pl_batches_set_log_append_time(uint8_t *buf, size_t len, int64_t now_ms) {
    size_t pos = 0;
    while (pos < len) {
        pl_batch_header h;
        int rc = pl_batch_parse_header(buf + pos, len - pos, &h);
        if (rc != PL_OK) return rc;
        size_t total = (size_t)h.batch_length + PL_BATCH_LOG_OVERHEAD;
        pl_store_be16(buf + pos + PL_BATCH_ATTRIBUTES_OFFSET,
                      (uint16_t)((uint16_t)h.attributes | PL_ATTR_LOG_APPEND_TIME));
        pl_store_be64(buf + pos + PL_BATCH_MAX_TIMESTAMP_OFFSET, (uint64_t)now_ms);
        pl_batch_seal(buf + pos, total);
        pos += total;
    }
    return PL_OK;
}

/* ---- records ---- */

static inline size_t bytes_field_size(int32_t n) {
    return pl_varlong_size(n) + (n > 0 ? (size_t)n : 0);
}

static size_t record_body_size(const pl_record_in *r, int64_t offset_delta) {
    size_t n = 1; /* attributes */
    n += pl_varlong_size(r->timestamp_delta);
    n += pl_varlong_size(offset_delta);
    n += bytes_field_size(r->key_len);
    n += bytes_field_size(r->value_len);
    n += pl_varlong_size(r->header_count);
    for (int32_t i = 0; i < r->header_count; i++) {
        n += bytes_field_size(r->headers[i].key_len);
        n += bytes_field_size(r->headers[i].value_len);
    }
    return n;
}

size_t pl_record_size(pl_record_in *r, int32_t offset_delta) {
    size_t body = record_body_size(r, offset_delta);
    r->body_size = body;
    return pl_varlong_size((int64_t)body) + body;
}

size_t pl_records_size(pl_record_in *recs, size_t n) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += pl_record_size(&recs[i], (int32_t)i);
    return total;
}

size_t pl_records_fit(pl_record_in *recs, size_t n, size_t max_bytes, size_t *size_out) {
    size_t total = 0, i;
    for (i = 0; i < n; i++) {
        size_t k = pl_record_size(&recs[i], (int32_t)i);
        /* The first record always goes in: a record larger than a batch is a
         * batch of its own, never an error here. */
        if (i > 0 && total + k > max_bytes) break;
        total += k;
    }
    *size_out = total;
    return i;
}

static inline uint8_t *write_bytes_field(uint8_t *p, const uint8_t *data, int32_t n) {
    p += pl_varlong_write(p, n);
    if (n > 0) { memcpy(p, data, (size_t)n); p += n; }
    return p;
}

size_t pl_record_encode(uint8_t *out, const pl_record_in *r, int32_t offset_delta) {
    uint8_t *p = out;
    p += pl_varlong_write(p, (int64_t)r->body_size);
    *p++ = 0;
    p += pl_varlong_write(p, r->timestamp_delta);
    p += pl_varlong_write(p, offset_delta);
    p = write_bytes_field(p, r->key, r->key_len);
    p = write_bytes_field(p, r->value, r->value_len);
    p += pl_varlong_write(p, r->header_count);
    for (int32_t j = 0; j < r->header_count; j++) {
        p = write_bytes_field(p, r->headers[j].key, r->headers[j].key_len);
        p = write_bytes_field(p, r->headers[j].value, r->headers[j].value_len);
    }
    return (size_t)(p - out);
}

size_t pl_records_encode(uint8_t *out, const pl_record_in *recs, size_t n) {
    uint8_t *p = out;
    for (size_t i = 0; i < n; i++) p += pl_record_encode(p, &recs[i], (int32_t)i);
    return (size_t)(p - out);
}

int pl_records_prefix(const uint8_t *buf, size_t len, int32_t count, int32_t keep, int64_t base_timestamp,
                      size_t *prefix_len, int64_t *max_timestamp) {
    size_t pos = 0;
    int64_t max_ts = -1;
    if (keep < 0 || keep > count) return PL_EINVAL;
    for (int32_t i = 0; i < keep; i++) {
        int32_t rec_len;
        int64_t ts_delta;
        size_t k = pl_varint_read(buf + pos, len - pos, &rec_len);
        if (k == 0 || rec_len < 2 || (size_t)rec_len > len - pos - k) return PL_ECORRUPT;
        /* attributes (one byte), then the timestamp delta */
        if (pl_varlong_read(buf + pos + k + 1, (size_t)rec_len - 1, &ts_delta) == 0) return PL_ECORRUPT;
        int64_t ts = (int64_t)((uint64_t)base_timestamp + (uint64_t)ts_delta);
        if (ts > max_ts) max_ts = ts;
        pos += k + (size_t)rec_len;
    }
    *prefix_len = pos;
    *max_timestamp = max_ts;
    return PL_OK;
}

void pl_batch_write_header(uint8_t *out, const pl_batch_header *h) {
    pl_store_be64(out + PL_BATCH_BASE_OFFSET_OFFSET, (uint64_t)h->base_offset);
    pl_store_be32(out + PL_BATCH_LENGTH_OFFSET, (uint32_t)h->batch_length);
    pl_store_be32(out + PL_BATCH_PARTITION_LEADER_EPOCH_OFFSET, (uint32_t)h->partition_leader_epoch);
    out[PL_BATCH_MAGIC_OFFSET] = (uint8_t)PL_BATCH_MAGIC;
    pl_store_be32(out + PL_BATCH_CRC_OFFSET, h->crc);
    pl_store_be16(out + PL_BATCH_ATTRIBUTES_OFFSET, (uint16_t)h->attributes);
    pl_store_be32(out + PL_BATCH_LAST_OFFSET_DELTA_OFFSET, (uint32_t)h->last_offset_delta);
    pl_store_be64(out + PL_BATCH_BASE_TIMESTAMP_OFFSET, (uint64_t)h->base_timestamp);
    pl_store_be64(out + PL_BATCH_MAX_TIMESTAMP_OFFSET, (uint64_t)h->max_timestamp);
    pl_store_be64(out + PL_BATCH_PRODUCER_ID_OFFSET, (uint64_t)h->producer_id);
    pl_store_be16(out + PL_BATCH_PRODUCER_EPOCH_OFFSET, (uint16_t)h->producer_epoch);
    pl_store_be32(out + PL_BATCH_BASE_SEQUENCE_OFFSET, (uint32_t)h->base_sequence);
    pl_store_be32(out + PL_BATCH_RECORDS_COUNT_OFFSET, (uint32_t)h->records_count);
}

void pl_batch_seal(uint8_t *batch, size_t total_len) {
    pl_store_be32(batch + PL_BATCH_LENGTH_OFFSET, (uint32_t)(total_len - PL_BATCH_LOG_OVERHEAD));
    uint32_t crc = pl_crc32c(0, batch + PL_BATCH_CRC_START, total_len - PL_BATCH_CRC_START);
    pl_store_be32(batch + PL_BATCH_CRC_OFFSET, crc);
}

/* A length-prefixed byte field inside [pos, end): -1 = null. */
static inline int read_bytes_field(const uint8_t *buf, size_t *pos, size_t end, int32_t *fpos,
                                   int32_t *flen) {
    int32_t n;
    size_t k = pl_varint_read(buf + *pos, end - *pos, &n);
    if (k == 0 || n < -1) return PL_ECORRUPT;
    *pos += k;
    *fpos = (int32_t)*pos;
    *flen = n;
    if (n > 0) {
        if ((size_t)n > end - *pos) return PL_ECORRUPT;
        *pos += (size_t)n;
    }
    return PL_OK;
}

int pl_records_decode(const uint8_t *buf, size_t len, int32_t count, pl_record_out *out,
                      int32_t *decoded) {
    size_t pos = 0;
    int32_t i;
    int rc = PL_OK;
    if (len > INT32_MAX) { *decoded = 0; return PL_EINVAL; }
    for (i = 0; i < count; i++) {
        int32_t rec_len;
        size_t k = pl_varint_read(buf + pos, len - pos, &rec_len);
        if (k == 0 || rec_len < 1 || (size_t)rec_len > len - pos - k) { rc = PL_ECORRUPT; break; }
        pos += k;
        size_t end = pos + (size_t)rec_len;
        pl_record_out *r = &out[i];
        pos += 1; /* attributes: unused */
        k = pl_varlong_read(buf + pos, end - pos, &r->timestamp_delta);
        if (k == 0) { rc = PL_ECORRUPT; break; }
        pos += k;
        k = pl_varint_read(buf + pos, end - pos, &r->offset_delta);
        if (k == 0) { rc = PL_ECORRUPT; break; }
        pos += k;
        if ((rc = read_bytes_field(buf, &pos, end, &r->key_pos, &r->key_len)) != PL_OK) break;
        if ((rc = read_bytes_field(buf, &pos, end, &r->value_pos, &r->value_len)) != PL_OK) break;
        k = pl_varint_read(buf + pos, end - pos, &r->header_count);
        if (k == 0 || r->header_count < 0) { rc = PL_ECORRUPT; break; }
        pos += k;
        r->headers_pos = (int32_t)pos;
        for (int32_t j = 0; j < r->header_count; j++) {
            int32_t p, n;
            if ((rc = read_bytes_field(buf, &pos, end, &p, &n)) != PL_OK) break;
            if (n < 0) { rc = PL_ECORRUPT; break; } /* header keys are never null */
            if ((rc = read_bytes_field(buf, &pos, end, &p, &n)) != PL_OK) break;
        }
        if (rc != PL_OK) break;
        if (pos != end) { rc = PL_ECORRUPT; break; }
    }
    *decoded = i;
    return rc;
}

int pl_records_positions(const uint8_t *buf, size_t len, int32_t count, int32_t *starts) {
    /* Only the length prefixes are walked here: each record is fully decoded
     * (and bounds-checked within its own length) when it is read. */
    size_t pos = 0;
    if (len > INT32_MAX || count < 0) return PL_EINVAL;
    for (int32_t i = 0; i < count; i++) {
        int32_t rec_len;
        size_t k = pl_varint_read(buf + pos, len - pos, &rec_len);
        if (k == 0 || rec_len < 1 || (size_t)rec_len > len - pos - k) return PL_ECORRUPT;
        starts[i] = (int32_t)pos;
        pos += k + (size_t)rec_len;
    }
    return pos == len ? PL_OK : PL_ECORRUPT;
}

int pl_headers_decode(const uint8_t *buf, size_t len, int32_t pos, int32_t count, pl_header_out *out) {
    size_t p = (size_t)pos;
    if (pos < 0 || p > len) return PL_ECORRUPT;
    for (int32_t j = 0; j < count; j++) {
        int rc = read_bytes_field(buf, &p, len, &out[j].key_pos, &out[j].key_len);
        if (rc != PL_OK) return rc;
        if (out[j].key_len < 0) return PL_ECORRUPT;
        rc = read_bytes_field(buf, &p, len, &out[j].value_pos, &out[j].value_len);
        if (rc != PL_OK) return rc;
    }
    return PL_OK;
}
