/*
 * segment.h: one log segment: the .log file of whole record batches plus its
 * .index and .timeindex, all named by the 20-digit base offset (KAFKA-NOTES §1).
 *
 * Writes go through write(2) (optionally gathered in a small write buffer, see
 * write_buffer_bytes); reads come from a read-only shared mapping of the .log
 * that reserves reserve_bytes of address space, so pointers stay valid while the
 * file grows and no read is copied. The Linux page cache keeps write(2) and the
 * mapping coherent.
 *
 * Offsets tracked (redpanda's invariant): synced_size <= os_size <= size, where
 * size counts every appended byte, os_size what reached the OS and synced_size
 * what fdatasync made durable.
 *
 * Lifetime: pointers from pl_segment_bytes stay valid while the segment is
 * pinned (pl_segment_pin), which the owner does for as long as views are alive.
 * While pinned, truncate below a view refuses with PL_EBUSY and an append that would need a
 * larger mapping than reserve_bytes refuses with PL_EFULL; unpinned, the mapping
 * is regrown (moving it) instead. Closing a pinned segment is a caller bug: it
 * returns PL_EBUSY (and still frees everything).
 *
 * Thread-safety: none; the owner (pylog's Log) serialises access.
 */
#ifndef PL_SEGMENT_H
#define PL_SEGMENT_H

#include <stddef.h>
#include <stdint.h>

#include "batch.h"
#include "index.h"

typedef struct pl_segment pl_segment;

typedef struct pl_segment_config {
    int64_t base_offset;
    int64_t reserve_bytes;        /* address space first mapped for the .log (see Lifetime) */
    int64_t index_max_bytes;      /* segment.index.bytes (10 MiB in Kafka) */
    int32_t index_interval_bytes; /* index.interval.bytes (4096 in Kafka) */
    int32_t write_buffer_bytes;   /* 0: every append reaches the OS before returning */
    int writable;
    int sealed;                   /* an inactive segment: open its indexes as they are,
                                     without preallocating (pl_segment_unseal grows them) */
} pl_segment_config;

/* Open or create the three files. Nothing is scanned: call pl_segment_load
 * (trusting the indexes) or pl_segment_recover (checking every batch) next.
 * @return PL_OK, PL_EIO (errno), PL_ENOMEM, PL_EINVAL. */
int pl_segment_open(pl_segment **out, const char *log_path, const char *index_path,
                    const char *time_index_path, const pl_segment_config *cfg);

/* Push buffered bytes to the OS, optionally trim the indexes, unmap, close and free.
 * Always frees s; returns the first error met (buffered bytes are then lost), or
 * PL_EBUSY when it was still pinned. */
int pl_segment_close(pl_segment *s, int trim_indexes);

/* What load or recover found. */
typedef struct pl_segment_info {
    int64_t size;             /* valid bytes of the .log after the call */
    int64_t truncated_bytes;  /* bytes cut from the tail (recover only) */
    int64_t batches;          /* batches walked */
    int64_t next_offset;      /* last offset + 1, base_offset when empty */
    int stop_rc;              /* PL_OK, or why the walk stopped early */
    int64_t stop_position;    /* where it stopped */
} pl_segment_info;

/* Trusting open: check both indexes, then walk batch headers (no CRC) from the
 * last offset-index entry to the end to find next_offset. @return PL_OK, or
 * PL_ECORRUPT when an index fails its check or the tail does not parse (the
 * caller should then recover). */
int pl_segment_load(pl_segment *s, pl_segment_info *out);

/* Recovery: reset both indexes, walk every batch checking length, magic, CRC and
 * offsets (at least the base offset, increasing, fitting int32 relative to the base),
 * rebuild the indexes with the index_interval_bytes rule (when an index fills up,
 * or the disk has no room for it, indexing stops; valid data is never cut for it), and cut the .log at the first
 * bad batch. @return PL_OK (out says what was cut), PL_EBUSY, PL_EIO. */
int pl_segment_recover(pl_segment *s, pl_segment_info *out);

/* Append whole batches whose offsets are already assigned (first offset >= next
 * offset). largest_offset, max_timestamp and offset_of_max_timestamp describe buf.
 * @return PL_OK; PL_EFULL (an index is full, or pinned and past the mapping: roll first), PL_EOVERFLOW
 * (largest_offset does not fit relative to the base: roll), PL_EINVAL, PL_ENOSPC
 * or PL_EIO (nothing of buf was kept and the segment is as before). */
int pl_segment_append(pl_segment *s, const uint8_t *buf, size_t len, int64_t largest_offset,
                      int64_t max_timestamp, int64_t offset_of_max_timestamp);

/* Would an append of len bytes ending at largest_offset fit? PL_OK, PL_EFULL or PL_EOVERFLOW. */
int pl_segment_can_append(const pl_segment *s, size_t len, int64_t largest_offset);

/* Push buffered appends to the OS (write(2)). @return PL_OK, PL_ENOSPC, PL_EIO;
 * on failure the bytes stay buffered and nothing partial remains in the file. */
int pl_segment_flush_buffer(pl_segment *s);

/* flush_buffer, fdatasync the .log, msync both indexes. */
int pl_segment_sync(pl_segment *s);

/* flush_buffer and fdatasync the .log only: the durability of the records. The
 * indexes need no sync for that, since recovery rebuilds them from the .log for
 * every segment after the recovery point. */
int pl_segment_sync_data(pl_segment *s);

/* Pointer to bytes [pos, pos+len) of the .log (pushing buffered bytes to the OS
 * first if the range needs them). @return PL_OK, PL_ERANGE, or a flush error. */
int pl_segment_bytes(pl_segment *s, int64_t pos, int64_t len, const uint8_t **out);

/* Position and header of the first batch whose last offset >= target (floor in the
 * offset index, then a walk over headers). @return PL_OK; PL_ERANGE when target >=
 * next_offset; PL_ECORRUPT or PL_ETRUNCATED when a header on the way is bad. */
int pl_segment_find_batch(pl_segment *s, int64_t target, int64_t *position, pl_batch_header *hdr);

/* Position and header of the first batch whose max_timestamp >= timestamp (time
 * index, then offset index, then a header walk). PL_ERANGE when there is none. */
int pl_segment_find_time(pl_segment *s, int64_t timestamp, int64_t *position, pl_batch_header *hdr);

/* Cut the segment at the start of the batch containing offset (all batches at or
 * after it go; truncating inside a batch is the caller's job) and drop index entries
 * from there. *cut_offset is the new next_offset. @return PL_OK, PL_EBUSY, PL_EIO. */
int pl_segment_truncate_to(pl_segment *s, int64_t offset, int64_t *cut_offset);

/* The segment stops being the active one: push buffered bytes, add the final
 * time-index entry (Kafka's onBecomeInactiveSegment) and trim both indexes. */
int pl_segment_seal(pl_segment *s);
/* It became active again (later segments were deleted by a truncation). */
int pl_segment_unseal(pl_segment *s);

/* A read-only segment (writable 0) follows another process appending to it:
 * take the whole batches that reached the file since the last call (from the
 * start when from_start), by their headers (scans check CRCs). The indexes
 * are not re-read: lookups past their last entry walk headers. drop_indexes:
 * forget them (for the writer's active segment, whose index files it trims
 * at its roll: reading them then would fault).
 * @return PL_OK, PL_EINVAL (a writable segment), PL_EIO. */
int pl_segment_refresh(pl_segment *s, int from_start, int drop_indexes, pl_segment_info *out);

/* Do now the file work of close (push the buffer, give back reserved blocks,
 * seal and trim the indexes when trim_indexes) and make the segment read-only,
 * so that the pl_segment_close which ends it later (when its last pin goes)
 * only unmaps and closes descriptors. @return PL_OK or the error of the work. */
int pl_segment_detach(pl_segment *s, int trim_indexes);

/* fdatasync without holding the owner's lock, in three steps: under the lock,
 * sync_begin pushes buffered bytes to the OS and gives the .log descriptor and
 * the size to be made durable (fd -1: nothing to do); outside the lock, with
 * the segment pinned so the descriptor stays open, the caller runs
 * fdatasync(fd); under the lock again, sync_done records that size as synced
 * (unless the segment was truncated below it meanwhile). */
int pl_segment_sync_begin(pl_segment *s, int *fd, int64_t *upto);
void pl_segment_sync_done(pl_segment *s, int64_t upto);

/* pin: a view of anything (the indexes too); pin_range: a view of .log bytes
 * before end only, so truncation at or past end may go ahead. */
int pl_segment_pin(pl_segment *s);
int pl_segment_pin_range(pl_segment *s, int64_t end);
void pl_segment_unpin(pl_segment *s);
int64_t pl_segment_pins(const pl_segment *s);

int64_t pl_segment_base_offset(const pl_segment *s);
/* The .log's descriptor (readable; valid until close), for sendfile(2) while pinned. */
int pl_segment_log_fd(const pl_segment *s);
/* The descriptors of the offset and time index files (valid until close), so
 * that a sealed segment's indexes can be fsync'd outside the owner's lock
 * while the segment is held open (fsync of the file writes the pages its
 * shared mapping dirtied, as msync would). */
void pl_segment_index_fds(const pl_segment *s, int *offset_fd, int *time_fd);
int64_t pl_segment_size(const pl_segment *s);
int64_t pl_segment_synced_size(const pl_segment *s);
int64_t pl_segment_next_offset(const pl_segment *s);
int64_t pl_segment_max_timestamp(const pl_segment *s);          /* -1 when empty */
int64_t pl_segment_first_batch_timestamp(const pl_segment *s);  /* -1 when empty */
const pl_index *pl_segment_offset_index(const pl_segment *s);
const pl_index *pl_segment_time_index(const pl_segment *s);

#endif
