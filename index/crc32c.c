/*
 * crc32c.c -- see crc32c.h. The hardware path lives in crc32c_hw.c, built
 * with -msse4.2; this file must run on any x86-64.
 */
#include "crc32c.h"

#include <pthread.h>
#include <string.h>

#include "simd.h"

uint32_t crc32c_hw(uint32_t crc, const void *buf, size_t len);

static uint32_t table[8][256];
static pthread_once_t once = PTHREAD_ONCE_INIT;
static int use_hw;

static void init(void)
{
	for (uint32_t i = 0; i < 256; i++) {
		uint32_t c = i;
		for (int k = 0; k < 8; k++)
			c = c & 1 ? (c >> 1) ^ 0x82f63b78u : c >> 1;
		table[0][i] = c;
	}
	for (uint32_t i = 0; i < 256; i++)
		for (int t = 1; t < 8; t++)
			table[t][i] = (table[t - 1][i] >> 8) ^
				      table[0][table[t - 1][i] & 0xff];
#if defined(__x86_64__)
	__builtin_cpu_init();
	use_hw = __builtin_cpu_supports("sse4.2") &&
		 simd_level_get() != SIMD_SCALAR;
#endif
}

uint32_t crc32c_sw(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&once, init);
	const unsigned char *p = buf;
	crc = ~crc;
	while (len >= 8) {
		uint64_t w;
		memcpy(&w, p, 8);
		w ^= crc;
		crc = table[7][w & 0xff] ^ table[6][(w >> 8) & 0xff] ^
		      table[5][(w >> 16) & 0xff] ^ table[4][(w >> 24) & 0xff] ^
		      table[3][(w >> 32) & 0xff] ^ table[2][(w >> 40) & 0xff] ^
		      table[1][(w >> 48) & 0xff] ^ table[0][w >> 56];
		p += 8;
		len -= 8;
	}
	while (len--)
		crc = (crc >> 8) ^ table[0][(crc ^ *p++) & 0xff];
	return ~crc;
}

uint32_t crc32c(uint32_t crc, const void *buf, size_t len)
{
	pthread_once(&once, init);
	return use_hw ? crc32c_hw(crc, buf, len) : crc32c_sw(crc, buf, len);
}

const char *crc32c_path(void)
{
	pthread_once(&once, init);
	return use_hw ? "sse4.2" : "table";
}
