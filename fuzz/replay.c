/*
 * replay.c: a main() for a libFuzzer target where there is no clang (gcc
 * builds it with ASAN/UBSAN for `make test`). Runs the target on every file
 * given (directories: every file in them), then, with -mutations=N, on N
 * mutations of each: bit flips, byte and int32 overwrites with boundary
 * values, inserts, erases, truncation and splices of two inputs, from a
 * fixed -seed so a failure repeats. Not coverage-guided: `make fuzz` is.
 *
 *   replay [-mutations=N] [-seed=S] [-crash=PATH] FILE_OR_DIR...
 * A failing input is written to PATH (default replay-crash.bin).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* The input being run, written out if a sanitizer ends the process. */
static const uint8_t *current;
static size_t current_len;
static const char *crash_path = "replay-crash.bin";

static void on_death(int sig) {
    (void)sig;
    FILE *f = fopen(crash_path, "wb");
    if (f) {
        fwrite(current, 1, current_len, f);
        fclose(f);
        fprintf(stderr, "replay: the failing input (%zu bytes) is in %s\n", current_len, crash_path);
    }
    signal(SIGABRT, SIG_DFL);
    abort();
}

static void run_one(const uint8_t *data, size_t len) {
    current = data;
    current_len = len;
    LLVMFuzzerTestOneInput(data, len);
}

typedef struct { uint8_t *data; size_t len; char *name; } input;

static input *inputs;
static size_t n_inputs, cap_inputs;
static uint64_t rng = 0x9E3779B97F4A7C15ull;

static uint64_t next(void) {
    rng ^= rng << 13;
    rng ^= rng >> 7;
    rng ^= rng << 17;
    return rng;
}

static void add_file(const char *path) {
    FILE *f = fopen(path, "rb");
    if (!f) { perror(path); exit(2); }
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    uint8_t *d = malloc((size_t)n + 1);
    if (!d || fread(d, 1, (size_t)n, f) != (size_t)n) { perror(path); exit(2); }
    fclose(f);
    if (n_inputs == cap_inputs) {
        cap_inputs = cap_inputs ? cap_inputs * 2 : 64;
        inputs = realloc(inputs, cap_inputs * sizeof *inputs);
        if (!inputs) exit(2);
    }
    inputs[n_inputs++] = (input){d, (size_t)n, strdup(path)};
}

static void add_path(const char *path) {
    struct stat st;
    if (stat(path, &st) != 0) { perror(path); exit(2); }
    if (!S_ISDIR(st.st_mode)) { add_file(path); return; }
    DIR *dir = opendir(path);
    struct dirent *e;
    while ((e = readdir(dir)) != NULL) {
        if (e->d_name[0] == '.') continue;
        char sub[4096];
        snprintf(sub, sizeof sub, "%s/%s", path, e->d_name);
        add_path(sub);
    }
    closedir(dir);
}

static const uint32_t BOUNDARY[] = {0, 1, 48, 49, 61, 0x7F, 0x80, 0xFF, 0x7FFF, 0xFFFF,
                                    0x7FFFFFFF, 0x80000000u, 0xFFFFFFFFu};

/* One mutation of src into a fresh buffer (at most src->len + 64 bytes). */
static uint8_t *mutate(const input *src, size_t *out_len) {
    size_t len = src->len, cap = len + 64;
    uint8_t *d = malloc(cap);
    if (!d) exit(2);
    memcpy(d, src->data, len);
    int rounds = 1 + (int)(next() % 4);
    for (int r = 0; r < rounds; r++) {
        switch (next() % 8) {
        case 0: if (len) d[next() % len] ^= (uint8_t)(1u << (next() % 8)); break;
        case 1: if (len) d[next() % len] = (uint8_t)next(); break;
        case 2: if (len >= 4) {  /* a big-endian int32 field set to a boundary value */
            size_t p = next() % (len - 3);
            uint32_t v = BOUNDARY[next() % (sizeof BOUNDARY / sizeof BOUNDARY[0])];
            d[p] = (uint8_t)(v >> 24); d[p + 1] = (uint8_t)(v >> 16);
            d[p + 2] = (uint8_t)(v >> 8); d[p + 3] = (uint8_t)v;
        } break;
        case 3: if (len < cap) {  /* insert a byte */
            size_t p = len ? next() % (len + 1) : 0;
            memmove(d + p + 1, d + p, len - p);
            d[p] = (uint8_t)next();
            len++;
        } break;
        case 4: if (len) {  /* erase a run */
            size_t p = next() % len, k = 1 + next() % 8;
            if (k > len - p) k = len - p;
            memmove(d + p, d + p + k, len - p - k);
            len -= k;
        } break;
        case 5: if (len) len = next() % len; break;  /* truncate */
        case 6: {  /* splice: the tail of another input */
            const input *o = &inputs[next() % n_inputs];
            if (o->len && len) {
                size_t p = next() % len, q = next() % o->len, k = o->len - q;
                if (p + k > cap) k = cap - p;
                memcpy(d + p, o->data + q, k);
                if (p + k > len) len = p + k;
            }
        } break;
        case 7: if (len > 1) d[1 + next() % (len - 1)] = (uint8_t)(0x80 | next()); break; /* varint bytes */
        }
    }
    /* Exact size, so ASAN sees any read past the end. */
    uint8_t *exact = malloc(len ? len : 1);
    if (!exact) exit(2);
    memcpy(exact, d, len);
    free(d);
    *out_len = len;
    return exact;
}

int main(int argc, char **argv) {
    long mutations = 0;
    for (int i = 1; i < argc; i++) {
        if (strncmp(argv[i], "-mutations=", 11) == 0) mutations = atol(argv[i] + 11);
        else if (strncmp(argv[i], "-crash=", 7) == 0) crash_path = argv[i] + 7;
        else if (strncmp(argv[i], "-seed=", 6) == 0) rng = strtoull(argv[i] + 6, NULL, 10) * 2654435761u + 1;
        else add_path(argv[i]);
    }
    if (n_inputs == 0) { fprintf(stderr, "replay: no inputs\n"); return 2; }
    /* The sanitizers end the process with abort() under abort_on_error=1
     * (set by `make test` and `make fuzz`), as REQUIRE does. */
    signal(SIGABRT, on_death);
    long runs = 0;
    for (size_t i = 0; i < n_inputs; i++) {
        uint8_t *exact = malloc(inputs[i].len ? inputs[i].len : 1);
        memcpy(exact, inputs[i].data, inputs[i].len);
        run_one(exact, inputs[i].len);
        free(exact);
        runs++;
    }
    for (long m = 0; m < mutations; m++) {
        size_t len;
        uint8_t *d = mutate(&inputs[m % (long)n_inputs], &len);
        run_one(d, len);
        free(d);
        runs++;
    }
    for (size_t i = 0; i < n_inputs; i++) { free(inputs[i].data); free(inputs[i].name); }
    free(inputs);
    printf("replay: %zu inputs, %ld runs, no failure\n", n_inputs, runs);
    return 0;
}
