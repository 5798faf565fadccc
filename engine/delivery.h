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

/* Cut a stored batch down to the records a share fetch acquired, so that a
 * fetch taking 50 records out of a 10,000-record batch does not send all of
 * them (share groups' priority path acquires exactly what it was asked for).
 * The cut batch has the form log compaction gives a batch: base offset, last
 * offset delta, producer id/epoch, base sequence, attributes and base
 * timestamp stay; the kept records are copied byte for byte (their offset and
 * timestamp deltas still count from the same bases), records_count and, for
 * CreateTime, max_timestamp follow them; batch_length and the CRC are new.
 * Clients read such batches already (a compacted log's batches have missing
 * offsets, the first record's offset delta may be above 0).
 *
 * batch[0,len) is exactly one batch, magic 2, uncompressed, not a control
 * batch, its stored CRC intact (checked first when check_crc: a cut must not
 * launder bytes gone bad on disk into a batch with a valid CRC; 0 only for a
 * batch the caller built from one whose CRC it checked, such as a compressed
 * batch's records inflated under its header). ranges[0, 2*nranges) are
 * ascending, disjoint (first, last) absolute offsets; a record is kept when
 * its offset lies in one. out must hold len bytes (a cut is never larger).
 * @return PL_OK with *out_len set (0 when no record is kept: no batch);
 *   PL_EINVAL for a compressed or control batch, nranges < 0, out_cap < len,
 *   or ranges not ascending; PL_ECORRUPT/PL_EMAGIC/PL_ETRUNCATED as
 *   pl_batch_validate, or when the records do not fill the section. */
int pl_batch_cut(const uint8_t *batch, size_t len, const int64_t *ranges, int32_t nranges, int check_crc,
                 uint8_t *out, size_t out_cap, size_t *out_len);

#endif
