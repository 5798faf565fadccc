/*
 * batch_fuzz.c: libFuzzer target for the engine's record batch parser
 * (engine/batch.c). Built two ways:
 *   clang -fsanitize=fuzzer,address,undefined   `make fuzz` (coverage-guided)
 *   cc -fsanitize=address,undefined + replay.c  `make test` (the seed corpus,
 *                                               then seeded random mutations)
 *
 * Input: byte 0 is flags, the rest the bytes under test.
 *   bit 0: recompute the CRC of every whole batch first, so that mutations
 *          get past the CRC check to the header fields and the records;
 *   bit 1: the rest is a records section (uncompressed), not batches; byte 1
 *          is then the record count claimed.
 *
 * Every check in CHECKS runs on every input: a new parser or validator of the
 * engine is one more line there. Oracle: ASAN/UBSAN clean, and what a parser
 * reports stays inside the buffer it was given (checked below, abort()).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "batch.h"
#include "crc32c.h"
#include "pl_common.h"
#include "validate.h"

#define FLAG_RESEAL 0x01
#define FLAG_RECORDS 0x02

#define REQUIRE(cond)                                                              \
    do {                                                                           \
        if (!(cond)) {                                                             \
            fprintf(stderr, "batch_fuzz: %s:%d: %s does not hold\n", __FILE__,      \
                    __LINE__, #cond);                                              \
            abort();                                                               \
        }                                                                          \
    } while (0)

static int is_rc(int rc) { return rc <= 0 && rc >= -64; }

/* Record fields a decoder reported must lie inside the section it was given. */
static void check_field(int32_t pos, int32_t n, size_t len) {
    if (n < 0) { REQUIRE(n == -1); return; }
    REQUIRE(pos >= 0 && (size_t)pos + (size_t)n <= len);
}

static void check_records_section(const uint8_t *buf, size_t len, int32_t count) {
    if (count < 0) count = 0;
    /* A record takes at least 7 bytes: never allocate for more than fit. */
    if ((size_t)count > len / 7 + 1) count = (int32_t)(len / 7 + 1);
    pl_record_out *recs = calloc((size_t)count + 1, sizeof *recs);
    int32_t *starts = calloc((size_t)count + 1, sizeof *starts);
    REQUIRE(recs && starts);
    int32_t decoded = -1;
    int rc = pl_records_decode(buf, len, count, recs, &decoded);
    REQUIRE(is_rc(rc) && decoded >= 0 && decoded <= count);
    REQUIRE(rc != PL_OK || decoded == count);
    for (int32_t i = 0; i < decoded; i++) {
        check_field(recs[i].key_pos, recs[i].key_len, len);
        check_field(recs[i].value_pos, recs[i].value_len, len);
        REQUIRE(recs[i].headers_pos >= 0 && (size_t)recs[i].headers_pos <= len);
        int32_t hc = recs[i].header_count;
        REQUIRE(hc >= 0 && (size_t)hc <= len);
        pl_header_out *hs = calloc((size_t)hc + 1, sizeof *hs);
        REQUIRE(hs);
        if (pl_headers_decode(buf, len, recs[i].headers_pos, hc, hs) == PL_OK) {
            for (int32_t j = 0; j < hc; j++) {
                REQUIRE(hs[j].key_len >= 0);
                check_field(hs[j].key_pos, hs[j].key_len, len);
                check_field(hs[j].value_pos, hs[j].value_len, len);
            }
        }
        free(hs);
    }
    rc = pl_records_positions(buf, len, count, starts);
    REQUIRE(is_rc(rc));
    if (rc == PL_OK)
        for (int32_t i = 0; i < count; i++)
            REQUIRE(starts[i] >= 0 && (size_t)starts[i] < len && (i == 0 || starts[i] > starts[i - 1]));
    /* Headers from a position the fuzzer picks (the bindings pass one in). */
    if (len > 0) {
        pl_header_out hs[4];
        (void)pl_headers_decode(buf, len, (int32_t)(buf[0] % (len + 1)), 4, hs);
    }
    free(recs);
    free(starts);
}

static void check_parse_header(const uint8_t *buf, size_t len) {
    pl_batch_header h;
    int rc = pl_batch_parse_header(buf, len, &h);
    REQUIRE(is_rc(rc));
    if (rc == PL_OK)
        REQUIRE(h.batch_length >= PL_BATCH_MIN_LENGTH &&
                (size_t)h.batch_length + PL_BATCH_LOG_OVERHEAD <= len &&
                h.magic == PL_BATCH_MAGIC && h.last_offset_delta >= 0 && h.records_count >= 0);
}

static void check_validate(const uint8_t *buf, size_t len) {
    pl_batch_header h;
    int rc = pl_batch_validate(buf, len, &h);
    REQUIRE(is_rc(rc));
    if (rc == PL_OK) REQUIRE(pl_batch_parse_header(buf, len, &h) == PL_OK);
}

static void check_scan(const uint8_t *buf, size_t len) {
    for (int check_crc = 0; check_crc <= 1; check_crc++) {
        pl_batches_info info;
        REQUIRE(pl_batches_scan(buf, len, check_crc, &info) == PL_OK);
        REQUIRE(info.valid_bytes <= len && is_rc(info.stop_rc));
        REQUIRE((info.stop_rc == PL_OK) == (info.valid_bytes == len));
        REQUIRE(info.batches >= 0 && info.records >= 0);
    }
}

static void check_assign_offsets(const uint8_t *buf, size_t len) {
    uint8_t *copy = malloc(len + 1);
    REQUIRE(copy);
    if (len) memcpy(copy, buf, len);
    for (int allow_control = 0; allow_control <= 1; allow_control++) {
        pl_batches_info info;
        int rc = pl_batches_assign_offsets(copy, len, 1000, 3, allow_control, &info);
        REQUIRE(is_rc(rc));
        if (rc == PL_OK) {
            REQUIRE(info.valid_bytes == len && info.first_offset == 1000);
            REQUIRE(info.last_offset == 1000 + info.records - 1);
            /* The patched batches are still whole and intact. */
            pl_batches_info again;
            pl_batches_scan(copy, len, 1, &again);
            REQUIRE(again.stop_rc == PL_OK && again.records == info.records);
        } else if (len) {
            REQUIRE(memcmp(copy, buf, len) == 0); /* nothing patched on failure */
        }
    }
    free(copy);
}

/* The records section of each whole, uncompressed batch, as the readers decode it. */
static void check_batch_records(const uint8_t *buf, size_t len) {
    size_t pos = 0;
    while (pos < len) {
        pl_batch_header h;
        if (pl_batch_parse_header(buf + pos, len - pos, &h) != PL_OK) return;
        size_t total = (size_t)h.batch_length + PL_BATCH_LOG_OVERHEAD;
        if ((h.attributes & PL_ATTR_COMPRESSION_MASK) == 0) {
            size_t n = total - PL_BATCH_HEADER_SIZE;
            /* An exact-size copy: ASAN sees a read past the section. */
            uint8_t *section = malloc(n + 1);
            REQUIRE(section);
            memcpy(section, buf + pos + PL_BATCH_HEADER_SIZE, n);
            check_records_section(section, n, h.records_count);
            free(section);
        }
        pos += total;
    }
}

/* The leader's produce validation (engine/validate.c), on the bytes as a
 * Produce request carries them, then the record walker over every
 * uncompressed batch fed in uneven chunks, as the bounded inflater feeds it. */
static void check_validate_produce(const uint8_t *buf, size_t len) {
    static pl_record_error errors[8];
    for (int compacted = 0; compacted <= 1; compacted++) {
        pl_validate_opts opts = {1700000000000LL, INT64_MAX, 3600000LL, compacted, 9};
        pl_validate_result res;
        int rc = pl_validate_produce(buf, len, &opts, errors, 8, &res);
        REQUIRE(is_rc(rc));
        if (rc == PL_OK) REQUIRE(res.batch_size == len);
        if (rc == PL_OK && res.codec == 0) {
            /* Accepted: the readers' decoder agrees on every record. */
            size_t n = len - PL_BATCH_HEADER_SIZE;
            check_records_section(buf + PL_BATCH_HEADER_SIZE, n, res.header.records_count);
        }
    }
    pl_batch_header h;
    if (pl_batch_parse_header(buf, len, &h) != PL_OK) return;
    size_t total = (size_t)h.batch_length + PL_BATCH_LOG_OVERHEAD;
    const uint8_t *sec = buf + PL_BATCH_HEADER_SIZE;
    size_t n = total - PL_BATCH_HEADER_SIZE, pos = 0, step = 1 + (len % 7);
    pl_record_walker w;
    pl_record_walker_init(&w, &h, NULL, NULL, 0);
    size_t have = 0;   /* bytes of sec handed to the walker so far */
    while (pos <= n) {
        have = have + step > n ? n : have + step;
        size_t need = 0;
        int64_t used = pl_record_walker_feed(&w, sec + pos, have - pos, have == n, &need);
        if (used < 0) { REQUIRE(is_rc((int)used)); return; }
        REQUIRE((size_t)used <= have - pos);
        pos += (size_t)used;
        if (have == n) break;
    }
}

typedef void (*check_fn)(const uint8_t *buf, size_t len);

/* One line per engine entry point that takes untrusted batches. */
static const check_fn CHECKS[] = {
    check_parse_header,
    check_validate,
    check_scan,
    check_assign_offsets,
    check_batch_records,
    check_validate_produce,
};

static void reseal(uint8_t *buf, size_t len) {
    size_t pos = 0;
    while (pos + PL_BATCH_HEADER_SIZE <= len) {
        int32_t length = (int32_t)pl_load_be32(buf + pos + PL_BATCH_LENGTH_OFFSET);
        if (length < PL_BATCH_MIN_LENGTH || (size_t)length + PL_BATCH_LOG_OVERHEAD > len - pos) return;
        size_t total = (size_t)length + PL_BATCH_LOG_OVERHEAD;
        uint32_t crc = pl_crc32c(0, buf + pos + PL_BATCH_CRC_START, total - PL_BATCH_CRC_START);
        pl_store_be32(buf + pos + PL_BATCH_CRC_OFFSET, crc);
        pos += total;
    }
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size == 0) return 0;
    uint8_t flags = data[0];
    if (flags & FLAG_RECORDS) {
        if (size < 2) return 0;
        size_t n = size - 2;
        uint8_t *section = malloc(n + 1);
        REQUIRE(section);
        if (n) memcpy(section, data + 2, n);
        check_records_section(section, n, data[1]);
        free(section);
        return 0;
    }
    size_t n = size - 1;
    uint8_t *buf = malloc(n + 1);
    REQUIRE(buf);
    if (n) memcpy(buf, data + 1, n);
    if (flags & FLAG_RESEAL) reseal(buf, n);
    for (size_t i = 0; i < sizeof CHECKS / sizeof CHECKS[0]; i++) CHECKS[i](buf, n);
    free(buf);
    return 0;
}
