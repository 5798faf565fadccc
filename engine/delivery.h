/*
 * delivery.h: finding the records of a batch that carry given headers, for
 * share groups' delayed delivery and priority (pylog/share/delivery.py).
 *
 * A share-partition must know, per record, whether a header such as
 * `pylog.deliver.at` or `pylog.priority` is present and what it says. Most
 * batches carry none, so the walk starts with one memmem over the records
 * section for a prefix every wanted key shares: when it is absent, no record
 * is decoded. Values are decimal ASCII integers (an optional '-', 1-18
 * digits); a header whose value is not one is skipped as if absent.
 */
#ifndef PL_DELIVERY_H
#define PL_DELIVERY_H

#include <stddef.h>
#include <stdint.h>

#define PL_HEADER_FIND_MAX_KEYS 8

typedef struct pl_header_hit {
    int32_t offset_delta;     /* the record's offset delta in its batch */
    int32_t key;              /* index into the keys asked for */
    int64_t timestamp_delta;  /* the record's timestamp delta */
    int64_t value;            /* the header's value, parsed */
} pl_header_hit;

/* Walk the count records of the uncompressed records section buf[0,len) and
 * write one hit per (record, wanted header) into out[0,cap), in record order;
 * a record carrying a key twice gives the last value. keys[0,nkeys) are the
 * wanted keys, prefix[0,prefix_len) a prefix they all share (may be empty:
 * then no fast path).
 * @return PL_OK with *found set; PL_EINVAL for nkeys outside [1, 8];
 *   PL_ECORRUPT when a record's lengths or varints do not fit the section or
 *   the records do not fill it; PL_EFULL when more than cap hits were found
 *   (cap >= count * nkeys never is). */
int pl_records_find_headers(const uint8_t *buf, size_t len, int32_t count, const uint8_t *const *keys,
                            const int32_t *key_lens, int nkeys, const uint8_t *prefix, size_t prefix_len,
                            pl_header_hit *out, int32_t cap, int32_t *found);

#endif
