/*
 * segment.c: one .log file with its two indexes; the contract is in segment.h.
 *
 * Index rule (Kafka's LogSegment.append and recover): before an append, when more
 * than index_interval_bytes were written since the last index entry, add an offset
 * entry (largest offset of this append, position where it starts) and a time
 * entry (max timestamp so far, its offset). The counter then restarts at zero and
 * the append's size is added.
 */
#define _GNU_SOURCE
#include "segment.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "pl_common.h"

struct pl_segment {
    int sg_fd;
    pl_segment_config sg_cfg;
    uint8_t *sg_map;           /* read-only view of the .log, sg_map_bytes long */
    int64_t sg_map_bytes;
    int64_t sg_size;           /* appended bytes, including buffered ones */
    int64_t sg_os_size;        /* bytes handed to the OS */
    int64_t sg_synced_size;    /* bytes made durable by fdatasync */
    int64_t sg_next_offset;
    int64_t sg_max_timestamp;
    int64_t sg_offset_of_max_timestamp;
    int64_t sg_first_batch_timestamp;
    int64_t sg_bytes_since_index;
    int64_t sg_pins;
    int64_t sg_pin_end;        /* no live view reaches past this .log position
                                  (INT64_MAX: a view of the indexes is alive) */
    pl_index *sg_oix;
    pl_index *sg_tix;
    uint8_t *sg_wbuf;
    int64_t sg_wbuf_len;
    int64_t sg_reserved_end;   /* disk blocks are allocated up to here for buffered bytes */
    int sg_no_fallocate;       /* the file system cannot reserve: buffered bytes may meet ENOSPC late */
};

static void check_invariants(const pl_segment *s) {
#ifdef PL_DEBUG
    if (!(s->sg_synced_size <= s->sg_os_size && s->sg_os_size <= s->sg_size &&
          s->sg_size - s->sg_os_size == s->sg_wbuf_len))
        abort();
#else
    (void)s;
#endif
}

static int64_t page_round_up(int64_t n) {
    int64_t page = (int64_t)sysconf(_SC_PAGESIZE);
    if (n < page) n = page;
    return (n + page - 1) / page * page;
}

static int io_error(void) { return errno == ENOSPC || errno == EFBIG || errno == EDQUOT ? PL_ENOSPC : PL_EIO; }

static int map_log(pl_segment *s, int64_t bytes) {
    void *p = mmap(NULL, (size_t)bytes, PROT_READ, MAP_SHARED, s->sg_fd, 0);
    if (p == MAP_FAILED) return errno == ENOMEM ? PL_ENOMEM : PL_EIO;
    PL_DEBUG_COUNT(maps_opened);
    s->sg_map = p;
    s->sg_map_bytes = bytes;
    return PL_OK;
}

static void unmap_log(pl_segment *s) {
    if (s->sg_map) {
        munmap(s->sg_map, (size_t)s->sg_map_bytes);
        PL_DEBUG_COUNT(maps_closed);
    }
    s->sg_map = NULL;
    s->sg_map_bytes = 0;
}

static void reset_state(pl_segment *s) {
    s->sg_next_offset = s->sg_cfg.base_offset;
    s->sg_max_timestamp = -1;
    s->sg_offset_of_max_timestamp = -1;
    s->sg_first_batch_timestamp = -1;
    s->sg_bytes_since_index = 0;
}

int pl_segment_open(pl_segment **out, const char *log_path, const char *index_path,
                    const char *time_index_path, const pl_segment_config *cfg) {
    *out = NULL;
    if (cfg->base_offset < 0 || cfg->index_interval_bytes < 0 || cfg->write_buffer_bytes < 0)
        return PL_EINVAL;
    pl_segment *s = calloc(1, sizeof *s);
    if (!s) return PL_ENOMEM;
    s->sg_cfg = *cfg;
    reset_state(s);
    int rc = PL_EIO;
    s->sg_fd = open(log_path, cfg->writable ? (O_RDWR | O_CREAT | O_CLOEXEC) : (O_RDONLY | O_CLOEXEC),
                    0644);
    if (s->sg_fd < 0) { free(s); return PL_EIO; }
    PL_DEBUG_COUNT(fds_opened);
    struct stat st;
    if (fstat(s->sg_fd, &st) != 0) goto fail;
    s->sg_size = s->sg_os_size = s->sg_synced_size = (int64_t)st.st_size;
    int64_t reserve = cfg->reserve_bytes > s->sg_size ? cfg->reserve_bytes : s->sg_size;
    if ((rc = map_log(s, page_round_up(reserve))) != PL_OK) goto fail;
    if (cfg->write_buffer_bytes > 0 && !(s->sg_wbuf = malloc((size_t)cfg->write_buffer_bytes))) {
        rc = PL_ENOMEM;
        goto fail;
    }
    int64_t index_bytes = cfg->sealed ? 0 : cfg->index_max_bytes;
    if ((rc = pl_index_open(&s->sg_oix, index_path, PL_INDEX_OFFSET, cfg->base_offset,
                            index_bytes, cfg->writable)) != PL_OK)
        goto fail;
    if ((rc = pl_index_open(&s->sg_tix, time_index_path, PL_INDEX_TIME, cfg->base_offset,
                            index_bytes, cfg->writable)) != PL_OK)
        goto fail;
    *out = s;
    return PL_OK;
fail:
    {
        int saved = errno;
        if (s->sg_oix) pl_index_close(s->sg_oix, 0);
        unmap_log(s);
        free(s->sg_wbuf);
        close(s->sg_fd);
        PL_DEBUG_COUNT(fds_closed);
        free(s);
        errno = saved;
    }
    return rc;
}

/* Write all of p[0,n) at the OS end of the file; on failure cut the file back so
 * nothing partial stays, and leave errno and the sizes as they were. */
static int write_at_end(pl_segment *s, const uint8_t *p, size_t n) {
    int64_t start = s->sg_os_size;
    size_t done = 0;
    while (done < n) {
        ssize_t w = pwrite(s->sg_fd, p + done, n - done, (off_t)(start + (int64_t)done));
        if (w > 0) { done += (size_t)w; continue; }
        if (w < 0 && errno == EINTR) continue;
        if (w == 0) errno = ENOSPC;
        int rc = io_error(), saved = errno;
        if (ftruncate(s->sg_fd, (off_t)start) != 0) { /* the write error is the one to report */ }
        errno = saved;
        return rc;
    }
    s->sg_os_size = start + (int64_t)n;
    return PL_OK;
}

int pl_segment_flush_buffer(pl_segment *s) {
    if (s->sg_wbuf_len == 0) return PL_OK;
    int rc = write_at_end(s, s->sg_wbuf, (size_t)s->sg_wbuf_len);
    if (rc == PL_OK) s->sg_wbuf_len = 0;
    check_invariants(s);
    return rc;
}

/* Buffered bytes are acknowledged appends: before any enters the buffer, make
 * sure the disk has room for a whole buffer past the OS end of the file
 * (fallocate, keeping the file size), so that a full disk fails the append that
 * cannot be stored and never the later write of bytes already accepted. One call
 * per buffer's worth of appends. */
#define PL_WRITE_THROUGH_RESERVE ((int64_t)4 << 20)

static int reserve_buffer_space(pl_segment *s, int64_t need_end) {
    if (PL_LIKELY(need_end <= s->sg_reserved_end) || s->sg_no_fallocate) return PL_OK;
    int64_t len = s->sg_cfg.write_buffer_bytes;
    if (len == 0) {
        /* Write-through appends reserve ahead in larger steps, within the
         * segment's size: blocks allocated up front spare each write ext4's
         * per-page delayed-allocation work (a quarter of a 100 KB pwrite). */
        len = PL_WRITE_THROUGH_RESERVE;
        if (s->sg_os_size + len > s->sg_cfg.reserve_bytes) len = s->sg_cfg.reserve_bytes - s->sg_os_size;
    }
    int64_t need = need_end - s->sg_os_size;
    if (need > len) len = need;
    int r = fallocate(s->sg_fd, FALLOC_FL_KEEP_SIZE, (off_t)s->sg_os_size, (off_t)len);
    if (r != 0 && errno == ENOSPC && len > need) {
        /* Not room for the step ahead: reserve just this append, so that a
         * nearly full disk still takes what fits. */
        len = need;
        r = fallocate(s->sg_fd, FALLOC_FL_KEEP_SIZE, (off_t)s->sg_os_size, (off_t)len);
    }
    if (r != 0) {
        if (errno == EOPNOTSUPP || errno == ENOSYS) {
            s->sg_no_fallocate = 1;
            return PL_OK;
        }
        return io_error();
    }
    s->sg_reserved_end = s->sg_os_size + len;
    return PL_OK;
}

int pl_segment_close(pl_segment *s, int trim_indexes) {
    if (!s) return PL_OK;
    int rc = s->sg_pins > 0 ? PL_EBUSY : PL_OK;
    if (s->sg_cfg.writable) {
        int r1 = pl_segment_flush_buffer(s);
        if (rc == PL_OK) rc = r1;
    }
    /* Give back blocks reserved past the end for the buffer. */
    if (s->sg_cfg.writable && s->sg_reserved_end > s->sg_os_size && rc == PL_OK &&
        ftruncate(s->sg_fd, (off_t)s->sg_os_size) != 0)
        rc = PL_EIO;
    int trim = trim_indexes && s->sg_cfg.writable;
    int r2 = pl_index_close(s->sg_oix, trim);
    int r3 = pl_index_close(s->sg_tix, trim);
    if (rc == PL_OK) rc = r2 != PL_OK ? r2 : r3;
    unmap_log(s);
    if (close(s->sg_fd) != 0 && rc == PL_OK) rc = PL_EIO;
    PL_DEBUG_COUNT(fds_closed);
    free(s->sg_wbuf);
    free(s);
    return rc;
}

/* Make the mapping cover at least need bytes; only possible with no pins, since
 * a new mapping moves every pointer handed out. */
static int ensure_mapped(pl_segment *s, int64_t need) {
    if (need <= s->sg_map_bytes) return PL_OK;
    if (s->sg_pins > 0) return PL_EFULL;
    int64_t want = s->sg_map_bytes * 2 > need ? s->sg_map_bytes * 2 : need;
    uint8_t *old = s->sg_map;
    int64_t old_bytes = s->sg_map_bytes;
    int rc = map_log(s, page_round_up(want));
    if (rc != PL_OK) { s->sg_map = old; s->sg_map_bytes = old_bytes; return rc; }
    munmap(old, (size_t)old_bytes);
    PL_DEBUG_COUNT(maps_closed);
    return PL_OK;
}

/* The index rule (see the top of this file) for an append or a recovered batch
 * of size bytes starting at position, whose largest offset is last_offset. */
static int maybe_index(pl_segment *s, int64_t position, int64_t last_offset, int64_t size) {
    if (s->sg_bytes_since_index > s->sg_cfg.index_interval_bytes) {
        int rc = pl_offset_index_append(s->sg_oix, last_offset, position);
        if (rc != PL_OK) return rc;
        rc = pl_time_index_append(s->sg_tix, s->sg_max_timestamp, s->sg_offset_of_max_timestamp);
        if (rc != PL_OK) return rc;
        s->sg_bytes_since_index = 0;
    }
    s->sg_bytes_since_index += size;
    return PL_OK;
}

static void note_timestamp(pl_segment *s, int64_t max_timestamp, int64_t offset) {
    if (max_timestamp > s->sg_max_timestamp) {
        s->sg_max_timestamp = max_timestamp;
        s->sg_offset_of_max_timestamp = offset;
    }
}

int pl_segment_can_append(const pl_segment *s, size_t len, int64_t largest_offset) {
    if (largest_offset - s->sg_cfg.base_offset > INT32_MAX) return PL_EOVERFLOW;
    if (s->sg_size + (int64_t)len > INT32_MAX) return PL_EFULL;  /* positions are int32 */
    /* Pinned, the mapping cannot move to grow (see Lifetime in segment.h). */
    if (s->sg_pins > 0 && s->sg_size + (int64_t)len > s->sg_map_bytes) return PL_EFULL;
    if (pl_index_is_full(s->sg_oix) || pl_index_is_full(s->sg_tix)) return PL_EFULL;
    return PL_OK;
}

int pl_segment_append(pl_segment *s, const uint8_t *buf, size_t len, int64_t largest_offset,
                      int64_t max_timestamp, int64_t offset_of_max_timestamp) {
    if (!s->sg_cfg.writable) return PL_EINVAL;
    if (len == 0) return PL_OK;
    if (len < PL_BATCH_HEADER_SIZE || largest_offset < s->sg_next_offset ||
        (int64_t)pl_load_be64(buf) < s->sg_next_offset)
        return PL_EINVAL;
    int rc = pl_segment_can_append(s, len, largest_offset);
    if (rc != PL_OK) return rc;
    if ((rc = ensure_mapped(s, s->sg_size + (int64_t)len)) != PL_OK) return rc;
    /* Disk blocks for index entries this append may add, before any byte is
     * written: afterwards nothing may fail (see the top of this file). */
    if ((rc = pl_index_reserve(s->sg_oix, pl_index_entries(s->sg_oix) + 1)) != PL_OK ||
        (rc = pl_index_reserve(s->sg_tix, pl_index_entries(s->sg_tix) + 1)) != PL_OK)
        return rc;

    int64_t position = s->sg_size;
    int64_t cap = s->sg_cfg.write_buffer_bytes;
    if (cap > 0 && (int64_t)len <= cap - s->sg_wbuf_len) {
        if ((rc = reserve_buffer_space(s, s->sg_size + (int64_t)len)) != PL_OK) return rc;
        memcpy(s->sg_wbuf + s->sg_wbuf_len, buf, len);
        s->sg_wbuf_len += (int64_t)len;
    } else {
        if ((rc = pl_segment_flush_buffer(s)) != PL_OK) return rc;
        if ((int64_t)len < cap) {
            if ((rc = reserve_buffer_space(s, s->sg_size + (int64_t)len)) != PL_OK) return rc;
            memcpy(s->sg_wbuf, buf, len);
            s->sg_wbuf_len = (int64_t)len;
        } else if ((cap == 0 && (rc = reserve_buffer_space(s, s->sg_size + (int64_t)len)) != PL_OK) ||
                   (rc = write_at_end(s, buf, len)) != PL_OK) {
            return rc;
        }
    }
    /* The bytes are in: from here on nothing fails except index bookkeeping,
     * which can_append made sure has room. */
    if (position == 0) s->sg_first_batch_timestamp = (int64_t)pl_load_be64(buf + 35);
    note_timestamp(s, max_timestamp, offset_of_max_timestamp);
    rc = maybe_index(s, position, largest_offset, (int64_t)len);
    s->sg_size = position + (int64_t)len;
    s->sg_next_offset = largest_offset + 1;
    check_invariants(s);
    return rc;
}

int pl_segment_sync_data(pl_segment *s) {
    if (!s->sg_cfg.writable) return PL_OK;
    int rc = pl_segment_flush_buffer(s);
    if (rc != PL_OK) return rc;
    if (s->sg_synced_size < s->sg_os_size) {
        if (fdatasync(s->sg_fd) != 0) return io_error();
        s->sg_synced_size = s->sg_os_size;
    }
    return PL_OK;
}

int pl_segment_sync(pl_segment *s) {
    if (!s->sg_cfg.writable) return PL_OK;
    int rc = pl_segment_sync_data(s);
    if (rc != PL_OK) return rc;
    if ((rc = pl_index_sync(s->sg_oix)) != PL_OK) return rc;
    return pl_index_sync(s->sg_tix);
}

int pl_segment_bytes(pl_segment *s, int64_t pos, int64_t len, const uint8_t **out) {
    if (pos < 0 || len < 0 || pos + len > s->sg_size) return PL_ERANGE;
    if (pos + len > s->sg_os_size) {
        int rc = pl_segment_flush_buffer(s);
        if (rc != PL_OK) return rc;
    }
    *out = s->sg_map + pos;
    return PL_OK;
}

/* Walk batch headers from position pos to the first batch whose last offset >= target. */
static int walk_to_offset(pl_segment *s, int64_t pos, int64_t target, int64_t *position,
                          pl_batch_header *hdr) {
    const uint8_t *base;
    int rc = pl_segment_bytes(s, 0, s->sg_size, &base);
    if (rc != PL_OK) return rc;
    while (pos < s->sg_size) {
        rc = pl_batch_parse_header(base + pos, (size_t)(s->sg_size - pos), hdr);
        if (rc != PL_OK) return rc;
        if (hdr->base_offset + hdr->last_offset_delta >= target) { *position = pos; return PL_OK; }
        pos += (int64_t)hdr->batch_length + PL_BATCH_LOG_OVERHEAD;
    }
    return PL_ERANGE;
}

/* A position read from an index is only a hint: outside the file, start over. */
static inline int64_t sane_position(const pl_segment *s, int64_t pos) {
    return pos < 0 || pos >= s->sg_size ? 0 : pos;
}

int pl_segment_find_batch(pl_segment *s, int64_t target, int64_t *position, pl_batch_header *hdr) {
    if (target >= s->sg_next_offset) return PL_ERANGE;
    int64_t off, pos, next_off, next_pos, next_slot;
    pl_offset_index_lookup2(s->sg_oix, target, &off, &pos, &next_off, &next_pos, &next_slot);
    /* Try the batch the next entry starts first: with large batches it is the
     * target's, and the walk from the floor would read one more header (a cache
     * miss on a random read). */
    if (next_off >= target && next_pos > 0 && next_pos < s->sg_size) {
        const uint8_t *base;
        int rc = pl_segment_bytes(s, 0, s->sg_size, &base);
        if (rc != PL_OK) return rc;
        if (pl_batch_parse_header(base + next_pos, (size_t)(s->sg_size - next_pos), hdr) == PL_OK &&
            hdr->base_offset <= target && hdr->base_offset + hdr->last_offset_delta >= target) {
            *position = next_pos;
            return PL_OK;
        }
    }
    return walk_to_offset(s, sane_position(s, pos), target, position, hdr);
}

int pl_segment_find_time(pl_segment *s, int64_t timestamp, int64_t *position, pl_batch_header *hdr) {
    int64_t ts, off, idx_off, pos;
    pl_time_index_lookup(s->sg_tix, timestamp, &ts, &off);
    pl_offset_index_lookup(s->sg_oix, off, &idx_off, &pos);
    pos = sane_position(s, pos);
    const uint8_t *base;
    int rc = pl_segment_bytes(s, 0, s->sg_size, &base);
    if (rc != PL_OK) return rc;
    while (pos < s->sg_size) {
        rc = pl_batch_parse_header(base + pos, (size_t)(s->sg_size - pos), hdr);
        if (rc != PL_OK) return rc;
        if (hdr->max_timestamp >= timestamp) { *position = pos; return PL_OK; }
        pos += (int64_t)hdr->batch_length + PL_BATCH_LOG_OVERHEAD;
    }
    return PL_ERANGE;
}

int pl_segment_load(pl_segment *s, pl_segment_info *out) {
    memset(out, 0, sizeof *out);
    reset_state(s);
    if (pl_index_check(s->sg_oix) != PL_OK || pl_index_check(s->sg_tix) != PL_OK) {
        out->stop_rc = PL_ECORRUPT;
        return PL_ECORRUPT;
    }
    int64_t n = pl_index_entries(s->sg_oix), pos = 0, off, ts, toff;
    if (n > 0) {
        pl_index_entry(s->sg_oix, n - 1, &off, &pos);
        if (pos >= s->sg_size) { out->stop_rc = PL_ECORRUPT; return PL_ECORRUPT; }
    }
    int64_t index_pos = pos;
    if (pl_index_entries(s->sg_tix) > 0) {
        pl_index_entry(s->sg_tix, pl_index_entries(s->sg_tix) - 1, &ts, &toff);
        if (toff >= s->sg_cfg.base_offset + INT32_MAX) { out->stop_rc = PL_ECORRUPT; return PL_ECORRUPT; }
        note_timestamp(s, ts, toff);
    }
    const uint8_t *base = s->sg_map;
    pl_batch_header h;
    if (s->sg_size > 0) {
        int rc = pl_batch_parse_header(base, (size_t)s->sg_size, &h);
        if (rc != PL_OK) { out->stop_rc = rc; return PL_ECORRUPT; }
        s->sg_first_batch_timestamp = h.max_timestamp;
    }
    while (pos < s->sg_size) {
        int rc = pl_batch_parse_header(base + pos, (size_t)(s->sg_size - pos), &h);
        if (rc != PL_OK || h.base_offset < s->sg_next_offset) {
            out->stop_rc = rc != PL_OK ? rc : PL_ECORRUPT;
            out->stop_position = pos;
            return PL_ECORRUPT;
        }
        int64_t last = h.base_offset + h.last_offset_delta;
        note_timestamp(s, h.max_timestamp, last);
        s->sg_next_offset = last + 1;
        pos += (int64_t)h.batch_length + PL_BATCH_LOG_OVERHEAD;
        out->batches++;
    }
    s->sg_bytes_since_index = s->sg_size - index_pos;
    out->size = s->sg_size;
    out->next_offset = s->sg_next_offset;
    out->stop_position = pos;
    return PL_OK;
}

int pl_segment_recover(pl_segment *s, pl_segment_info *out) {
    memset(out, 0, sizeof *out);
    if (s->sg_pins > 0) return PL_EBUSY;
    int rc = pl_segment_flush_buffer(s);
    if (rc != PL_OK) return rc;
    reset_state(s);
    pl_index_reset(s->sg_oix);
    pl_index_reset(s->sg_tix);
    /* The rebuilt indexes may need more room than a sealed segment's trimmed
     * files had (another index interval, or the old files were garbage). */
    if (s->sg_cfg.writable) {
        if ((rc = pl_index_extend(s->sg_oix, s->sg_cfg.index_max_bytes)) != PL_OK) return rc;
        if ((rc = pl_index_extend(s->sg_tix, s->sg_cfg.index_max_bytes)) != PL_OK) return rc;
    }
    const uint8_t *base = s->sg_map;
    int64_t size = s->sg_size, pos = 0;
    /* A long sequential read: let the kernel read ahead. */
    if (size > 0) madvise(s->sg_map, (size_t)size, MADV_SEQUENTIAL);
    out->stop_rc = PL_OK;
    int indexing = 1;
    while (pos < size) {
        pl_batch_header h;
        rc = pl_batch_validate(base + pos, (size_t)(size - pos), &h);
        if (rc != PL_OK) { out->stop_rc = rc; break; }
        int64_t last = h.base_offset + h.last_offset_delta;
        if (h.base_offset < s->sg_next_offset || last - s->sg_cfg.base_offset > INT32_MAX) {
            out->stop_rc = PL_ECORRUPT;
            break;
        }
        int64_t total = (int64_t)h.batch_length + PL_BATCH_LOG_OVERHEAD;
        if (pos == 0) s->sg_first_batch_timestamp = h.max_timestamp;
        note_timestamp(s, h.max_timestamp, last);
        if (indexing && (rc = maybe_index(s, pos, last, total)) != PL_OK) {
            /* A full index only ends indexing (the segment rolls at the next
             * append); it is never a reason to cut valid data. */
            if (rc != PL_EFULL && rc != PL_ENOSPC) { out->stop_rc = rc; break; }
            indexing = 0;
        }
        s->sg_next_offset = last + 1;
        pos += total;
        out->batches++;
    }
    if (size > 0) madvise(s->sg_map, (size_t)size, MADV_NORMAL);
    out->stop_position = pos;
    if (pos < size) {
        if (!s->sg_cfg.writable) return PL_EINVAL;
        if (ftruncate(s->sg_fd, (off_t)pos) != 0) return io_error();
        out->truncated_bytes = size - pos;
        s->sg_size = s->sg_os_size = pos;
        if (s->sg_synced_size > pos) s->sg_synced_size = pos;
    }
    out->size = s->sg_size;
    out->next_offset = s->sg_next_offset;
    check_invariants(s);
    if (s->sg_cfg.sealed && s->sg_cfg.writable) {
        if ((rc = pl_index_trim(s->sg_oix)) != PL_OK) return rc;
        if ((rc = pl_index_trim(s->sg_tix)) != PL_OK) return rc;
    }
    return PL_OK;
}

int pl_segment_truncate_to(pl_segment *s, int64_t offset, int64_t *cut_offset) {
    if (offset >= s->sg_next_offset) { *cut_offset = s->sg_next_offset; return PL_OK; }
    int rc = pl_segment_flush_buffer(s);
    if (rc != PL_OK) return rc;
    int64_t position = 0, cut;
    pl_batch_header h;
    if (offset > s->sg_cfg.base_offset || s->sg_size > 0) {
        rc = pl_segment_find_batch(s, offset < s->sg_cfg.base_offset ? s->sg_cfg.base_offset : offset,
                                   &position, &h);
        if (rc != PL_OK) return rc;
        cut = h.base_offset;
    } else {
        cut = s->sg_cfg.base_offset;
    }
    /* Views below the cut stay valid; one past it would read beyond the file. */
    if (s->sg_pins > 0 && s->sg_pin_end > position) return PL_EBUSY;
    if (ftruncate(s->sg_fd, (off_t)position) != 0) return io_error();
    s->sg_size = s->sg_os_size = position;
    if (s->sg_synced_size > position) s->sg_synced_size = position;
    pl_index_truncate_to_offset(s->sg_oix, cut);
    pl_index_truncate_to_offset(s->sg_tix, cut);
    /* The max timestamp, first batch timestamp and next offset of what remains:
     * the time index's last entry, then a walk over the batches after the last
     * offset-index entry (as a trusting open does). */
    pl_segment_info info;
    rc = pl_segment_load(s, &info);
    if (rc != PL_OK) return rc;
    *cut_offset = s->sg_next_offset;
    check_invariants(s);
    return PL_OK;
}

int pl_segment_seal(pl_segment *s) {
    if (!s->sg_cfg.writable) return PL_OK;
    int rc = pl_segment_flush_buffer(s);
    if (rc != PL_OK) return rc;
    if (s->sg_max_timestamp >= 0 && !pl_index_is_full(s->sg_tix)) {
        rc = pl_time_index_append(s->sg_tix, s->sg_max_timestamp, s->sg_offset_of_max_timestamp);
        if (rc != PL_OK) return rc;
    }
    /* A sealed segment never grows: give back blocks reserved past its end. */
    if (s->sg_reserved_end > s->sg_os_size) {
        if (ftruncate(s->sg_fd, (off_t)s->sg_os_size) != 0) return io_error();
        s->sg_reserved_end = s->sg_os_size;
    }
    if ((rc = pl_index_trim(s->sg_oix)) != PL_OK) return rc;
    return pl_index_trim(s->sg_tix);
}

int pl_segment_unseal(pl_segment *s) {
    /* Growing the indexes may move their mappings: only views of the .log may live. */
    if (s->sg_pins > 0 && s->sg_pin_end == INT64_MAX) return PL_EBUSY;
    int rc = pl_index_extend(s->sg_oix, s->sg_cfg.index_max_bytes);
    if (rc != PL_OK) return rc;
    return pl_index_extend(s->sg_tix, s->sg_cfg.index_max_bytes);
}

int pl_segment_refresh(pl_segment *s, int from_start, int drop_indexes, pl_segment_info *out) {
    memset(out, 0, sizeof *out);
    if (s->sg_cfg.writable) return PL_EINVAL;
    struct stat st;
    if (fstat(s->sg_fd, &st) != 0) return PL_EIO;
    int64_t file_size = (int64_t)st.st_size, pos = s->sg_size;
    if (from_start) {
        reset_state(s);
        pos = 0;
    }
    if (drop_indexes) {
        /* The writer may still trim them (at its roll) under our mapping. */
        pl_index_reset(s->sg_oix);
        pl_index_reset(s->sg_tix);
    }
    if (file_size > s->sg_map_bytes) file_size = s->sg_map_bytes; /* past the reservation: a later roll */
    while (pos < file_size) {
        pl_batch_header h;
        /* Only whole batches: the writer may be half way through one. */
        if (pl_batch_parse_header(s->sg_map + pos, (size_t)(file_size - pos), &h) != PL_OK) break;
        int64_t total = (int64_t)h.batch_length + PL_BATCH_LOG_OVERHEAD;
        if (pos + total > file_size || h.base_offset < s->sg_next_offset) break;
        int64_t last = h.base_offset + h.last_offset_delta;
        if (pos == 0) s->sg_first_batch_timestamp = h.max_timestamp;
        note_timestamp(s, h.max_timestamp, last);
        s->sg_next_offset = last + 1;
        pos += total;
        out->batches++;
    }
    s->sg_size = s->sg_os_size = s->sg_synced_size = pos;
    out->size = pos;
    out->next_offset = s->sg_next_offset;
    out->stop_position = pos;
    return PL_OK;
}

int pl_segment_detach(pl_segment *s, int trim_indexes) {
    int rc = PL_OK;
    if (s->sg_cfg.writable) {
        if (trim_indexes) rc = pl_segment_seal(s);
        else if ((rc = pl_segment_flush_buffer(s)) == PL_OK && s->sg_reserved_end > s->sg_os_size) {
            if (ftruncate(s->sg_fd, (off_t)s->sg_os_size) != 0) rc = io_error();
            else s->sg_reserved_end = s->sg_os_size;
        }
        if (rc != PL_OK) return rc;
    }
    /* From here on close touches no file content: another opener of the log
     * may own these files before the last view goes. */
    s->sg_cfg.writable = 0;
    return PL_OK;
}

int pl_segment_sync_begin(pl_segment *s, int *fd, int64_t *upto) {
    *fd = -1;
    *upto = s->sg_synced_size;
    if (!s->sg_cfg.writable) return PL_OK;
    int rc = pl_segment_flush_buffer(s);
    if (rc != PL_OK) return rc;
    *fd = s->sg_fd;
    *upto = s->sg_os_size;
    return PL_OK;
}

void pl_segment_sync_done(pl_segment *s, int64_t upto) {
    if (upto > s->sg_synced_size && upto <= s->sg_os_size) s->sg_synced_size = upto;
}

int pl_segment_pin(pl_segment *s) { s->sg_pins++; s->sg_pin_end = INT64_MAX; return PL_OK; }
int pl_segment_pin_range(pl_segment *s, int64_t end) {
    s->sg_pins++;
    if (end > s->sg_pin_end) s->sg_pin_end = end;
    return PL_OK;
}
void pl_segment_unpin(pl_segment *s) {
    if (s->sg_pins > 0 && --s->sg_pins == 0) s->sg_pin_end = 0;
}
int64_t pl_segment_pins(const pl_segment *s) { return s->sg_pins; }
int64_t pl_segment_base_offset(const pl_segment *s) { return s->sg_cfg.base_offset; }
int pl_segment_log_fd(const pl_segment *s) { return s->sg_fd; }
void pl_segment_index_fds(const pl_segment *s, int *offset_fd, int *time_fd) {
    *offset_fd = pl_index_fd(s->sg_oix);
    *time_fd = pl_index_fd(s->sg_tix);
}
int64_t pl_segment_size(const pl_segment *s) { return s->sg_size; }
int64_t pl_segment_synced_size(const pl_segment *s) { return s->sg_synced_size; }
int64_t pl_segment_next_offset(const pl_segment *s) { return s->sg_next_offset; }
int64_t pl_segment_max_timestamp(const pl_segment *s) { return s->sg_max_timestamp; }
int64_t pl_segment_first_batch_timestamp(const pl_segment *s) { return s->sg_first_batch_timestamp; }
const pl_index *pl_segment_offset_index(const pl_segment *s) { return s->sg_oix; }
const pl_index *pl_segment_time_index(const pl_segment *s) { return s->sg_tix; }
