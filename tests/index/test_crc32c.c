/* CRC-32C against its published check value and across both paths. */
#include <criterion/criterion.h>
#include <string.h>

#include "crc32c.h"

Test(crc32c, check_value_of_123456789)
{
	/* the standard check value of CRC-32C */
	cr_assert_eq(crc32c(0, "123456789", 9), 0xe3069283u);
	cr_assert_eq(crc32c_sw(0, "123456789", 9), 0xe3069283u);
}

Test(crc32c, hardware_and_table_agree_on_every_length_and_offset)
{
	unsigned char buf[300];
	for (size_t i = 0; i < sizeof(buf); i++)
		buf[i] = (unsigned char)(i * 131 + 7);
	for (size_t off = 0; off < 8; off++)
		for (size_t len = 0; len + off <= sizeof(buf); len += 1 + len / 16)
			cr_assert_eq(crc32c(0, buf + off, len),
				     crc32c_sw(0, buf + off, len), "off %zu len %zu",
				     off, len);
}

Test(crc32c, continues_across_pieces)
{
	const char *s = "the quick brown fox jumps over the lazy dog";
	size_t n = strlen(s);
	uint32_t whole = crc32c(0, s, n);
	for (size_t cut = 0; cut <= n; cut++)
		cr_assert_eq(crc32c(crc32c(0, s, cut), s + cut, n - cut), whole);
}

Test(crc32c, detects_every_single_bit_flip)
{
	unsigned char buf[64];
	memset(buf, 0x5a, sizeof(buf));
	uint32_t c = crc32c(0, buf, sizeof(buf));
	for (size_t bit = 0; bit < sizeof(buf) * 8; bit++) {
		buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
		cr_assert_neq(crc32c(0, buf, sizeof(buf)), c);
		buf[bit / 8] ^= (unsigned char)(1u << (bit % 8));
	}
}
