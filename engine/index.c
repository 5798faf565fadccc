/*
 * index.c: the sparse offset and time indexes; formats and rules in index.h.
 */
#define _GNU_SOURCE
#include "index.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pl_common.h"

struct pl_index {
    int ix_fd;
    int ix_kind;
    int ix_writable;
    int ix_sealed;           /* trimmed: no more appends */
    int64_t ix_base_offset;
    int64_t ix_entry_size;
    int64_t ix_entries;
    int64_t ix_max_entries;  /* capacity of the file/mapping */
    uint8_t *ix_map;
    int64_t ix_map_bytes;
    int64_t ix_allocated;    /* file bytes known to have disk blocks (see pl_index_reserve) */
    int ix_no_fallocate;     /* the file system has no fallocate: fall back to sparse */
};

static int map_file(pl_index *ix, int64_t bytes) {
    ix->ix_map = NULL;
    ix->ix_map_bytes = 0;
    if (bytes <= 0) return PL_OK;
    int prot = PROT_READ | (ix->ix_writable ? PROT_WRITE : 0);
    void *p = mmap(NULL, (size_t)bytes, prot, MAP_SHARED, ix->ix_fd, 0);
    if (p == MAP_FAILED) return PL_EIO;
    PL_DEBUG_COUNT(maps_opened);
    /* Appends touch each new page once, in order: a fault with the default
     * read-around made the kernel zero-fill the (fallocated, unwritten) pages
     * around it every time, an eighth of an embedded producer's write path. */
    if (ix->ix_writable) (void)madvise(p, (size_t)bytes, MADV_RANDOM);
    ix->ix_map = p;
    ix->ix_map_bytes = bytes;
    return PL_OK;
}

static void unmap_file(pl_index *ix) {
    if (ix->ix_map) {
        munmap(ix->ix_map, (size_t)ix->ix_map_bytes);
        PL_DEBUG_COUNT(maps_closed);
    }
    ix->ix_map = NULL;
    ix->ix_map_bytes = 0;
}

static int entry_is_zero(const pl_index *ix, int64_t i) {
    const uint8_t *e = ix->ix_map + i * ix->ix_entry_size;
    for (int64_t k = 0; k < ix->ix_entry_size; k++)
        if (e[k]) return 0;
    return 1;
}

int pl_index_open(pl_index **out, const char *path, int kind, int64_t base_offset, int64_t max_bytes,
                  int writable) {
    *out = NULL;
    if (kind != PL_INDEX_OFFSET && kind != PL_INDEX_TIME) return PL_EINVAL;
    pl_index *ix = calloc(1, sizeof *ix);
    if (!ix) return PL_ENOMEM;
    ix->ix_kind = kind;
    ix->ix_writable = writable;
    ix->ix_base_offset = base_offset;
    ix->ix_entry_size = kind == PL_INDEX_OFFSET ? PL_OFFSET_ENTRY_SIZE : PL_TIME_ENTRY_SIZE;
    ix->ix_fd = open(path, writable ? (O_RDWR | O_CREAT | O_CLOEXEC) : (O_RDONLY | O_CLOEXEC), 0644);
    if (ix->ix_fd < 0) { free(ix); return PL_EIO; }
    PL_DEBUG_COUNT(fds_opened);
    struct stat st;
    int rc = PL_EIO;
    if (fstat(ix->ix_fd, &st) != 0) goto fail;
    int64_t file_entries = (int64_t)st.st_size / ix->ix_entry_size;
    int64_t cap = file_entries;
    if (writable) {
        int64_t want = max_bytes / ix->ix_entry_size;
        if (want > cap) cap = want;
        if (cap * ix->ix_entry_size != (int64_t)st.st_size &&
            ftruncate(ix->ix_fd, (off_t)(cap * ix->ix_entry_size)) != 0) {
            rc = errno == ENOSPC || errno == EFBIG ? PL_ENOSPC : PL_EIO;
            goto fail;
        }
    }
    if (!writable && max_bytes < 0) {
        /* Another process's live index (it may trim the file under a mapping):
         * not read at all. */
        *out = ix;
        return PL_OK;
    }
    ix->ix_max_entries = cap;
    if ((rc = map_file(ix, cap * ix->ix_entry_size)) != PL_OK) goto fail;
    /* An untrimmed file after a crash ends in zeros: they are not entries.
     * Entry 0 may legitimately be all zero ((base, 0) or (ts 0, base)). */
    ix->ix_entries = file_entries;
    while (ix->ix_entries > 1 && entry_is_zero(ix, ix->ix_entries - 1)) ix->ix_entries--;
    if (ix->ix_entries == 1 && file_entries > 1 && entry_is_zero(ix, 0) &&
        kind == PL_INDEX_TIME)
        ix->ix_entries = 0;
    ix->ix_allocated = ix->ix_entries * ix->ix_entry_size;
    *out = ix;
    return PL_OK;
fail:
    {
        int saved = errno;
        close(ix->ix_fd);
        PL_DEBUG_COUNT(fds_closed);
        free(ix);
        errno = saved;
    }
    return rc;
}

int pl_index_close(pl_index *ix, int trim) {
    int rc = PL_OK;
    if (!ix) return PL_OK;
    unmap_file(ix);
    if (trim && ix->ix_writable &&
        ftruncate(ix->ix_fd, (off_t)(ix->ix_entries * ix->ix_entry_size)) != 0)
        rc = PL_EIO;
    close(ix->ix_fd);
    PL_DEBUG_COUNT(fds_closed);
    free(ix);
    return rc;
}

int pl_index_reserve(pl_index *ix, int64_t n) {
    int64_t need = n * ix->ix_entry_size;
    if (PL_LIKELY(need <= ix->ix_allocated) || ix->ix_no_fallocate) return PL_OK;
    if (n > pl_index_max_entries(ix)) return PL_EFULL;
    int64_t page = (int64_t)sysconf(_SC_PAGESIZE);
    int64_t end = (need + 4 * page - 1) / page * page; /* a few pages ahead: one call per few hundred entries */
    int64_t cap = ix->ix_max_entries * ix->ix_entry_size;
    if (end > cap) end = cap;
    if (end < need) end = need;
    int err = posix_fallocate(ix->ix_fd, (off_t)ix->ix_allocated, (off_t)(end - ix->ix_allocated));
    if (err == EOPNOTSUPP || err == ENOSYS || err == EINVAL) {
        ix->ix_no_fallocate = 1;
        return PL_OK;
    }
    if (err != 0) {
        errno = err;
        return err == ENOSPC || err == EFBIG || err == EDQUOT ? PL_ENOSPC : PL_EIO;
    }
    ix->ix_allocated = end;
    return PL_OK;
}

int64_t pl_index_entries(const pl_index *ix) { return ix->ix_entries; }
int64_t pl_index_max_entries(const pl_index *ix) { return ix->ix_sealed ? ix->ix_entries : ix->ix_max_entries; }
int pl_index_is_full(const pl_index *ix) { return ix->ix_entries >= pl_index_max_entries(ix); }
int pl_index_kind(const pl_index *ix) { return ix->ix_kind; }
int pl_index_fd(const pl_index *ix) { return ix->ix_fd; }
const uint8_t *pl_index_data(const pl_index *ix) { return ix->ix_map; }

/* Raw fields of entry i: for the offset index (relative offset, position), for the
 * time index (timestamp, relative offset). */
static inline int64_t off_rel(const pl_index *ix, int64_t i) {
    return (int32_t)pl_load_be32(ix->ix_map + i * PL_OFFSET_ENTRY_SIZE);
}
static inline int64_t off_pos(const pl_index *ix, int64_t i) {
    return (int32_t)pl_load_be32(ix->ix_map + i * PL_OFFSET_ENTRY_SIZE + 4);
}
static inline int64_t time_ts(const pl_index *ix, int64_t i) {
    return (int64_t)pl_load_be64(ix->ix_map + i * PL_TIME_ENTRY_SIZE);
}
static inline int64_t time_rel(const pl_index *ix, int64_t i) {
    return (int32_t)pl_load_be32(ix->ix_map + i * PL_TIME_ENTRY_SIZE + 8);
}

/* The key an entry is searched by: relative offset or timestamp. */
static inline int64_t entry_key(const pl_index *ix, int64_t i) {
    return ix->ix_kind == PL_INDEX_OFFSET ? off_rel(ix, i) : time_ts(ix, i);
}

/* Index of the greatest entry with key <= target, or -1.
 *
 * Interpolation first: Kafka's offsets are dense, so an offset index's keys grow
 * almost linearly with the slot and the guess usually lands on the answer or next
 * to it. From the guess a galloping search (steps 1, 2, 4, ...) brackets the
 * answer and a binary search finishes, so skewed keys (timestamps) still cost
 * O(log n). Touching two or three entries instead of log2(n) keeps lookups in
 * the pages consumers near the tail already use, which is what Kafka's "warm
 * section" binary search is for. */
static int64_t floor_slot(const pl_index *ix, int64_t target) {
    int64_t n = ix->ix_entries;
    if (n == 0 || entry_key(ix, 0) > target) return -1;
    int64_t k_last = entry_key(ix, n - 1);
    if (k_last <= target) return n - 1;
    int64_t k0 = entry_key(ix, 0);
    /* key(0) <= target < key(n-1); double keeps timestamp spans from overflowing */
    int64_t g = (int64_t)((double)(target - k0) / (double)(k_last - k0) * (double)(n - 1));
    if (g < 0) g = 0;
    if (g > n - 2) g = n - 2;
    int64_t lo, hi; /* invariant: key(lo) <= target < key(hi) */
    if (entry_key(ix, g) <= target) {
        lo = g;
        int64_t step = 1;
        for (;;) {
            hi = lo + step < n - 1 ? lo + step : n - 1;
            if (entry_key(ix, hi) > target) break;
            lo = hi;
            step <<= 1;
        }
    } else {
        hi = g;
        int64_t step = 1;
        for (;;) {
            lo = hi - step > 0 ? hi - step : 0;
            if (entry_key(ix, lo) <= target) break;
            hi = lo;
            step <<= 1;
        }
    }
    while (hi - lo > 1) {
        int64_t mid = lo + (hi - lo) / 2;
        if (entry_key(ix, mid) <= target) lo = mid;
        else hi = mid;
    }
    return lo;
}

int pl_offset_index_append(pl_index *ix, int64_t offset, int64_t position) {
    if (ix->ix_kind != PL_INDEX_OFFSET || !ix->ix_writable) return PL_EINVAL;
    int64_t rel = offset - ix->ix_base_offset;
    if (rel < 0 || position < 0 || position > INT32_MAX) return PL_EINVAL;
    if (rel > INT32_MAX) return PL_EOVERFLOW;
    if (ix->ix_entries > 0) {
        int64_t last = ix->ix_entries - 1;
        if (rel <= off_rel(ix, last) || position <= off_pos(ix, last)) return PL_EINVAL;
    }
    if (pl_index_is_full(ix)) return PL_EFULL;
    int rc = pl_index_reserve(ix, ix->ix_entries + 1);
    if (rc != PL_OK) return rc;
    uint8_t *e = ix->ix_map + ix->ix_entries * PL_OFFSET_ENTRY_SIZE;
    pl_store_be32(e, (uint32_t)rel);
    pl_store_be32(e + 4, (uint32_t)position);
    ix->ix_entries++;
    return PL_OK;
}

static int64_t offset_floor_slot(const pl_index *ix, int64_t target) {
    /* Compare before subtracting: target - base could overflow. */
    if (target < ix->ix_base_offset) return -1;
    int64_t rel = target - ix->ix_base_offset;
    return floor_slot(ix, rel > INT32_MAX ? INT32_MAX : rel);
}

void pl_offset_index_lookup2(const pl_index *ix, int64_t target, int64_t *offset, int64_t *position,
                             int64_t *next_offset, int64_t *next_position, int64_t *next_slot) {
    int64_t slot = offset_floor_slot(ix, target);
    if (slot < 0) { *offset = ix->ix_base_offset; *position = 0; }
    else { *offset = ix->ix_base_offset + off_rel(ix, slot); *position = off_pos(ix, slot); }
    if (slot + 1 < ix->ix_entries) {
        *next_offset = ix->ix_base_offset + off_rel(ix, slot + 1);
        *next_position = off_pos(ix, slot + 1);
        *next_slot = slot + 1;
    } else {
        *next_offset = *next_position = *next_slot = -1;
    }
}

void pl_offset_index_lookup(const pl_index *ix, int64_t target, int64_t *offset, int64_t *position) {
    int64_t slot = offset_floor_slot(ix, target);
    if (slot < 0) { *offset = ix->ix_base_offset; *position = 0; return; }
    *offset = ix->ix_base_offset + off_rel(ix, slot);
    *position = off_pos(ix, slot);
}

int pl_time_index_append(pl_index *ix, int64_t timestamp, int64_t offset) {
    if (ix->ix_kind != PL_INDEX_TIME || !ix->ix_writable) return PL_EINVAL;
    /* An empty index's last entry is Kafka's (NO_TIMESTAMP, base offset): a
     * segment whose records carry no timestamp (-1) gets no entry (its offset
     * of max timestamp is still -1 then). */
    if (ix->ix_entries == 0 && timestamp <= -1) return PL_OK;
    int64_t rel = offset - ix->ix_base_offset;
    if (rel < 0) return PL_EINVAL;
    if (rel > INT32_MAX) return PL_EOVERFLOW;
    if (ix->ix_entries > 0) {
        int64_t last = ix->ix_entries - 1;
        if (timestamp <= time_ts(ix, last)) return PL_OK;  /* max timestamp did not grow */
        if (rel < time_rel(ix, last)) return PL_EINVAL;
    }
    if (pl_index_is_full(ix)) return PL_EFULL;
    int rc = pl_index_reserve(ix, ix->ix_entries + 1);
    if (rc != PL_OK) return rc;
    uint8_t *e = ix->ix_map + ix->ix_entries * PL_TIME_ENTRY_SIZE;
    pl_store_be64(e, (uint64_t)timestamp);
    pl_store_be32(e + 8, (uint32_t)rel);
    ix->ix_entries++;
    return PL_OK;
}

void pl_time_index_lookup(const pl_index *ix, int64_t target, int64_t *timestamp, int64_t *offset) {
    int64_t slot = floor_slot(ix, target);
    if (slot < 0) { *timestamp = -1; *offset = ix->ix_base_offset; return; }
    *timestamp = time_ts(ix, slot);
    *offset = ix->ix_base_offset + time_rel(ix, slot);
}

int pl_index_entry(const pl_index *ix, int64_t i, int64_t *a, int64_t *b) {
    if (i < 0 || i >= ix->ix_entries) return PL_ERANGE;
    if (ix->ix_kind == PL_INDEX_OFFSET) {
        *a = ix->ix_base_offset + off_rel(ix, i);
        *b = off_pos(ix, i);
    } else {
        *a = time_ts(ix, i);
        *b = ix->ix_base_offset + time_rel(ix, i);
    }
    return PL_OK;
}

void pl_index_reset(pl_index *ix) {
    /* Not by offset: a garbage index may hold entries that compare below the base. */
    if (ix->ix_writable && ix->ix_map && ix->ix_entries > 0)
        memset(ix->ix_map, 0, (size_t)(ix->ix_entries * ix->ix_entry_size));
    ix->ix_entries = 0;
}

static inline int64_t entry_rel_offset(const pl_index *ix, int64_t i) {
    return ix->ix_kind == PL_INDEX_OFFSET ? off_rel(ix, i) : time_rel(ix, i);
}

void pl_index_truncate_to_offset(pl_index *ix, int64_t offset) {
    if (offset <= ix->ix_base_offset) { pl_index_reset(ix); return; }
    int64_t rel = offset - ix->ix_base_offset > INT32_MAX ? (int64_t)INT32_MAX + 1 : offset - ix->ix_base_offset;
    int64_t before = ix->ix_entries;
    /* Offsets increase in both kinds of index, so drop from the tail. */
    while (ix->ix_entries > 0 && entry_rel_offset(ix, ix->ix_entries - 1) >= rel) ix->ix_entries--;
    /* Zero what was dropped, so a crash before the next trim cannot bring it back. */
    if (ix->ix_writable && ix->ix_map && before > ix->ix_entries)
        memset(ix->ix_map + ix->ix_entries * ix->ix_entry_size, 0,
               (size_t)((before - ix->ix_entries) * ix->ix_entry_size));
}

int pl_index_check(const pl_index *ix) {
    for (int64_t i = 0; i < ix->ix_entries; i++) {
        int64_t rel = entry_rel_offset(ix, i);
        if (rel < 0) return PL_ECORRUPT;
        if (ix->ix_kind == PL_INDEX_OFFSET && off_pos(ix, i) < 0) return PL_ECORRUPT;
        if (i == 0) continue;
        if (ix->ix_kind == PL_INDEX_OFFSET) {
            if (rel <= off_rel(ix, i - 1) || off_pos(ix, i) <= off_pos(ix, i - 1)) return PL_ECORRUPT;
        } else {
            if (rel < time_rel(ix, i - 1) || time_ts(ix, i) <= time_ts(ix, i - 1)) return PL_ECORRUPT;
        }
    }
    return PL_OK;
}

int pl_index_sync(pl_index *ix) {
    if (!ix->ix_map || !ix->ix_writable || ix->ix_entries == 0) return PL_OK;
    return msync(ix->ix_map, (size_t)ix->ix_map_bytes, MS_SYNC) == 0 ? PL_OK : PL_EIO;
}

int pl_index_trim(pl_index *ix) {
    if (!ix->ix_writable) return PL_OK;
    /* The mapping keeps its length (nothing past the entries is ever touched
     * again while sealed), so live views into the entries stay valid. */
    if (ftruncate(ix->ix_fd, (off_t)(ix->ix_entries * ix->ix_entry_size)) != 0) return PL_EIO;
    ix->ix_sealed = 1;
    ix->ix_allocated = ix->ix_entries * ix->ix_entry_size;
    return PL_OK;
}

int pl_index_extend(pl_index *ix, int64_t max_bytes) {
    if (!ix->ix_writable) return PL_EINVAL;
    int64_t cap = max_bytes / ix->ix_entry_size;
    if (cap < ix->ix_entries) cap = ix->ix_entries;
    if (ftruncate(ix->ix_fd, (off_t)(cap * ix->ix_entry_size)) != 0)
        return errno == ENOSPC || errno == EFBIG ? PL_ENOSPC : PL_EIO;
    if (cap != ix->ix_max_entries) {
        /* A larger capacity needs a larger mapping; the old one goes. Callers
         * only extend when no views of the entries are alive. */
        unmap_file(ix);
        ix->ix_max_entries = cap;
        int rc = map_file(ix, cap * ix->ix_entry_size);
        if (rc != PL_OK) { ix->ix_max_entries = 0; ix->ix_entries = 0; return rc; }
    }
    ix->ix_sealed = 0;
    return PL_OK;
}
