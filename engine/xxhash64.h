/*
 * xxhash64.h: XXH64 (Yann Collet's xxHash, 64-bit variant), written from the
 * public specification (doc/xxhash_spec.md of the xxHash project): four
 * 8-byte lanes over 32-byte stripes, then the tail in 8-, 4- and 1-byte
 * steps, then the avalanche. Little-endian input words on every host.
 * The cleaner's offset map keys records by this hash (cleaner.h).
 */
#ifndef PL_XXHASH64_H
#define PL_XXHASH64_H

#include <stddef.h>
#include <stdint.h>

uint64_t pl_xxhash64(const void *data, size_t len, uint64_t seed);

#endif
