/*
 * crc32c_hw.c -- CRC-32C with the SSE4.2 crc32 instruction, through simde.
 * Built with -msse4.2 and called only when cpuid says the CPU has it.
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#include <simde/x86/sse4.2.h>

uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);

uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len)
{
	const unsigned char *p = buf;
	uint64_t c = ~crc;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		c = simde_mm_crc32_u64(c, w);
		p += 8;
		len -= 8;
	}
	uint32_t c32 = (uint32_t)c;
	while (len--)
		c32 = simde_mm_crc32_u8(c32, *p++);
	return ~c32;
}
