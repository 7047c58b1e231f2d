/*
 * crc32c.h -- CRC-32C (Castagnoli), the checksum of log records and
 * snapshot sections. Uses the SSE4.2 crc32 instruction where the CPU has it
 * (chosen once, at first use; COHORT_SIMD=scalar forces the table path),
 * a slicing-by-8 table otherwise. Both give the same values.
 */
#ifndef COHORT_CRC32C_H
#define COHORT_CRC32C_H

#include <stddef.h>
#include <stdint.h>

/* CRC of len bytes, continuing from crc (0 to start). */
uint32_t crc32c(uint32_t crc, const void *buf, size_t len);
/* The table path, for tests. */
uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len);
/* "sse4.2" or "table": the path crc32c() uses. */
const char *crc32c_path(void);

#endif
