/*
 * validate.c: Kafka's LogValidator rules for client produce data (validate.h).
 * Every read is bounds-checked against the record's own length: a lying
 * length fails the check, it is never followed.
 */
#include "validate.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "crc32c.h"
#include "pl_common.h"
#include "varint.h"

static int fail(char *message, int rc, const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(message, PL_VALIDATE_MESSAGE_SIZE, fmt, ap);
    va_end(ap);
    return rc;
}

void pl_record_walker_init(pl_record_walker *w, const pl_batch_header *h, const pl_validate_opts *opts,
                           pl_record_error *errors, int32_t errors_cap) {
    memset(w, 0, sizeof(*w));
    w->base_timestamp = h->base_timestamp;
    w->log_append_time = (h->attributes & PL_ATTR_LOG_APPEND_TIME) ? h->max_timestamp : -1;
    w->records_count = h->records_count;
    if (opts != NULL) {
        w->opts = *opts;
        w->check_timestamps = 1;
    }
    w->find_timestamp = -1;
    w->errors = errors;
    w->errors_cap = errors_cap;
    w->max_timestamp = -1;
    w->found_delta = -1;
    w->found_timestamp = -1;
}

static void add_error(pl_record_walker *w, int32_t index, int kind, int64_t ts) {
    if (w->errors != NULL && w->errors_count < w->errors_cap) {
        w->errors[w->errors_count].index = index;
        w->errors[w->errors_count].kind = kind;
        w->errors[w->errors_count].timestamp = ts;
    }
    if (w->errors_count < INT32_MAX) w->errors_count++;
    if (kind == PL_EINVALTS) w->has_timestamp_error = 1;
}

/* Most varints in a record are one byte (small lengths, deltas, counts):
 * decoded inline here, the general reader only for longer ones. This walk
 * runs over every produced record, so it is on the broker's hot path. */
static inline size_t varint_fast(const uint8_t *p, size_t len, int32_t *out) {
    if (PL_LIKELY(len > 0 && p[0] < 0x80)) {
        *out = (int32_t)(p[0] >> 1) ^ -(int32_t)(p[0] & 1);
        return 1;
    }
    if (PL_LIKELY(len > 1 && p[1] < 0x80)) {
        uint32_t u = (uint32_t)(p[0] & 0x7F) | ((uint32_t)p[1] << 7);
        *out = (int32_t)(u >> 1) ^ -(int32_t)(u & 1);
        return 2;
    }
    return pl_varint_read(p, len, out);
}

static inline size_t varlong_fast(const uint8_t *p, size_t len, int64_t *out) {
    if (PL_LIKELY(len > 0 && p[0] < 0x80)) {
        *out = (int64_t)(p[0] >> 1) ^ -(int64_t)(p[0] & 1);
        return 1;
    }
    if (PL_LIKELY(len > 1 && p[1] < 0x80)) {
        uint32_t u = (uint32_t)(p[0] & 0x7F) | ((uint32_t)p[1] << 7);
        *out = (int64_t)(u >> 1) ^ -(int64_t)(u & 1);
        return 2;
    }
    return pl_varlong_read(p, len, out);
}

/* A length-prefixed field inside p[*pos, end). min_len: -1 where null is allowed, 0 otherwise. */
static inline int skip_bytes_field(const uint8_t *p, size_t *pos, size_t end, int32_t min_len, int32_t *len) {
    int32_t n;
    size_t k = varint_fast(p + *pos, end - *pos, &n);
    if (k == 0 || n < min_len) return 0;
    *pos += k;
    if (n > 0) {
        if ((size_t)n > end - *pos) return 0;
        *pos += (size_t)n;
    }
    *len = n;
    return 1;
}

/* Kafka's LogValidator.recordHasInvalidTimestamp, with Java's wrapping
 * subtraction (a timestamp near INT64_MIN wraps to a negative difference and
 * fails the after-bound, as in Kafka). */
static inline int timestamp_invalid(int64_t now, int64_t ts, int64_t before, int64_t after) {
    int64_t diff = (int64_t)((uint64_t)now - (uint64_t)ts);
    int64_t neg = (int64_t)(0 - (uint64_t)diff);
    return diff > before || neg > after;
}

/* One record body p[0, body_len) (its length varint already read). */
static int walk_record(pl_record_walker *w, const uint8_t *p, size_t body_len) {
    size_t pos = 1; /* attributes: unused in v2 (Kafka ignores them too) */
    int64_t ts_delta;
    int32_t offset_delta, key_len, value_len, header_count, n;
    int32_t index = w->records;
    if (body_len < 1) return fail(w->message, PL_EINVALREC, "record %d: empty record body", index);
    size_t k = varlong_fast(p + pos, body_len - pos, &ts_delta);
    if (k == 0) return fail(w->message, PL_EINVALREC, "record %d: invalid timestamp delta varlong", index);
    pos += k;
    k = varint_fast(p + pos, body_len - pos, &offset_delta);
    if (k == 0) return fail(w->message, PL_EINVALREC, "record %d: invalid offset delta varint", index);
    pos += k;
    if (offset_delta != index)
        /* Kafka rewrites such a batch; pylog stores batches as received, so it refuses it. */
        return fail(w->message, PL_EINVALREC, "Invalid offset: record %d has offset delta %d (expected %d)",
                    index, offset_delta, index);
    if (!skip_bytes_field(p, &pos, body_len, -1, &key_len))
        return fail(w->message, PL_EINVALREC, "record %d: key length overruns the record", index);
    if (!skip_bytes_field(p, &pos, body_len, -1, &value_len))
        return fail(w->message, PL_EINVALREC, "record %d: value length overruns the record", index);
    k = varint_fast(p + pos, body_len - pos, &header_count);
    if (k == 0 || header_count < 0)
        return fail(w->message, PL_EINVALREC, "Found invalid number of record headers in record %d", index);
    pos += k;
    /* Each header takes at least two bytes (two length varints). */
    if ((size_t)header_count > (body_len - pos) / 2)
        return fail(w->message, PL_EINVALREC,
                    "Found invalid number of record headers. %d is larger than the remaining size of record %d",
                    header_count, index);
    for (int32_t j = 0; j < header_count; j++) {
        if (!skip_bytes_field(p, &pos, body_len, 0, &n))
            return fail(w->message, PL_EINVALREC, "record %d: header %d key is invalid", index, j);
        if (!skip_bytes_field(p, &pos, body_len, -1, &n))
            return fail(w->message, PL_EINVALREC, "record %d: header %d value is invalid", index, j);
    }
    if (pos != body_len)
        return fail(w->message, PL_EINVALREC, "Invalid record size: expected to read %zu bytes in record %d, "
                    "but instead read %zu", body_len, index, pos);
    int64_t ts = w->log_append_time >= 0 ? w->log_append_time
                                         : (int64_t)((uint64_t)w->base_timestamp + (uint64_t)ts_delta);
    if (w->check_timestamps) {
        if (w->opts.compacted && key_len < 0)
            add_error(w, index, PL_EINVALREC, ts);
        else if (ts != -1 && timestamp_invalid(w->opts.now_ms, ts, w->opts.timestamp_before_max_ms,
                                               w->opts.timestamp_after_max_ms))
            add_error(w, index, PL_EINVALTS, ts);
    }
    if (ts > w->max_timestamp) w->max_timestamp = ts;
    if (w->find_timestamp >= 0 && w->found_delta < 0 && ts >= w->find_timestamp &&
        offset_delta >= w->find_min_delta) {
        w->found_delta = offset_delta;
        w->found_timestamp = ts;
    }
    return PL_OK;
}

int64_t pl_record_walker_feed(pl_record_walker *w, const uint8_t *buf, size_t len, int eof, size_t *need) {
    size_t pos = 0;
    *need = 0;
    while (pos < len) {
        if (w->records >= w->records_count)
            return fail(w->message, PL_EINVALREC,
                        "Incorrect declared batch size, records still remaining in file (%d records declared)",
                        w->records_count);
        int32_t rec_len;
        size_t k = varint_fast(buf + pos, len - pos, &rec_len);
        if (k == 0) {
            if (!eof && len - pos < 5) { *need = 5; break; } /* the varint may go on in the next chunk */
            return fail(w->message, PL_EINVALREC, "record %d: invalid record length varint", w->records);
        }
        if (rec_len < 0)
            return fail(w->message, PL_EINVALREC, "record %d: negative record length %d", w->records, rec_len);
        if ((size_t)rec_len > len - pos - k) {
            if (!eof) { *need = k + (size_t)rec_len; break; }
            return fail(w->message, PL_EINVALREC,
                        "Invalid record size: expected %d bytes in record payload of record %d, but the "
                        "record payload reached EOF", rec_len, w->records);
        }
        int rc = walk_record(w, buf + pos + k, (size_t)rec_len);
        if (rc != PL_OK) return rc;
        w->records++;
        pos += k + (size_t)rec_len;
    }
    w->bytes += pos;
    if (eof && pos == len && w->records != w->records_count)
        return fail(w->message, PL_EINVALREC,
                    "Incorrect declared batch size, premature EOF reached: %d of %d records", w->records,
                    w->records_count);
    return (int64_t)pos;
}

int pl_record_walker_verdict(const pl_record_walker *w) {
    if (w->errors_count == 0) return PL_OK;
    return w->has_timestamp_error ? PL_EINVALTS : PL_EINVALREC;
}

int pl_validate_produce(const uint8_t *buf, size_t len, const pl_validate_opts *opts,
                        pl_record_error *errors, int32_t errors_cap, pl_validate_result *out) {
    pl_batch_header *h = &out->header;
    memset(out, 0, sizeof(*out));
    out->max_timestamp = -1;
    if (len == 0) return fail(out->message, PL_EINVALREC, "Produce requests must have at least one record batch");
    if (len < PL_BATCH_MAGIC_END)
        return fail(out->message, PL_ECORRUPT, "record batch of %zu bytes is cut short", len);
    if (buf[PL_BATCH_MAGIC_OFFSET] != PL_BATCH_MAGIC)
        return fail(out->message, PL_EINVALREC,
                    "Produce requests are only allowed to contain record batches with magic version 2 (got %d)",
                    (int)(int8_t)buf[PL_BATCH_MAGIC_OFFSET]);
    int rc = pl_batch_parse_header(buf, len, h);
    if (rc != PL_OK) {
        /* ProduceRequest.validateRecords reads the codec before anything else;
         * it sits in the low byte of the big-endian attributes. */
        if (len >= PL_BATCH_HEADER_SIZE) {
            int codec = buf[PL_BATCH_ATTRIBUTES_OFFSET + 1] & PL_ATTR_COMPRESSION_MASK;
            if (codec > 4) return fail(out->message, PL_ECODEC, "Unknown compression type id: %d", codec);
        }
        return fail(out->message, PL_ECORRUPT, "record batch cut short or with an impossible length (%s)",
                    pl_strerror(rc));
    }
    out->codec = h->attributes & PL_ATTR_COMPRESSION_MASK;
    if (out->codec > 4) return fail(out->message, PL_ECODEC, "Unknown compression type id: %d", out->codec);
    if (out->codec == 4 && opts->produce_version < 7)
        return fail(out->message, PL_ECODEC,
                    "Produce requests with version %d are not allowed to use ZStandard compression",
                    opts->produce_version);
    out->batch_size = (size_t)h->batch_length + PL_BATCH_LOG_OVERHEAD;
    if (out->batch_size != len)
        return fail(out->message, PL_EINVALREC,
                    "Produce requests are only allowed to contain exactly one record batch per partition");
    if (h->base_offset != 0)
        return fail(out->message, PL_EINVALREC, "The baseOffset of the record batch should be 0, but it is %lld",
                    (long long)h->base_offset);
    uint32_t crc = pl_crc32c(0, buf + PL_BATCH_CRC_START, len - PL_BATCH_CRC_START);
    if (crc != h->crc)
        return fail(out->message, PL_ECORRUPT, "Record is corrupt (stored crc = %u, computed crc = %u)",
                    (unsigned)h->crc, (unsigned)crc);
    /* LogValidator.validateBatch, for a client's batch. */
    int64_t from_offsets = (int64_t)h->last_offset_delta + 1;
    if (from_offsets <= 0)
        return fail(out->message, PL_EINVALREC, "Batch has an invalid offset range: [0, %d]", h->last_offset_delta);
    if (h->records_count <= 0)
        return fail(out->message, PL_EINVALREC, "Invalid reported count for record batch: %d", h->records_count);
    if (from_offsets != h->records_count)
        return fail(out->message, PL_EINVALREC,
                    "Inconsistent batch offset range [0, %d] and count of records %d", h->last_offset_delta,
                    h->records_count);
    if (h->attributes & PL_ATTR_CONTROL)
        return fail(out->message, PL_EINVALREC, "Clients are not allowed to write control records");
    if (h->producer_id >= 0 && h->base_sequence < 0)
        return fail(out->message, PL_EINVALREC, "Invalid sequence number %d in record batch with producerId %lld",
                    h->base_sequence, (long long)h->producer_id);
    /* A transactional batch names its producer; without one no consumer can
     * ever see it committed or aborted (librdkafka stops at it). */
    if ((h->attributes & PL_ATTR_TRANSACTIONAL) && h->producer_id < 0)
        return fail(out->message, PL_EINVALREC, "Transactional record batch without a producer id");
    /* Every record holds at least 7 bytes (length varint and six one-byte
     * fields): a count the bytes cannot hold is refused before any walk. */
    if (out->codec == 0 && (uint64_t)h->records_count * 7u > len - PL_BATCH_HEADER_SIZE)
        return fail(out->message, PL_EINVALREC,
                    "Incorrect declared batch size: %d records cannot fit in %zu bytes", h->records_count,
                    len - PL_BATCH_HEADER_SIZE);
    if (out->codec != 0) return PL_OK;
    pl_record_walker w;
    size_t need;
    pl_record_walker_init(&w, h, opts, errors, errors_cap);
    int64_t n = pl_record_walker_feed(&w, buf + PL_BATCH_HEADER_SIZE, len - PL_BATCH_HEADER_SIZE, 1, &need);
    out->max_timestamp = w.max_timestamp;
    out->errors_count = w.errors_count;
    out->has_timestamp_error = w.has_timestamp_error;
    if (n < 0) {
        memcpy(out->message, w.message, sizeof(out->message));
        return (int)n;
    }
    return pl_record_walker_verdict(&w);
}
