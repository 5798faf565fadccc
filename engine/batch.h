/*
 * batch.h: Kafka record batch v2 (magic 2), the only format pylog stores.
 *
 * Batch header, 61 bytes, big-endian (KAFKA-NOTES §2.1):
 *   off size field
 *     0   8  base_offset             producers send 0; the leader writes it
 *     8   4  batch_length            bytes after this field (total = batch_length + 12)
 *    12   4  partition_leader_epoch  not covered by the CRC
 *    16   1  magic                   2
 *    17   4  crc                     CRC-32C of bytes [21, end of batch)
 *    21   2  attributes              bits 0-2 compression, 3 timestamp type,
 *                                    4 transactional, 5 control, 6 delete horizon
 *    23   4  last_offset_delta
 *    27   8  base_timestamp
 *    35   8  max_timestamp
 *    43   8  producer_id
 *    51   2  producer_epoch
 *    53   4  base_sequence
 *    57   4  records_count
 *    61   .. records (one compressed stream when compression != 0)
 *
 * Record (inside the records section, all varints zigzag):
 *   length varint | attributes int8 | timestamp_delta varlong | offset_delta varint |
 *   key_len varint (-1 null) | key | value_len varint (-1 null) | value |
 *   header_count varint | headers: key_len varint, key, value_len varint (-1 null), value
 *
 * base_offset and partition_leader_epoch lie outside the CRC, so the leader can
 * patch both in place and the client's CRC stays valid.
 */
#ifndef PL_BATCH_H
#define PL_BATCH_H

#include <stddef.h>
#include <stdint.h>

/* The header's field offsets: the one place they are named. bindings/c/batch.pxd
 * mirrors them for Cython and pylog/protocol/batch_layout.py for Python (a test
 * checks both against this list). Kafka's DefaultRecordBatch names the same. */
#define PL_BATCH_BASE_OFFSET_OFFSET 0
#define PL_BATCH_LENGTH_OFFSET 8
#define PL_BATCH_PARTITION_LEADER_EPOCH_OFFSET 12
#define PL_BATCH_MAGIC_OFFSET 16
#define PL_BATCH_CRC_OFFSET 17
#define PL_BATCH_ATTRIBUTES_OFFSET 21
#define PL_BATCH_LAST_OFFSET_DELTA_OFFSET 23
#define PL_BATCH_BASE_TIMESTAMP_OFFSET 27
#define PL_BATCH_MAX_TIMESTAMP_OFFSET 35
#define PL_BATCH_PRODUCER_ID_OFFSET 43
#define PL_BATCH_PRODUCER_EPOCH_OFFSET 51
#define PL_BATCH_BASE_SEQUENCE_OFFSET 53
#define PL_BATCH_RECORDS_COUNT_OFFSET 57
#define PL_BATCH_RECORDS_OFFSET 61

#define PL_BATCH_HEADER_SIZE PL_BATCH_RECORDS_OFFSET     /* RECORD_BATCH_OVERHEAD */
#define PL_BATCH_LOG_OVERHEAD PL_BATCH_PARTITION_LEADER_EPOCH_OFFSET /* base_offset + batch_length */
#define PL_BATCH_CRC_START PL_BATCH_ATTRIBUTES_OFFSET    /* the CRC covers [attributes, end) */
/* Bytes needed before the magic byte can be read (and a batch's version known). */
#define PL_BATCH_MAGIC_END (PL_BATCH_MAGIC_OFFSET + 1)
/* The smallest batch_length: the header's bytes after the length field. */
#define PL_BATCH_MIN_LENGTH (PL_BATCH_HEADER_SIZE - PL_BATCH_LOG_OVERHEAD)
#define PL_BATCH_MAGIC 2
#define PL_MAX_RECORD_OVERHEAD 21 /* per record, excluding key, value and headers */

#define PL_ATTR_COMPRESSION_MASK 0x07
#define PL_ATTR_LOG_APPEND_TIME 0x08
#define PL_ATTR_TRANSACTIONAL 0x10
#define PL_ATTR_CONTROL 0x20
#define PL_ATTR_DELETE_HORIZON 0x40

typedef struct pl_batch_header {
    int64_t base_offset;
    int32_t batch_length;
    int32_t partition_leader_epoch;
    int8_t magic;
    uint32_t crc;
    int16_t attributes;
    int32_t last_offset_delta;
    int64_t base_timestamp;
    int64_t max_timestamp;
    int64_t producer_id;
    int16_t producer_epoch;
    int32_t base_sequence;
    int32_t records_count;
} pl_batch_header;

/* Parse the header at buf[0,len) without checking the CRC.
 * @return PL_OK; PL_ETRUNCATED if len < 17 (magic not yet readable) or the
 *   header or the whole batch (batch_length + 12) is longer than len, and for
 *   zero-filled bytes (length 0, magic 0: a preallocated or torn tail);
 *   PL_EMAGIC if magic != 2 otherwise; PL_ECORRUPT if batch_length < 49 (a header needs 49
 *   bytes after the length field) or last_offset_delta < 0.
 * The header is filled whenever at least 61 bytes were present. */
int pl_batch_parse_header(const uint8_t *buf, size_t len, pl_batch_header *out);

/* pl_batch_parse_header, then check the CRC over [21, batch_length + 12).
 * @return as above, or PL_ECORRUPT on a CRC mismatch. */
int pl_batch_validate(const uint8_t *buf, size_t len, pl_batch_header *out);

/* The leader's stamp: overwrite base_offset and partition_leader_epoch in place. */
void pl_batch_set_base_offset(uint8_t *batch, int64_t base_offset);
void pl_batch_set_leader_epoch(uint8_t *batch, int32_t leader_epoch);

/* What a walk over consecutive batches found. */
typedef struct pl_batches_info {
    size_t valid_bytes;              /* bytes of whole, valid batches from the start */
    int64_t batches;                 /* how many */
    int64_t records;                 /* sum of records_count */
    int64_t first_offset;            /* base_offset of the first batch, -1 if none */
    int64_t last_offset;             /* base_offset + last_offset_delta of the last, -1 if none */
    int64_t max_timestamp;           /* -1 if none */
    int64_t offset_of_max_timestamp; /* -1 if none */
    int stop_rc;                     /* PL_OK if the walk reached len exactly, else why it stopped */
} pl_batches_info;

/* Walk batches in buf[0,len) from the start, checking each header and, when
 * check_crc, its CRC; stop at the first that fails or is cut short.
 * Always returns PL_OK and fills *out; out->stop_rc tells how it ended. */
int pl_batches_scan(const uint8_t *buf, size_t len, int check_crc, pl_batches_info *out);

/* Validate every batch in buf[0,len) as a leader must before appending (whole
 * batches, magic 2, CRC, records_count == last_offset_delta + 1 > 0, not a control
 * batch unless allow_control), then give them offsets from next_offset on and
 * stamp leader_epoch (unless leader_epoch < 0). Fills *out (offsets after the patch).
 * @return PL_OK, or the first failure (PL_EINVALREC for an intact batch failing the
 *   count or control rule); on failure nothing was patched. */
int pl_batches_assign_offsets(uint8_t *buf, size_t len, int64_t next_offset, int32_t leader_epoch,
                              int allow_control, pl_batches_info *out);

/* The same, with the CRC check skipped unless check_crc: for batches whose CRC
 * pl_validate_produce (validate.h) has just checked over the same bytes. */
int pl_batches_assign_offsets_crc(uint8_t *buf, size_t len, int64_t next_offset, int32_t leader_epoch,
                                  int allow_control, int check_crc, pl_batches_info *out);

/* Kafka's LogAppendTime stamp (LogValidator, setMaxTimestamp(LOG_APPEND_TIME, now)):
 * on every batch in buf[0,len), which the caller has validated, set the
 * timestamp-type bit and max_timestamp = now_ms and recompute the CRC.
 * base_timestamp and the records stay as the producer wrote them: a reader
 * takes every record's timestamp from max_timestamp when the bit is set.
 * @return PL_OK, or the header error of a batch that does not parse (batches
 *   before it are stamped already). */
int pl_batches_set_log_append_time(uint8_t *buf, size_t len, int64_t now_ms);

/* ---- records ---- */

typedef struct pl_header_in {
    const uint8_t *key; int32_t key_len;     /* key never null */
    const uint8_t *value; int32_t value_len; /* -1 = null */
} pl_header_in;

typedef struct pl_record_in {
    const uint8_t *key; int32_t key_len;     /* -1 = null */
    const uint8_t *value; int32_t value_len; /* -1 = null */
    int64_t timestamp_delta;
    const pl_header_in *headers; int32_t header_count;
    size_t body_size;                        /* filled by pl_records_size */
} pl_record_in;

/* Exact size of the records section for recs[0,n); also notes each record's
 * body size in recs[i].body_size for pl_records_encode. */
size_t pl_records_size(pl_record_in *recs, size_t n);

/* Write the records section (offset deltas 0..n-1) into out, which must hold
 * pl_records_size() bytes; pl_records_size must have been called on recs first
 * (the sizes are computed once). @return bytes written. */
size_t pl_records_encode(uint8_t *out, const pl_record_in *recs, size_t n);

/* One record at a time, for an accumulator that appends to an open batch:
 * pl_record_size gives the record's exact size (its length varint included)
 * with the given offset_delta and notes its body size in r->body_size;
 * pl_record_encode then writes it (same offset_delta) and returns the bytes
 * written. timestamp_delta may be negative (Kafka allows it). */
size_t pl_record_size(pl_record_in *r, int32_t offset_delta);
size_t pl_record_encode(uint8_t *out, const pl_record_in *r, int32_t offset_delta);

/* How many of recs[0,n) (offset deltas 0, 1, ...) fit in a records section of
 * at most max_bytes; always at least one when n > 0, so a record larger than
 * max_bytes still makes a batch of its own. Notes body_size for those records,
 * as pl_records_size does, so pl_records_encode(out, recs, count) can follow;
 * *size_out gets their total size. @return the count. */
size_t pl_records_fit(pl_record_in *recs, size_t n, size_t max_bytes, size_t *size_out);

/* For a cut inside a batch: the first keep of the count records in the
 * uncompressed records section buf[0,len) (absolute timestamps from
 * base_timestamp). *prefix_len gets the bytes they take, *max_timestamp their
 * largest timestamp (-1 if none). Each record is bounds-checked within buf.
 * @return PL_OK, PL_EINVAL if keep is not in [0, count], PL_ECORRUPT. */
int pl_records_prefix(const uint8_t *buf, size_t len, int32_t count, int32_t keep, int64_t base_timestamp,
                      size_t *prefix_len, int64_t *max_timestamp);

/* Write a 61-byte header with h's fields (batch_length and crc are taken from h as
 * given; pl_batch_seal fills both). */
void pl_batch_write_header(uint8_t *out, const pl_batch_header *h);

/* Set batch_length = total_len - 12 and compute and store the CRC. */
void pl_batch_seal(uint8_t *batch, size_t total_len);

/* One decoded record; positions are byte offsets into the records section given
 * to pl_records_decode. */
typedef struct pl_record_out {
    int64_t timestamp_delta;
    int32_t offset_delta;
    int32_t key_pos, key_len;       /* key_len -1: null */
    int32_t value_pos, value_len;   /* value_len -1: null */
    int32_t headers_pos;            /* first header's key_len varint */
    int32_t header_count;
} pl_record_out;

/* Decode count records from buf[0,len) (the records section, uncompressed).
 * Every length is checked against the record's own length and the buffer.
 * @return PL_OK, or PL_ECORRUPT naming nothing partial: *decoded says how many
 *   records were good before the failure. */
int pl_records_decode(const uint8_t *buf, size_t len, int32_t count, pl_record_out *out,
                      int32_t *decoded);

/* Walk the length prefixes of count records in buf[0,len) and write where each
 * record starts (its length varint) into starts[0,count). The records must fill
 * buf exactly. Records themselves are checked when decoded (pl_records_decode).
 * @return PL_OK or PL_ECORRUPT. */
int pl_records_positions(const uint8_t *buf, size_t len, int32_t count, int32_t *starts);

typedef struct pl_header_out {
    int32_t key_pos, key_len;
    int32_t value_pos, value_len; /* -1: null */
} pl_header_out;

/* Decode count headers starting at buf + pos (buf[0,len) is the records section).
 * @return PL_OK or PL_ECORRUPT. */
int pl_headers_decode(const uint8_t *buf, size_t len, int32_t pos, int32_t count, pl_header_out *out);

#endif
