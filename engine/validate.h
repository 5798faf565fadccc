/*
 * validate.h: the leader's check of a client's produce data, after Kafka's
 * LogValidator, DefaultRecordBatch and DefaultRecord (KAFKA-NOTES §2).
 *
 * A batch that passes the header and CRC checks can still lie inside: record
 * lengths, varints, header counts, offset deltas, a records_count the records
 * do not fill. pylog stores batches as received, so such a batch would reach
 * every consumer; here every record of every produced batch is parsed before
 * anything is appended.
 *
 * Two entry points:
 *  - pl_validate_produce: the records of one partition of a Produce request
 *    (one batch, Kafka's rule for produce v3+). Checks the header rules and,
 *    for an uncompressed batch, every record. For a compressed batch it checks
 *    the header and says so (out->codec != 0): the caller inflates the records
 *    section as a stream, with a bound, and feeds the inflated bytes to a
 *    pl_record_walker (below).
 *  - pl_record_walker: parses records from consecutive chunks of a records
 *    section (whole records per call; the caller keeps the unconsumed tail and
 *    adds at least *need bytes before the next call). Also used to find the
 *    first record at or after a timestamp in a stored compressed batch.
 *
 * Error codes, as Kafka picks them:
 *   PL_ECORRUPT   CORRUPT_MESSAGE (2): CRC mismatch, batch cut short
 *   PL_EINVALREC  INVALID_RECORD (87): bad record structure, counts, offsets,
 *                 attributes, more than one batch, a null key in a compacted topic
 *   PL_EINVALTS   INVALID_TIMESTAMP (32): a record outside the timestamp window
 *   PL_ECODEC     UNSUPPORTED_COMPRESSION_TYPE (76): codec 5-7, or zstd before
 *                 produce v7
 * Per-record errors (null key in a compacted topic, timestamp) are collected
 * for every record, as Kafka's record_errors; structural errors stop the walk.
 */
#ifndef PL_VALIDATE_H
#define PL_VALIDATE_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"

#define PL_VALIDATE_MESSAGE_SIZE 256

typedef struct pl_validate_opts {
    int64_t now_ms;
    int64_t timestamp_before_max_ms; /* message.timestamp.before.max.ms (>= 0) */
    int64_t timestamp_after_max_ms;  /* message.timestamp.after.max.ms (>= 0) */
    int compacted;                   /* cleanup.policy has compact: keys required */
    int produce_version;             /* zstd needs v7+ */
} pl_validate_opts;

/* One per-record error (Kafka's RecordError). kind: PL_EINVALREC or PL_EINVALTS. */
typedef struct pl_record_error {
    int32_t index;
    int32_t kind;
    int64_t timestamp; /* the record's timestamp, for the message */
} pl_record_error;

/* Record-by-record parser over a records section given in chunks. */
typedef struct pl_record_walker {
    /* set by pl_record_walker_init */
    int64_t base_timestamp;
    int64_t log_append_time;   /* the batch's max_timestamp when the LogAppendTime bit is set, else -1 */
    int32_t records_count;
    int check_timestamps;      /* validate (opts) or just walk */
    pl_validate_opts opts;
    int64_t find_timestamp;    /* -1: no search; else note the first record with timestamp >= it */
    int32_t find_min_delta;    /* ... and offset_delta >= this (Kafka's startingOffset: the log start) */
    pl_record_error *errors;   /* caller's array, may be NULL */
    int32_t errors_cap;
    /* results */
    int32_t records;           /* whole records parsed so far (the next expected offset_delta) */
    int32_t errors_count;      /* per-record errors seen (may exceed errors_cap) */
    int32_t has_timestamp_error;
    int64_t max_timestamp;     /* over parsed records, -1 if none */
    int32_t found_delta;       /* offset_delta of the first record with timestamp >= find_timestamp, -1 */
    int64_t found_timestamp;
    uint64_t bytes;            /* bytes consumed so far */
    char message[PL_VALIDATE_MESSAGE_SIZE];
} pl_record_walker;

void pl_record_walker_init(pl_record_walker *w, const pl_batch_header *h, const pl_validate_opts *opts,
                           pl_record_error *errors, int32_t errors_cap);

/* Parse whole records from buf[0,len). eof: no bytes follow buf.
 * @return bytes consumed (>= 0): the walk stopped at a record cut short by the
 *   end of buf (then *need is the number of bytes from buf + consumed the next
 *   call must have at least, unless eof) or at the end; or a negative PL_E* code
 *   (PL_EINVALREC) with w->message saying why. With eof set, PL_OK (0 consumed
 *   bytes left over) means the section held exactly records_count records. */
int64_t pl_record_walker_feed(pl_record_walker *w, const uint8_t *buf, size_t len, int eof, size_t *need);

/* What pl_validate_produce found. */
typedef struct pl_validate_result {
    pl_batch_header header;
    int codec;                /* != 0: the records section still needs walking, inflated */
    size_t batch_size;        /* bytes of the batch */
    int64_t max_timestamp;    /* over the records (uncompressed batches), -1 if none */
    int32_t errors_count;     /* per-record errors (errors[] of the walker) */
    int32_t has_timestamp_error;
    char message[PL_VALIDATE_MESSAGE_SIZE];
} pl_validate_result;

/* Check buf[0,len), the records of one partition of a produce request, as a
 * leader must before appending. Fills *out.
 * @return PL_OK (then, if out->codec != 0, the records are not checked yet),
 *   or the first failure (out->message says which rule); per-record errors
 *   return PL_EINVALREC or PL_EINVALTS with out->errors_count > 0 and the
 *   errors in errors[0, min(count, cap)). */
int pl_validate_produce(const uint8_t *buf, size_t len, const pl_validate_opts *opts,
                        pl_record_error *errors, int32_t errors_cap, pl_validate_result *out);

/* After a walker over a compressed batch reached eof: the same per-record
 * verdict pl_validate_produce gives (PL_OK, PL_EINVALREC or PL_EINVALTS). */
int pl_record_walker_verdict(const pl_record_walker *w);

#endif
