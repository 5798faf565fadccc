/*
 * crc32c.h: CRC-32C (Castagnoli, reflected polynomial 0x82F63B78), as Kafka's
 * record batch v2 uses over bytes [21, end of batch).
 *
 * The hardware path (SSE4.2 crc32 instruction, three interleaved streams for long
 * buffers) is chosen at run time by CPU detection; the portable path is
 * slicing-by-8 tables. Both give the standard check value:
 * pl_crc32c(0, "123456789", 9) == 0xE3069283.
 */
#ifndef PL_CRC32C_H
#define PL_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* Extend a finished CRC (0 to start) over buf[0,len) and return the finished CRC,
 * so pl_crc32c(pl_crc32c(0, a, n), b, m) == CRC of a||b. Thread-safe. */
uint32_t pl_crc32c(uint32_t crc, const void *buf, size_t len);

/* The same through the portable tables only (tests compare both paths). */
uint32_t pl_crc32c_sw(uint32_t crc, const void *buf, size_t len);

/* 1 when pl_crc32c uses the hardware instruction on this CPU, else 0. */
int pl_crc32c_hw_available(void);

#endif
