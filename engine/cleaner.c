/*
 * cleaner.c: the offset map and the filtered copy of batches (cleaner.h).
 * The rules are Kafka's (Cleaner.cleanInto, MemoryRecords.filterTo,
 * CleanedTransactionMetadata), restated here in terms of one batch at a time.
 */
#define _GNU_SOURCE
#include "cleaner.h"

#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "pl_common.h"
#include "varint.h"
#include "xxhash64.h"

/* ---- offset map ---- */

int pl_offset_map_init(pl_offset_map *m, int64_t memory_bytes, double load_factor) {
    memset(m, 0, sizeof *m);
    m->latest_offset = -1;
    if (!(load_factor > 0.0 && load_factor <= 1.0)) return PL_EINVAL;
    int64_t nslots = memory_bytes / PL_OFFSET_MAP_SLOT_BYTES;
    int64_t max_entries = (int64_t)((double)nslots * load_factor);
    if (nslots < 1 || max_entries < 1) return PL_EINVAL;
    size_t bytes = (size_t)nslots * PL_OFFSET_MAP_SLOT_BYTES;
    /* Anonymous pages come zeroed (all slots empty) and are only backed once touched. */
    void *p = mmap(NULL, bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED) return PL_ENOMEM;
    m->slots = (uint64_t *)p;
    m->mapped_bytes = bytes;
    m->nslots = nslots;
    m->max_entries = max_entries;
    return PL_OK;
}

void pl_offset_map_free(pl_offset_map *m) {
    if (m->slots != NULL) munmap(m->slots, m->mapped_bytes);
    m->slots = NULL;
    m->nslots = m->entries = 0;
}

void pl_offset_map_clear(pl_offset_map *m) {
    if (m->entries > 0 || m->lookups > 0) {
        /* Private anonymous pages read back as zeros once dropped. */
        if (madvise(m->slots, m->mapped_bytes, MADV_DONTNEED) != 0) memset(m->slots, 0, m->mapped_bytes);
    }
    m->entries = m->lookups = m->probes = 0;
    m->latest_offset = -1;
}

uint64_t pl_offset_map_hash(const uint8_t *key, size_t len) {
    uint64_t h = pl_xxhash64(key, len, 0);
    return h == 0 ? 1 : h;
}

static inline int64_t home_slot(const pl_offset_map *m, uint64_t hash) {
    /* Lemire's multiply-shift maps the hash onto [0, nslots) without a division. */
    return (int64_t)(((unsigned __int128)hash * (uint64_t)m->nslots) >> 64);
}

int pl_offset_map_put(pl_offset_map *m, uint64_t hash, int64_t offset) {
    int64_t i = home_slot(m, hash);
    m->lookups++;
    /* At most every slot: with load factor 1 a full map has no empty one. */
    for (int64_t n = 0; n < m->nslots; n++) {
        uint64_t *s = m->slots + 2 * i;
        m->probes++;
        if (s[0] == hash) {
            s[1] = (uint64_t)offset;
            m->latest_offset = offset;
            return PL_OK;
        }
        if (s[0] == 0) {
            if (m->entries >= m->max_entries) return PL_EFULL;
            s[0] = hash;
            s[1] = (uint64_t)offset;
            m->entries++;
            m->latest_offset = offset;
            return PL_OK;
        }
        if (++i == m->nslots) i = 0;
    }
    return PL_EFULL;
}

int64_t pl_offset_map_get(pl_offset_map *m, uint64_t hash) {
    int64_t i = home_slot(m, hash);
    m->lookups++;
    for (int64_t n = 0; n < m->nslots; n++) { /* as in put */
        const uint64_t *s = m->slots + 2 * i;
        m->probes++;
        if (s[0] == hash) return (int64_t)s[1];
        if (s[0] == 0) return -1;
        if (++i == m->nslots) i = 0;
    }
    return -1;
}

/* ---- the cleaning context ---- */

typedef struct prod_slot {
    int64_t pid;        /* -1: empty slot (producer ids are >= 0) */
    int64_t last_data;  /* last offset of the producer's last data batch, -1 none */
    int16_t epoch;      /* epoch of its last batch */
    uint8_t known;      /* last_data/epoch were noted or set */
    uint8_t committed;  /* this pass saw a batch of an open, not aborted transaction */
    int64_t aborted;    /* this pass: the open aborted transaction's number in ab, -1 none */
    int64_t observed;   /* its last batch seen this pass, -1 none */
} prod_slot;

typedef struct aborted_txn {
    int64_t pid, first, last, id;
} aborted_txn;

typedef struct pending {
    pl_batch_header h;
    int64_t position, total;
    int64_t start_offset;  /* map building */
    int discard_records, retain_empty, marker_for_empty_txn;
} pending;

struct pl_cleaner {
    int64_t now_ms, delete_retention_ms, upper_bound;
    int64_t map_end; /* the map takes records below it (the first uncleanable offset) */
    prod_slot *prods;
    size_t prod_cap, prod_count;
    aborted_txn *ab;
    size_t ab_count, ab_cursor;
    int64_t *retained_ab;
    size_t retained_count, retained_cap;
    uint8_t *keep;
    uint64_t *hashes;  /* a batch's key hashes (0: no key), hashed and prefetched before the map is touched */
    int32_t *deltas;   /* its records' offset deltas */
    uint8_t *nulls;    /* 1 for a record with a null value (a tombstone) */
    size_t keep_cap;
    pending pend;
    pl_batch_header pend_new;  /* the re-encoded pending batch's header */
    size_t out_needed;
    pl_cleaner_stats st;
};

int pl_cleaner_new(pl_cleaner **out, int64_t now_ms, int64_t delete_retention_ms, int64_t upper_bound) {
    pl_cleaner *c = calloc(1, sizeof *c);
    if (c == NULL) return PL_ENOMEM;
    c->now_ms = now_ms;
    c->delete_retention_ms = delete_retention_ms;
    c->upper_bound = upper_bound;
    c->map_end = upper_bound;
    c->st.earliest_delete_horizon = -1;
    c->prod_cap = 64;
    c->prods = malloc(c->prod_cap * sizeof *c->prods);
    if (c->prods == NULL) { free(c); return PL_ENOMEM; }
    for (size_t i = 0; i < c->prod_cap; i++) c->prods[i].pid = -1;
    *out = c;
    return PL_OK;
}

void pl_cleaner_free(pl_cleaner *c) {
    if (c == NULL) return;
    free(c->prods);
    free(c->ab);
    free(c->retained_ab);
    free(c->keep);
    free(c->hashes);
    free(c->deltas);
    free(c->nulls);
    free(c);
}

void pl_cleaner_set_upper_bound(pl_cleaner *c, int64_t upper_bound) { c->upper_bound = upper_bound; }

void pl_cleaner_get_stats(const pl_cleaner *c, pl_cleaner_stats *out) { *out = c->st; }

static inline size_t prod_home(int64_t pid, size_t cap) {
    return (size_t)(((uint64_t)pid * 0x9E3779B97F4A7C15ULL) >> 20) & (cap - 1);
}

static prod_slot *prod_find(pl_cleaner *c, int64_t pid) {
    size_t i = prod_home(pid, c->prod_cap);
    for (;;) {
        prod_slot *s = &c->prods[i];
        if (s->pid == pid) return s;
        if (s->pid == -1) return NULL;
        i = (i + 1) & (c->prod_cap - 1);
    }
}

static int prod_grow(pl_cleaner *c) {
    size_t cap = c->prod_cap * 2;
    prod_slot *n = malloc(cap * sizeof *n);
    if (n == NULL) return PL_ENOMEM;
    for (size_t i = 0; i < cap; i++) n[i].pid = -1;
    for (size_t j = 0; j < c->prod_cap; j++) {
        if (c->prods[j].pid == -1) continue;
        size_t i = prod_home(c->prods[j].pid, cap);
        while (n[i].pid != -1) i = (i + 1) & (cap - 1);
        n[i] = c->prods[j];
    }
    free(c->prods);
    c->prods = n;
    c->prod_cap = cap;
    return PL_OK;
}

static prod_slot *prod_get(pl_cleaner *c, int64_t pid) {
    prod_slot *s = prod_find(c, pid);
    if (s != NULL) return s;
    if ((c->prod_count + 1) * 2 > c->prod_cap && prod_grow(c) != PL_OK) return NULL;
    size_t i = prod_home(pid, c->prod_cap);
    while (c->prods[i].pid != -1) i = (i + 1) & (c->prod_cap - 1);
    s = &c->prods[i];
    memset(s, 0, sizeof *s);
    s->pid = pid;
    s->last_data = -1;
    s->aborted = -1;
    s->observed = -1;
    c->prod_count++;
    return s;
}

int pl_cleaner_note_producers(pl_cleaner *c, const uint8_t *buf, size_t len) {
    size_t pos = 0;
    while (pos < len) {
        pl_batch_header h;
        int rc = pl_batch_parse_header(buf + pos, len - pos, &h);
        if (rc != PL_OK) return rc;
        if (h.producer_id >= 0) {
            prod_slot *s = prod_get(c, h.producer_id);
            if (s == NULL) return PL_ENOMEM;
            s->known = 1;
            s->epoch = h.producer_epoch;
            if (!(h.attributes & PL_ATTR_CONTROL)) s->last_data = h.base_offset + h.last_offset_delta;
        }
        pos += (size_t)h.batch_length + PL_BATCH_LOG_OVERHEAD;
    }
    return PL_OK;
}

int pl_cleaner_set_producer(pl_cleaner *c, int64_t producer_id, int64_t last_data_offset, int16_t epoch) {
    if (producer_id < 0) return PL_EINVAL;
    prod_slot *s = prod_get(c, producer_id);
    if (s == NULL) return PL_ENOMEM;
    s->known = 1;
    s->last_data = last_data_offset;
    s->epoch = epoch;
    return PL_OK;
}

static int cmp_aborted(const void *a, const void *b) {
    const aborted_txn *x = a, *y = b;
    if (x->first != y->first) return x->first < y->first ? -1 : 1;
    return x->id < y->id ? -1 : (x->id > y->id);
}

int pl_cleaner_set_aborted(pl_cleaner *c, const int64_t *triples, size_t n) {
    aborted_txn *ab = n ? malloc(n * sizeof *ab) : NULL;
    if (n && ab == NULL) return PL_ENOMEM;
    for (size_t i = 0; i < n; i++) {
        ab[i].pid = triples[3 * i];
        ab[i].first = triples[3 * i + 1];
        ab[i].last = triples[3 * i + 2];
        ab[i].id = (int64_t)i;
    }
    if (n) qsort(ab, n, sizeof *ab, cmp_aborted);
    free(c->ab);
    c->ab = ab;
    c->ab_count = n;
    pl_cleaner_reset_txns(c);
    return PL_OK;
}

void pl_cleaner_reset_txns(pl_cleaner *c) {
    c->ab_cursor = 0;
    c->retained_count = 0;
    for (size_t i = 0; i < c->prod_cap; i++) {
        prod_slot *s = &c->prods[i];
        if (s->pid == -1) continue;
        s->committed = 0;
        s->aborted = -1;
        s->observed = -1;
    }
}

/* Aborted transactions that have begun by offset become open (Kafka's
 * consumeAbortedTxnsUpTo): one per producer at a time. */
static int consume_aborted_upto(pl_cleaner *c, int64_t offset) {
    while (c->ab_cursor < c->ab_count && c->ab[c->ab_cursor].first <= offset) {
        aborted_txn *t = &c->ab[c->ab_cursor++];
        prod_slot *s = prod_get(c, t->pid);
        if (s == NULL) return PL_ENOMEM;
        if (s->aborted < 0) {
            s->aborted = (int64_t)(t - c->ab);
            s->observed = -1;
        }
    }
    return PL_OK;
}

/* A data batch: 1 when it belongs to an aborted transaction (its records go). */
static int on_batch_read(pl_cleaner *c, const pl_batch_header *h, int *aborted) {
    int64_t last = h->base_offset + h->last_offset_delta;
    *aborted = 0;
    if (consume_aborted_upto(c, last) != PL_OK) return PL_ENOMEM;
    if (!(h->attributes & PL_ATTR_TRANSACTIONAL)) return PL_OK;
    prod_slot *s = prod_get(c, h->producer_id);
    if (s == NULL) return PL_ENOMEM;
    if (s->aborted >= 0) {
        s->observed = last;
        *aborted = 1;
    } else {
        s->committed = 1;
    }
    return PL_OK;
}

static int push_retained(pl_cleaner *c, int64_t id) {
    if (c->retained_count == c->retained_cap) {
        size_t cap = c->retained_cap ? 2 * c->retained_cap : 16;
        int64_t *n = realloc(c->retained_ab, cap * sizeof *n);
        if (n == NULL) return PL_ENOMEM;
        c->retained_ab = n;
        c->retained_cap = cap;
    }
    c->retained_ab[c->retained_count++] = id;
    return PL_OK;
}

/* The control type of an uncompressed control batch's first record (its key:
 * int16 version, int16 type), -1 when it cannot be read. */
static int control_type(const uint8_t *records, size_t len) {
    int32_t rec_len, key_len, off_delta;
    int64_t ts;
    size_t p = 0, k;
    if ((k = pl_varint_read(records, len, &rec_len)) == 0) return -1;
    p += k + 1; /* attributes */
    if (p > len || (k = pl_varlong_read(records + p, len - p, &ts)) == 0) return -1;
    p += k;
    if ((k = pl_varint_read(records + p, len - p, &off_delta)) == 0) return -1;
    p += k;
    if ((k = pl_varint_read(records + p, len - p, &key_len)) == 0) return -1;
    p += k;
    if (key_len < 4 || (size_t)key_len > len - p) return -1;
    return (int)(int16_t)pl_load_be16(records + p + 2);
}

/* A control batch: 1 when it may be discarded (Kafka's onControlBatchRead). */
static int on_control_read(pl_cleaner *c, const pl_batch_header *h, int type, int *discard) {
    *discard = 0;
    if (consume_aborted_upto(c, h->base_offset + h->last_offset_delta) != PL_OK) return PL_ENOMEM;
    if (h->records_count == 0) { *discard = 1; return PL_OK; } /* cleaned before */
    prod_slot *s = prod_get(c, h->producer_id);
    if (s == NULL) return PL_ENOMEM;
    if (type == 0) { /* ABORT: kept while the cleaning still sees batches of its transaction */
        int64_t id = s->aborted, observed = s->observed;
        s->aborted = -1;
        s->observed = -1;
        if (id >= 0 && observed >= 0) return push_retained(c, c->ab[id].id);
        *discard = 1;
    } else if (type == 1) { /* COMMIT: kept while its transaction has records */
        *discard = !s->committed;
        s->committed = 0;
    }
    return PL_OK;
}

/* ---- record walking ---- */

typedef struct rec_view {
    uint8_t attributes;
    int64_t ts_delta;
    int32_t off_delta;
    const uint8_t *key;
    int32_t key_len;
    int32_t value_len;
    const uint8_t *tail;  /* from the key length varint to the record's end */
    size_t tail_len;
} rec_view;

static int next_record(const uint8_t *buf, size_t len, size_t *pos, rec_view *r) {
    int32_t rec_len;
    size_t p = *pos, k;
    if ((k = pl_varint_read(buf + p, len - p, &rec_len)) == 0 || rec_len < 1 ||
        (size_t)rec_len > len - p - k)
        return PL_ECORRUPT;
    p += k;
    size_t end = p + (size_t)rec_len;
    r->attributes = buf[p++];
    if ((k = pl_varlong_read(buf + p, end - p, &r->ts_delta)) == 0) return PL_ECORRUPT;
    p += k;
    if ((k = pl_varint_read(buf + p, end - p, &r->off_delta)) == 0) return PL_ECORRUPT;
    p += k;
    r->tail = buf + p;
    r->tail_len = end - p;
    if ((k = pl_varint_read(buf + p, end - p, &r->key_len)) == 0 || r->key_len < -1) return PL_ECORRUPT;
    p += k;
    r->key = buf + p;
    if (r->key_len > 0) {
        if ((size_t)r->key_len > end - p) return PL_ECORRUPT;
        p += (size_t)r->key_len;
    }
    if ((k = pl_varint_read(buf + p, end - p, &r->value_len)) == 0 || r->value_len < -1) return PL_ECORRUPT;
    *pos = end;
    return PL_OK;
}

static int grow_keep(pl_cleaner *c, size_t n) {
    if (n <= c->keep_cap) return PL_OK;
    size_t cap = c->keep_cap ? c->keep_cap : 256;
    while (cap < n) cap *= 2;
    uint8_t *k = realloc(c->keep, cap);
    if (k == NULL) return PL_ENOMEM;
    c->keep = k;
    uint64_t *h = realloc(c->hashes, cap * sizeof *h);
    if (h == NULL) return PL_ENOMEM;
    c->hashes = h;
    int32_t *d = realloc(c->deltas, cap * sizeof *d);
    if (d == NULL) return PL_ENOMEM;
    c->deltas = d;
    uint8_t *z = realloc(c->nulls, cap);
    if (z == NULL) return PL_ENOMEM;
    c->nulls = z;
    c->keep_cap = cap;
    return PL_OK;
}

/* Hash the keys of a batch's records into c->hashes and prefetch their home
 * slots, so that the map's cache misses overlap instead of coming one by one. */
static int hash_batch(pl_cleaner *c, const pl_offset_map *m, const pl_batch_header *h, const uint8_t *rec,
                      size_t len) {
    size_t pos = 0;
    if (h->records_count < 0 || grow_keep(c, (size_t)h->records_count) != PL_OK) return PL_ENOMEM;
    for (int32_t i = 0; i < h->records_count; i++) {
        rec_view r;
        int rc = next_record(rec, len, &pos, &r);
        if (rc != PL_OK) return rc;
        c->deltas[i] = r.off_delta;
        c->nulls[i] = r.value_len < 0;
        if (r.key_len < 0) {
            c->hashes[i] = 0;
            continue;
        }
        uint64_t hash = pl_offset_map_hash(r.key, r.key_len > 0 ? (size_t)r.key_len : 0);
        c->hashes[i] = hash;
        __builtin_prefetch(m->slots + 2 * home_slot(m, hash));
    }
    return pos == len ? PL_OK : PL_ECORRUPT;
}

/* One stored batch at buf + pos: its header, records section and codec. */
typedef struct batch_view {
    pl_batch_header h;
    const uint8_t *rec;
    size_t total, rec_len;
    int codec;
} batch_view;

static int read_batch(const uint8_t *buf, size_t len, size_t pos, batch_view *v) {
    int rc = pl_batch_parse_header(buf + pos, len - pos, &v->h);
    if (rc != PL_OK) return rc;
    v->total = (size_t)v->h.batch_length + PL_BATCH_LOG_OVERHEAD;
    v->rec = buf + pos + PL_BATCH_HEADER_SIZE;
    v->rec_len = v->total - PL_BATCH_HEADER_SIZE;
    v->codec = v->h.attributes & PL_ATTR_COMPRESSION_MASK;
    return PL_OK;
}

/* Add the keys of a batch's records (uncompressed section) to the map. */
static int map_records(pl_cleaner *c, pl_offset_map *m, const pl_batch_header *h, const uint8_t *rec,
                       size_t len, int64_t start_offset, int *status) {
    int rc = hash_batch(c, m, h, rec, len);
    if (rc != PL_OK) return rc;
    for (int32_t i = 0; i < h->records_count; i++) {
        int64_t offset = h->base_offset + c->deltas[i];
        c->st.map_records++;
        if (offset >= c->map_end) break;
        if (c->hashes[i] != 0 && offset >= start_offset && pl_offset_map_put(m, c->hashes[i], offset) == PL_EFULL) {
            *status = PL_CLEAN_FULL;
            return PL_OK;
        }
    }
    int64_t last = h->base_offset + h->last_offset_delta;
    if (last >= c->map_end) last = c->map_end - 1;
    if (last >= start_offset) m->latest_offset = last;
    return PL_OK;
}

int pl_cleaner_map_walk(pl_cleaner *c, pl_offset_map *m, const uint8_t *buf, size_t len, size_t *pos,
                        int64_t start_offset, int *status) {
    *status = PL_CLEAN_DONE;
    while (*pos < len) {
        batch_view v;
        int rc = read_batch(buf, len, *pos, &v);
        if (rc != PL_OK) return rc;
        const pl_batch_header *h = &v.h;
        if (h->base_offset >= c->map_end) return PL_OK; /* past the dirty range */
        c->st.map_bytes += (int64_t)v.total;
        int64_t last = h->base_offset + h->last_offset_delta;
        if (last >= c->map_end) last = c->map_end - 1;
        if (h->attributes & PL_ATTR_CONTROL) {
            int discard;
            int type = v.codec == 0 && h->records_count > 0 ? control_type(v.rec, v.rec_len) : -1;
            if (on_control_read(c, h, type, &discard) != PL_OK) return PL_ENOMEM;
            if (last >= start_offset) m->latest_offset = last;
        } else {
            int aborted;
            if (on_batch_read(c, h, &aborted) != PL_OK) return PL_ENOMEM;
            if (aborted || h->records_count == 0) {
                if (last >= start_offset) m->latest_offset = last;
            } else if (last < start_offset) {
                /* nothing of it is dirty */
            } else if (v.codec != 0) {
                c->pend.h = *h;
                c->pend.position = (int64_t)*pos;
                c->pend.total = (int64_t)v.total;
                c->pend.start_offset = start_offset;
                *pos += v.total;
                *status = PL_CLEAN_INFLATE;
                return PL_OK;
            } else {
                rc = map_records(c, m, h, v.rec, v.rec_len, start_offset, status);
                if (rc != PL_OK) return rc;
                if (*status == PL_CLEAN_FULL) return PL_OK;
            }
        }
        *pos += v.total;
    }
    return PL_OK;
}

int pl_cleaner_map_inflated(pl_cleaner *c, pl_offset_map *m, const uint8_t *records, size_t len,
                            int *status) {
    *status = PL_CLEAN_DONE;
    return map_records(c, m, &c->pend.h, records, len, c->pend.start_offset, status);
}

void pl_cleaner_pending(const pl_cleaner *c, int64_t *position, int64_t *total, int *codec) {
    *position = c->pend.position;
    *total = c->pend.total;
    *codec = c->pend.h.attributes & PL_ATTR_COMPRESSION_MASK;
}

/* ---- filtering ---- */

static int producer_keeps(pl_cleaner *c, const pl_batch_header *h) {
    if (h->producer_id < 0) return 0;
    prod_slot *s = prod_find(c, h->producer_id);
    if (s == NULL || !s->known) return 0;
    if (s->last_data >= 0) return h->base_offset + h->last_offset_delta == s->last_data;
    return (h->attributes & PL_ATTR_CONTROL) && h->producer_epoch == s->epoch;
}

/* Kafka's checkBatchRetention, restated for one batch. */
static int plan_batch(pl_cleaner *c, const pl_batch_header *h, const uint8_t *rec, size_t rec_len,
                      pending *plan) {
    int can_discard;
    int codec = h->attributes & PL_ATTR_COMPRESSION_MASK;
    int has_horizon = (h->attributes & PL_ATTR_DELETE_HORIZON) != 0;
    int control = (h->attributes & PL_ATTR_CONTROL) != 0;
    if (control) {
        int type = codec == 0 && h->records_count > 0 ? control_type(rec, rec_len) : -1;
        if (on_control_read(c, h, type, &can_discard) != PL_OK) return PL_ENOMEM;
        plan->discard_records = can_discard && has_horizon && h->base_timestamp <= c->now_ms;
    } else {
        if (on_batch_read(c, h, &can_discard) != PL_OK) return PL_ENOMEM;
        plan->discard_records = can_discard;
    }
    plan->retain_empty = producer_keeps(c, h) ||
                         h->base_offset + h->last_offset_delta + 1 == c->upper_bound;
    plan->marker_for_empty_txn = can_discard && control;
    plan->h = *h;
    return PL_OK;
}

/* Which records stay (c->keep), how many, whether a kept one is a tombstone. */
static int judge_records(pl_cleaner *c, pl_offset_map *m, const pending *plan, const uint8_t *rec,
                         size_t len, int32_t *kept, int *tombstones) {
    const pl_batch_header *h = &plan->h;
    int has_horizon = (h->attributes & PL_ATTR_DELETE_HORIZON) != 0;
    int keep_deletes = !has_horizon || c->now_ms < h->base_timestamp;
    int control = (h->attributes & PL_ATTR_CONTROL) != 0;
    *kept = 0;
    *tombstones = 0;
    int rc = hash_batch(c, m, h, rec, len);
    if (rc != PL_OK) return rc;
    c->st.records_read += h->records_count;
    for (int32_t i = 0; i < h->records_count; i++) {
        int64_t offset = h->base_offset + c->deltas[i];
        int keep;
        if (plan->discard_records) {
            keep = 0;
        } else if (control || offset > m->latest_offset) {
            keep = 1;
        } else if (c->hashes[i] == 0) {
            keep = 0;
            c->st.invalid_records++;
        } else {
            int64_t found = pl_offset_map_get(m, c->hashes[i]);
            keep = offset >= found && (!c->nulls[i] || keep_deletes);
        }
        c->keep[i] = (uint8_t)keep;
        if (keep) {
            (*kept)++;
            if (c->nulls[i]) *tombstones = 1;
        }
    }
    return PL_OK;
}

/* Write the kept records (timestamps re-based on new_base) at out; fill the
 * new header's timestamps. @return bytes written. */
static size_t write_kept(pl_cleaner *c, const pl_batch_header *h, const uint8_t *rec, size_t len,
                         int64_t horizon, uint8_t *out, pl_batch_header *nh) {
    size_t pos = 0, w = 0;
    int log_append = (h->attributes & PL_ATTR_LOG_APPEND_TIME) != 0;
    int64_t new_base = horizon, max_ts = -1;
    int first = 1;
    for (int32_t i = 0; i < h->records_count; i++) {
        rec_view r;
        (void)next_record(rec, len, &pos, &r); /* judged already */
        if (!c->keep[i]) continue;
        int64_t ts = h->base_timestamp + r.ts_delta;
        if (first) {
            if (horizon < 0) new_base = ts;
            first = 0;
        }
        if (ts > max_ts) max_ts = ts;
        int64_t delta = ts - new_base;
        size_t body = 1 + pl_varlong_size(delta) + pl_varlong_size(r.off_delta) + r.tail_len;
        w += pl_varlong_write(out + w, (int64_t)body);
        out[w++] = r.attributes;
        w += pl_varlong_write(out + w, delta);
        w += pl_varlong_write(out + w, r.off_delta);
        memcpy(out + w, r.tail, r.tail_len);
        w += r.tail_len;
    }
    *nh = *h;
    nh->records_count = 0;
    for (int32_t i = 0; i < h->records_count; i++) nh->records_count += c->keep[i];
    nh->base_timestamp = new_base;
    nh->max_timestamp = log_append ? h->max_timestamp : max_ts;
    nh->attributes = (int16_t)(h->attributes & ~PL_ATTR_DELETE_HORIZON);
    if (horizon >= 0) nh->attributes = (int16_t)(nh->attributes | PL_ATTR_DELETE_HORIZON);
    nh->crc = 0;
    nh->batch_length = 0;
    return w;
}

/* A kept batch's horizon (-1: none) counts when the batch still holds what a
 * later round removes at it: a tombstone, or a marker (a data batch keeps its
 * horizon after its tombstones went, with nothing left to remove). */
static void note_horizon(pl_cleaner *c, const pl_batch_header *h, int64_t horizon, int tombstones) {
    if (horizon < 0 || !(tombstones || (h->attributes & PL_ATTR_CONTROL))) return;
    if (c->st.earliest_delete_horizon < 0 || horizon < c->st.earliest_delete_horizon)
        c->st.earliest_delete_horizon = horizon;
}

static int64_t horizon_of(const pl_batch_header *h) {
    return (h->attributes & PL_ATTR_DELETE_HORIZON) ? h->base_timestamp : -1;
}

static void write_empty(uint8_t *out, const pl_batch_header *h) {
    pl_batch_header e = *h;
    e.attributes = (int16_t)(h->attributes & (PL_ATTR_LOG_APPEND_TIME | PL_ATTR_TRANSACTIONAL | PL_ATTR_CONTROL));
    e.base_timestamp = e.max_timestamp = h->max_timestamp;
    e.records_count = 0;
    e.crc = 0;
    e.batch_length = 0;
    pl_batch_write_header(out, &e);
    pl_batch_seal(out, PL_BATCH_HEADER_SIZE);
}

/* The horizon a kept batch is written with, or -2 when it may stay as it is. */
static int64_t new_horizon(const pl_cleaner *c, const pending *plan, int all_kept, int tombstones) {
    const pl_batch_header *h = &plan->h;
    int has_horizon = (h->attributes & PL_ATTR_DELETE_HORIZON) != 0;
    int set = (tombstones || plan->marker_for_empty_txn) && !has_horizon;
    if (all_kept && !set) return -2;
    if (set) return c->now_ms + c->delete_retention_ms;
    return has_horizon ? h->base_timestamp : -1;
}

int pl_cleaner_filter_walk(pl_cleaner *c, pl_offset_map *m, const uint8_t *buf, size_t len, size_t *pos,
                           uint8_t *out, size_t out_cap, size_t *out_len, int *status) {
    *status = PL_CLEAN_DONE;
    while (*pos < len) {
        batch_view v;
        int rc = read_batch(buf, len, *pos, &v);
        if (rc != PL_OK) return rc;
        pl_batch_header h = v.h;
        const uint8_t *b = buf + *pos, *rec = v.rec;
        size_t total = v.total, rec_len = v.rec_len;
        int codec = v.codec;
        /* Room first, so that a batch is judged (and the transaction state
         * moved) exactly once: at worst each record's timestamp delta grows
         * to 10 bytes. */
        size_t worst = total + (size_t)(h.records_count > 0 ? h.records_count : 0) * 10 + PL_BATCH_HEADER_SIZE;
        if (out_cap - *out_len < worst) {
            c->out_needed = worst;
            *status = PL_CLEAN_OUT_FULL;
            return PL_OK;
        }
        pending plan;
        if (plan_batch(c, &h, rec, rec_len, &plan) != PL_OK) return PL_ENOMEM;
        c->st.bytes_read += (int64_t)total;
        uint8_t *o = out + *out_len;
        size_t written = 0;
        if (plan.discard_records || h.records_count == 0) {
            if (plan.discard_records) c->st.records_read += h.records_count;
            if (plan.retain_empty) {
                write_empty(o, &h);
                written = PL_BATCH_HEADER_SIZE;
                c->st.batches_emptied++;
            } else {
                c->st.batches_dropped++;
            }
        } else if (codec != 0) {
            plan.position = (int64_t)*pos;
            plan.total = (int64_t)total;
            c->pend = plan;
            *pos += total;
            *status = PL_CLEAN_INFLATE;
            return PL_OK;
        } else {
            int32_t kept;
            int tombstones;
            rc = judge_records(c, m, &plan, rec, rec_len, &kept, &tombstones);
            if (rc != PL_OK) return rc;
            c->st.records_kept += kept;
            if (kept > 0) {
                int64_t horizon = new_horizon(c, &plan, kept == h.records_count, tombstones);
                if (horizon == -2) {
                    memcpy(o, b, total);
                    note_horizon(c, &h, horizon_of(&h), tombstones);
                    written = total;
                    c->st.batches_copied++;
                } else {
                    pl_batch_header nh;
                    size_t n = write_kept(c, &h, rec, rec_len, horizon, o + PL_BATCH_HEADER_SIZE, &nh);
                    pl_batch_write_header(o, &nh);
                    written = PL_BATCH_HEADER_SIZE + n;
                    pl_batch_seal(o, written);
                    note_horizon(c, &h, horizon, tombstones);
                    c->st.batches_rewritten++;
                }
            } else if (plan.retain_empty) {
                write_empty(o, &h);
                written = PL_BATCH_HEADER_SIZE;
                c->st.batches_emptied++;
            } else {
                c->st.batches_dropped++;
            }
        }
        *out_len += written;
        c->st.bytes_written += (int64_t)written;
        *pos += total;
    }
    return PL_OK;
}

size_t pl_cleaner_out_needed(const pl_cleaner *c) { return c->out_needed; }

int pl_cleaner_filter_inflated(pl_cleaner *c, pl_offset_map *m, const uint8_t *records, size_t len,
                               uint8_t *out, size_t out_cap, size_t *out_len, int *decision) {
    pending *plan = &c->pend;
    const pl_batch_header *h = &plan->h;
    int32_t kept;
    int tombstones;
    *out_len = 0;
    if (out_cap < len + (size_t)h->records_count * 10 + PL_BATCH_HEADER_SIZE) return PL_EINVAL;
    int rc = judge_records(c, m, plan, records, len, &kept, &tombstones);
    if (rc != PL_OK) return rc;
    c->st.records_kept += kept;
    if (kept > 0) {
        int64_t horizon = new_horizon(c, plan, kept == h->records_count, tombstones);
        note_horizon(c, h, horizon == -2 ? horizon_of(h) : horizon, tombstones);
        if (horizon == -2) {
            *decision = PL_KEEP_ORIGINAL;
            c->st.batches_copied++;
            c->st.bytes_written += plan->total;
            return PL_OK;
        }
        *out_len = write_kept(c, h, records, len, horizon, out, &c->pend_new);
        *decision = PL_KEEP_REENCODE;
        c->st.batches_rewritten++;
        return PL_OK;
    }
    if (plan->retain_empty) {
        write_empty(out, h);
        *out_len = PL_BATCH_HEADER_SIZE;
        *decision = PL_KEEP_EMPTY;
        c->st.batches_emptied++;
        c->st.bytes_written += PL_BATCH_HEADER_SIZE;
        return PL_OK;
    }
    *decision = PL_KEEP_NOTHING;
    c->st.batches_dropped++;
    return PL_OK;
}

int pl_cleaner_seal_pending(pl_cleaner *c, const uint8_t *compressed, size_t len, uint8_t *out, size_t out_cap,
                            size_t *out_len) {
    size_t total = PL_BATCH_HEADER_SIZE + len;
    if (out_cap < total || total - PL_BATCH_LOG_OVERHEAD > INT32_MAX) return PL_EINVAL;
    pl_batch_write_header(out, &c->pend_new);
    memcpy(out + PL_BATCH_HEADER_SIZE, compressed, len);
    pl_batch_seal(out, total);
    *out_len = total;
    c->st.bytes_written += (int64_t)total;
    return PL_OK;
}

size_t pl_cleaner_take_retained_aborted(pl_cleaner *c, int64_t *out, size_t cap) {
    size_t n = c->retained_count < cap ? c->retained_count : cap;
    memcpy(out, c->retained_ab, n * sizeof *out);
    memmove(c->retained_ab, c->retained_ab + n, (c->retained_count - n) * sizeof *out);
    c->retained_count -= n;
    return n;
}
