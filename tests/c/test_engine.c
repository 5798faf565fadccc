/*
 * test_engine.c: standalone tests of the C engine (the engine/ sources) against the
 * contracts in its headers, in the style of LMDB's mtest.c. Every engine call
 * goes through E() / ERC() / CHECK() / EQ(), which print file:line, the
 * expression and pl_strerror(rc) and exit non-zero at the first failure.
 * SOFT() marks a point the headers leave open: it prints a NOTE and goes on.
 *
 *   ./test_engine                     every section
 *   ./test_engine batch segment_pins  only sections whose names start so
 *   PL_TEST_SEED=123 ./test_engine    repeat a run's random choices
 *
 * Built with the engine/ sources by `make test-c`, `make test-asan` and
 * tests/test_engine_c.py. Nothing here needs Python. Each section that touches
 * files works in its own mkdtemp directory and checks at its end that the
 * process holds no more file descriptors than before and no mapping of that
 * directory, so leaked fds and mmaps fail the run as ASAN's leak checker fails
 * it for leaked memory.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "pl_common.h"
#include "crc32c.h"
#include "varint.h"
#include "batch.h"
#include "index.h"
#include "segment.h"
#include "murmur2.h"
#include "xxhash64.h"
#include "cleaner.h"
#include "delivery.h"

/* ------------------------------------------------------------------------- */
/* check macros                                                              */

static const char *g_section = "";
static char g_ctx[512];
static char g_case[256]; /* an outer context that survives inner CTX() calls */
static uint64_t g_seed;
static long g_checks;
static int g_notes;

#define CTX(...) snprintf(g_ctx, sizeof g_ctx, __VA_ARGS__)

static void die(void) {
    if (g_case[0]) fprintf(stderr, "  case: %s\n", g_case);
    fprintf(stderr, "  context: %s\n  section: %s, seed: %" PRIu64 " (set PL_TEST_SEED to repeat)\n",
            g_ctx[0] ? g_ctx : "-", g_section, g_seed);
    fflush(stdout);
    fflush(stderr);
    exit(1);
}

static void fail_rc(const char *file, int line, const char *expr, int got, int want) {
    fflush(stdout);
    fprintf(stderr, "%s:%d: %s\n  got rc %d (%s), want %d (%s)\n", file, line, expr, got, pl_strerror(got),
            want, pl_strerror(want));
    die();
}

static int expect_fail(const char *file, int line, const char *expr, int got) {
    g_checks++;
    if (got >= 0) {
        fflush(stdout);
        fprintf(stderr, "%s:%d: %s\n  got rc %d (%s), want a failure (a negative PL_E* code)\n", file, line,
                expr, got, pl_strerror(got));
        die();
    }
    return got;
}

/* E(expr): expr must return PL_OK. */
#define E(expr)                                                                                              \
    do {                                                                                                     \
        int rc_ = (expr);                                                                                    \
        g_checks++;                                                                                          \
        if (rc_ != PL_OK) fail_rc(__FILE__, __LINE__, #expr, rc_, PL_OK);                                    \
    } while (0)
/* ERC(expr, want): expr must return exactly want. */
#define ERC(expr, want)                                                                                      \
    do {                                                                                                     \
        int rc_ = (expr), w_ = (want);                                                                       \
        g_checks++;                                                                                          \
        if (rc_ != w_) fail_rc(__FILE__, __LINE__, #expr, rc_, w_);                                          \
    } while (0)
/* EFAIL(expr): expr must fail with some negative code; evaluates to that code. */
#define EFAIL(expr) expect_fail(__FILE__, __LINE__, #expr, (expr))
#define CHECK(cond)                                                                                          \
    do {                                                                                                     \
        g_checks++;                                                                                          \
        if (!(cond)) {                                                                                       \
            fflush(stdout);                                                                                  \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #cond);                         \
            die();                                                                                           \
        }                                                                                                    \
    } while (0)
#define EQ(a, b)                                                                                             \
    do {                                                                                                     \
        int64_t a_ = (int64_t)(a), b_ = (int64_t)(b);                                                        \
        g_checks++;                                                                                          \
        if (a_ != b_) {                                                                                      \
            fflush(stdout);                                                                                  \
            fprintf(stderr, "%s:%d: %s == %s failed\n  %" PRId64 " != %" PRId64 " (0x%" PRIx64 " != 0x%" PRIx64 \
                            ")\n",                                                                           \
                    __FILE__, __LINE__, #a, #b, a_, b_, (uint64_t)a_, (uint64_t)b_);                         \
            die();                                                                                           \
        }                                                                                                    \
    } while (0)
/* SOFT(cond, fmt, ...): a point the headers do not pin down; print a NOTE only. */
#define SOFT(cond, ...)                                                                                      \
    do {                                                                                                     \
        if (!(cond)) {                                                                                       \
            g_notes++;                                                                                       \
            printf("NOTE %s:%d: [%s] expected %s: ", __FILE__, __LINE__, g_section, #cond);                  \
            printf(__VA_ARGS__);                                                                             \
            printf("\n");                                                                                    \
        }                                                                                                    \
    } while (0)

/* ------------------------------------------------------------------------- */
/* small helpers                                                             */

static uint64_t g_rng;
static uint64_t rnd(void) { /* splitmix64 */
    uint64_t z = (g_rng += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}
static uint64_t rnd_below(uint64_t n) { return n ? rnd() % n : 0; }
/* uniform in [lo, hi] */
static int64_t rnd_range(int64_t lo, int64_t hi) {
    return (int64_t)((uint64_t)lo + rnd_below((uint64_t)hi - (uint64_t)lo + 1));
}
static void rnd_fill(uint8_t *p, size_t n) {
    for (size_t i = 0; i < n; i++) p[i] = (uint8_t)rnd();
}

static void *xmalloc(size_t n) {
    void *p = malloc(n ? n : 1);
    CHECK(p != NULL);
    return p;
}
static void *xrealloc(void *p, size_t n) {
    void *q = realloc(p, n ? n : 1);
    CHECK(q != NULL);
    return q;
}
static uint8_t *xdup(const void *p, size_t n) {
    uint8_t *q = xmalloc(n);
    if (n) memcpy(q, p, n);
    return q;
}

static int64_t max64(int64_t a, int64_t b) { return a > b ? a : b; }

/* ---- files ---- */

static char g_dir[1024];

static void make_tmpdir(void) {
    const char *t = getenv("TMPDIR");
    if (!t || !*t) t = "/tmp";
    snprintf(g_dir, sizeof g_dir, "%s/pl_test_engine_XXXXXX", t);
    CHECK(mkdtemp(g_dir) != NULL);
}

static void remove_tmpdir(void) {
    char p[2048];
    DIR *d = opendir(g_dir);
    CHECK(d != NULL);
    struct dirent *e;
    while ((e = readdir(d)) != NULL) {
        if (!strcmp(e->d_name, ".") || !strcmp(e->d_name, "..")) continue;
        snprintf(p, sizeof p, "%s/%s", g_dir, e->d_name);
        CHECK(unlink(p) == 0);
    }
    closedir(d);
    CHECK(rmdir(g_dir) == 0);
}

static void path_in(char *out, size_t cap, const char *name) { snprintf(out, cap, "%s/%s", g_dir, name); }

static int64_t file_size(const char *path) {
    struct stat st;
    CHECK(stat(path, &st) == 0);
    return (int64_t)st.st_size;
}

static void file_write_all(const char *path, const uint8_t *p, size_t n) {
    int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0644);
    CHECK(fd >= 0);
    CHECK(write(fd, p, n) == (ssize_t)n);
    CHECK(close(fd) == 0);
}

static void file_append(const char *path, const uint8_t *p, size_t n) {
    int fd = open(path, O_WRONLY | O_APPEND);
    CHECK(fd >= 0);
    CHECK(write(fd, p, n) == (ssize_t)n);
    CHECK(close(fd) == 0);
}

static void file_pwrite(const char *path, const void *p, size_t n, int64_t off) {
    int fd = open(path, O_WRONLY);
    CHECK(fd >= 0);
    CHECK(pwrite(fd, p, n, (off_t)off) == (ssize_t)n);
    CHECK(close(fd) == 0);
}

static uint8_t *file_read_all(const char *path, size_t *n) {
    int64_t sz = file_size(path);
    uint8_t *p = xmalloc((size_t)sz);
    int fd = open(path, O_RDONLY);
    CHECK(fd >= 0);
    CHECK(read(fd, p, (size_t)sz) == (ssize_t)sz);
    CHECK(close(fd) == 0);
    *n = (size_t)sz;
    return p;
}

static int count_fds(void) {
    DIR *d = opendir("/proc/self/fd");
    if (!d) return -1;
    int n = 0;
    struct dirent *e;
    while ((e = readdir(d)) != NULL)
        if (e->d_name[0] != '.') n++;
    closedir(d);
    return n;
}

static int count_maps(const char *needle) {
    FILE *f = fopen("/proc/self/maps", "r");
    if (!f) return -1;
    char line[4096];
    int n = 0;
    while (fgets(line, sizeof line, f))
        if (strstr(line, needle)) n++;
    fclose(f);
    return n;
}

/* ------------------------------------------------------------------------- */
/* crc32c                                                                    */

/* Bit-at-a-time reference: nothing shared with the engine's tables. */
static uint32_t ref_crc32c(uint32_t crc, const uint8_t *p, size_t n) {
    crc = ~crc;
    while (n--) {
        crc ^= *p++;
        for (int k = 0; k < 8; k++) crc = (crc >> 1) ^ (0x82F63B78u & (0u - (crc & 1u)));
    }
    return ~crc;
}

/* Kafka's UtilsTest.testMurmur2 vectors. */
static void test_murmur2(void) {
    static const struct { const char *key; int32_t hash; } v[] = {
        {"21", -973932308}, {"foobar", -790332482}, {"a-little-bit-long-string", -985981536},
        {"a-little-bit-longer-string", -1486304829},
        {"lkjh234lh9fiuh90y23oiuhsafujhadof229phr9h19h89h8", -58897971}, {"abc", 479470107},
    };
    for (size_t i = 0; i < sizeof v / sizeof v[0]; i++)
        EQ(pl_murmur2((const uint8_t *)v[i].key, strlen(v[i].key)), v[i].hash);
}

static void test_crc32c(void) {
    const char *chk = "123456789";
    EQ(pl_crc32c(0, chk, 9), 0xE3069283u);
    EQ(pl_crc32c_sw(0, chk, 9), 0xE3069283u);
    EQ(ref_crc32c(0, (const uint8_t *)chk, 9), 0xE3069283u);
    EQ(pl_crc32c(0, chk, 0), 0);
    EQ(pl_crc32c_sw(0, chk, 0), 0);
    EQ(pl_crc32c(0x12345678u, chk, 0), 0x12345678u);
    EQ(pl_crc32c_sw(0x12345678u, chk, 0), 0x12345678u);
    CHECK(pl_crc32c_hw_available() == 0 || pl_crc32c_hw_available() == 1);
    printf("  crc32c: hardware path %s\n", pl_crc32c_hw_available() ? "available" : "not available");

    /* RFC 3720 (iSCSI) B.4 vectors */
    uint8_t v[32];
    memset(v, 0, sizeof v);
    EQ(pl_crc32c(0, v, 32), 0x8A9136AAu);
    EQ(pl_crc32c_sw(0, v, 32), 0x8A9136AAu);
    memset(v, 0xFF, sizeof v);
    EQ(pl_crc32c(0, v, 32), 0x62A8AB43u);
    EQ(pl_crc32c_sw(0, v, 32), 0x62A8AB43u);
    for (int i = 0; i < 32; i++) v[i] = (uint8_t)i;
    EQ(pl_crc32c(0, v, 32), 0x46DD794Eu);
    EQ(pl_crc32c_sw(0, v, 32), 0x46DD794Eu);
    for (int i = 0; i < 32; i++) v[i] = (uint8_t)(31 - i);
    EQ(pl_crc32c(0, v, 32), 0x113FDB5Cu);
    EQ(pl_crc32c_sw(0, v, 32), 0x113FDB5Cu);

    /* every length to 2100 at several alignments, against the reference */
    const size_t big = (1u << 20) + 4096;
    uint8_t *buf = xmalloc(big + 64);
    rnd_fill(buf, big + 64);
    for (size_t len = 0; len <= 2100; len++) {
        for (size_t al = 0; al < 8; al += (len < 64 ? 1 : 3)) {
            CTX("crc len %zu align %zu", len, al);
            uint32_t want = ref_crc32c(0, buf + al, len);
            EQ(pl_crc32c(0, buf + al, len), want);
            EQ(pl_crc32c_sw(0, buf + al, len), want);
        }
    }
    /* around the hardware path's block sizes (768 B rounds, 24 KiB rounds) */
    static const size_t lens[] = {767,   768,   769,   1535,  1536,   1537,     2303,     2304,     8191,
                                  8192,  8193,  24575, 24576, 24577,  25343,    25344,    25345,    49151,
                                  49152, 49153, 65536, 73727, 100003, 1u << 19, 1u << 20, (1u << 20) + 4095};
    for (size_t i = 0; i < sizeof lens / sizeof lens[0]; i++) {
        for (size_t al = 0; al < 16; al += 5) {
            CTX("crc len %zu align %zu", lens[i], al);
            uint32_t want = ref_crc32c(0, buf + al, lens[i]);
            EQ(pl_crc32c(0, buf + al, lens[i]), want);
            EQ(pl_crc32c_sw(0, buf + al, lens[i]), want);
            /* a non-zero starting CRC too */
            uint32_t seed = (uint32_t)rnd();
            EQ(pl_crc32c(seed, buf + al, lens[i]), ref_crc32c(seed, buf + al, lens[i]));
        }
    }
    /* random lengths and alignments: hw == sw */
    for (int it = 0; it < 300; it++) {
        size_t len = (size_t)rnd_below(100000), al = (size_t)rnd_below(64);
        CTX("crc random len %zu align %zu", len, al);
        EQ(pl_crc32c(0, buf + al, len), pl_crc32c_sw(0, buf + al, len));
    }
    /* chaining: crc(crc(0, a), b) == crc(0, a||b), both paths and crossed */
    for (int it = 0; it < 400; it++) {
        size_t total = (size_t)rnd_below(it < 200 ? 2000 : 80000);
        size_t cut = (size_t)rnd_below(total + 1), cut2 = cut + (size_t)rnd_below(total - cut + 1);
        size_t al = (size_t)rnd_below(16);
        const uint8_t *p = buf + al;
        CTX("crc chain total %zu cut %zu cut2 %zu", total, cut, cut2);
        uint32_t whole = ref_crc32c(0, p, total);
        EQ(pl_crc32c(pl_crc32c(0, p, cut), p + cut, total - cut), whole);
        EQ(pl_crc32c_sw(pl_crc32c_sw(0, p, cut), p + cut, total - cut), whole);
        EQ(pl_crc32c(pl_crc32c_sw(0, p, cut), p + cut, total - cut), whole);
        EQ(pl_crc32c_sw(pl_crc32c(0, p, cut), p + cut, total - cut), whole);
        EQ(pl_crc32c(pl_crc32c(pl_crc32c(0, p, cut), p + cut, cut2 - cut), p + cut2, total - cut2), whole);
    }
    free(buf);
    g_ctx[0] = 0;
}

/* ------------------------------------------------------------------------- */
/* varint                                                                    */

static void varint_roundtrip(int64_t v) {
    uint8_t b[16];
    memset(b, 0xAA, sizeof b);
    CTX("varlong %" PRId64, v);
    size_t n = pl_varlong_write(b, v);
    EQ(n, pl_varlong_size(v));
    CHECK(n >= 1 && n <= 10);
    EQ(b[n], 0xAA); /* wrote nothing past n */
    for (size_t i = 0; i + 1 < n; i++) CHECK(b[i] & 0x80);
    CHECK(!(b[n - 1] & 0x80));
    int64_t out = 0;
    EQ(pl_varlong_read(b, n, &out), n);
    EQ(out, v);
    EQ(pl_varlong_read(b, sizeof b, &out), n);
    EQ(out, v);
    EQ(pl_unzigzag64(pl_zigzag64(v)), v);
    for (size_t cut = 0; cut < n; cut++) EQ(pl_varlong_read(b, cut, &out), 0); /* truncated */
    int32_t o32 = 0;
    if (v >= INT32_MIN && v <= INT32_MAX) {
        CHECK(n <= 5);
        EQ(pl_varint_read(b, n, &o32), n);
        EQ(o32, v);
        for (size_t cut = 0; cut < n; cut++) EQ(pl_varint_read(b, cut, &o32), 0);
    } else {
        EQ(pl_varint_read(b, n, &o32), 0); /* does not fit int32 */
        EQ(pl_varint_read(b, sizeof b, &o32), 0);
    }
}

static void test_varint(void) {
    /* known encodings */
    struct {
        int64_t v;
        uint8_t bytes[10];
        size_t n;
    } known[] = {
        {0, {0x00}, 1},
        {-1, {0x01}, 1},
        {1, {0x02}, 1},
        {-2, {0x03}, 1},
        {63, {0x7E}, 1},
        {-64, {0x7F}, 1},
        {64, {0x80, 0x01}, 2},
        {300, {0xD8, 0x04}, 2},
        {INT32_MAX, {0xFE, 0xFF, 0xFF, 0xFF, 0x0F}, 5},
        {INT32_MIN, {0xFF, 0xFF, 0xFF, 0xFF, 0x0F}, 5},
        {INT64_MAX, {0xFE, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, 10},
        {INT64_MIN, {0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0x01}, 10},
    };
    for (size_t i = 0; i < sizeof known / sizeof known[0]; i++) {
        uint8_t b[10];
        CTX("known varint %" PRId64, known[i].v);
        EQ(pl_varlong_write(b, known[i].v), known[i].n);
        CHECK(memcmp(b, known[i].bytes, known[i].n) == 0);
    }
    static const int64_t edge[] = {0,
                                   1,
                                   -1,
                                   63,
                                   64,
                                   -64,
                                   -65,
                                   8191,
                                   8192,
                                   -8193,
                                   INT32_MAX,
                                   INT32_MIN,
                                   (int64_t)INT32_MAX + 1,
                                   (int64_t)INT32_MIN - 1,
                                   INT64_MAX,
                                   INT64_MIN,
                                   INT64_MAX - 1,
                                   INT64_MIN + 1,
                                   (int64_t)1 << 62,
                                   -((int64_t)1 << 62)};
    for (size_t i = 0; i < sizeof edge / sizeof edge[0]; i++) varint_roundtrip(edge[i]);
    for (int s = 0; s < 63; s++) {
        int64_t p = (int64_t)1 << s;
        varint_roundtrip(p);
        varint_roundtrip(p - 1);
        varint_roundtrip(-p);
        varint_roundtrip(-p - 1);
    }
    for (int it = 0; it < 20000; it++) {
        int64_t v = (int64_t)rnd();
        v >>= rnd_below(64); /* all magnitudes */
        varint_roundtrip(v);
    }
    /* overlong: more continuation bytes than a varlong / varint may have */
    uint8_t over[16];
    int64_t o64;
    int32_t o32;
    memset(over, 0x80, sizeof over);
    over[10] = 0x00; /* 11 bytes: too long for a varlong */
    EQ(pl_varlong_read(over, sizeof over, &o64), 0);
    memset(over, 0x80, sizeof over);
    over[5] = 0x00; /* 6 bytes: fine as a varlong, too long for a varint */
    EQ(pl_varlong_read(over, sizeof over, &o64), 6);
    EQ(o64, 0);
    EQ(pl_varint_read(over, sizeof over, &o32), 0);
    memset(over, 0xFF, sizeof over); /* never ends */
    EQ(pl_varlong_read(over, sizeof over, &o64), 0);
    EQ(pl_varint_read(over, sizeof over, &o32), 0);
    EQ(pl_varlong_read(over, 0, &o64), 0);
    g_ctx[0] = 0;
}

/* ------------------------------------------------------------------------- */
/* record and batch builders                                                 */

#define MAXREC 64

typedef struct recset {
    size_t n;
    pl_record_in recs[MAXREC];
    pl_header_in hdrs[MAXREC][3];
} recset;

static uint8_t g_arena[1 << 21];
static size_t g_arena_used;

static const uint8_t *arena_fill(int32_t len) {
    CHECK(len >= 0);
    CHECK(g_arena_used + (size_t)len <= sizeof g_arena);
    uint8_t *p = g_arena + g_arena_used;
    rnd_fill(p, (size_t)len);
    g_arena_used += (size_t)len;
    return p;
}

/* n records: keys null / empty / random, values null or up to value_max bytes,
 * 0-2 headers with some null values; with uniform_ts every timestamp delta is 0,
 * with wide_ts some deltas need long varlongs. */
static void gen_records(recset *rs, size_t n, int32_t value_max, int uniform_ts, int wide_ts) {
    CHECK(n <= MAXREC);
    g_arena_used = 0;
    rs->n = n;
    for (size_t i = 0; i < n; i++) {
        pl_record_in *r = &rs->recs[i];
        switch (i % 4) {
        case 1: r->key = NULL; r->key_len = -1; break;
        case 2: r->key_len = 0; r->key = arena_fill(0); break;
        default: r->key_len = (int32_t)rnd_range(1, 16); r->key = arena_fill(r->key_len); break;
        }
        if (i % 5 == 3) {
            r->value = NULL;
            r->value_len = -1;
        } else {
            r->value_len = (int32_t)rnd_range(0, value_max);
            r->value = arena_fill(r->value_len);
        }
        if (i == 0 || uniform_ts)
            r->timestamp_delta = 0;
        else if (wide_ts && i % 3 == 2)
            r->timestamp_delta = rnd_range(-((int64_t)1 << 40), (int64_t)1 << 40);
        else
            r->timestamp_delta = rnd_range(-3, 40);
        r->header_count = (int32_t)(i % 3);
        for (int32_t j = 0; j < r->header_count; j++) {
            pl_header_in *h = &rs->hdrs[i][j];
            h->key_len = (int32_t)rnd_range(0, 8);
            h->key = arena_fill(h->key_len);
            if ((i + (size_t)j) % 2 == 0) {
                h->value = NULL;
                h->value_len = -1;
            } else {
                h->value_len = (int32_t)rnd_range(0, 10);
                h->value = arena_fill(h->value_len);
            }
        }
        r->headers = r->header_count ? rs->hdrs[i] : NULL;
    }
}

typedef struct tbatch {
    uint8_t *buf;
    size_t len;
    int32_t count;
    int64_t base_ts, max_ts;
} tbatch;

static void default_header(pl_batch_header *h, const recset *rs, int64_t base_ts) {
    memset(h, 0, sizeof *h);
    h->base_offset = 0;
    h->partition_leader_epoch = -1;
    h->magic = PL_BATCH_MAGIC;
    h->attributes = 0;
    h->last_offset_delta = rs->n ? (int32_t)rs->n - 1 : 0;
    h->base_timestamp = base_ts;
    int64_t mx = rs->n ? INT64_MIN : -1;
    for (size_t i = 0; i < rs->n; i++) mx = max64(mx, base_ts + rs->recs[i].timestamp_delta);
    h->max_timestamp = mx;
    h->producer_id = -1;
    h->producer_epoch = -1;
    h->base_sequence = -1;
    h->records_count = (int32_t)rs->n;
}

static tbatch build_batch_h(recset *rs, const pl_batch_header *h) {
    size_t rsz = pl_records_size(rs->recs, rs->n);
    tbatch t;
    t.len = PL_BATCH_HEADER_SIZE + rsz;
    t.buf = xmalloc(t.len);
    pl_batch_write_header(t.buf, h);
    EQ(pl_records_encode(t.buf + PL_BATCH_HEADER_SIZE, rs->recs, rs->n), rsz);
    pl_batch_seal(t.buf, t.len);
    t.count = h->records_count;
    t.base_ts = h->base_timestamp;
    t.max_ts = h->max_timestamp;
    return t;
}

static tbatch build_batch(recset *rs, int64_t base_ts) {
    pl_batch_header h;
    default_header(&h, rs, base_ts);
    return build_batch_h(rs, &h);
}

static tbatch gen_batch(size_t nrec, int32_t value_max, int64_t base_ts, int uniform_ts) {
    static recset rs;
    gen_records(&rs, nrec, value_max, uniform_ts, 0);
    return build_batch(&rs, base_ts);
}

/* A batch whose max_timestamp is exactly max_ts (all records at max_ts-spread..max_ts). */
static tbatch gen_batch_max(size_t nrec, int32_t value_max, int64_t max_ts, int uniform_ts) {
    static recset rs;
    gen_records(&rs, nrec, value_max, uniform_ts, 0);
    int64_t md = 0;
    for (size_t i = 0; i < rs.n; i++) md = max64(md, rs.recs[i].timestamp_delta);
    tbatch t = build_batch(&rs, max_ts - md);
    EQ(t.max_ts, max_ts);
    return t;
}

static uint8_t *concat(const tbatch *bs, size_t n, size_t *len) {
    size_t total = 0;
    for (size_t i = 0; i < n; i++) total += bs[i].len;
    uint8_t *p = xmalloc(total), *w = p;
    for (size_t i = 0; i < n; i++) {
        memcpy(w, bs[i].buf, bs[i].len);
        w += bs[i].len;
    }
    *len = total;
    return p;
}

static void free_batches(tbatch *bs, size_t n) {
    for (size_t i = 0; i < n; i++) free(bs[i].buf);
}

/* ---- a reference encoder for the records section (KAFKA-NOTES 2.2) ---- */

typedef struct bbuf {
    uint8_t d[8192];
    size_t n;
} bbuf;
static void bb_var(bbuf *b, int64_t v) {
    CHECK(b->n + 10 <= sizeof b->d);
    b->n += pl_varlong_write(b->d + b->n, v);
}
static void bb_bytes(bbuf *b, const void *p, size_t n) {
    CHECK(b->n + n <= sizeof b->d);
    if (n) memcpy(b->d + b->n, p, n);
    b->n += n;
}
static void bb_u8(bbuf *b, uint8_t v) { bb_bytes(b, &v, 1); }

static size_t ref_encode(uint8_t *out, const pl_record_in *recs, size_t n, size_t *ends) {
    size_t o = 0;
    static bbuf body;
    for (size_t i = 0; i < n; i++) {
        const pl_record_in *r = &recs[i];
        body.n = 0;
        bb_u8(&body, 0);
        bb_var(&body, r->timestamp_delta);
        bb_var(&body, (int64_t)i);
        bb_var(&body, r->key_len);
        if (r->key_len > 0) bb_bytes(&body, r->key, (size_t)r->key_len);
        bb_var(&body, r->value_len);
        if (r->value_len > 0) bb_bytes(&body, r->value, (size_t)r->value_len);
        bb_var(&body, r->header_count);
        for (int32_t j = 0; j < r->header_count; j++) {
            const pl_header_in *h = &r->headers[j];
            bb_var(&body, h->key_len);
            bb_bytes(&body, h->key, (size_t)h->key_len);
            bb_var(&body, h->value_len);
            if (h->value_len > 0) bb_bytes(&body, h->value, (size_t)h->value_len);
        }
        o += pl_varlong_write(out + o, (int64_t)body.n);
        memcpy(out + o, body.d, body.n);
        o += body.n;
        if (ends) ends[i] = o;
    }
    return o;
}

/* ------------------------------------------------------------------------- */
/* batch: header, seal, validate                                             */

static void check_header_bytes(const uint8_t *b, const pl_batch_header *h) {
    EQ(pl_load_be64(b + 0), h->base_offset);
    EQ((int32_t)pl_load_be32(b + 8), h->batch_length);
    EQ((int32_t)pl_load_be32(b + 12), h->partition_leader_epoch);
    EQ((int8_t)b[16], h->magic);
    EQ(pl_load_be32(b + 17), h->crc);
    EQ((int16_t)pl_load_be16(b + 21), h->attributes);
    EQ((int32_t)pl_load_be32(b + 23), h->last_offset_delta);
    EQ((int64_t)pl_load_be64(b + 27), h->base_timestamp);
    EQ((int64_t)pl_load_be64(b + 35), h->max_timestamp);
    EQ((int64_t)pl_load_be64(b + 43), h->producer_id);
    EQ((int16_t)pl_load_be16(b + 51), h->producer_epoch);
    EQ((int32_t)pl_load_be32(b + 53), h->base_sequence);
    EQ((int32_t)pl_load_be32(b + 57), h->records_count);
}

static void check_headers_equal(const pl_batch_header *a, const pl_batch_header *b) {
    EQ(a->base_offset, b->base_offset);
    EQ(a->batch_length, b->batch_length);
    EQ(a->partition_leader_epoch, b->partition_leader_epoch);
    EQ(a->magic, b->magic);
    EQ(a->crc, b->crc);
    EQ(a->attributes, b->attributes);
    EQ(a->last_offset_delta, b->last_offset_delta);
    EQ(a->base_timestamp, b->base_timestamp);
    EQ(a->max_timestamp, b->max_timestamp);
    EQ(a->producer_id, b->producer_id);
    EQ(a->producer_epoch, b->producer_epoch);
    EQ(a->base_sequence, b->base_sequence);
    EQ(a->records_count, b->records_count);
}

/* Decode a records section (copied to an exactly sized heap block so ASAN sees
 * any read past its end) and compare with what was encoded. */
static void check_decode_roundtrip(const uint8_t *sec, size_t len, const recset *rs) {
    uint8_t *b = xdup(sec, len);
    int32_t n = (int32_t)rs->n, dec = -7;
    pl_record_out *out = xmalloc(sizeof(pl_record_out) * (rs->n + 2));
    E(pl_records_decode(b, len, n, out, &dec));
    EQ(dec, n);
    for (int32_t i = 0; i < n; i++) {
        const pl_record_in *r = &rs->recs[i];
        const pl_record_out *o = &out[i];
        CTX("decode record %d of %d", i, n);
        EQ(o->timestamp_delta, r->timestamp_delta);
        EQ(o->offset_delta, i);
        EQ(o->key_len, r->key_len);
        if (r->key_len >= 0) {
            CHECK(o->key_pos >= 0 && (size_t)o->key_pos + (size_t)o->key_len <= len);
            CHECK(r->key_len == 0 || memcmp(b + o->key_pos, r->key, (size_t)r->key_len) == 0);
        }
        EQ(o->value_len, r->value_len);
        if (r->value_len >= 0) {
            CHECK(o->value_pos >= 0 && (size_t)o->value_pos + (size_t)o->value_len <= len);
            CHECK(r->value_len == 0 || memcmp(b + o->value_pos, r->value, (size_t)r->value_len) == 0);
        }
        EQ(o->header_count, r->header_count);
        CHECK(o->headers_pos >= 0 && (size_t)o->headers_pos <= len);
        pl_header_out hs[4];
        E(pl_headers_decode(b, len, o->headers_pos, o->header_count, hs));
        for (int32_t j = 0; j < r->header_count; j++) {
            const pl_header_in *hi = &r->headers[j];
            EQ(hs[j].key_len, hi->key_len);
            CHECK(hs[j].key_pos >= 0 && (size_t)hs[j].key_pos + (size_t)hs[j].key_len <= len);
            CHECK(hi->key_len == 0 || memcmp(b + hs[j].key_pos, hi->key, (size_t)hi->key_len) == 0);
            EQ(hs[j].value_len, hi->value_len);
            if (hi->value_len > 0) {
                CHECK(hs[j].value_pos >= 0 && (size_t)hs[j].value_pos + (size_t)hs[j].value_len <= len);
                CHECK(memcmp(b + hs[j].value_pos, hi->value, (size_t)hi->value_len) == 0);
            }
        }
    }
    /* asking for one record more than there is */
    dec = -7;
    ERC(pl_records_decode(b, len, n + 1, out, &dec), PL_ECORRUPT);
    EQ(dec, n);
    dec = -7;
    E(pl_records_decode(b, len, 0, out, &dec));
    EQ(dec, 0);
    free(out);
    free(b);
    g_ctx[0] = 0;
}

static void test_batch_build_validate(void) {
    static recset rs;
    for (int round = 0; round < 40; round++) {
        size_t n = round < 3 ? (size_t)round : (size_t)rnd_range(1, 40);
        gen_records(&rs, n, round % 4 == 0 ? 300 : 40, 0, round % 2);
        CTX("batch round %d, %zu records", round, n);

        /* records section: size, encode, and the reference encoding agree */
        size_t rsz = pl_records_size(rs.recs, n);
        uint8_t *ref = xmalloc(rsz + 64);
        size_t *ends = xmalloc(sizeof(size_t) * (n + 1));
        EQ(ref_encode(ref, rs.recs, n, ends), rsz);

        pl_batch_header h;
        default_header(&h, &rs, 1700000000000 + round);
        h.producer_id = round % 2 ? 4242 : -1;
        h.producer_epoch = (int16_t)(round % 2 ? 3 : -1);
        h.base_sequence = round % 2 ? 17 : -1;
        h.partition_leader_epoch = round % 3 ? -1 : 9;
        h.base_offset = round % 3 ? 0 : 123;
        h.batch_length = 0x11111111; /* seal overwrites both */
        h.crc = 0x22222222;
        tbatch t = build_batch_h(&rs, &h);
        CHECK(memcmp(t.buf + PL_BATCH_HEADER_SIZE, ref, rsz) == 0);

        /* header bytes: write_header + seal put every field where KAFKA-NOTES 2.1 says */
        h.batch_length = (int32_t)(t.len - 12);
        h.crc = ref_crc32c(0, t.buf + 21, t.len - 21);
        check_header_bytes(t.buf, &h);

        pl_batch_header got;
        memset(&got, 0x5A, sizeof got);
        E(pl_batch_parse_header(t.buf, t.len, &got));
        check_headers_equal(&got, &h);
        memset(&got, 0x5A, sizeof got);
        E(pl_batch_validate(t.buf, t.len, &got));
        check_headers_equal(&got, &h);

        /* the decoder gives back what was encoded */
        check_decode_roundtrip(t.buf + PL_BATCH_HEADER_SIZE, rsz, &rs);

        /* pl_records_positions: where each record starts */
        {
            uint8_t *sec = xdup(t.buf + PL_BATCH_HEADER_SIZE, rsz);
            int32_t *starts = xmalloc(sizeof(int32_t) * (n + 1));
            E(pl_records_positions(sec, rsz, (int32_t)n, starts));
            for (size_t i = 0; i < n; i++) EQ(starts[i], i ? ends[i - 1] : 0);
            if (n > 0) {
                ERC(pl_records_positions(sec, rsz - 1, (int32_t)n, starts), PL_ECORRUPT);
                ERC(pl_records_positions(sec, rsz, (int32_t)n + 1, starts), PL_ECORRUPT);
                uint8_t *bad = xdup(sec, rsz);
                bad[ends[0] - 1] = 0x80; /* the first record's last byte starts a varint that never ends */
                int rc = pl_records_positions(bad, rsz, (int32_t)n, starts);
                CHECK(rc == PL_ECORRUPT || (rc == PL_OK && n > 0));
                free(bad);
            }
            free(starts);
            free(sec);
        }

        /* truncations of the section: decoded counts whole records only */
        for (size_t cut = 0; cut < rsz; cut += (rsz > 400 ? 7 : 1)) {
            uint8_t *c = xdup(t.buf + PL_BATCH_HEADER_SIZE, cut);
            pl_record_out *out = xmalloc(sizeof(pl_record_out) * (n + 1));
            int32_t dec = -7;
            CTX("batch round %d, records section cut at %zu of %zu", round, cut, rsz);
            ERC(pl_records_decode(c, cut, (int32_t)n, out, &dec), PL_ECORRUPT);
            int32_t whole = 0;
            while ((size_t)whole < n && ends[whole] <= cut) whole++;
            EQ(dec, whole);
            free(out);
            free(c);
        }

        /* a longer buffer (bytes after the batch) is fine */
        uint8_t *longer = xmalloc(t.len + 100);
        memcpy(longer, t.buf, t.len);
        memset(longer + t.len, 0xEE, 100);
        E(pl_batch_validate(longer, t.len + 100, &got));
        EQ(got.batch_length, t.len - 12);
        free(longer);

        /* every single-byte change: outside the CRC stays valid, inside fails */
        static const uint8_t masks[] = {0x01, 0x80, 0xFF};
        uint8_t *m = xdup(t.buf, t.len);
        for (size_t i = 0; i < t.len; i++) {
            for (size_t k = 0; k < 3; k++) {
                CTX("batch round %d, byte %zu ^= 0x%02x (len %zu)", round, i, masks[k], t.len);
                m[i] = (uint8_t)(t.buf[i] ^ masks[k]);
                int rc = pl_batch_validate(m, t.len, &got);
                if (i < 8 || (i >= 12 && i < 16))
                    ERC(rc, PL_OK); /* base_offset, leader epoch: outside the CRC */
                else if (i < 12)
                    EFAIL(rc); /* batch_length */
                else if (i == 16)
                    ERC(rc, PL_EMAGIC);
                else
                    ERC(rc, PL_ECORRUPT);
                m[i] = t.buf[i];
            }
        }
        free(m);

        /* the leader's patches keep the CRC valid */
        uint8_t *p = xdup(t.buf, t.len);
        pl_batch_set_base_offset(p, 123456789012345);
        pl_batch_set_leader_epoch(p, 77);
        E(pl_batch_validate(p, t.len, &got));
        EQ(got.base_offset, 123456789012345);
        EQ(got.partition_leader_epoch, 77);
        EQ(pl_load_be64(p), 123456789012345);
        EQ(pl_load_be32(p + 12), 77);
        CHECK(memcmp(p + 16, t.buf + 16, t.len - 16) == 0);
        CHECK(memcmp(p + 8, t.buf + 8, 4) == 0);
        pl_batch_set_base_offset(p, 0);
        pl_batch_set_leader_epoch(p, -1);
        E(pl_batch_validate(p, t.len, &got));
        free(p);

        /* every truncation of the batch: PL_ETRUNCATED, header filled from 61 bytes on */
        for (size_t cut = 0; cut < t.len; cut++) {
            uint8_t *c = xdup(t.buf, cut);
            CTX("batch round %d, cut at %zu of %zu", round, cut, t.len);
            memset(&got, 0x5A, sizeof got);
            ERC(pl_batch_validate(c, cut, &got), PL_ETRUNCATED);
            memset(&got, 0x5A, sizeof got);
            ERC(pl_batch_parse_header(c, cut, &got), PL_ETRUNCATED);
            if (cut >= PL_BATCH_HEADER_SIZE) check_headers_equal(&got, &h);
            free(c);
        }
        free(ends);
        free(ref);
        free(t.buf);
    }
    g_ctx[0] = 0;

    /* an empty batch (records_count 0, as compaction may leave) is 61 bytes and valid */
    gen_records(&rs, 0, 0, 0, 0);
    tbatch e = build_batch(&rs, 5);
    EQ(e.len, PL_BATCH_HEADER_SIZE);
    pl_batch_header got;
    E(pl_batch_validate(e.buf, e.len, &got));
    EQ(got.batch_length, 49);
    EQ(got.records_count, 0);
    free(e.buf);

    /* batch_length below 49, magic other than 2, negative last_offset_delta */
    tbatch t = gen_batch(5, 30, 1000, 0);
    uint8_t *b = xdup(t.buf, t.len);
    static const int32_t bad_lengths[] = {48, 0, 1, -1, INT32_MIN, 12};
    for (size_t i = 0; i < sizeof bad_lengths / sizeof bad_lengths[0]; i++) {
        CTX("batch_length %d", bad_lengths[i]);
        memcpy(b, t.buf, t.len);
        pl_store_be32(b + 8, (uint32_t)bad_lengths[i]);
        ERC(pl_batch_parse_header(b, t.len, &got), PL_ECORRUPT);
        ERC(pl_batch_validate(b, t.len, &got), PL_ECORRUPT);
    }
    memcpy(b, t.buf, t.len);
    pl_store_be32(b + 8, 49); /* a legal length, but the CRC now covers the wrong range */
    E(pl_batch_parse_header(b, t.len, &got));
    ERC(pl_batch_validate(b, t.len, &got), PL_ECORRUPT);
    static const uint8_t bad_magic[] = {0, 1, 3, 0xFF};
    for (size_t i = 0; i < sizeof bad_magic; i++) {
        CTX("magic %u", bad_magic[i]);
        memcpy(b, t.buf, t.len);
        b[16] = bad_magic[i];
        ERC(pl_batch_parse_header(b, t.len, &got), PL_EMAGIC);
        ERC(pl_batch_validate(b, t.len, &got), PL_EMAGIC);
    }
    /* a legacy magic-1 message (34 bytes, shorter than a v2 header): the
     * magic is readable from 17 bytes on, so the answer should be EMAGIC */
    {
        uint8_t legacy[34];
        memset(legacy, 0, sizeof legacy);
        pl_store_be32(legacy + 8, 22);
        legacy[16] = 1;
        pl_store_be32(legacy + 26, 0xFFFFFFFFu); /* null key */
        int rc = pl_batch_validate(legacy, sizeof legacy, &got);
        CHECK(rc < 0);
        SOFT(rc == PL_EMAGIC, "a 34-byte magic-1 message gives %d (%s)", rc, pl_strerror(rc));
    }
    /* a zero-filled tail (preallocated space, a torn page): magic 0 */
    {
        uint8_t zeros[80];
        memset(zeros, 0, sizeof zeros);
        int rc = pl_batch_parse_header(zeros, sizeof zeros, &got);
        CHECK(rc < 0);
        ERC(rc, PL_ETRUNCATED); /* batch.h: a zero-filled tail reads as a torn tail */
    }
    /* negative last_offset_delta, with a valid CRC */
    memcpy(b, t.buf, t.len);
    pl_store_be32(b + 23, (uint32_t)-1);
    pl_batch_seal(b, t.len);
    ERC(pl_batch_parse_header(b, t.len, &got), PL_ECORRUPT);
    ERC(pl_batch_validate(b, t.len, &got), PL_ECORRUPT);
    /* short buffers: nothing is read past len */
    for (size_t cut = 0; cut < 17; cut++) {
        uint8_t *c = xdup(t.buf, cut);
        ERC(pl_batch_parse_header(c, cut, &got), PL_ETRUNCATED);
        free(c);
    }
    free(b);
    free(t.buf);
    g_ctx[0] = 0;
}

/* ---- records: corrupt sections ---- */

/* One record into b: length (or length_override when not INT64_MIN), attributes,
 * timestamp delta, offset delta, key, value, header count; header bytes come
 * from hdr (raw) when given. */
static void put_record(bbuf *b, int64_t length_override, int64_t od, int64_t key_len, size_t key_bytes,
                       int64_t value_len, size_t value_bytes, int64_t header_count, const bbuf *hdr) {
    static bbuf body;
    body.n = 0;
    bb_u8(&body, 0);
    bb_var(&body, 5);
    bb_var(&body, od);
    bb_var(&body, key_len);
    for (size_t i = 0; i < key_bytes; i++) bb_u8(&body, (uint8_t)('k' + i));
    bb_var(&body, value_len);
    for (size_t i = 0; i < value_bytes; i++) bb_u8(&body, (uint8_t)('v' + i));
    bb_var(&body, header_count);
    if (hdr) bb_bytes(&body, hdr->d, hdr->n);
    bb_var(b, length_override == INT64_MIN ? (int64_t)body.n : length_override);
    bb_bytes(b, body.d, body.n);
}

static void put_good_record(bbuf *b, int64_t od) { put_record(b, INT64_MIN, od, 3, 3, 4, 4, 0, NULL); }

/* Decode count records of b from an exact heap copy; return the rc. */
static int decode_copy(const bbuf *b, int32_t count, int32_t *decoded, pl_record_out **out_keep) {
    uint8_t *c = xdup(b->d, b->n);
    pl_record_out *out = xmalloc(sizeof(pl_record_out) * (size_t)(count + 1));
    *decoded = -7;
    int rc = pl_records_decode(c, b->n, count, out, decoded);
    CHECK(rc == PL_OK || rc == PL_ECORRUPT);
    CHECK(*decoded >= 0 && *decoded <= count);
    for (int32_t i = 0; i < *decoded; i++) { /* whatever was decoded lies inside */
        CHECK(out[i].key_len >= -1 && out[i].value_len >= -1);
        if (out[i].key_len > 0) CHECK(out[i].key_pos >= 0 && (size_t)out[i].key_pos + (size_t)out[i].key_len <= b->n);
        if (out[i].value_len > 0)
            CHECK(out[i].value_pos >= 0 && (size_t)out[i].value_pos + (size_t)out[i].value_len <= b->n);
        CHECK(out[i].headers_pos >= 0 && (size_t)out[i].headers_pos <= b->n);
    }
    if (out_keep)
        *out_keep = out;
    else
        free(out);
    free(c);
    return rc;
}

static void test_records_corrupt(void) {
    static bbuf b;
    int32_t dec;
    struct {
        const char *what;
        int64_t length;
        int64_t od, key_len;
        size_t key_bytes;
        int64_t value_len;
        size_t value_bytes;
        int64_t header_count;
        int then_good; /* a good record follows, so "past the record" is still inside the buffer */
    } bad[] = {
        {"length past the buffer", 1000, 1, 3, 3, 4, 4, 0, 0},
        {"length -1", -1, 1, 3, 3, 4, 4, 0, 1},
        {"length -100", -100, 1, 3, 3, 4, 4, 0, 1},
        {"length too small for its fields", 3, 1, 3, 3, 4, 4, 0, 1},
        {"length 0", 0, 1, 3, 3, 4, 4, 0, 1},
        {"key_len past the record", INT64_MIN, 1, 40, 3, 4, 4, 0, 1},
        {"key_len past the buffer", INT64_MIN, 1, 4000, 3, 4, 4, 0, 0},
        {"key_len -2", INT64_MIN, 1, -2, 0, 4, 4, 0, 1},
        {"key_len INT32_MAX", INT64_MIN, 1, INT32_MAX, 3, 4, 4, 0, 1},
        {"key_len beyond int32", INT64_MIN, 1, (int64_t)1 << 33, 3, 4, 4, 0, 1},
        {"value_len past the record", INT64_MIN, 1, 3, 3, 40, 4, 0, 1},
        {"value_len -3", INT64_MIN, 1, 3, 3, -3, 0, 0, 1},
        {"offset_delta beyond int32", INT64_MIN, (int64_t)1 << 40, 3, 3, 4, 4, 0, 1},
        {"header_count -1", INT64_MIN, 1, 3, 3, 4, 4, -1, 1},
        {"header_count past the record", INT64_MIN, 1, 3, 3, 4, 4, 1000, 1},
    };
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        CTX("corrupt record: %s", bad[i].what);
        b.n = 0;
        put_good_record(&b, 0);
        put_record(&b, bad[i].length, bad[i].od, bad[i].key_len, bad[i].key_bytes, bad[i].value_len,
                   bad[i].value_bytes, bad[i].header_count, NULL);
        if (bad[i].then_good) put_good_record(&b, 2);
        ERC(decode_copy(&b, bad[i].then_good ? 3 : 2, &dec, NULL), PL_ECORRUPT);
        EQ(dec, 1);
    }
    /* a length larger than the record's fields (slack bytes inside the record):
     * Kafka rejects it ("expected to read N bytes in record payload") */
    CTX("corrupt record: length larger than its fields");
    {
        static bbuf body;
        body.n = 0;
        put_good_record(&body, 1);
        /* body holds length varint + fields; rewrite it with length + 2 and 2 slack bytes */
        int64_t flen;
        size_t k = pl_varlong_read(body.d, body.n, &flen);
        CHECK(k == 1);
        b.n = 0;
        put_good_record(&b, 0);
        bb_var(&b, flen + 2);
        bb_bytes(&b, body.d + 1, body.n - 1);
        bb_u8(&b, 0);
        bb_u8(&b, 0);
        put_good_record(&b, 2);
        ERC(decode_copy(&b, 3, &dec, NULL), PL_ECORRUPT);
        EQ(dec, 1);
    }
    /* the length varint itself: overlong, unterminated */
    CTX("corrupt record: overlong length varint");
    b.n = 0;
    put_good_record(&b, 0);
    static const uint8_t overlong[] = {0x80, 0x80, 0x80, 0x80, 0x80, 0x00};
    bb_bytes(&b, overlong, sizeof overlong);
    put_good_record(&b, 1);
    ERC(decode_copy(&b, 3, &dec, NULL), PL_ECORRUPT);
    EQ(dec, 1);
    CTX("corrupt record: unterminated length varint");
    b.n = 0;
    put_good_record(&b, 0);
    bb_u8(&b, 0x80);
    ERC(decode_copy(&b, 2, &dec, NULL), PL_ECORRUPT);
    EQ(dec, 1);

    /* headers: decode the record, then the headers */
    struct {
        const char *what;
        int64_t key_len;
        size_t key_bytes;
        int64_t value_len;
        size_t value_bytes;
    } badh[] = {
        {"header key_len -1 (keys are never null)", -1, 0, 2, 2},
        {"header key_len -5", -5, 0, 2, 2},
        {"header value_len -2", 2, 2, -2, 0},
        {"header key past the section", 500, 2, 2, 2},
        {"header value past the section", 2, 2, 500, 2},
    };
    for (size_t i = 0; i < sizeof badh / sizeof badh[0]; i++) {
        CTX("corrupt header: %s", badh[i].what);
        static bbuf hb;
        hb.n = 0;
        bb_var(&hb, badh[i].key_len);
        for (size_t k = 0; k < badh[i].key_bytes; k++) bb_u8(&hb, 'h');
        bb_var(&hb, badh[i].value_len);
        for (size_t k = 0; k < badh[i].value_bytes; k++) bb_u8(&hb, 'w');
        b.n = 0;
        put_record(&b, INT64_MIN, 0, 3, 3, 4, 4, 1, &hb);
        pl_record_out *out = NULL;
        int rc = decode_copy(&b, 1, &dec, &out);
        if (rc == PL_OK) { /* the record's own lengths are fine; the headers are not */
            uint8_t *c = xdup(b.d, b.n);
            pl_header_out ho[2];
            ERC(pl_headers_decode(c, b.n, out[0].headers_pos, 1, ho), PL_ECORRUPT);
            free(c);
        }
        free(out);
    }
    /* headers_decode: more headers than there are, a position outside the section */
    {
        CTX("headers_decode bounds");
        static bbuf hb;
        hb.n = 0;
        bb_var(&hb, 2);
        bb_bytes(&hb, "ab", 2);
        bb_var(&hb, -1);
        b.n = 0;
        put_record(&b, INT64_MIN, 0, 3, 3, 4, 4, 1, &hb);
        pl_record_out *out = NULL;
        E(decode_copy(&b, 1, &dec, &out));
        uint8_t *c = xdup(b.d, b.n);
        pl_header_out ho[4];
        E(pl_headers_decode(c, b.n, out[0].headers_pos, 1, ho));
        EQ(ho[0].key_len, 2);
        EQ(ho[0].value_len, -1);
        CHECK(memcmp(c + ho[0].key_pos, "ab", 2) == 0);
        ERC(pl_headers_decode(c, b.n, out[0].headers_pos, 3, ho), PL_ECORRUPT);
        EFAIL(pl_headers_decode(c, b.n, (int32_t)b.n + 5, 1, ho));
        EFAIL(pl_headers_decode(c, b.n, -1, 1, ho));
        E(pl_headers_decode(c, b.n, out[0].headers_pos, 0, ho));
        free(c);
        free(out);
    }

    /* random damage to real sections: OK or PL_ECORRUPT, never a read out of bounds */
    static recset rs;
    for (int it = 0; it < 300; it++) {
        gen_records(&rs, (size_t)rnd_range(1, 12), 30, 0, 1);
        size_t rsz = pl_records_size(rs.recs, rs.n);
        uint8_t *sec = xmalloc(rsz);
        EQ(pl_records_encode(sec, rs.recs, rs.n), rsz);
        for (int k = 0; k < 20; k++) {
            b.n = 0;
            bb_bytes(&b, sec, rsz);
            int flips = (int)rnd_range(1, 3);
            for (int f = 0; f < flips; f++) b.d[rnd_below(rsz)] = (uint8_t)rnd();
            CTX("fuzz iteration %d.%d", it, k);
            pl_record_out *out = NULL;
            int rc = decode_copy(&b, (int32_t)rs.n, &dec, &out);
            if (rc == PL_OK) EQ(dec, rs.n);
            uint8_t *c = xdup(b.d, b.n);
            for (int32_t r = 0; r < dec; r++) {
                if (out[r].header_count < 0 || out[r].header_count > 64) continue;
                pl_header_out *ho = xmalloc(sizeof(pl_header_out) * (size_t)(out[r].header_count + 1));
                int hrc = pl_headers_decode(c, b.n, out[r].headers_pos, out[r].header_count, ho);
                CHECK(hrc == PL_OK || hrc == PL_ECORRUPT);
                if (hrc == PL_OK) {
                    for (int32_t j = 0; j < out[r].header_count; j++) {
                        CHECK(ho[j].key_len >= 0 && ho[j].key_pos >= 0 &&
                              (size_t)ho[j].key_pos + (size_t)ho[j].key_len <= b.n);
                        CHECK(ho[j].value_len >= -1);
                        if (ho[j].value_len > 0)
                            CHECK(ho[j].value_pos >= 0 && (size_t)ho[j].value_pos + (size_t)ho[j].value_len <= b.n);
                    }
                }
                free(ho);
            }
            free(c);
            free(out);
        }
        free(sec);
    }
    g_ctx[0] = 0;
}

/* ---- batches_scan and batches_assign_offsets ---- */

static void test_batches_scan(void) {
    enum { NB = 6 };
    tbatch bs[NB];
    /* distinct max timestamps, the largest in the middle */
    static const int64_t maxts[NB] = {5000, 9000, 7000, 20000, 8000, 19000};
    int64_t base = 100, off = base;
    int64_t bases[NB];
    size_t starts[NB + 1];
    starts[0] = 0;
    for (int i = 0; i < NB; i++) {
        bs[i] = gen_batch_max((size_t)(i % 3 + 1 + i), 50, maxts[i], 0);
        pl_batch_set_base_offset(bs[i].buf, off);
        bases[i] = off;
        off += bs[i].count;
        starts[i + 1] = starts[i] + bs[i].len;
    }
    size_t len;
    uint8_t *all = concat(bs, NB, &len);
    pl_batches_info info;

    CTX("scan of %d whole batches", NB);
    for (int crc = 0; crc <= 1; crc++) {
        memset(&info, 0x5A, sizeof info);
        E(pl_batches_scan(all, len, crc, &info));
        EQ(info.stop_rc, PL_OK);
        EQ(info.valid_bytes, len);
        EQ(info.batches, NB);
        EQ(info.records, off - base);
        EQ(info.first_offset, base);
        EQ(info.last_offset, off - 1);
        EQ(info.max_timestamp, 20000);
        CHECK(info.offset_of_max_timestamp >= bases[3] && info.offset_of_max_timestamp < bases[4]);
    }
    if (info.offset_of_max_timestamp != bases[4] - 1)
        printf("  scan: offset_of_max_timestamp is %" PRId64 " (the batch holds %" PRId64 "..%" PRId64
               "; Kafka's shallow value is the batch's last offset)\n",
               info.offset_of_max_timestamp, bases[3], bases[4] - 1);

    CTX("scan of nothing");
    memset(&info, 0x5A, sizeof info);
    E(pl_batches_scan(all, 0, 1, &info));
    EQ(info.stop_rc, PL_OK);
    EQ(info.valid_bytes, 0);
    EQ(info.batches, 0);
    EQ(info.records, 0);
    EQ(info.first_offset, -1);
    EQ(info.last_offset, -1);
    EQ(info.max_timestamp, -1);
    EQ(info.offset_of_max_timestamp, -1);

    /* torn tails: the first 4 batches whole, then part of the 5th */
    size_t cuts[] = {1, 8, 12, 16, 17, 20, 40, 60, 61, 62, bs[4].len - 1};
    for (size_t c = 0; c < sizeof cuts / sizeof cuts[0]; c++) {
        size_t l = starts[4] + cuts[c];
        uint8_t *t = xdup(all, l);
        CTX("scan torn after %zu bytes of batch 4", cuts[c]);
        for (int crc = 0; crc <= 1; crc++) {
            memset(&info, 0x5A, sizeof info);
            E(pl_batches_scan(t, l, crc, &info));
            EQ(info.stop_rc, PL_ETRUNCATED);
            EQ(info.valid_bytes, starts[4]);
            EQ(info.batches, 4);
            EQ(info.first_offset, base);
            EQ(info.last_offset, bases[4] - 1);
            EQ(info.records, bases[4] - base);
            EQ(info.max_timestamp, 20000);
        }
        free(t);
    }

    /* a corrupt byte inside batch 2: with the CRC check the walk stops there */
    uint8_t *c = xdup(all, len);
    c[starts[2] + PL_BATCH_HEADER_SIZE + 2] ^= 0x10;
    CTX("scan with a corrupt batch 2");
    memset(&info, 0x5A, sizeof info);
    E(pl_batches_scan(c, len, 1, &info));
    EQ(info.stop_rc, PL_ECORRUPT);
    EQ(info.valid_bytes, starts[2]);
    EQ(info.batches, 2);
    EQ(info.last_offset, bases[2] - 1);
    EQ(info.max_timestamp, 9000);
    CHECK(info.offset_of_max_timestamp >= bases[1] && info.offset_of_max_timestamp < bases[2]);
    memset(&info, 0x5A, sizeof info);
    E(pl_batches_scan(c, len, 0, &info)); /* headers alone are fine */
    EQ(info.stop_rc, PL_OK);
    EQ(info.valid_bytes, len);

    /* bad magic in batch 3, bad length in batch 1 */
    memcpy(c, all, len);
    c[starts[3] + 16] = 1;
    memset(&info, 0x5A, sizeof info);
    E(pl_batches_scan(c, len, 0, &info));
    EQ(info.stop_rc, PL_EMAGIC);
    EQ(info.valid_bytes, starts[3]);
    EQ(info.batches, 3);
    memcpy(c, all, len);
    pl_store_be32(c + starts[1] + 8, 20);
    memset(&info, 0x5A, sizeof info);
    E(pl_batches_scan(c, len, 1, &info));
    EQ(info.stop_rc, PL_ECORRUPT);
    EQ(info.valid_bytes, starts[1]);
    EQ(info.batches, 1);
    free(c);
    free(all);
    free_batches(bs, NB);
    g_ctx[0] = 0;
}

static void test_assign_offsets(void) {
    enum { NB = 4 };
    tbatch bs[NB];
    static const size_t counts[NB] = {3, 1, 5, 2};
    static const int64_t maxts[NB] = {100, 400, 300, 200};
    for (int i = 0; i < NB; i++) {
        bs[i] = gen_batch_max(counts[i], 60, maxts[i], 0);
        pl_batch_set_leader_epoch(bs[i].buf, 42); /* what the producer sent */
    }
    size_t len;
    uint8_t *all = concat(bs, NB, &len);
    uint8_t *orig = xdup(all, len);
    pl_batches_info info;

    CTX("assign_offsets happy path");
    memset(&info, 0x5A, sizeof info);
    E(pl_batches_assign_offsets(all, len, 1000, 7, 0, &info));
    EQ(info.stop_rc, PL_OK);
    EQ(info.valid_bytes, len);
    EQ(info.batches, NB);
    EQ(info.records, 11);
    EQ(info.first_offset, 1000);
    EQ(info.last_offset, 1010);
    EQ(info.max_timestamp, 400);
    CHECK(info.offset_of_max_timestamp == 1003);
    size_t pos = 0;
    int64_t want = 1000;
    for (int i = 0; i < NB; i++) {
        pl_batch_header h;
        E(pl_batch_validate(all + pos, len - pos, &h));
        EQ(h.base_offset, want);
        EQ(h.partition_leader_epoch, 7);
        /* nothing but the two fields changed */
        CHECK(memcmp(all + pos + 8, orig + pos + 8, 4) == 0);
        CHECK(memcmp(all + pos + 16, orig + pos + 16, bs[i].len - 16) == 0);
        want += (int64_t)counts[i];
        pos += bs[i].len;
    }
    /* leader_epoch < 0: offsets only */
    memcpy(all, orig, len);
    E(pl_batches_assign_offsets(all, len, 5, -1, 0, &info));
    pos = 0;
    want = 5;
    for (int i = 0; i < NB; i++) {
        pl_batch_header h;
        E(pl_batch_validate(all + pos, len - pos, &h));
        EQ(h.base_offset, want);
        EQ(h.partition_leader_epoch, 42);
        want += (int64_t)counts[i];
        pos += bs[i].len;
    }
    EQ(info.first_offset, 5);
    EQ(info.last_offset, 15);

    /* failures leave every byte as it was: batch 2 (not the first) is bad */
    size_t at2 = bs[0].len + bs[1].len;
    struct {
        const char *what;
        int want_rc; /* 0: any failure */
    } cases[] = {
        {"records_count != last_offset_delta + 1", PL_EINVALREC},
        {"records_count 0, last_offset_delta 0", PL_EINVALREC},
        {"control batch", PL_EINVALREC},
        {"bad CRC", PL_ECORRUPT},
        {"magic 1", PL_EMAGIC},
        {"torn last batch", 0},
    };
    for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
        CTX("assign_offsets rejects: %s", cases[k].what);
        memcpy(all, orig, len);
        size_t l = len;
        switch (k) {
        case 0:
            pl_store_be32(all + at2 + 57, (uint32_t)(counts[2] + 1));
            pl_batch_seal(all + at2, bs[2].len);
            break;
        case 1:
            pl_store_be32(all + at2 + 57, 0);
            pl_store_be32(all + at2 + 23, 0);
            pl_batch_seal(all + at2, bs[2].len);
            break;
        case 2:
            pl_store_be16(all + at2 + 21, PL_ATTR_CONTROL | PL_ATTR_TRANSACTIONAL);
            pl_batch_seal(all + at2, bs[2].len);
            break;
        case 3: all[at2 + 70] ^= 1; break;
        case 4: all[at2 + 16] = 1; break;
        case 5: l = len - 3; break;
        }
        uint8_t *before = xdup(all, len);
        int rc = EFAIL(pl_batches_assign_offsets(all, l, 1000, 7, 0, &info));
        if (cases[k].want_rc) ERC(rc, cases[k].want_rc);
        if (k == 5) SOFT(rc == PL_ETRUNCATED, "a torn last batch gives %d (%s)", rc, pl_strerror(rc));
        CHECK(memcmp(all, before, len) == 0); /* nothing patched */
        free(before);
        if (k == 2) { /* allowed when asked */
            E(pl_batches_assign_offsets(all, len, 1000, 7, 1, &info));
            EQ(info.last_offset, 1010);
        }
    }
    /* an empty buffer */
    memset(&info, 0x5A, sizeof info);
    int rc = pl_batches_assign_offsets(all, 0, 1000, 7, 0, &info);
    printf("  assign_offsets of 0 bytes: rc %d (%s)\n", rc, pl_strerror(rc));
    free(orig);
    free(all);
    free_batches(bs, NB);
    g_ctx[0] = 0;
}

/* The broker's rewrites: the LogAppendTime stamp touches only the bit,
 * max_timestamp and the CRC of every batch; a records prefix is the size and
 * max timestamp of the first keep records. */
static void test_batch_rewrites(void) {
    static recset rs;
    tbatch bs[2];
    gen_records(&rs, 17, 30, 0, 1);
    bs[0] = build_batch(&rs, 1000);
    bs[1] = gen_batch(5, 10, 5000, 0);
    size_t len;
    uint8_t *all = concat(bs, 2, &len);
    uint8_t *orig = xmalloc(len);
    memcpy(orig, all, len);
    E(pl_batches_set_log_append_time(all, len, 777777));
    size_t pos = 0;
    for (int i = 0; i < 2; i++) {
        pl_batch_header h;
        E(pl_batch_validate(all + pos, len - pos, &h));
        CHECK(h.attributes & PL_ATTR_LOG_APPEND_TIME);
        EQ(h.max_timestamp, 777777);
        EQ(h.base_timestamp, bs[i].base_ts);
        EQ(memcmp(all + pos + PL_BATCH_RECORDS_OFFSET, orig + pos + PL_BATCH_RECORDS_OFFSET,
                  bs[i].len - PL_BATCH_RECORDS_OFFSET), 0);
        pos += bs[i].len;
    }
    ERC(pl_batches_set_log_append_time(all, len - 1, 1), PL_ETRUNCATED);
    const uint8_t *sec = bs[0].buf + PL_BATCH_HEADER_SIZE;
    size_t sec_len = bs[0].len - PL_BATCH_HEADER_SIZE;
    for (int32_t keep = 0; keep <= 17; keep++) {
        size_t plen = 0;
        int64_t mx = 0, want = -1;
        E(pl_records_prefix(sec, sec_len, 17, keep, 1000, &plen, &mx));
        EQ(plen, pl_records_size(rs.recs, (size_t)keep));
        for (int32_t i = 0; i < keep; i++) want = max64(want, 1000 + rs.recs[i].timestamp_delta);
        EQ(mx, want);
    }
    size_t plen;
    int64_t mx;
    ERC(pl_records_prefix(sec, sec_len, 17, 18, 0, &plen, &mx), PL_EINVAL);
    ERC(pl_records_prefix(sec, sec_len / 2, 17, 17, 0, &plen, &mx), PL_ECORRUPT);
    free(orig);
    free(all);
    free(bs[0].buf);
    free(bs[1].buf);
}

static void test_batch(void) {
    test_batch_build_validate();
    test_records_corrupt();
    test_batches_scan();
    test_assign_offsets();
    test_batch_rewrites();
}

/* ------------------------------------------------------------------------- */
/* index                                                                     */

static pl_index *ix_open(const char *path, int kind, int64_t base, int64_t max_bytes, int writable) {
    pl_index *ix = NULL;
    E(pl_index_open(&ix, path, kind, base, max_bytes, writable));
    CHECK(ix != NULL);
    EQ(pl_index_kind(ix), kind);
    return ix;
}

/* Entries as absolute pairs, malloc'ed (2 per entry). */
static int64_t *ix_snapshot(const pl_index *ix, int64_t *n) {
    *n = pl_index_entries(ix);
    int64_t *e = xmalloc(sizeof(int64_t) * (size_t)(2 * *n + 2));
    for (int64_t i = 0; i < *n; i++) E(pl_index_entry(ix, i, &e[2 * i], &e[2 * i + 1]));
    return e;
}

static void ix_expect(const pl_index *ix, const int64_t *e, int64_t n) {
    EQ(pl_index_entries(ix), n);
    for (int64_t i = 0; i < n; i++) {
        int64_t a, b;
        E(pl_index_entry(ix, i, &a, &b));
        EQ(a, e[2 * i]);
        EQ(b, e[2 * i + 1]);
    }
}

static void check_offset_lookup(const pl_index *ix, int64_t base, const int64_t *off, const int64_t *pos,
                                int64_t n, int64_t target) {
    int64_t eo = base, ep = 0;
    for (int64_t i = 0; i < n && off[i] <= target; i++) {
        eo = off[i];
        ep = pos[i];
    }
    int64_t go = -99, gp = -99;
    pl_offset_index_lookup(ix, target, &go, &gp);
    if (go != eo || gp != ep) {
        fprintf(stderr, "offset lookup(%" PRId64 ") with %" PRId64 " entries, base %" PRId64 ": got (%" PRId64
                        ", %" PRId64 "), want (%" PRId64 ", %" PRId64 ")\n",
                target, n, base, go, gp, eo, ep);
        CHECK(go == eo && gp == ep);
    }
    g_checks++;
}

static void check_time_lookup(const pl_index *ix, int64_t base, const int64_t *ts, const int64_t *off, int64_t n,
                              int64_t target) {
    int64_t et = -1, eo = base;
    for (int64_t i = 0; i < n && ts[i] <= target; i++) {
        et = ts[i];
        eo = off[i];
    }
    int64_t gt = -99, go = -99;
    pl_time_index_lookup(ix, target, &gt, &go);
    if (gt != et || go != eo) {
        fprintf(stderr, "time lookup(%" PRId64 ") with %" PRId64 " entries, base %" PRId64 ": got (%" PRId64
                        ", %" PRId64 "), want (%" PRId64 ", %" PRId64 ")\n",
                target, n, base, gt, go, et, eo);
        CHECK(gt == et && go == eo);
    }
    g_checks++;
}

static void test_index_offset(void) {
    char p[2048];
    path_in(p, sizeof p, "00000000000000001000.index");
    const int64_t base = 1000;
    int64_t o, q;

    CTX("offset index: open");
    pl_index *ix = ix_open(p, PL_INDEX_OFFSET, base, 64 * 8 + 5, 1);
    EQ(pl_index_max_entries(ix), 64);
    EQ(pl_index_entries(ix), 0);
    EQ(file_size(p), 64 * 8); /* preallocated, rounded down to whole entries */
    CHECK(!pl_index_is_full(ix));
    E(pl_index_check(ix));
    static const int64_t any[] = {INT64_MIN, -1, 0, 999, 1000, 1001, 5000, INT64_MAX};
    for (size_t i = 0; i < sizeof any / sizeof any[0]; i++) {
        pl_offset_index_lookup(ix, any[i], &o, &q);
        EQ(o, base);
        EQ(q, 0);
    }
    EFAIL(pl_index_entry(ix, 0, &o, &q));

    CTX("offset index: append");
    E(pl_offset_index_append(ix, base + 10, 100));
    ERC(pl_offset_index_append(ix, base + 10, 200), PL_EINVAL);
    ERC(pl_offset_index_append(ix, base + 5, 300), PL_EINVAL);
    E(pl_offset_index_append(ix, base + 20, 400));
    E(pl_offset_index_append(ix, base + 21, 401));
    EQ(pl_index_entries(ix), 3);
    E(pl_index_check(ix));
    int64_t offs[64], poss[64];
    offs[0] = base + 10, poss[0] = 100, offs[1] = base + 20, poss[1] = 400, offs[2] = base + 21, poss[2] = 401;
    for (int64_t t = base - 3; t < base + 25; t++) check_offset_lookup(ix, base, offs, poss, 3, t);
    check_offset_lookup(ix, base, offs, poss, 3, INT64_MAX);
    check_offset_lookup(ix, base, offs, poss, 3, INT64_MIN);
    for (int64_t i = 0; i < 3; i++) {
        E(pl_index_entry(ix, i, &o, &q));
        EQ(o, offs[i]);
        EQ(q, poss[i]);
    }
    EFAIL(pl_index_entry(ix, 3, &o, &q));
    EFAIL(pl_index_entry(ix, -1, &o, &q));
    /* the mapped bytes: relative offset, position, big-endian */
    const uint8_t *d = pl_index_data(ix);
    CHECK(d != NULL);
    for (int i = 0; i < 3; i++) {
        EQ(pl_load_be32(d + 8 * i), offs[i] - base);
        EQ(pl_load_be32(d + 8 * i + 4), poss[i]);
    }

    CTX("offset index: fill up");
    int64_t n = 3;
    while (n < 64) {
        offs[n] = offs[n - 1] + 3;
        poss[n] = poss[n - 1] + 10;
        E(pl_offset_index_append(ix, offs[n], poss[n]));
        n++;
    }
    CHECK(pl_index_is_full(ix));
    ERC(pl_offset_index_append(ix, offs[63] + 1, poss[63] + 1), PL_EFULL);
    EQ(pl_index_entries(ix), 64);
    for (int64_t t = base; t <= offs[63] + 2; t++) check_offset_lookup(ix, base, offs, poss, 64, t);

    CTX("offset index: truncate_to_offset");
    pl_index_truncate_to_offset(ix, offs[40] + 1);
    EQ(pl_index_entries(ix), 41);
    CHECK(!pl_index_is_full(ix));
    pl_index_truncate_to_offset(ix, offs[30]);
    EQ(pl_index_entries(ix), 30);
    for (int64_t t = base; t <= offs[40]; t++) check_offset_lookup(ix, base, offs, poss, 30, t);
    pl_index_truncate_to_offset(ix, offs[63] + 100); /* nothing at or past it */
    EQ(pl_index_entries(ix), 30);
    E(pl_offset_index_append(ix, offs[29] + 1, poss[29] + 1)); /* appends continue from the cut */
    pl_index_truncate_to_offset(ix, base);
    EQ(pl_index_entries(ix), 0);
    E(pl_offset_index_append(ix, base + 1, 7));
    E(pl_offset_index_append(ix, base + 2, 8));

    CTX("offset index: reset");
    pl_index_reset(ix);
    EQ(pl_index_entries(ix), 0);
    pl_offset_index_lookup(ix, base + 100, &o, &q);
    EQ(o, base);
    EQ(q, 0);
    /* after a reset, an entry at the base itself (relative offset 0) works */
    E(pl_offset_index_append(ix, base, 0));
    pl_offset_index_lookup(ix, base + 100, &o, &q);
    EQ(o, base);
    EQ(q, 0);
    pl_index_reset(ix);
    for (n = 0; n < 10; n++) {
        offs[n] = base + 1 + 7 * n;
        poss[n] = 50 + 1000 * n;
        E(pl_offset_index_append(ix, offs[n], poss[n]));
    }
    E(pl_index_sync(ix));

    CTX("offset index: trim / extend");
    E(pl_index_trim(ix));
    EQ(file_size(p), 80);
    EQ(pl_index_entries(ix), 10);
    int rc = EFAIL(pl_offset_index_append(ix, offs[9] + 1, poss[9] + 1));
    SOFT(rc == PL_EFULL, "append to a trimmed index gives %d (%s)", rc, pl_strerror(rc));
    for (int64_t t = base; t <= offs[9] + 2; t++) check_offset_lookup(ix, base, offs, poss, 10, t);
    E(pl_index_extend(ix, 64 * 8));
    EQ(file_size(p), 64 * 8);
    EQ(pl_index_max_entries(ix), 64);
    E(pl_offset_index_append(ix, offs[9] + 1, poss[9] + 1));
    pl_index_truncate_to_offset(ix, offs[9] + 1);
    EQ(pl_index_entries(ix), 10);

    CTX("offset index: close(trim) and reopen");
    E(pl_index_close(ix, 1));
    EQ(file_size(p), 10 * 8);
    ix = ix_open(p, PL_INDEX_OFFSET, base, 64 * 8, 1);
    EQ(pl_index_entries(ix), 10);
    EQ(file_size(p), 64 * 8);
    E(pl_index_check(ix));
    for (int64_t t = base; t <= offs[9] + 2; t++) check_offset_lookup(ix, base, offs, poss, 10, t);
    offs[10] = offs[9] + 5, poss[10] = poss[9] + 5;
    E(pl_offset_index_append(ix, offs[10], poss[10]));

    CTX("offset index: close without trim (a crash) and reopen");
    E(pl_index_close(ix, 0));
    EQ(file_size(p), 64 * 8);
    ix = ix_open(p, PL_INDEX_OFFSET, base, 64 * 8, 1);
    EQ(pl_index_entries(ix), 11); /* trailing zero entries dropped */
    E(pl_index_check(ix));
    for (int64_t t = base; t <= offs[10] + 2; t++) check_offset_lookup(ix, base, offs, poss, 11, t);
    E(pl_index_close(ix, 0));

    CTX("offset index: read-only");
    ix = ix_open(p, PL_INDEX_OFFSET, base, 64 * 8, 0);
    EQ(pl_index_entries(ix), 11);
    E(pl_index_check(ix));
    for (int64_t t = base; t <= offs[10] + 2; t++) check_offset_lookup(ix, base, offs, poss, 11, t);
    E(pl_index_close(ix, 1)); /* trim applies to writable indexes only */
    EQ(file_size(p), 64 * 8);

    CTX("offset index: garbled entries fail pl_index_check");
    ix = ix_open(p, PL_INDEX_OFFSET, base, 64 * 8, 1);
    E(pl_index_close(ix, 1));
    EQ(file_size(p), 11 * 8);
    size_t glen;
    uint8_t *good = file_read_all(p, &glen);
    uint8_t w[4];
    struct {
        const char *what;
        int entry, field; /* field 0: relative offset, 1: position */
        uint32_t value;
    } garble[] = {
        {"decreasing offset", 5, 0, (uint32_t)(offs[3] - base)},
        {"repeated offset", 5, 0, (uint32_t)(offs[4] - base)},
        {"negative relative offset", 0, 0, 0xFFFFFFF0u},
        {"decreasing position", 5, 1, (uint32_t)poss[3]},
    };
    for (size_t g = 0; g < sizeof garble / sizeof garble[0]; g++) {
        CTX("offset index garbled: %s", garble[g].what);
        file_write_all(p, good, glen);
        pl_store_be32(w, garble[g].value);
        file_pwrite(p, w, 4, garble[g].entry * 8 + garble[g].field * 4);
        ix = ix_open(p, PL_INDEX_OFFSET, base, 64 * 8, 1);
        ERC(pl_index_check(ix), PL_ECORRUPT);
        E(pl_index_close(ix, 0));
    }
    file_write_all(p, good, glen);
    free(good);
    ix = ix_open(p, PL_INDEX_OFFSET, base, 64 * 8, 1);
    E(pl_index_check(ix));
    /* a position that goes backwards on append: the index would fail its own check */
    rc = pl_offset_index_append(ix, offs[10] + 1, poss[10] - 1);
    SOFT(rc == PL_EINVAL, "append with a decreasing position gives %d (%s)", rc, pl_strerror(rc));
    if (rc == PL_OK) SOFT(pl_index_check(ix) == PL_OK, "an index built by append alone fails pl_index_check");
    E(pl_index_close(ix, 1));

    CTX("offset index: relative overflow");
    path_in(p, sizeof p, "00000000000000005000.index");
    ix = ix_open(p, PL_INDEX_OFFSET, 5000, 4 * 8, 1);
    EFAIL(pl_offset_index_append(ix, 4999, 0)); /* below the base */
    ERC(pl_offset_index_append(ix, 5000 + (int64_t)INT32_MAX + 1, 0), PL_EOVERFLOW);
    ERC(pl_offset_index_append(ix, INT64_MAX, 0), PL_EOVERFLOW);
    EQ(pl_index_entries(ix), 0);
    E(pl_offset_index_append(ix, 5000 + 10, 10));
    E(pl_offset_index_append(ix, 5000 + (int64_t)INT32_MAX, 20));
    ERC(pl_offset_index_append(ix, 5000 + (int64_t)INT32_MAX + 1, 30), PL_EOVERFLOW);
    pl_offset_index_lookup(ix, INT64_MAX, &o, &q);
    EQ(o, 5000 + (int64_t)INT32_MAX);
    EQ(q, 20);
    pl_offset_index_lookup(ix, 5000 + (int64_t)INT32_MAX - 1, &o, &q);
    EQ(o, 5010);
    EQ(q, 10);
    E(pl_index_check(ix));
    E(pl_index_close(ix, 1));
    g_ctx[0] = 0;
}

static void test_index_time(void) {
    char p[2048];
    path_in(p, sizeof p, "00000000000000000500.timeindex");
    const int64_t base = 500;
    int64_t t, o;

    CTX("time index: open");
    pl_index *ix = ix_open(p, PL_INDEX_TIME, base, 12 * 50 + 7, 1);
    EQ(pl_index_max_entries(ix), 50);
    EQ(file_size(p), 600);
    EQ(pl_index_entries(ix), 0);
    pl_time_index_lookup(ix, 12345, &t, &o);
    EQ(t, -1);
    EQ(o, base);
    pl_time_index_lookup(ix, INT64_MAX, &t, &o);
    EQ(t, -1);
    EQ(o, base);

    CTX("time index: no entry for records without a timestamp");
    /* A segment of NO_TIMESTAMP records has max timestamp -1 at offset -1. */
    E(pl_time_index_append(ix, -1, -1));
    EQ(pl_index_entries(ix), 0);

    CTX("time index: append only when the timestamp grows");
    E(pl_time_index_append(ix, 100, 510));
    EQ(pl_index_entries(ix), 1);
    E(pl_time_index_append(ix, 100, 511)); /* same timestamp: nothing added */
    E(pl_time_index_append(ix, 50, 512));  /* smaller: nothing added */
    EQ(pl_index_entries(ix), 1);
    ERC(pl_time_index_append(ix, 150, 505), PL_EINVAL); /* offset goes back */
    /* A repeated offset with a grown timestamp is allowed (index.h, as Kafka). */
    EQ(pl_index_entries(ix), 1);
    E(pl_time_index_append(ix, 150, 520));
    E(pl_time_index_append(ix, 1000, 530));
    int64_t ts[64] = {100, 150, 1000}, of[64] = {510, 520, 530};
    int64_t n = 3;
    EQ(pl_index_entries(ix), n);
    E(pl_index_check(ix));
    static const int64_t targets[] = {INT64_MIN, -1, 0, 99, 100, 101, 149, 150, 151, 999, 1000, 1001, INT64_MAX};
    for (size_t i = 0; i < sizeof targets / sizeof targets[0]; i++) check_time_lookup(ix, base, ts, of, n, targets[i]);
    const uint8_t *d = pl_index_data(ix);
    for (int i = 0; i < 3; i++) {
        EQ(pl_load_be64(d + 12 * i), ts[i]);
        EQ(pl_load_be32(d + 12 * i + 8), of[i] - base);
    }
    for (int64_t i = 0; i < n; i++) {
        E(pl_index_entry(ix, i, &t, &o));
        EQ(t, ts[i]);
        EQ(o, of[i]);
    }
    EFAIL(pl_index_entry(ix, n, &t, &o));

    CTX("time index: overflow, full");
    ERC(pl_time_index_append(ix, 2000, base + (int64_t)INT32_MAX + 1), PL_EOVERFLOW);
    while (n < 50) {
        ts[n] = ts[n - 1] + 10;
        of[n] = of[n - 1] + 2;
        E(pl_time_index_append(ix, ts[n], of[n]));
        n++;
    }
    CHECK(pl_index_is_full(ix));
    ERC(pl_time_index_append(ix, ts[49] + 1, of[49] + 1), PL_EFULL);
    for (int64_t x = 0; x < 1600; x += 3) check_time_lookup(ix, base, ts, of, n, x);

    CTX("time index: truncate_to_offset, reset");
    pl_index_truncate_to_offset(ix, of[20]);
    n = 20;
    EQ(pl_index_entries(ix), n);
    for (int64_t x = 0; x < 1600; x += 7) check_time_lookup(ix, base, ts, of, n, x);
    pl_index_truncate_to_offset(ix, of[19] + 1);
    EQ(pl_index_entries(ix), n);
    pl_index_reset(ix);
    EQ(pl_index_entries(ix), 0);
    E(pl_time_index_append(ix, 5, 501)); /* lower than before the reset */
    pl_index_reset(ix);
    for (n = 0; n < 12; n++) {
        ts[n] = 1700000000000 + 1000 * n;
        of[n] = base + 3 + 4 * n;
        E(pl_time_index_append(ix, ts[n], of[n]));
    }

    CTX("time index: close(trim), reopen, crash, read-only");
    E(pl_index_close(ix, 1));
    EQ(file_size(p), 12 * 12);
    ix = ix_open(p, PL_INDEX_TIME, base, 12 * 50, 1);
    EQ(file_size(p), 600);
    EQ(pl_index_entries(ix), 12);
    E(pl_index_check(ix));
    for (int64_t x = ts[0] - 5; x < ts[11] + 5; x += 77) check_time_lookup(ix, base, ts, of, n, x);
    E(pl_index_close(ix, 0));
    EQ(file_size(p), 600);
    ix = ix_open(p, PL_INDEX_TIME, base, 12 * 50, 1);
    EQ(pl_index_entries(ix), 12);
    E(pl_index_close(ix, 0));
    ix = ix_open(p, PL_INDEX_TIME, base, 12 * 50, 0);
    EQ(pl_index_entries(ix), 12);
    for (int64_t x = ts[0] - 5; x < ts[11] + 5; x += 77) check_time_lookup(ix, base, ts, of, n, x);
    E(pl_index_close(ix, 1));
    EQ(file_size(p), 600);

    CTX("time index: garbled entries fail pl_index_check");
    ix = ix_open(p, PL_INDEX_TIME, base, 12 * 50, 1);
    E(pl_index_trim(ix));
    E(pl_index_close(ix, 1));
    EQ(file_size(p), 12 * 12);
    size_t glen;
    uint8_t *good = file_read_all(p, &glen);
    uint8_t w[8];
    pl_store_be64(w, (uint64_t)ts[2]); /* entry 6 gets an older timestamp */
    file_pwrite(p, w, 8, 6 * 12);
    ix = ix_open(p, PL_INDEX_TIME, base, 12 * 50, 1);
    ERC(pl_index_check(ix), PL_ECORRUPT);
    E(pl_index_close(ix, 0));
    file_write_all(p, good, glen);
    pl_store_be32(w, (uint32_t)(of[2] - base)); /* entry 6 gets an older offset */
    file_pwrite(p, w, 4, 6 * 12 + 8);
    ix = ix_open(p, PL_INDEX_TIME, base, 12 * 50, 1);
    ERC(pl_index_check(ix), PL_ECORRUPT);
    E(pl_index_close(ix, 1));
    free(good);
    g_ctx[0] = 0;
}

/* Many entries: lookups (warm and cold sections) agree with a linear scan. */
static void test_index_many(void) {
    static const int64_t ocounts[] = {1, 2, 3, 1023, 1024, 1025, 2047, 2048, 2049, 5000};
    static const int64_t bases[] = {0, 1000, 1000000000000};
    char p[2048];
    for (size_t c = 0; c < sizeof ocounts / sizeof ocounts[0]; c++) {
        int64_t n = ocounts[c], base = bases[c % 3];
        CTX("offset index with %" PRId64 " entries, base %" PRId64, n, base);
        path_in(p, sizeof p, "many.index");
        pl_index *ix = ix_open(p, PL_INDEX_OFFSET, base, (n + 3) * 8, 1);
        int64_t *off = xmalloc(sizeof(int64_t) * (size_t)n), *pos = xmalloc(sizeof(int64_t) * (size_t)n);
        int64_t o = base + rnd_range(0, 3), q = rnd_range(0, 100);
        for (int64_t i = 0; i < n; i++) {
            off[i] = o;
            pos[i] = q;
            E(pl_offset_index_append(ix, o, q));
            o += rnd_range(1, 20);
            q += rnd_range(1, 5000);
        }
        EQ(pl_index_entries(ix), n);
        E(pl_index_check(ix));
        for (int64_t i = 0; i < n; i++) {
            check_offset_lookup(ix, base, off, pos, n, off[i]);
            check_offset_lookup(ix, base, off, pos, n, off[i] - 1);
            check_offset_lookup(ix, base, off, pos, n, off[i] + 1);
        }
        for (int k = 0; k < 1500; k++) check_offset_lookup(ix, base, off, pos, n, rnd_range(base - 5, o + 5));
        check_offset_lookup(ix, base, off, pos, n, INT64_MAX);
        check_offset_lookup(ix, base, off, pos, n, INT64_MIN);
        check_offset_lookup(ix, base, off, pos, n, -1);
        int64_t cut = (int64_t)rnd_below((uint64_t)n);
        pl_index_truncate_to_offset(ix, off[cut]);
        EQ(pl_index_entries(ix), cut);
        for (int k = 0; k < 500; k++) check_offset_lookup(ix, base, off, pos, cut, rnd_range(base - 5, o + 5));
        E(pl_index_close(ix, 1));
        EQ(file_size(p), cut * 8);
        CHECK(unlink(p) == 0);
        free(off);
        free(pos);
    }
    static const int64_t tcounts[] = {1, 2, 681, 682, 683, 1364, 1365, 1366, 3000};
    for (size_t c = 0; c < sizeof tcounts / sizeof tcounts[0]; c++) {
        int64_t n = tcounts[c], base = bases[c % 3];
        CTX("time index with %" PRId64 " entries, base %" PRId64, n, base);
        path_in(p, sizeof p, "many.timeindex");
        pl_index *ix = ix_open(p, PL_INDEX_TIME, base, (n + 2) * 12, 1);
        int64_t *ts = xmalloc(sizeof(int64_t) * (size_t)n), *off = xmalloc(sizeof(int64_t) * (size_t)n);
        int64_t t = 1600000000000 + rnd_range(0, 1000), o = base + rnd_range(0, 3);
        for (int64_t i = 0; i < n; i++) {
            ts[i] = t;
            off[i] = o;
            E(pl_time_index_append(ix, t, o));
            if (rnd_below(4) == 0) E(pl_time_index_append(ix, t - (int64_t)rnd_below(3), o + 1)); /* not added */
            t += rnd_range(1, 1000);
            o += rnd_range(2, 10);
        }
        EQ(pl_index_entries(ix), n);
        E(pl_index_check(ix));
        for (int64_t i = 0; i < n; i++) {
            check_time_lookup(ix, base, ts, off, n, ts[i]);
            check_time_lookup(ix, base, ts, off, n, ts[i] - 1);
            check_time_lookup(ix, base, ts, off, n, ts[i] + 1);
        }
        for (int k = 0; k < 1500; k++) check_time_lookup(ix, base, ts, off, n, rnd_range(ts[0] - 10, t + 10));
        check_time_lookup(ix, base, ts, off, n, INT64_MAX);
        check_time_lookup(ix, base, ts, off, n, INT64_MIN);
        check_time_lookup(ix, base, ts, off, n, -1);
        int64_t cut = (int64_t)rnd_below((uint64_t)n);
        pl_index_truncate_to_offset(ix, off[cut]);
        EQ(pl_index_entries(ix), cut);
        for (int k = 0; k < 500; k++) check_time_lookup(ix, base, ts, off, cut, rnd_range(ts[0] - 10, t + 10));
        E(pl_index_close(ix, 1));
        EQ(file_size(p), cut * 12);
        CHECK(unlink(p) == 0);
        free(ts);
        free(off);
    }
    g_ctx[0] = 0;
}

static void test_index(void) {
    test_index_offset();
    test_index_time();
    test_index_many();
    /* a bad kind */
    char p[2048];
    path_in(p, sizeof p, "bad.index");
    pl_index *ix = NULL;
    ERC(pl_index_open(&ix, p, 3, 0, 4096, 1), PL_EINVAL);
}

/* ------------------------------------------------------------------------- */
/* segment                                                                   */

typedef struct mbatch {
    int64_t pos, len, base, last, base_ts, max_ts;
} mbatch;

/* What the segment should hold. */
typedef struct model {
    int64_t seg_base;
    mbatch *b;
    size_t n, cap;
    uint8_t *data;
    size_t size, data_cap;
    int64_t next;
    int64_t maxset; /* largest append call, bytes (for the index-interval checks) */
} model;

static void model_init(model *m, int64_t base) {
    memset(m, 0, sizeof *m);
    m->seg_base = base;
    m->next = base;
}
static void model_free(model *m) {
    free(m->b);
    free(m->data);
}
static void model_add(model *m, const uint8_t *buf, size_t len) {
    size_t at = 0;
    while (at < len) {
        pl_batch_header h;
        E(pl_batch_validate(buf + at, len - at, &h));
        if (m->n == m->cap) {
            m->cap = m->cap ? m->cap * 2 : 64;
            m->b = xrealloc(m->b, sizeof(mbatch) * m->cap);
        }
        mbatch *b = &m->b[m->n++];
        b->pos = (int64_t)(m->size + at);
        b->len = h.batch_length + 12;
        b->base = h.base_offset;
        b->last = h.base_offset + h.last_offset_delta;
        b->base_ts = h.base_timestamp;
        b->max_ts = h.max_timestamp;
        at += (size_t)b->len;
        m->next = b->last + 1;
    }
    if (m->size + len > m->data_cap) {
        m->data_cap = (m->size + len) * 2;
        m->data = xrealloc(m->data, m->data_cap);
    }
    memcpy(m->data + m->size, buf, len);
    m->size += len;
    m->maxset = max64(m->maxset, (int64_t)len);
}
static int64_t model_max_ts(const model *m);
/* Keep batches [0, k). */
static void model_cut(model *m, size_t k) {
    CHECK(k <= m->n);
    m->n = k;
    m->size = k ? (size_t)(m->b[k - 1].pos + m->b[k - 1].len) : 0;
    m->next = k ? m->b[k - 1].last + 1 : m->seg_base;
}
static int64_t model_max_ts(const model *m) {
    int64_t mx = -1;
    for (size_t i = 0; i < m->n; i++) mx = max64(mx, m->b[i].max_ts);
    return mx;
}
/* first batch whose last offset >= target; -1 if none */
static int64_t model_find(const model *m, int64_t target) {
    for (size_t i = 0; i < m->n; i++)
        if (m->b[i].last >= target) return (int64_t)i;
    return -1;
}
static int64_t model_find_time(const model *m, int64_t ts) {
    for (size_t i = 0; i < m->n; i++)
        if (m->b[i].max_ts >= ts) return (int64_t)i;
    return -1;
}
static int64_t model_batch_at(const model *m, int64_t pos) {
    for (size_t i = 0; i < m->n; i++)
        if (m->b[i].pos == pos) return (int64_t)i;
    return -1;
}

typedef struct segfiles {
    char log[2048], idx[2048], tix[2048];
} segfiles;

static void seg_paths(segfiles *f, int64_t base) {
    char name[64];
    snprintf(name, sizeof name, "%020" PRId64 ".log", base);
    path_in(f->log, sizeof f->log, name);
    snprintf(name, sizeof name, "%020" PRId64 ".index", base);
    path_in(f->idx, sizeof f->idx, name);
    snprintf(name, sizeof name, "%020" PRId64 ".timeindex", base);
    path_in(f->tix, sizeof f->tix, name);
}

static void seg_unlink(const segfiles *f) {
    CHECK(unlink(f->log) == 0);
    CHECK(unlink(f->idx) == 0);
    CHECK(unlink(f->tix) == 0);
}

static pl_segment_config seg_config(int64_t base, int32_t wbuf) {
    pl_segment_config c;
    memset(&c, 0, sizeof c);
    c.base_offset = base;
    c.reserve_bytes = 64 << 20;
    c.index_max_bytes = 8192;
    c.index_interval_bytes = 1024;
    c.write_buffer_bytes = wbuf;
    c.writable = 1;
    return c;
}

static pl_segment *seg_open(const segfiles *f, const pl_segment_config *cfg) {
    pl_segment *s = NULL;
    E(pl_segment_open(&s, f->log, f->idx, f->tix, cfg));
    CHECK(s != NULL);
    return s;
}

/* Assign offsets to bs[0,n) from the model's next offset and append them in one call. */
static int seg_append_set(pl_segment *s, model *m, tbatch *bs, size_t n, int64_t first_offset) {
    size_t len;
    uint8_t *buf = concat(bs, n, &len);
    pl_batches_info info;
    E(pl_batches_assign_offsets(buf, len, first_offset, 3, 0, &info));
    EQ(info.first_offset, first_offset);
    int rc = pl_segment_append(s, buf, len, info.last_offset, info.max_timestamp, info.offset_of_max_timestamp);
    if (rc == PL_OK) model_add(m, buf, len);
    free(buf);
    return rc;
}

/* Append one fresh batch of nrec records; the first batch of a segment has all
 * its records at one timestamp (so base and max timestamp agree). */
static tbatch seg_new_batch(const model *m, size_t nrec, int32_t value_max, int64_t max_ts) {
    return gen_batch_max(nrec, value_max, max_ts, m->n == 0);
}

static void seg_append1(pl_segment *s, model *m, size_t nrec, int32_t value_max, int64_t max_ts) {
    tbatch t = seg_new_batch(m, nrec, value_max, max_ts);
    E(seg_append_set(s, m, &t, 1, m->next));
    free(t.buf);
}

/* Check the offset and time index of s against m.
 * density: the segment was built from empty by appends (or by recover) with
 * this interval, so entries must lie about one interval apart. */
static void check_seg_indexes(pl_segment *s, const model *m, int64_t interval, int density) {
    const pl_index *oi = pl_segment_offset_index(s), *ti = pl_segment_time_index(s);
    CHECK(oi != NULL && ti != NULL);
    EQ(pl_index_kind(oi), PL_INDEX_OFFSET);
    EQ(pl_index_kind(ti), PL_INDEX_TIME);
    E(pl_index_check(oi));
    E(pl_index_check(ti));
    int64_t n = pl_index_entries(oi), prev = 0;
    for (int64_t i = 0; i < n; i++) {
        int64_t o, p;
        E(pl_index_entry(oi, i, &o, &p));
        CTX("offset index entry %" PRId64 " of %" PRId64 ": (%" PRId64 ", %" PRId64 ")", i, n, o, p);
        int64_t k = model_batch_at(m, p);
        CHECK(k >= 0); /* a batch starts there */
        CHECK(o >= m->b[k].base && o < m->next);
        if (density) {
            int64_t gap = p - prev;
            if (i > 0) CHECK(gap > interval - m->maxset);
            CHECK(gap <= interval + m->maxset);
        }
        prev = p;
    }
    if (density) {
        CTX("offset index: %" PRId64 " entries, %zu bytes, interval %" PRId64 ", largest append %" PRId64, n,
            m->size, interval, m->maxset);
        CHECK((int64_t)m->size - prev <= interval + m->maxset);
    }
    int64_t tn = pl_index_entries(ti), prev_ts = INT64_MIN;
    for (int64_t i = 0; i < tn; i++) {
        int64_t ts, o;
        E(pl_index_entry(ti, i, &ts, &o));
        CTX("time index entry %" PRId64 " of %" PRId64 ": (%" PRId64 ", %" PRId64 ")", i, tn, ts, o);
        CHECK(ts > prev_ts);
        prev_ts = ts;
        int64_t k = model_find(m, o);
        CHECK(k >= 0 && m->b[k].base <= o);
        EQ(m->b[k].max_ts, ts); /* the entry's offset lies in a batch with that max timestamp */
        int64_t before = -1;
        for (int64_t j = 0; j < k; j++) before = max64(before, m->b[j].max_ts);
        SOFT(before < ts, "time index entry (%" PRId64 ", %" PRId64 ") does not point at the first batch reaching "
                          "that timestamp (an earlier batch has %" PRId64 ")",
             ts, o, before);
    }
    g_ctx[0] = 0;
}

/* Everything observable about s agrees with m. */
static void seg_verify(pl_segment *s, const model *m, int64_t interval, int density) {
    EQ(pl_segment_base_offset(s), m->seg_base);
    EQ(pl_segment_size(s), m->size);
    EQ(pl_segment_next_offset(s), m->next);
    CHECK(pl_segment_synced_size(s) >= 0 && pl_segment_synced_size(s) <= pl_segment_size(s));
    EQ(pl_segment_max_timestamp(s), model_max_ts(m)); /* exact, after truncate_to too (Kafka rescans) */
    EQ(pl_segment_first_batch_timestamp(s), m->n ? m->b[0].max_ts : -1);
    const uint8_t *p = NULL;
    if (m->size) {
        E(pl_segment_bytes(s, 0, (int64_t)m->size, &p));
        CHECK(memcmp(p, m->data, m->size) == 0);
    }
    for (size_t k = 0; k < m->n; k++) {
        const mbatch *b = &m->b[k];
        E(pl_segment_bytes(s, b->pos, b->len, &p));
        CHECK(memcmp(p, m->data + b->pos, (size_t)b->len) == 0);
        for (int64_t o = b->base; o <= b->last; o++) {
            int64_t pos = -1;
            pl_batch_header h;
            CTX("find_batch(%" PRId64 "), batch %zu at %" PRId64, o, k, b->pos);
            E(pl_segment_find_batch(s, o, &pos, &h));
            EQ(pos, b->pos);
            EQ(h.base_offset, b->base);
            EQ(h.base_offset + h.last_offset_delta, b->last);
            EQ(h.max_timestamp, b->max_ts);
        }
    }
    int64_t pos;
    pl_batch_header h;
    CTX("find_batch out of range");
    ERC(pl_segment_find_batch(s, m->next, &pos, &h), PL_ERANGE);
    ERC(pl_segment_find_batch(s, m->next + 1000, &pos, &h), PL_ERANGE);
    ERC(pl_segment_find_batch(s, INT64_MAX, &pos, &h), PL_ERANGE);
    if (m->n) {
        E(pl_segment_find_batch(s, m->seg_base - 1, &pos, &h)); /* below the segment: its first batch */
        EQ(pos, 0);
    }
    /* bytes out of range */
    ERC(pl_segment_bytes(s, 0, (int64_t)m->size + 1, &p), PL_ERANGE);
    ERC(pl_segment_bytes(s, -1, 1, &p), PL_ERANGE);
    ERC(pl_segment_bytes(s, (int64_t)m->size, 1, &p), PL_ERANGE);
    ERC(pl_segment_bytes(s, 0, -1, &p), PL_ERANGE);
    if (m->size) ERC(pl_segment_bytes(s, (int64_t)m->size - 1, 2, &p), PL_ERANGE);
    /* find_time against the model */
    int64_t targets[16 + 3 * 64];
    size_t nt = 0;
    targets[nt++] = INT64_MIN;
    targets[nt++] = -1;
    targets[nt++] = 0;
    targets[nt++] = model_max_ts(m);
    targets[nt++] = model_max_ts(m) + 1;
    targets[nt++] = INT64_MAX;
    for (int i = 0; i < 64 && m->n; i++) {
        int64_t ts = m->b[rnd_below(m->n)].max_ts;
        targets[nt++] = ts;
        targets[nt++] = ts - 1;
        targets[nt++] = ts + 1;
    }
    for (size_t i = 0; i < nt; i++) {
        int64_t k = model_find_time(m, targets[i]);
        CTX("find_time(%" PRId64 "), want batch %" PRId64, targets[i], k);
        if (k < 0) {
            ERC(pl_segment_find_time(s, targets[i], &pos, &h), PL_ERANGE);
        } else {
            E(pl_segment_find_time(s, targets[i], &pos, &h));
            EQ(pos, m->b[k].pos);
            EQ(h.base_offset, m->b[k].base);
        }
    }
    check_seg_indexes(s, m, interval, density);
    g_ctx[0] = 0;
}

static void check_recover_info(const pl_segment_info *in, const model *m, int64_t truncated) {
    EQ(in->size, m->size);
    EQ(in->next_offset, m->next);
    EQ(in->truncated_bytes, truncated);
    if (truncated == 0)
        EQ(in->batches, m->n);
    else
        SOFT(in->batches == (int64_t)m->n, "recover walked %" PRId64 " batches, %zu were valid", in->batches, m->n);
    if (truncated == 0) {
        EQ(in->stop_rc, PL_OK);
        EQ(in->stop_position, m->size);
    } else {
        CHECK(in->stop_rc < 0);
        EQ(in->stop_position, m->size);
    }
}

/* Timestamps that mostly grow but sometimes step back. */
static int64_t next_ts(int64_t *clock) {
    *clock += rnd_range(1, 50);
    return rnd_below(5) == 0 ? *clock - rnd_range(1, 120) : *clock;
}

static void test_segment_basic_one(int32_t wbuf, int64_t base) {
    segfiles f;
    seg_paths(&f, base);
    pl_segment_config cfg = seg_config(base, wbuf);
    model m;
    model_init(&m, base);
    pl_segment_info info;

    CTX("segment basic (wbuf %d, base %" PRId64 "): open empty", wbuf, base);
    pl_segment *s = seg_open(&f, &cfg);
    memset(&info, 0x5A, sizeof info);
    E(pl_segment_recover(s, &info));
    check_recover_info(&info, &m, 0);
    EQ(pl_segment_pins(s), 0);
    seg_verify(s, &m, cfg.index_interval_bytes, 1);
    EQ(pl_segment_synced_size(s), 0);

    int64_t clock = 1700000000000;
    const uint8_t *early = NULL;
    for (int i = 0; i < 90; i++) {
        size_t nrec = (size_t)rnd_range(1, 8);
        int32_t vmax = i % 7 == 3 ? 1500 : 200;
        seg_append1(s, &m, nrec, vmax, next_ts(&clock));
        EQ(pl_segment_size(s), m.size);
        EQ(pl_segment_next_offset(s), m.next);
        if (wbuf == 0) EQ(file_size(f.log), m.size); /* every append reached the OS */
        CHECK(file_size(f.log) <= (int64_t)m.size);
        if (i == 0) { /* a pointer taken now must survive the file's growth */
            E(pl_segment_bytes(s, 0, m.b[0].len, &early));
            CHECK(memcmp(early, m.data, (size_t)m.b[0].len) == 0);
        }
        if (i % 30 == 29) seg_verify(s, &m, cfg.index_interval_bytes, 1);
    }
    CHECK(memcmp(early, m.data, (size_t)m.b[0].len) == 0);
    CHECK(pl_index_entries(pl_segment_offset_index(s)) > 5);
    CHECK(pl_index_entries(pl_segment_time_index(s)) > 0);
    seg_verify(s, &m, cfg.index_interval_bytes, 1);

    CTX("segment basic: sync_data, sync");
    seg_append1(s, &m, 2, 100, next_ts(&clock));
    E(pl_segment_sync_data(s));
    EQ(pl_segment_synced_size(s), m.size);
    EQ(file_size(f.log), m.size);
    seg_append1(s, &m, 2, 100, next_ts(&clock));
    CHECK(pl_segment_synced_size(s) < (int64_t)m.size);
    E(pl_segment_sync(s));
    EQ(pl_segment_synced_size(s), m.size);
    EQ(file_size(f.log), m.size);
    int64_t on, tn;
    int64_t *oe = ix_snapshot(pl_segment_offset_index(s), &on);
    int64_t *te = ix_snapshot(pl_segment_time_index(s), &tn);

    CTX("segment basic: close(trim) and load");
    E(pl_segment_close(s, 1));
    EQ(file_size(f.log), m.size);
    EQ(file_size(f.idx), on * 8);
    EQ(file_size(f.tix), tn * 12);
    s = seg_open(&f, &cfg);
    memset(&info, 0x5A, sizeof info);
    E(pl_segment_load(s, &info));
    EQ(info.size, m.size);
    EQ(info.next_offset, m.next);
    EQ(info.stop_rc, PL_OK);
    SOFT(info.truncated_bytes == 0, "load reports truncated_bytes %" PRId64, info.truncated_bytes);
    ix_expect(pl_segment_offset_index(s), oe, on);
    ix_expect(pl_segment_time_index(s), te, tn);
    seg_verify(s, &m, cfg.index_interval_bytes, 1);

    CTX("segment basic: recover rebuilds the same indexes");
    memset(&info, 0x5A, sizeof info);
    E(pl_segment_recover(s, &info));
    check_recover_info(&info, &m, 0);
    ix_expect(pl_segment_offset_index(s), oe, on); /* one batch per append: the same rule, the same entries */
    {
        int64_t rn;
        int64_t *re = ix_snapshot(pl_segment_time_index(s), &rn);
        int same = rn == tn;
        for (int64_t i = 0; same && i < 2 * rn; i++) same = re[i] == te[i];
        SOFT(same, "recover's time index (%" PRId64 " entries) differs from the one appends built (%" PRId64
                   " entries)",
             rn, tn);
        free(re);
    }
    seg_verify(s, &m, cfg.index_interval_bytes, 1);

    CTX("segment basic: more appends after load, then close without trim (crash-like)");
    for (int i = 0; i < 10; i++) seg_append1(s, &m, (size_t)rnd_range(1, 5), 300, next_ts(&clock));
    seg_verify(s, &m, cfg.index_interval_bytes, 1);
    free(oe);
    free(te);
    oe = ix_snapshot(pl_segment_offset_index(s), &on);
    E(pl_segment_close(s, 0));
    EQ(file_size(f.log), m.size);
    s = seg_open(&f, &cfg);
    E(pl_segment_load(s, &info));
    EQ(info.next_offset, m.next);
    ix_expect(pl_segment_offset_index(s), oe, on);
    seg_verify(s, &m, cfg.index_interval_bytes, 1);
    E(pl_segment_close(s, 1));
    free(oe);

    CTX("segment basic: read-only open");
    pl_segment_config ro = cfg;
    ro.writable = 0;
    int64_t isz = file_size(f.idx), tsz = file_size(f.tix);
    s = seg_open(&f, &ro);
    E(pl_segment_load(s, &info));
    EQ(info.next_offset, m.next);
    seg_verify(s, &m, cfg.index_interval_bytes, 1);
    tbatch t = seg_new_batch(&m, 2, 10, clock);
    pl_batches_info bi;
    E(pl_batches_assign_offsets(t.buf, t.len, m.next, 3, 0, &bi));
    int rc = EFAIL(pl_segment_append(s, t.buf, t.len, bi.last_offset, bi.max_timestamp, bi.offset_of_max_timestamp));
    printf("  segment: append to a read-only segment: rc %d (%s)\n", rc, pl_strerror(rc));
    free(t.buf);
    EQ(pl_segment_size(s), m.size);
    E(pl_segment_close(s, 1));
    EQ(file_size(f.log), m.size);
    EQ(file_size(f.idx), isz);
    EQ(file_size(f.tix), tsz);
    seg_unlink(&f);
    model_free(&m);
    g_ctx[0] = 0;
}

static void test_segment_basic(void) {
    test_segment_basic_one(0, 0);
    test_segment_basic_one(65536, 0);
    test_segment_basic_one(0, 1000000000000);
    test_segment_basic_one(65536, 1000000000000);
}

/* Appends of several batches in one call; the write buffer in detail. */
static void test_segment_buffer(void) {
    const int64_t base = 77;
    segfiles f;
    seg_paths(&f, base);
    pl_segment_config cfg = seg_config(base, 65536);
    cfg.index_interval_bytes = 700;
    model m;
    model_init(&m, base);
    pl_segment_info info;
    pl_segment *s = seg_open(&f, &cfg);
    E(pl_segment_recover(s, &info));
    int64_t clock = 1600000000000;

    CTX("segment buffer: a small append stays buffered until needed");
    seg_append1(s, &m, 2, 30, clock);
    EQ(pl_segment_size(s), m.size);
    SOFT(file_size(f.log) == 0, "with a 64 KiB write buffer a %zu-byte append reached the file (%" PRId64 " bytes)",
         m.size, file_size(f.log));
    const uint8_t *p;
    E(pl_segment_bytes(s, 0, (int64_t)m.size, &p));
    CHECK(memcmp(p, m.data, m.size) == 0);
    CHECK(file_size(f.log) >= (int64_t)m.size);
    for (int i = 0; i < 4; i++) seg_append1(s, &m, 1, 20, ++clock);
    int64_t pos;
    pl_batch_header h;
    E(pl_segment_find_batch(s, m.next - 1, &pos, &h)); /* reads what is still buffered */
    EQ(pos, m.b[m.n - 1].pos);
    E(pl_segment_flush_buffer(s));
    EQ(file_size(f.log), m.size);
    CHECK(pl_segment_synced_size(s) <= pl_segment_size(s));

    CTX("segment buffer: truncate inside the buffered bytes");
    for (int i = 0; i < 5; i++) seg_append1(s, &m, (size_t)rnd_range(1, 3), 40, ++clock);
    int64_t cut;
    size_t k = m.n - 3;
    E(pl_segment_truncate_to(s, m.b[k].last, &cut)); /* inside batch k (its last offset) */
    EQ(cut, m.b[k].base);
    model_cut(&m, k);
    EQ(pl_segment_size(s), m.size);
    EQ(pl_segment_next_offset(s), m.next);
    seg_verify(s, &m, cfg.index_interval_bytes, 0);
    E(pl_segment_flush_buffer(s));
    EQ(file_size(f.log), m.size);

    CTX("segment buffer: several batches per append, some larger than the buffer");
    for (int i = 0; i < 40; i++) {
        tbatch bs[4];
        size_t nb = (size_t)rnd_range(1, 4);
        for (size_t j = 0; j < nb; j++) bs[j] = gen_batch_max((size_t)rnd_range(1, 6), i % 9 == 0 ? 30000 : 300, next_ts(&clock), 0);
        E(seg_append_set(s, &m, bs, nb, m.next));
        free_batches(bs, nb);
        CHECK(file_size(f.log) <= (int64_t)m.size);
    }
    seg_verify(s, &m, cfg.index_interval_bytes, 0);
    E(pl_segment_sync(s));
    EQ(pl_segment_synced_size(s), m.size);
    EQ(file_size(f.log), m.size);
    for (int i = 0; i < 3; i++) seg_append1(s, &m, 1, 10, ++clock);
    E(pl_segment_close(s, 1)); /* pushes what is buffered */
    EQ(file_size(f.log), m.size);
    s = seg_open(&f, &cfg);
    E(pl_segment_recover(s, &info));
    check_recover_info(&info, &m, 0);
    seg_verify(s, &m, cfg.index_interval_bytes, 0);
    E(pl_segment_close(s, 1));
    model_free(&m);
    g_ctx[0] = 0;
}

static void test_segment_truncate_one(int32_t wbuf) {
    const int64_t base = 3000;
    segfiles f;
    seg_paths(&f, base);
    pl_segment_config cfg = seg_config(base, wbuf);
    cfg.index_interval_bytes = 512;
    model m;
    model_init(&m, base);
    pl_segment_info info;
    pl_segment *s = seg_open(&f, &cfg);
    E(pl_segment_recover(s, &info));
    int64_t clock = 1650000000000;
    for (int i = 0; i < 40; i++) seg_append1(s, &m, (size_t)rnd_range(2, 6), 300, next_ts(&clock));
    seg_verify(s, &m, cfg.index_interval_bytes, 1);

    CTX("segment truncate (wbuf %d): mid-segment, inside a batch", wbuf);
    size_t k = 25;
    int64_t target = m.b[k].base + 1; /* not the batch's first offset */
    CHECK(target <= m.b[k].last);
    int64_t cut = -1;
    E(pl_segment_truncate_to(s, target, &cut));
    EQ(cut, m.b[k].base);
    model_cut(&m, k);
    EQ(pl_segment_next_offset(s), m.next);
    EQ(pl_segment_size(s), m.size);
    E(pl_segment_flush_buffer(s));
    EQ(file_size(f.log), m.size);
    int64_t pos;
    pl_batch_header h;
    ERC(pl_segment_find_batch(s, cut, &pos, &h), PL_ERANGE);
    {
        const pl_index *oi = pl_segment_offset_index(s), *ti = pl_segment_time_index(s);
        for (int64_t i = 0; i < pl_index_entries(oi); i++) {
            int64_t o, p;
            E(pl_index_entry(oi, i, &o, &p));
            CHECK(o < cut && p < (int64_t)m.size);
        }
        for (int64_t i = 0; i < pl_index_entries(ti); i++) {
            int64_t t, o;
            E(pl_index_entry(ti, i, &t, &o));
            CHECK(o < cut);
        }
    }
    EQ(pl_segment_first_batch_timestamp(s), m.b[0].max_ts);
    EQ(pl_segment_max_timestamp(s), model_max_ts(&m));

    CTX("segment truncate: appends continue from the cut");
    for (int i = 0; i < 10; i++) seg_append1(s, &m, (size_t)rnd_range(1, 6), 300, clock += 100);
    seg_verify(s, &m, cfg.index_interval_bytes, 0);

    CTX("segment truncate: at the next offset (nothing to cut)");
    cut = -1;
    int64_t before = (int64_t)m.size;
    E(pl_segment_truncate_to(s, m.next, &cut));
    EQ(pl_segment_size(s), before);
    EQ(cut, m.next);
    EQ(pl_segment_next_offset(s), m.next);

    CTX("segment truncate: at the last batch's first offset");
    E(pl_segment_truncate_to(s, m.b[m.n - 1].base, &cut));
    EQ(cut, m.b[m.n - 1].base);
    model_cut(&m, m.n - 1);
    seg_verify(s, &m, cfg.index_interval_bytes, 0);

    CTX("segment truncate: everything (at the base)");
    E(pl_segment_truncate_to(s, base, &cut));
    EQ(cut, base);
    model_cut(&m, 0);
    EQ(pl_segment_size(s), 0);
    EQ(pl_segment_next_offset(s), base);
    EQ(pl_segment_max_timestamp(s), -1);
    EQ(pl_segment_first_batch_timestamp(s), -1);
    EQ(pl_index_entries(pl_segment_offset_index(s)), 0);
    EQ(pl_index_entries(pl_segment_time_index(s)), 0);
    seg_verify(s, &m, cfg.index_interval_bytes, 1);
    for (int i = 0; i < 30; i++) seg_append1(s, &m, (size_t)rnd_range(1, 6), 300, next_ts(&clock));
    seg_verify(s, &m, cfg.index_interval_bytes, 1); /* from empty again: the interval rule holds */
    E(pl_segment_close(s, 1));
    EQ(file_size(f.log), m.size);
    s = seg_open(&f, &cfg);
    E(pl_segment_load(s, &info));
    EQ(info.next_offset, m.next);
    seg_verify(s, &m, cfg.index_interval_bytes, 1);
    E(pl_segment_close(s, 1));
    seg_unlink(&f);
    model_free(&m);
    g_ctx[0] = 0;
}

static void test_segment_truncate(void) {
    test_segment_truncate_one(0);
    test_segment_truncate_one(65536);
}

static void test_segment_pins(void) {
    const int64_t base = 0;
    segfiles f;
    seg_paths(&f, base);
    pl_segment_config cfg = seg_config(base, 0);
    model m;
    model_init(&m, base);
    pl_segment_info info;
    pl_segment *s = seg_open(&f, &cfg);
    E(pl_segment_recover(s, &info));
    for (int i = 0; i < 10; i++) seg_append1(s, &m, 3, 100, 1000 + i);

    CTX("segment pins: pinned truncate and recover refuse");
    E(pl_segment_pin(s));
    EQ(pl_segment_pins(s), 1);
    E(pl_segment_pin(s));
    EQ(pl_segment_pins(s), 2);
    int64_t cut = -1;
    ERC(pl_segment_truncate_to(s, m.b[5].base, &cut), PL_EBUSY);
    ERC(pl_segment_recover(s, &info), PL_EBUSY);
    seg_verify(s, &m, cfg.index_interval_bytes, 1); /* nothing changed */
    /* appends and reads go on while pinned */
    seg_append1(s, &m, 2, 50, 2000);
    seg_verify(s, &m, cfg.index_interval_bytes, 1);
    pl_segment_unpin(s);
    EQ(pl_segment_pins(s), 1);
    ERC(pl_segment_truncate_to(s, m.b[5].base, &cut), PL_EBUSY);
    pl_segment_unpin(s);
    EQ(pl_segment_pins(s), 0);
    E(pl_segment_truncate_to(s, m.b[5].base, &cut));
    EQ(cut, m.b[5].base);
    model_cut(&m, 5);
    seg_verify(s, &m, cfg.index_interval_bytes, 0);

    CTX("segment pins: close of a pinned segment reports PL_EBUSY and still frees it");
    E(pl_segment_pin(s));
    ERC(pl_segment_close(s, 1), PL_EBUSY);
    /* s is gone; the section's end checks that its fds and mappings went too */

    CTX("segment pins: the files are intact afterwards");
    s = seg_open(&f, &cfg);
    E(pl_segment_recover(s, &info));
    check_recover_info(&info, &m, 0);
    seg_verify(s, &m, cfg.index_interval_bytes, 0);
    E(pl_segment_close(s, 1));
    model_free(&m);
    g_ctx[0] = 0;
}

/* Build a segment, then damage its files in many ways and recover. */
static void test_segment_recover(void) {
    const int64_t base = 10000;
    segfiles f;
    seg_paths(&f, base);
    pl_segment_config cfg = seg_config(base, 0);
    cfg.index_interval_bytes = 600;
    model m;
    model_init(&m, base);
    pl_segment_info info;
    pl_segment *s = seg_open(&f, &cfg);
    E(pl_segment_recover(s, &info));
    int64_t clock = 1690000000000;
    for (int i = 0; i < 30; i++) seg_append1(s, &m, (size_t)rnd_range(1, 6), 250, next_ts(&clock));
    int64_t on;
    int64_t *oe = ix_snapshot(pl_segment_offset_index(s), &on);
    CHECK(on >= 4);
    E(pl_segment_close(s, 1));
    size_t loglen, idxlen, tixlen;
    uint8_t *logb = file_read_all(f.log, &loglen), *idxb = file_read_all(f.idx, &idxlen),
            *tixb = file_read_all(f.tix, &tixlen);
    EQ(loglen, m.size);
    /* a spare batch that would be the next one */
    tbatch spare = gen_batch_max(3, 100, clock + 10, 0);
    pl_batches_info bi;
    E(pl_batches_assign_offsets(spare.buf, spare.len, m.next, 3, 0, &bi));

    enum { N_CASES = 14 };
    for (int c = 0; c < N_CASES; c++) {
        file_write_all(f.log, logb, loglen);
        file_write_all(f.idx, idxb, idxlen);
        file_write_all(f.tix, tixb, tixlen);
        model w; /* what should survive */
        model_init(&w, base);
        model_add(&w, logb, loglen);
        int64_t truncated = 0;
        int load_rc = 1; /* 1: do not care */
        uint8_t junk[4096];
        size_t mid = w.n / 2;
        switch (c) {
        case 0:
            CTX("recover: a clean segment");
            load_rc = PL_OK;
            break;
        case 1:
            CTX("recover: torn tail, 40 bytes of a batch");
            file_append(f.log, spare.buf, 40);
            truncated = 40;
            load_rc = PL_ECORRUPT;
            break;
        case 2:
            CTX("recover: torn tail, 5 bytes");
            file_append(f.log, spare.buf, 5);
            truncated = 5;
            load_rc = PL_ECORRUPT;
            break;
        case 3:
            CTX("recover: torn tail, all but the last byte of a batch");
            file_append(f.log, spare.buf, spare.len - 1);
            truncated = (int64_t)spare.len - 1;
            load_rc = PL_ECORRUPT;
            break;
        case 4:
            CTX("recover: 100 random bytes at the end");
            rnd_fill(junk, 100);
            junk[16] = 2; /* make it look like a v2 batch a little */
            file_append(f.log, junk, 100);
            truncated = 100;
            load_rc = PL_ECORRUPT;
            break;
        case 5:
            CTX("recover: 4096 zero bytes at the end (preallocated space)");
            memset(junk, 0, sizeof junk);
            file_append(f.log, junk, sizeof junk);
            truncated = sizeof junk;
            load_rc = PL_ECORRUPT;
            break;
        case 6: {
            CTX("recover: a whole valid batch whose offsets go backwards");
            uint8_t *dup = xdup(spare.buf, spare.len);
            pl_batch_set_base_offset(dup, w.b[w.n - 1].base);
            file_append(f.log, dup, spare.len);
            free(dup);
            truncated = (int64_t)spare.len;
            break;
        }
        case 7: {
            CTX("recover: a batch whose last offset does not fit int32 relative to the base");
            uint8_t *dup = xdup(spare.buf, spare.len);
            pl_batch_set_base_offset(dup, base + INT32_MAX - 1); /* 3 records: last = base + INT32_MAX + 1 */
            file_append(f.log, dup, spare.len);
            free(dup);
            truncated = (int64_t)spare.len;
            break;
        }
        case 8: {
            CTX("recover: a flipped byte in the middle batch %zu", mid);
            uint8_t x = (uint8_t)(logb[w.b[mid].pos + 30] ^ 0x04);
            file_pwrite(f.log, &x, 1, w.b[mid].pos + 30);
            truncated = (int64_t)loglen - w.b[mid].pos;
            model_cut(&w, mid);
            break;
        }
        case 9: {
            CTX("recover: bad magic in the middle batch %zu", mid);
            uint8_t x = 1;
            file_pwrite(f.log, &x, 1, w.b[mid].pos + 16);
            truncated = (int64_t)loglen - w.b[mid].pos;
            model_cut(&w, mid);
            break;
        }
        case 10: {
            CTX("recover: the .log cut inside batch %zu, below index entries", mid);
            CHECK(truncate(f.log, (off_t)(w.b[mid].pos + 20)) == 0);
            truncated = 20;
            model_cut(&w, mid);
            load_rc = PL_ECORRUPT; /* the offset index points past the end */
            break;
        }
        case 11: {
            CTX("recover: a garbled offset index (decreasing entries)");
            uint8_t e[8];
            memcpy(e, idxb, 8); /* entry 2 := entry 0 */
            file_pwrite(f.idx, e, 8, 16);
            load_rc = PL_ECORRUPT;
            break;
        }
        case 12: {
            CTX("recover: a garbled time index (decreasing timestamps)");
            CHECK(tixlen >= 24);
            uint8_t e[12];
            memcpy(e, tixb, 12);
            pl_store_be64(e, 5); /* the last entry gets a tiny timestamp */
            file_pwrite(f.tix, e, 12, (int64_t)tixlen - 12);
            load_rc = PL_ECORRUPT;
            break;
        }
        case 13:
            CTX("recover: a valid next batch written behind the segment's back is kept");
            file_append(f.log, spare.buf, spare.len);
            model_add(&w, spare.buf, spare.len);
            load_rc = PL_OK;
            break;
        }
        snprintf(g_case, sizeof g_case, "%.200s", g_ctx);
        if (load_rc != 1) {
            s = seg_open(&f, &cfg);
            memset(&info, 0x5A, sizeof info);
            int rc = pl_segment_load(s, &info);
            CTX("pl_segment_load");
            ERC(rc, load_rc);
            if (rc == PL_OK) {
                EQ(info.next_offset, w.next);
                EQ(info.size, w.size);
            }
            /* the caller's flow: load failed, so recover on the same handle */
            memset(&info, 0x5A, sizeof info);
            CTX("pl_segment_recover after load");
            E(pl_segment_recover(s, &info));
        } else {
            s = seg_open(&f, &cfg);
            memset(&info, 0x5A, sizeof info);
            CTX("pl_segment_recover");
            E(pl_segment_recover(s, &info));
        }
        check_recover_info(&info, &w, truncated);
        if (c == 8) EQ(info.stop_rc, PL_ECORRUPT);
        if (c == 9) EQ(info.stop_rc, PL_EMAGIC);
        if (c >= 1 && c <= 3) EQ(info.stop_rc, PL_ETRUNCATED);
        EQ(file_size(f.log), w.size);
        w.maxset = 0;
        for (size_t i = 0; i < w.n; i++) w.maxset = max64(w.maxset, w.b[i].len);
        seg_verify(s, &w, cfg.index_interval_bytes, 1);
        if (w.n == m.n) ix_expect(pl_segment_offset_index(s), oe, on);
        /* the recovered segment takes appends and survives a clean reopen */
        seg_append1(s, &w, 2, 50, clock + 1000);
        E(pl_segment_close(s, 1));
        s = seg_open(&f, &cfg);
        CTX("load after recover");
        E(pl_segment_load(s, &info));
        EQ(info.next_offset, w.next);
        seg_verify(s, &w, cfg.index_interval_bytes, 0);
        E(pl_segment_close(s, 1));
        model_free(&w);
        g_case[0] = 0;
    }

    CTX("recover: index files lost, rebuilt into indexes too small for them");
    {
        file_write_all(f.log, logb, loglen);
        CHECK(unlink(f.idx) == 0);
        CHECK(unlink(f.tix) == 0);
        pl_segment_config small = cfg;
        small.index_max_bytes = 24; /* 3 offset entries, 2 time entries */
        small.index_interval_bytes = 100;
        s = seg_open(&f, &small);
        int rc = pl_segment_recover(s, &info);
        CHECK(rc == PL_OK || rc == PL_EFULL);
        /* a full index is no reason to cut valid batches */
        EQ(file_size(f.log), loglen);
        EQ(pl_segment_size(s), loglen);
        if (rc == PL_OK) {
            EQ(info.truncated_bytes, 0);
            EQ(info.next_offset, m.next);
        }
        E(pl_segment_close(s, 1));
        file_write_all(f.idx, idxb, idxlen);
        file_write_all(f.tix, tixb, tixlen);
    }

    CTX("recover: a first batch below the segment's base offset");
    {
        const int64_t b2 = 50000;
        segfiles f2;
        seg_paths(&f2, b2);
        pl_segment_config c2 = seg_config(b2, 0);
        tbatch t = gen_batch_max(2, 20, 1000, 1);
        E(pl_batches_assign_offsets(t.buf, t.len, b2 - 10, 1, 0, &bi));
        file_write_all(f2.log, t.buf, t.len);
        s = seg_open(&f2, &c2);
        E(pl_segment_recover(s, &info));
        EQ(info.size, 0);
        EQ(info.next_offset, b2);
        EQ(info.truncated_bytes, t.len);
        EQ(file_size(f2.log), 0);
        E(pl_segment_close(s, 1));
        free(t.buf);
    }
    free(spare.buf);
    free(oe);
    free(logb);
    free(idxb);
    free(tixb);
    model_free(&m);
    g_ctx[0] = 0;
}

/* EFULL (reserve, index), EOVERFLOW, EINVAL. */
static void test_segment_limits(void) {
    pl_segment_info info;
    int64_t clock = 1700000000000;
    static const int32_t wbufs[] = {0, 65536};
    for (size_t wi = 0; wi < 2; wi++) {
        const int64_t base = 100 + (int64_t)wi;
        const int64_t reserve = 65536;
        segfiles f;
        seg_paths(&f, base);
        pl_segment_config cfg = seg_config(base, wbufs[wi]);
        cfg.reserve_bytes = reserve;
        model m;
        model_init(&m, base);
        pl_segment *s = seg_open(&f, &cfg);
        E(pl_segment_recover(s, &info));
        /* Pinned (views alive), the mapping cannot move: the reserve is a limit. */
        E(pl_segment_pin(s));
        CTX("limits (wbuf %d): the reserve fills up", wbufs[wi]);
        int hit = 0;
        for (int i = 0; i < 200 && !hit; i++) {
            tbatch t = seg_new_batch(&m, 3, 1200, ++clock);
            size_t before = m.size;
            int rc = seg_append_set(s, &m, &t, 1, m.next);
            if (rc == PL_EFULL) {
                hit = 1;
                CHECK(before + t.len > (size_t)reserve);
                EQ(pl_segment_size(s), before);
                EQ(pl_segment_next_offset(s), m.next);
                ERC(pl_segment_can_append(s, t.len, m.next + t.count - 1), PL_EFULL);
            } else {
                E(rc);
                CHECK(m.size <= (size_t)reserve);
            }
            free(t.buf);
        }
        CHECK(hit);
        E(pl_segment_can_append(s, (size_t)reserve - m.size, m.next));
        ERC(pl_segment_can_append(s, (size_t)reserve - m.size + 1, m.next), PL_EFULL);
        seg_verify(s, &m, cfg.index_interval_bytes, 1);
        /* fill the reserve exactly with one batch of the right size, if one fits */
        size_t room = (size_t)reserve - m.size;
        if (room >= PL_BATCH_HEADER_SIZE + 40) {
            tbatch t = seg_new_batch(&m, 1, 0, ++clock);
            size_t want_value = room - t.len; /* grow the value to fill the room exactly */
            free(t.buf);
            static recset rs;
            gen_records(&rs, 1, 0, 1, 0);
            rs.recs[0].value_len = (int32_t)want_value;
            rs.recs[0].value = arena_fill((int32_t)want_value);
            for (int adj = 0; adj < 4; adj++) { /* the value's length varint may grow */
                t = build_batch(&rs, clock);
                if (t.len == room) break;
                rs.recs[0].value_len -= (int32_t)(t.len - room);
                free(t.buf);
                t.buf = NULL;
            }
            if (t.buf && t.len == room) {
                E(seg_append_set(s, &m, &t, 1, m.next));
                EQ(pl_segment_size(s), reserve);
                tbatch u = seg_new_batch(&m, 1, 0, ++clock);
                ERC(seg_append_set(s, &m, &u, 1, m.next), PL_EFULL);
                free(u.buf);
            }
            free(t.buf);
        }
        seg_verify(s, &m, cfg.index_interval_bytes, 0);
        pl_segment_unpin(s);
        CTX("limits (wbuf %d): unpinned, the mapping regrows past the reserve", wbufs[wi]);
        {
            tbatch u = seg_new_batch(&m, 3, 1200, ++clock);
            E(seg_append_set(s, &m, &u, 1, m.next));
            CHECK(m.size > (size_t)reserve);
            free(u.buf);
        }
        seg_verify(s, &m, cfg.index_interval_bytes, 0);
        E(pl_segment_close(s, 1));
        model_free(&m);
    }

    CTX("limits: an index fills up");
    {
        const int64_t base = 200;
        segfiles f;
        seg_paths(&f, base);
        pl_segment_config cfg = seg_config(base, 0);
        cfg.index_max_bytes = 24; /* 3 offset entries, 2 time entries */
        cfg.index_interval_bytes = 100;
        model m;
        model_init(&m, base);
        pl_segment *s = seg_open(&f, &cfg);
        E(pl_segment_recover(s, &info));
        const pl_index *oi = pl_segment_offset_index(s), *ti = pl_segment_time_index(s);
        EQ(pl_index_max_entries(oi), 3);
        EQ(pl_index_max_entries(ti), 2);
        int hit = 0;
        for (int i = 0; i < 100 && !hit; i++) {
            tbatch t = seg_new_batch(&m, 2, 100, clock += 10);
            size_t before = m.size;
            int rc = seg_append_set(s, &m, &t, 1, m.next);
            if (rc == PL_EFULL) {
                hit = 1;
                CHECK(pl_index_is_full(oi) || pl_index_is_full(ti));
                EQ(pl_segment_size(s), before);
                ERC(pl_segment_can_append(s, t.len, m.next + 1), PL_EFULL);
            } else {
                E(rc);
            }
            CHECK(pl_index_entries(oi) <= 3 && pl_index_entries(ti) <= 2);
            free(t.buf);
        }
        CHECK(hit);
        seg_verify(s, &m, cfg.index_interval_bytes, 1); /* no entry was skipped on the way */
        E(pl_segment_close(s, 1));
        model_free(&m);
    }

    CTX("limits: relative offset overflow, offsets going back");
    {
        const int64_t base = 5000;
        segfiles f;
        seg_paths(&f, base);
        pl_segment_config cfg = seg_config(base, 0);
        model m;
        model_init(&m, base);
        pl_segment *s = seg_open(&f, &cfg);
        E(pl_segment_recover(s, &info));
        seg_append1(s, &m, 3, 50, ++clock);
        {   /* first offset below next_offset while the last is above it: overlapping offsets */
            tbatch o = gen_batch_max(5, 20, ++clock, 0);
            ERC(seg_append_set(s, &m, &o, 1, base + 1), PL_EINVAL);
            free(o.buf);
            EQ(pl_segment_size(s), m.size);
        }
        tbatch t = gen_batch_max(2, 20, ++clock, 0);
        const int64_t top = base + INT32_MAX; /* the largest offset the segment can hold */
        ERC(seg_append_set(s, &m, &t, 1, top), PL_EOVERFLOW);
        EQ(pl_segment_size(s), m.size);
        EQ(pl_segment_next_offset(s), m.next);
        ERC(pl_segment_can_append(s, t.len, top + 1), PL_EOVERFLOW);
        E(pl_segment_can_append(s, t.len, top));
        free(t.buf);
        t = gen_batch_max(1, 20, ++clock, 0);
        E(seg_append_set(s, &m, &t, 1, top)); /* a gap in offsets is fine */
        free(t.buf);
        EQ(pl_segment_next_offset(s), top + 1);
        int64_t pos;
        pl_batch_header h;
        E(pl_segment_find_batch(s, base + 3, &pos, &h)); /* in the gap: the next batch */
        EQ(pos, m.b[1].pos);
        E(pl_segment_find_batch(s, base + 1000000, &pos, &h));
        EQ(pos, m.b[1].pos);
        seg_verify(s, &m, cfg.index_interval_bytes, 1);
        t = gen_batch_max(1, 20, ++clock, 0);
        ERC(seg_append_set(s, &m, &t, 1, top + 1), PL_EOVERFLOW);
        ERC(seg_append_set(s, &m, &t, 1, base + 1), PL_EINVAL); /* offsets below next_offset */
        ERC(seg_append_set(s, &m, &t, 1, top), PL_EINVAL);
        free(t.buf);

        EQ(pl_segment_size(s), m.size);
        E(pl_segment_close(s, 1));
        s = seg_open(&f, &cfg);
        E(pl_segment_recover(s, &info));
        check_recover_info(&info, &m, 0);
        seg_verify(s, &m, cfg.index_interval_bytes, 1);
        E(pl_segment_close(s, 1));
        s = seg_open(&f, &cfg);
        E(pl_segment_load(s, &info));
        EQ(info.next_offset, top + 1);
        seg_verify(s, &m, cfg.index_interval_bytes, 1);
        E(pl_segment_close(s, 1));
        model_free(&m);
    }
    g_ctx[0] = 0;
}

static void test_segment_seal(void) {
    const int64_t base = 900;
    segfiles f;
    seg_paths(&f, base);
    pl_segment_config cfg = seg_config(base, 65536);
    cfg.index_interval_bytes = 500;
    model m;
    model_init(&m, base);
    pl_segment_info info;
    pl_segment *s = seg_open(&f, &cfg);
    E(pl_segment_recover(s, &info));
    int64_t clock = 1710000000000;
    for (int i = 0; i < 30; i++) seg_append1(s, &m, (size_t)rnd_range(1, 5), 200, next_ts(&clock));
    /* small appends until one makes an index entry; the next small append cannot
     * make one (fewer than index_interval_bytes since), so the largest timestamp,
     * placed there, is indexed only by seal */
    const pl_index *oi = pl_segment_offset_index(s), *ti = pl_segment_time_index(s);
    int64_t ne = pl_index_entries(oi);
    for (int i = 0; i < 100 && pl_index_entries(oi) == ne; i++) seg_append1(s, &m, 1, 10, ++clock);
    CHECK(pl_index_entries(oi) == ne + 1);
    ne = pl_index_entries(oi);
    int64_t tne = pl_index_entries(ti);
    seg_append1(s, &m, 1, 10, clock + 5000);
    EQ(pl_index_entries(oi), ne);
    EQ(pl_index_entries(ti), tne);
    seg_verify(s, &m, cfg.index_interval_bytes, 1);

    CTX("seal");
    E(pl_segment_seal(s));
    EQ(file_size(f.log), m.size);
    EQ(file_size(f.idx), pl_index_entries(oi) * 8);
    EQ(file_size(f.tix), pl_index_entries(ti) * 12);
    CHECK(pl_index_entries(ti) > 0);
    int64_t ts, o;
    E(pl_index_entry(ti, pl_index_entries(ti) - 1, &ts, &o));
    EQ(ts, model_max_ts(&m)); /* Kafka's onBecomeInactiveSegment entry */
    EQ(o, m.b[m.n - 1].last);
    seg_verify(s, &m, cfg.index_interval_bytes, 1);
    {
        tbatch t = seg_new_batch(&m, 1, 10, ++clock);
        pl_batches_info bi;
        E(pl_batches_assign_offsets(t.buf, t.len, m.next, 3, 0, &bi));
        int rc = pl_segment_append(s, t.buf, t.len, bi.last_offset, bi.max_timestamp, bi.offset_of_max_timestamp);
        SOFT(rc != PL_OK, "a sealed segment accepted an append");
        printf("  segment: append to a sealed segment: rc %d (%s)\n", rc, pl_strerror(rc));
        if (rc == PL_OK) model_add(&m, t.buf, t.len);
        free(t.buf);
    }

    CTX("unseal");
    E(pl_segment_unseal(s));
    EQ(file_size(f.idx), 8192);
    EQ(file_size(f.tix), 8192 / 12 * 12);
    for (int i = 0; i < 10; i++) seg_append1(s, &m, (size_t)rnd_range(1, 5), 200, clock += 7000);
    seg_verify(s, &m, cfg.index_interval_bytes, 0);
    E(pl_segment_seal(s));
    EQ(file_size(f.idx), pl_index_entries(pl_segment_offset_index(s)) * 8);
    E(pl_segment_close(s, 1));
    s = seg_open(&f, &cfg);
    E(pl_segment_load(s, &info));
    EQ(info.next_offset, m.next);
    seg_verify(s, &m, cfg.index_interval_bytes, 0);
    E(pl_segment_seal(s));
    E(pl_segment_close(s, 1));

    CTX("reopen a sealed segment with cfg.sealed: indexes as they are");
    int64_t isz = file_size(f.idx), tsz = file_size(f.tix);
    pl_segment_config sc = cfg;
    sc.sealed = 1;
    s = seg_open(&f, &sc);
    EQ(file_size(f.idx), isz); /* not preallocated */
    EQ(file_size(f.tix), tsz);
    E(pl_segment_load(s, &info));
    EQ(info.next_offset, m.next);
    seg_verify(s, &m, cfg.index_interval_bytes, 0);
    {
        tbatch t = seg_new_batch(&m, 1, 10, ++clock);
        pl_batches_info bi;
        E(pl_batches_assign_offsets(t.buf, t.len, m.next, 3, 0, &bi));
        int rc = pl_segment_append(s, t.buf, t.len, bi.last_offset, bi.max_timestamp, bi.offset_of_max_timestamp);
        printf("  segment: append to a segment opened sealed: rc %d (%s)\n", rc, pl_strerror(rc));
        if (rc == PL_OK) model_add(&m, t.buf, t.len);
        free(t.buf);
    }
    E(pl_segment_unseal(s));
    EQ(file_size(f.idx), 8192);
    EQ(file_size(f.tix), 8192 / 12 * 12);
    for (int i = 0; i < 5; i++) seg_append1(s, &m, (size_t)rnd_range(1, 5), 200, clock += 7000);
    seg_verify(s, &m, cfg.index_interval_bytes, 0);
    E(pl_segment_close(s, 1));

    CTX("seal an empty segment");
    seg_paths(&f, 77777);
    cfg.base_offset = 77777;
    s = seg_open(&f, &cfg);
    E(pl_segment_recover(s, &info));
    E(pl_segment_seal(s));
    EQ(pl_index_entries(pl_segment_time_index(s)), 0);
    EQ(file_size(f.idx), 0);
    EQ(file_size(f.tix), 0);
    E(pl_segment_close(s, 1));
    sc.base_offset = 77777;
    s = seg_open(&f, &sc); /* sealed and empty: indexes of 0 bytes */
    E(pl_segment_load(s, &info));
    EQ(info.next_offset, 77777);
    EQ(file_size(f.idx), 0);
    int64_t pos;
    pl_batch_header h;
    ERC(pl_segment_find_batch(s, 77777, &pos, &h), PL_ERANGE);
    ERC(pl_segment_find_time(s, 0, &pos, &h), PL_ERANGE);
    E(pl_segment_unseal(s));
    model_free(&m);
    model_init(&m, 77777);
    for (int i = 0; i < 20; i++) seg_append1(s, &m, (size_t)rnd_range(1, 5), 200, clock += 10);
    seg_verify(s, &m, cfg.index_interval_bytes, 1);
    E(pl_segment_close(s, 1));
    model_free(&m);
    g_ctx[0] = 0;
}

/* ------------------------------------------------------------------------- */

typedef struct section {
    const char *name;
    void (*fn)(void);
    int files;
} section;

/* ------------------------------------------------------------------------- */
/* cleaner: xxhash64 and the offset map                                      */

static void test_cleaner_map(void) {
    /* XXH64 reference values (seed 0): empty, short tail, 4-byte tail, and a
     * 39-byte input that takes the 32-byte stripe path. */
    EQ(pl_xxhash64("", 0, 0), (int64_t)0xEF46DB3751D8E999ULL);
    EQ(pl_xxhash64("a", 1, 0), (int64_t)0xD24EC4F1A98C6E5BULL);
    EQ(pl_xxhash64("abc", 3, 0), (int64_t)0x44BC2CF5AD770999ULL);
    const char *spam = "Nobody inspects the spammish repetition";
    EQ(pl_xxhash64(spam, strlen(spam), 0), (int64_t)0xFBCEA83C8A378BF1ULL);
    CHECK(pl_offset_map_hash((const uint8_t *)"", 0) != 0);

    pl_offset_map m;
    ERC(pl_offset_map_init(&m, 15, 0.9), PL_EINVAL);    /* not one slot */
    ERC(pl_offset_map_init(&m, 1 << 20, 0.0), PL_EINVAL);
    ERC(pl_offset_map_init(&m, 1 << 20, 1.5), PL_EINVAL);

    /* 8 slots, all usable. Hashes with the same top 3 bits share a home slot
     * (the map is indexed by multiply-shift): 7 for 0xE0..., so a second one
     * wraps to slot 0, and lookups must follow the probe across the end. */
    E(pl_offset_map_init(&m, 8 * PL_OFFSET_MAP_SLOT_BYTES, 1.0));
    EQ(m.nslots, 8);
    EQ(m.max_entries, 8);
    EQ(pl_offset_map_get(&m, 0xE000000000000001ULL), -1);
    E(pl_offset_map_put(&m, 0xE000000000000001ULL, 10));
    E(pl_offset_map_put(&m, 0xE000000000000002ULL, 11));
    E(pl_offset_map_put(&m, 0xE000000000000003ULL, 12));
    EQ(pl_offset_map_get(&m, 0xE000000000000001ULL), 10);
    EQ(pl_offset_map_get(&m, 0xE000000000000002ULL), 11);
    EQ(pl_offset_map_get(&m, 0xE000000000000003ULL), 12);
    EQ(m.slots[0], (int64_t)0xE000000000000002ULL); /* wrapped */
    E(pl_offset_map_put(&m, 0xE000000000000002ULL, 40)); /* a later offset of the same key */
    EQ(pl_offset_map_get(&m, 0xE000000000000002ULL), 40);
    EQ(m.entries, 3);
    EQ(m.latest_offset, 40);
    for (uint64_t k = 1; k <= 5; k++) E(pl_offset_map_put(&m, k << 56, (int64_t)(100 + k)));
    EQ(m.entries, 8);
    /* Full: a new key is refused, a known one still moves, a miss ends. */
    ERC(pl_offset_map_put(&m, 0x7000000000000009ULL, 1), PL_EFULL);
    E(pl_offset_map_put(&m, 3ULL << 56, 200));
    EQ(pl_offset_map_get(&m, 3ULL << 56), 200);
    EQ(pl_offset_map_get(&m, 0x7000000000000009ULL), -1);
    for (uint64_t k = 1; k <= 5; k++) EQ(pl_offset_map_get(&m, k << 56), k == 3 ? 200 : (int64_t)(100 + k));
    pl_offset_map_clear(&m);
    EQ(m.entries, 0);
    EQ(m.latest_offset, -1);
    EQ(pl_offset_map_get(&m, 0xE000000000000001ULL), -1);
    pl_offset_map_free(&m);

    /* Load factor 0.9 of a larger map: exactly that many distinct keys, all found. */
    E(pl_offset_map_init(&m, 1000 * PL_OFFSET_MAP_SLOT_BYTES, 0.9));
    EQ(m.max_entries, 900);
    char key[32];
    for (int i = 0; i < 900; i++) {
        int n = snprintf(key, sizeof key, "key-%d", i);
        E(pl_offset_map_put(&m, pl_offset_map_hash((const uint8_t *)key, (size_t)n), i));
    }
    ERC(pl_offset_map_put(&m, pl_offset_map_hash((const uint8_t *)"one more", 8), 1), PL_EFULL);
    for (int i = 0; i < 900; i++) {
        int n = snprintf(key, sizeof key, "key-%d", i);
        EQ(pl_offset_map_get(&m, pl_offset_map_hash((const uint8_t *)key, (size_t)n)), i);
    }
    pl_offset_map_free(&m);
}

/* ------------------------------------------------------------------------- */
/* delivery: cutting a batch to the records a share fetch acquired           */

static void test_delivery_cut(void) {
    tbatch t = gen_batch(40, 30, 1000, 0);
    pl_batch_set_base_offset(t.buf, 500); /* outside the CRC */
    uint8_t *out = xmalloc(t.len);
    size_t olen = 0;
    int32_t starts[40], cstarts[40];
    E(pl_records_positions(t.buf + PL_BATCH_HEADER_SIZE, t.len - PL_BATCH_HEADER_SIZE, 40, starts));

    CTX("three ranges, one past the batch");
    int64_t r3[] = {505, 509, 520, 520, 539, 600};
    E(pl_batch_cut(t.buf, t.len, r3, 3, 1, out, t.len, &olen));
    pl_batch_header h, oh;
    E(pl_batch_validate(t.buf, t.len, &oh));
    E(pl_batch_validate(out, olen, &h));
    EQ(h.records_count, 7);
    EQ(h.base_offset, 500);
    EQ(h.last_offset_delta, oh.last_offset_delta);
    EQ(h.base_timestamp, oh.base_timestamp);
    EQ(h.producer_id, oh.producer_id);
    EQ(h.base_sequence, oh.base_sequence);
    EQ((size_t)h.batch_length + PL_BATCH_LOG_OVERHEAD, olen);
    E(pl_records_positions(out + PL_BATCH_HEADER_SIZE, olen - PL_BATCH_HEADER_SIZE, 7, cstarts));
    const int keep[] = {5, 6, 7, 8, 9, 20, 39};
    for (int i = 0; i < 7; i++) {
        int k = keep[i];
        size_t len = (size_t)((k + 1 < 40 ? starts[k + 1] : (int32_t)(t.len - PL_BATCH_HEADER_SIZE)) - starts[k]);
        CHECK(memcmp(out + PL_BATCH_HEADER_SIZE + cstarts[i], t.buf + PL_BATCH_HEADER_SIZE + starts[k], len) == 0);
    }

    CTX("nothing kept: no batch");
    int64_t none[] = {0, 499, 540, 1000};
    E(pl_batch_cut(t.buf, t.len, none, 2, 1, out, t.len, &olen));
    EQ(olen, 0);
    E(pl_batch_cut(t.buf, t.len, none, 0, 1, out, t.len, &olen));
    EQ(olen, 0);

    CTX("bad arguments");
    int64_t desc[] = {520, 530, 510, 511};
    ERC(pl_batch_cut(t.buf, t.len, desc, 2, 1, out, t.len, &olen), PL_EINVAL);
    int64_t inverted[] = {520, 510};
    ERC(pl_batch_cut(t.buf, t.len, inverted, 1, 1, out, t.len, &olen), PL_EINVAL);
    ERC(pl_batch_cut(t.buf, t.len, r3, 3, 1, out, t.len - 1, &olen), PL_EINVAL);
    ERC(pl_batch_cut(t.buf, t.len - 1, r3, 3, 1, out, t.len, &olen), PL_ETRUNCATED);

    CTX("a CRC that does not match is not resealed");
    uint8_t *bad = xmalloc(t.len);
    memcpy(bad, t.buf, t.len);
    bad[t.len / 2] ^= 0x10;
    ERC(pl_batch_cut(bad, t.len, r3, 3, 1, out, t.len, &olen), PL_ECORRUPT);

    CTX("random damage under a good CRC");
    for (int it = 0; it < 4000; it++) {
        memcpy(bad, t.buf, t.len);
        int flips = 1 + (int)rnd_below(4);
        for (int f = 0; f < flips; f++) bad[PL_BATCH_ATTRIBUTES_OFFSET + rnd_below(t.len - PL_BATCH_ATTRIBUTES_OFFSET)] = (uint8_t)rnd();
        pl_batch_seal(bad, t.len);
        int rc = pl_batch_cut(bad, t.len, r3, 3, 1, out, t.len, &olen);
        CHECK(rc == PL_OK || rc == PL_ECORRUPT || rc == PL_EINVAL || rc == PL_ETRUNCATED || rc == PL_EMAGIC);
        if (rc == PL_OK && olen) {
            CHECK(olen <= t.len);
            E(pl_batch_validate(out, olen, &h));
        }
    }
    free(bad);
    free(out);
    free(t.buf);
}

static const section sections[] = {
    {"crc32c", test_crc32c, 0},
    {"murmur2", test_murmur2, 0},
    {"varint", test_varint, 0},
    {"batch", test_batch, 0},
    {"index", test_index, 1},
    {"segment_basic", test_segment_basic, 1},
    {"segment_buffer", test_segment_buffer, 1},
    {"segment_truncate", test_segment_truncate, 1},
    {"segment_pins", test_segment_pins, 1},
    {"segment_recover", test_segment_recover, 1},
    {"segment_limits", test_segment_limits, 1},
    {"segment_seal", test_segment_seal, 1},
    {"cleaner_map", test_cleaner_map, 0},
    {"delivery_cut", test_delivery_cut, 0},
};
#define N_SECTIONS (sizeof sections / sizeof sections[0])

static int selected(const char *name, int argc, char **argv) {
    if (argc < 2) return 1;
    for (int i = 1; i < argc; i++)
        if (!strncmp(name, argv[i], strlen(argv[i]))) return 1;
    return 0;
}

int main(int argc, char **argv) {
    const char *seed = getenv("PL_TEST_SEED");
    g_seed = seed && *seed ? strtoull(seed, NULL, 0) : 20240601;
    setvbuf(stdout, NULL, _IOLBF, 0);
    for (int i = 1; i < argc; i++) {
        int known = 0;
        for (size_t k = 0; k < N_SECTIONS; k++) known |= !strncmp(sections[k].name, argv[i], strlen(argv[i]));
        if (!known) {
            fprintf(stderr, "unknown section '%s'; sections:", argv[i]);
            for (size_t k = 0; k < N_SECTIONS; k++) fprintf(stderr, " %s", sections[k].name);
            fprintf(stderr, "\n");
            return 2;
        }
    }
    printf("test_engine: seed %" PRIu64 "\n", g_seed);
    int ran = 0;
    for (size_t k = 0; k < N_SECTIONS; k++) {
        const section *sec = &sections[k];
        if (!selected(sec->name, argc, argv)) continue;
        g_section = sec->name;
        g_ctx[0] = 0;
        g_rng = g_seed;
        for (const char *c = sec->name; *c; c++) g_rng = g_rng * 31 + (uint8_t)*c; /* independent of the others */
        long checks0 = g_checks;
        int fds0 = count_fds();
        if (sec->files) make_tmpdir();
        sec->fn();
        g_ctx[0] = 0;
        if (sec->files) {
            int maps = count_maps(g_dir);
            if (maps != 0) {
                fprintf(stderr, "%s: %d mappings of files in %s are left after every close\n", sec->name, maps, g_dir);
                die();
            }
            remove_tmpdir();
        }
        int fds1 = count_fds();
        if (fds1 != fds0) {
            fprintf(stderr, "%s: %d file descriptors open before, %d after (a leak)\n", sec->name, fds0, fds1);
            die();
        }
        printf("ok %-18s %8ld checks\n", sec->name, g_checks - checks0);
        ran++;
    }
    printf("test_engine: %d sections passed, %ld checks, %d notes\n", ran, g_checks, g_notes);
    return 0;
}
