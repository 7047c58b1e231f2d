/*
 * dist_kern.c -- distance kernels (see dist.h), one source compiled per SIMD
 * target: KERN_SUFFIX names the target. The scalar target (KERN_SCALAR) is
 * plain C; the others are written once against a few macros that name
 * simde intrinsics of the target's native width (see below: 512 bits with
 * -mavx512*, 256 with -mavx2 -mfma, 128 with -msse4.1).
 *
 * The tiled kernels (assign, topm) share one driver, below the per-target
 * parts. It walks the work GEMM-style: queries in batches of about
 * QUERY_BYTES, centroids in chunks of about CHUNK_BYTES (both stay in L2
 * while the other streams past), and inside a chunk a tile of TQ queries
 * against TB blocks of 16 centroids at a time: TQ x TB x 16 lanes of
 * accumulators live in registers for the whole dot product, each centroid load feeds TQ
 * multiply-adds and each query broadcast feeds TB. A query tile that runs
 * past the last query points its spare rows at the last query (their
 * results are dropped), so no copy and no second kernel is needed; the
 * blocks left over by TB go through the same tile with TB = 1.
 *
 * Candidates reach the per-query result in increasing centroid order
 * (chunks, then blocks, then lanes), and every comparison is strict, so
 * ties go to the lower index on every path.
 */
#include <math.h>
#include <stdint.h>
#include <string.h>

#include "dist.h"

#define CAT_(a, b) a##_##b
#define CAT(a, b) CAT_(a, b)
#define NAME(fn) CAT(fn, KERN_SUFFIX)
#define ALWAYS_INLINE inline __attribute__((always_inline))

#define QUERY_BYTES (32u << 10)
#define CHUNK_BYTES (256u << 10)

/* ------------------------------------------------------------------------
 * Shared by every target
 * ------------------------------------------------------------------------ */

/* Insert (v, id) into the ascending list vals/ids of m entries, whose last
 * entry is above v. Equal values keep their order, so with candidates in
 * index order the lower index ranks first. */
static void topm_insert(float *vals, uint32_t *ids, size_t m, float v,
			uint32_t id)
{
	size_t i = m - 1;
	while (i > 0 && vals[i - 1] > v) {
		vals[i] = vals[i - 1];
		ids[i] = ids[i - 1];
		i--;
	}
	vals[i] = v;
	ids[i] = id;
}

/* 1 - ab / sqrt(aa bb) from the three float sums; the division in double so
 * that it adds no error of its own. Clamped to [0, 2] (rounding can put
 * |cos| a hair above 1). */
static float cos_finish(float ab, float aa, float bb)
{
	if (aa == 0 || bb == 0)
		return 1.0f;
	double c = (double)ab / sqrt((double)aa * (double)bb);
	c = c > 1 ? 1 : c < -1 ? -1 : c;
	return (float)(1.0 - c);
}

#ifdef KERN_SCALAR

/* ------------------------------------------------------------------------
 * Scalar: plain loops, one query at a time.
 * ------------------------------------------------------------------------ */
#define TQ 1
#define TB 1

static float NAME(l2sq)(const float *a, const float *b, size_t dim)
{
	float s = 0;
	for (size_t i = 0; i < dim; i++) {
		float d = a[i] - b[i];
		s += d * d;
	}
	return s;
}

static float NAME(ip)(const float *a, const float *b, size_t dim)
{
	float s = 0;
	for (size_t i = 0; i < dim; i++)
		s += a[i] * b[i];
	return s;
}

static float NAME(cosine)(const float *a, const float *b, size_t dim)
{
	float ab = 0, aa = 0, bb = 0;
	for (size_t i = 0; i < dim; i++) {
		ab += a[i] * b[i];
		aa += a[i] * a[i];
		bb += b[i] * b[i];
	}
	return cos_finish(ab, aa, bb);
}

static void NAME(l2sq_many)(const float *q, const float *base, size_t stride,
			    size_t n, size_t dim, float *out)
{
	for (size_t r = 0; r < n; r++)
		out[r] = NAME(l2sq)(q, base + r * stride, dim);
}

static void NAME(ip_many)(const float *q, const float *base, size_t stride,
			  size_t n, size_t dim, float *out)
{
	for (size_t r = 0; r < n; r++)
		out[r] = NAME(ip)(q, base + r * stride, dim);
}

static void NAME(cosine_many)(const float *q, const float *base,
			      size_t stride, size_t n, size_t dim, float *out)
{
	for (size_t r = 0; r < n; r++)
		out[r] = NAME(cosine)(q, base + r * stride, dim);
}

/* int64 sums: no signed overflow (undefined in C) whatever the dim; the
 * result is exact up to DIST_U8_MAX_DIM like the SIMD paths. */
static int32_t NAME(l2sq_u8)(const uint8_t *a, const uint8_t *b, size_t dim)
{
	int64_t s = 0;
	for (size_t i = 0; i < dim; i++) {
		int d = (int)a[i] - (int)b[i];
		s += d * d;
	}
	return (int32_t)s;
}

static int32_t NAME(l2sq_u8_max)(const uint8_t *a, const uint8_t *b,
				   size_t dim, int32_t bound)
{
	int64_t s = 0;
	for (size_t i = 0; i < dim; i++) {
		int d = (int)a[i] - (int)b[i];
		s += d * d;
		if ((i & 63) == 63 && s > bound)
			return (int32_t)(s < INT32_MAX ? s : INT32_MAX);
	}
	return (int32_t)s;
}

static int32_t NAME(ip_u8)(const uint8_t *a, const uint8_t *b, size_t dim)
{
	int64_t s = 0;
	for (size_t i = 0; i < dim; i++)
		s += (int)a[i] * (int)b[i];
	return (int32_t)s;
}

/* |c|^2 - 2 x.c for the 16 centroids of one block. */
static void block_values(const dist_packed *c, const float *x, size_t blk,
			 float v[DIST_BLOCK])
{
	const float *p = c->blocks + blk * c->dim * DIST_BLOCK;
	const float *nrm = c->norms + blk * DIST_BLOCK;
	float acc[DIST_BLOCK] = {0};
	for (size_t j = 0; j < c->dim; j++)
		for (int l = 0; l < DIST_BLOCK; l++)
			acc[l] += x[j] * p[j * DIST_BLOCK + l];
	for (int l = 0; l < DIST_BLOCK; l++)
		v[l] = nrm[l] - 2.0f * acc[l];
}

static void qtile_argmin(const dist_packed *c, const float *const xq[TQ],
			 int nvalid, size_t b0, size_t b1, uint32_t *label,
			 float *best)
{
	(void)nvalid;
	float bv = best[0];
	uint32_t bid = label[0];
	for (size_t b = b0; b < b1; b++) {
		float v[DIST_BLOCK];
		block_values(c, xq[0], b, v);
		for (int l = 0; l < DIST_BLOCK; l++) {
			if (v[l] < bv) {
				bv = v[l];
				bid = (uint32_t)(b * DIST_BLOCK + (size_t)l);
			}
		}
	}
	best[0] = bv;
	label[0] = bid;
}

static void qtile_topm(const dist_packed *c, const float *const xq[TQ],
		       int nvalid, size_t b0, size_t b1, size_t m,
		       uint32_t *labels, float *vals)
{
	(void)nvalid;
	for (size_t b = b0; b < b1; b++) {
		float v[DIST_BLOCK];
		block_values(c, xq[0], b, v);
		for (int l = 0; l < DIST_BLOCK; l++)
			if (v[l] < vals[m - 1])
				topm_insert(vals, labels, m, v[l],
					    (uint32_t)(b * DIST_BLOCK + (size_t)l));
	}
}

/* Eight independent chains; the compiler may pack them into SSE2 vectors,
 * which is what the scalar path's other loops get too. */
static uint64_t NAME(fma_peak)(uint64_t iters, float *sink)
{
	float a = sink[0], b = sink[1], acc[8];
	for (int i = 0; i < 8; i++)
		acc[i] = sink[2] + (float)i;
	for (uint64_t it = 0; it < iters; it++)
		for (int i = 0; i < 8; i++)
			acc[i] = acc[i] * a + b;
	float s = 0;
	for (int i = 0; i < 8; i++)
		s += acc[i];
	sink[3] = s;
	return iters * 8;
}

#else /* SIMD targets */

#include <simde/x86/avx512.h>

/*
 * Each target works in its native width through simde: 16 floats (zmm) for
 * AVX-512, 8 (ymm) for AVX2 + FMA, 4 (xmm, multiply then add) for SSE4.1.
 * simde's 512-bit type emulated on the narrower targets is a union that GCC
 * moves through memory at every operation (an AVX2 multiply-add loop on it
 * ran at a tenth of the native one), so the narrower targets name their own
 * width and the code below is written once against these few macros.
 *
 * Tile shapes fit the register file: AVX-512 has 32 zmm (6 queries x 4
 * blocks of one vector = 24 accumulators, 4 centroid vectors, the
 * broadcasts folded into the multiply-adds); AVX2 has 16 ymm (6 x 1 block
 * of two vectors = 12, + 2 + a broadcast); SSE4.1 has 16 xmm (2 x 1 block
 * of four vectors = 8, + 4 + a broadcast).
 */
#if defined(__AVX512F__)
#define W 16
#define TQ 6
#define TB 4
typedef simde__m512 vf;
typedef simde__m512i vi;
typedef simde__mmask16 vmask;
#define V_ZERO() simde_mm512_setzero_ps()
#define V_SET1(x) simde_mm512_set1_ps(x)
#define V_LOAD(p) simde_mm512_load_ps(p)
#define V_LOADU(p) simde_mm512_loadu_ps(p)
#define V_STOREU(p, v) simde_mm512_storeu_ps(p, v)
#define V_ADD(a, b) simde_mm512_add_ps(a, b)
#define V_SUB(a, b) simde_mm512_sub_ps(a, b)
#define V_FMADD(a, b, c) simde_mm512_fmadd_ps(a, b, c)
#define V_LT(a, b) simde_mm512_cmp_ps_mask(a, b, SIMDE_CMP_LT_OQ)
#define V_BLEND(a, b, m) simde_mm512_mask_mov_ps(a, m, b)
#define VI_BLEND(a, b, m) simde_mm512_mask_mov_epi32(a, m, b)
#define V_BITS(m) ((unsigned)(m))
#define VI_ZERO() simde_mm512_setzero_si512()
#define VI_SET1(x) simde_mm512_set1_epi32(x)
#define VI_LOADU(p) simde_mm512_loadu_si512((const void *)(p))
#define VI_STOREU(p, v) simde_mm512_storeu_si512((void *)(p), v)
#define VI_UNPACKLO8(a, b) simde_mm512_unpacklo_epi8(a, b)
#define VI_UNPACKHI8(a, b) simde_mm512_unpackhi_epi8(a, b)
#define VI_SUB16(a, b) simde_mm512_sub_epi16(a, b)
#define VI_MADD16(a, b) simde_mm512_madd_epi16(a, b)
#define VI_ADD32(a, b) simde_mm512_add_epi32(a, b)
#define VI_AND(a, b) simde_mm512_and_si512(a, b)
#elif defined(__AVX2__)
#define W 8
#define TQ 6
#define TB 1
typedef simde__m256 vf;
typedef simde__m256i vi;
typedef simde__m256 vmask;
#define V_ZERO() simde_mm256_setzero_ps()
#define V_SET1(x) simde_mm256_set1_ps(x)
#define V_LOAD(p) simde_mm256_load_ps(p)
#define V_LOADU(p) simde_mm256_loadu_ps(p)
#define V_STOREU(p, v) simde_mm256_storeu_ps(p, v)
#define V_ADD(a, b) simde_mm256_add_ps(a, b)
#define V_SUB(a, b) simde_mm256_sub_ps(a, b)
#define V_FMADD(a, b, c) simde_mm256_fmadd_ps(a, b, c)
#define V_LT(a, b) simde_mm256_cmp_ps(a, b, SIMDE_CMP_LT_OQ)
#define V_BLEND(a, b, m) simde_mm256_blendv_ps(a, b, m)
#define VI_BLEND(a, b, m)                                                     \
	simde_mm256_castps_si256(simde_mm256_blendv_ps(                       \
		simde_mm256_castsi256_ps(a), simde_mm256_castsi256_ps(b), m))
#define V_BITS(m) ((unsigned)simde_mm256_movemask_ps(m))
#define VI_ZERO() simde_mm256_setzero_si256()
#define VI_SET1(x) simde_mm256_set1_epi32(x)
#define VI_LOADU(p) simde_mm256_loadu_si256((const void *)(p))
#define VI_STOREU(p, v) simde_mm256_storeu_si256((void *)(p), v)
#define VI_UNPACKLO8(a, b) simde_mm256_unpacklo_epi8(a, b)
#define VI_UNPACKHI8(a, b) simde_mm256_unpackhi_epi8(a, b)
#define VI_SUB16(a, b) simde_mm256_sub_epi16(a, b)
#define VI_MADD16(a, b) simde_mm256_madd_epi16(a, b)
#define VI_ADD32(a, b) simde_mm256_add_epi32(a, b)
#define VI_AND(a, b) simde_mm256_and_si256(a, b)
#else
#define W 4
#define TQ 2
#define TB 1
typedef simde__m128 vf;
typedef simde__m128i vi;
typedef simde__m128 vmask;
#define V_ZERO() simde_mm_setzero_ps()
#define V_SET1(x) simde_mm_set1_ps(x)
#define V_LOAD(p) simde_mm_load_ps(p)
#define V_LOADU(p) simde_mm_loadu_ps(p)
#define V_STOREU(p, v) simde_mm_storeu_ps(p, v)
#define V_ADD(a, b) simde_mm_add_ps(a, b)
#define V_SUB(a, b) simde_mm_sub_ps(a, b)
#define V_FMADD(a, b, c) simde_mm_fmadd_ps(a, b, c)   /* mul + add here */
#define V_LT(a, b) simde_mm_cmplt_ps(a, b)
#define V_BLEND(a, b, m) simde_mm_blendv_ps(a, b, m)
#define VI_BLEND(a, b, m)                                                     \
	simde_mm_castps_si128(simde_mm_blendv_ps(simde_mm_castsi128_ps(a),    \
						 simde_mm_castsi128_ps(b), m))
#define V_BITS(m) ((unsigned)simde_mm_movemask_ps(m))
#define VI_ZERO() simde_mm_setzero_si128()
#define VI_SET1(x) simde_mm_set1_epi32(x)
#define VI_LOADU(p) simde_mm_loadu_si128((const void *)(p))
#define VI_STOREU(p, v) simde_mm_storeu_si128((void *)(p), v)
#define VI_UNPACKLO8(a, b) simde_mm_unpacklo_epi8(a, b)
#define VI_UNPACKHI8(a, b) simde_mm_unpackhi_epi8(a, b)
#define VI_SUB16(a, b) simde_mm_sub_epi16(a, b)
#define VI_MADD16(a, b) simde_mm_madd_epi16(a, b)
#define VI_ADD32(a, b) simde_mm_add_epi32(a, b)
#define VI_AND(a, b) simde_mm_and_si128(a, b)
#endif

#define NV (DIST_BLOCK / W)       /* vectors per block row */
#define TV (TB * NV)              /* centroid vectors per tile row */
#define PEAK_ACC 12

/* The last n < W floats at p, zero-filled: never reads past p + n. */
static ALWAYS_INLINE vf load_tail(const float *p, size_t n)
{
	float t[W] = {0};
	memcpy(t, p, n * sizeof(float));
	return V_LOADU(t);
}

static ALWAYS_INLINE float hsum(vf v)
{
	float t[W];
	V_STOREU(t, v);
	for (int w = W / 2; w > 0; w >>= 1)
		for (int i = 0; i < w; i++)
			t[i] += t[i + w];
	return t[0];
}

/* Squared difference and product steps: acc += f(a, b). */
static ALWAYS_INLINE vf step_l2(vf acc, vf a, vf b)
{
	vf d = V_SUB(a, b);
	return V_FMADD(d, d, acc);
}

static ALWAYS_INLINE vf step_ip(vf acc, vf a, vf b)
{
	return V_FMADD(a, b, acc);
}

/* One pair: four accumulators so that long vectors are not bound by the
 * latency of one multiply-add chain. */
#define PAIR_KERNEL(fn, STEP)                                                 \
	static float NAME(fn)(const float *a, const float *b, size_t dim)     \
	{                                                                     \
		vf s0 = V_ZERO(), s1 = s0, s2 = s0, s3 = s0;                  \
		size_t i = 0;                                                 \
		for (; i + 4 * W <= dim; i += 4 * W) {                        \
			s0 = STEP(s0, V_LOADU(a + i), V_LOADU(b + i));        \
			s1 = STEP(s1, V_LOADU(a + i + W), V_LOADU(b + i + W)); \
			s2 = STEP(s2, V_LOADU(a + i + 2 * W),                 \
				  V_LOADU(b + i + 2 * W));                    \
			s3 = STEP(s3, V_LOADU(a + i + 3 * W),                 \
				  V_LOADU(b + i + 3 * W));                    \
		}                                                             \
		for (; i + W <= dim; i += W)                                  \
			s0 = STEP(s0, V_LOADU(a + i), V_LOADU(b + i));        \
		if (i < dim)                                                  \
			s1 = STEP(s1, load_tail(a + i, dim - i),              \
				  load_tail(b + i, dim - i));                 \
		return hsum(V_ADD(V_ADD(s0, s1), V_ADD(s2, s3)));             \
	}

PAIR_KERNEL(l2sq, step_l2)
PAIR_KERNEL(ip, step_ip)

static float NAME(cosine)(const float *a, const float *b, size_t dim)
{
	vf ab0 = V_ZERO(), ab1 = ab0, aa0 = ab0, aa1 = ab0, bb0 = ab0,
	   bb1 = ab0;
	size_t i = 0;
	for (; i + 2 * W <= dim; i += 2 * W) {
		vf a0 = V_LOADU(a + i), b0 = V_LOADU(b + i);
		vf a1 = V_LOADU(a + i + W), b1 = V_LOADU(b + i + W);
		ab0 = V_FMADD(a0, b0, ab0);
		aa0 = V_FMADD(a0, a0, aa0);
		bb0 = V_FMADD(b0, b0, bb0);
		ab1 = V_FMADD(a1, b1, ab1);
		aa1 = V_FMADD(a1, a1, aa1);
		bb1 = V_FMADD(b1, b1, bb1);
	}
	for (; i < dim; i += W) {
		vf a0, b0;
		if (i + W <= dim) {
			a0 = V_LOADU(a + i);
			b0 = V_LOADU(b + i);
		} else {
			a0 = load_tail(a + i, dim - i);
			b0 = load_tail(b + i, dim - i);
		}
		ab0 = V_FMADD(a0, b0, ab0);
		aa0 = V_FMADD(a0, a0, aa0);
		bb0 = V_FMADD(b0, b0, bb0);
	}
	return cos_finish(hsum(V_ADD(ab0, ab1)), hsum(V_ADD(aa0, aa1)),
			  hsum(V_ADD(bb0, bb1)));
}

/*
 * One query against rows: four rows at a time share each load of the query
 * (and its tail, zero-filled once); the rows left over go one by one.
 */
#define MANY_KERNEL(fn, STEP)                                                 \
	static void NAME(fn##_many)(const float *q, const float *base,        \
				    size_t stride, size_t n, size_t dim,      \
				    float *out)                               \
	{                                                                     \
		size_t full = dim / W * W, rest = dim - full, r = 0;          \
		vf qt = rest ? load_tail(q + full, rest) : V_ZERO();          \
		for (; r + 4 <= n; r += 4) {                                  \
			const float *r0 = base + r * stride, *r1 = r0 + stride, \
				    *r2 = r1 + stride, *r3 = r2 + stride;     \
			vf s0 = V_ZERO(), s1 = s0, s2 = s0, s3 = s0;          \
			for (size_t i = 0; i < full; i += W) {                \
				vf qv = V_LOADU(q + i);                       \
				s0 = STEP(s0, qv, V_LOADU(r0 + i));           \
				s1 = STEP(s1, qv, V_LOADU(r1 + i));           \
				s2 = STEP(s2, qv, V_LOADU(r2 + i));           \
				s3 = STEP(s3, qv, V_LOADU(r3 + i));           \
			}                                                     \
			if (rest) {                                           \
				s0 = STEP(s0, qt, load_tail(r0 + full, rest)); \
				s1 = STEP(s1, qt, load_tail(r1 + full, rest)); \
				s2 = STEP(s2, qt, load_tail(r2 + full, rest)); \
				s3 = STEP(s3, qt, load_tail(r3 + full, rest)); \
			}                                                     \
			out[r] = hsum(s0);                                    \
			out[r + 1] = hsum(s1);                                \
			out[r + 2] = hsum(s2);                                \
			out[r + 3] = hsum(s3);                                \
		}                                                             \
		for (; r < n; r++)                                            \
			out[r] = NAME(fn)(q, base + r * stride, dim);         \
	}

MANY_KERNEL(l2sq, step_l2)
MANY_KERNEL(ip, step_ip)

/* Cosine against rows: |q|^2 once, then per row its dot and its norm. */
static void NAME(cosine_many)(const float *q, const float *base,
			      size_t stride, size_t n, size_t dim, float *out)
{
	size_t full = dim / W * W, rest = dim - full, r = 0;
	float qq = NAME(ip)(q, q, dim);
	vf qt = rest ? load_tail(q + full, rest) : V_ZERO();
	for (; r + 2 <= n; r += 2) {
		const float *r0 = base + r * stride, *r1 = r0 + stride;
		vf d0 = V_ZERO(), d1 = d0, n0 = d0, n1 = d0;
		for (size_t i = 0; i < full + (rest ? W : 0); i += W) {
			vf qv, v0, v1;
			if (i < full) {
				qv = V_LOADU(q + i);
				v0 = V_LOADU(r0 + i);
				v1 = V_LOADU(r1 + i);
			} else {
				qv = qt;
				v0 = load_tail(r0 + i, rest);
				v1 = load_tail(r1 + i, rest);
			}
			d0 = V_FMADD(qv, v0, d0);
			n0 = V_FMADD(v0, v0, n0);
			d1 = V_FMADD(qv, v1, d1);
			n1 = V_FMADD(v1, v1, n1);
		}
		out[r] = cos_finish(hsum(d0), qq, hsum(n0));
		out[r + 1] = cos_finish(hsum(d1), qq, hsum(n1));
	}
	for (; r < n; r++)
		out[r] = NAME(cosine)(q, base + r * stride, dim);
}

/* 8-bit codes: bytes widened to 16 bits by interleaving with zero (the lane
 * order does not matter to a sum), then pairs of 16-bit products summed
 * into 32-bit lanes by madd: a pair is at most 2 * 65025, far inside. */
#define WB (W * 4)                /* bytes per vector */

/* 64 zero bytes, then 64 of 0xff: the WB bytes from 64 - WB + n keep the
 * last n lanes of a vector. */
#define FF8 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff
static const uint8_t keep_last[128] = {
	[64] = FF8, FF8, FF8, FF8, FF8, FF8, FF8, FF8
};

/* The last n (0 < n < WB) of dim bytes at p, in the last n lanes and
 * zeros before. With dim >= WB, the vector that ends at the end of the
 * row, the bytes already counted masked off: no copy through the stack,
 * whose narrow stores a wide load cannot forward from; shorter rows are
 * copied. The lane order does not matter to the sums. */
static ALWAYS_INLINE vi load_tail_u8(const uint8_t *p, size_t dim, size_t n)
{
	if (dim >= WB)
		return VI_AND(VI_LOADU(p + dim - WB),
			      VI_LOADU(keep_last + 64 - WB + n));
	uint8_t t[WB] = {0};
	memcpy(t + WB - n, p + dim - n, n);
	return VI_LOADU(t);
}

static ALWAYS_INLINE int32_t hsum_i32(vi v)
{
	int32_t t[W];
	int64_t s = 0;
	VI_STOREU(t, v);
	for (int i = 0; i < W; i++)
		s += t[i];
	return (int32_t)s;
}

static ALWAYS_INLINE vi step_l2_u8(vi acc, vi a, vi b)
{
	const vi z = VI_ZERO();
	vi lo = VI_SUB16(VI_UNPACKLO8(a, z), VI_UNPACKLO8(b, z));
	vi hi = VI_SUB16(VI_UNPACKHI8(a, z), VI_UNPACKHI8(b, z));
	acc = VI_ADD32(acc, VI_MADD16(lo, lo));
	return VI_ADD32(acc, VI_MADD16(hi, hi));
}

static ALWAYS_INLINE vi step_ip_u8(vi acc, vi a, vi b)
{
	const vi z = VI_ZERO();
	acc = VI_ADD32(acc, VI_MADD16(VI_UNPACKLO8(a, z), VI_UNPACKLO8(b, z)));
	return VI_ADD32(acc, VI_MADD16(VI_UNPACKHI8(a, z), VI_UNPACKHI8(b, z)));
}

#define U8_KERNEL(fn, STEP)                                                   \
	static int32_t NAME(fn)(const uint8_t *a, const uint8_t *b,           \
				size_t dim)                                   \
	{                                                                     \
		vi s0 = VI_ZERO(), s1 = s0;                                   \
		size_t i = 0;                                                 \
		for (; i + 2 * WB <= dim; i += 2 * WB) {                      \
			s0 = STEP(s0, VI_LOADU(a + i), VI_LOADU(b + i));      \
			s1 = STEP(s1, VI_LOADU(a + i + WB),                   \
				  VI_LOADU(b + i + WB));                      \
		}                                                             \
		for (; i + WB <= dim; i += WB)                                \
			s0 = STEP(s0, VI_LOADU(a + i), VI_LOADU(b + i));      \
		if (i < dim)                                                  \
			s1 = STEP(s1, load_tail_u8(a, dim, dim - i),          \
				  load_tail_u8(b, dim, dim - i));             \
		return hsum_i32(VI_ADD32(s0, s1));                            \
	}

U8_KERNEL(l2sq_u8, step_l2_u8)
U8_KERNEL(ip_u8, step_ip_u8)

/* l2sq_u8 that gives up once its partial sum passes bound (checked every
 * 4 vectors): exact when the distance is at most bound, else some partial
 * sum above it. What a search needs to drop a candidate. */
static int32_t NAME(l2sq_u8_max)(const uint8_t *a, const uint8_t *b,
				 size_t dim, int32_t bound)
{
	vi s0 = VI_ZERO(), s1 = s0;
	size_t i = 0;
	for (; i + 4 * WB <= dim; i += 4 * WB) {
		s0 = step_l2_u8(s0, VI_LOADU(a + i), VI_LOADU(b + i));
		s1 = step_l2_u8(s1, VI_LOADU(a + i + WB), VI_LOADU(b + i + WB));
		s0 = step_l2_u8(s0, VI_LOADU(a + i + 2 * WB),
				VI_LOADU(b + i + 2 * WB));
		s1 = step_l2_u8(s1, VI_LOADU(a + i + 3 * WB),
				VI_LOADU(b + i + 3 * WB));
		int32_t part = hsum_i32(VI_ADD32(s0, s1));
		if (part > bound)
			return part;
	}
	for (; i + WB <= dim; i += WB)
		s0 = step_l2_u8(s0, VI_LOADU(a + i), VI_LOADU(b + i));
	if (i < dim)
		s1 = step_l2_u8(s1, load_tail_u8(a, dim, dim - i),
				load_tail_u8(b, dim, dim - i));
	return hsum_i32(VI_ADD32(s0, s1));
}

/*
 * The tile: acc[q][v] = x_q . (centroid vector v), for TQ queries and the
 * nv = nb * NV vectors of nb (TB or 1) blocks starting at blk: vector v is
 * lanes (v % NV) * W .. +W-1 of block v / NV. Inlined with constant nb,
 * the loops unroll and acc lives in registers.
 */
static ALWAYS_INLINE void tile_dots(const float *const xq[TQ],
				    const float *blk, size_t bstride,
				    size_t dim, int nb, vf acc[TQ][TV])
{
	const int nv = nb * NV;
	_Pragma("GCC unroll 8")
	for (int q = 0; q < TQ; q++)
		_Pragma("GCC unroll 4")
		for (int v = 0; v < nv; v++)
			acc[q][v] = V_ZERO();
	for (size_t j = 0; j < dim; j++) {
		vf cv[TV];
		_Pragma("GCC unroll 4")
		for (int v = 0; v < nv; v++)
			cv[v] = V_LOAD(blk + (size_t)(v / NV) * bstride +
				       j * DIST_BLOCK + (size_t)(v % NV) * W);
		_Pragma("GCC unroll 8")
		for (int q = 0; q < TQ; q++) {
			vf xv = V_SET1(xq[q][j]);
			_Pragma("GCC unroll 4")
			for (int v = 0; v < nv; v++)
				acc[q][v] = V_FMADD(xv, cv[v], acc[q][v]);
		}
	}
}

/* Per-lane running minimum of |c|^2 - 2 x.c and the block it came from,
 * one of each per vector of a block row. */
static ALWAYS_INLINE void tile_min(vf acc[TQ][TV], int nb, const float *norms,
				   size_t blk, vf minv[TQ][NV],
				   vi idxv[TQ][NV])
{
	const vf m2 = V_SET1(-2.0f);
	_Pragma("GCC unroll 4")
	for (int v = 0; v < nb * NV; v++) {
		vf nrm = V_LOAD(norms + v * W);
		vi bi = VI_SET1((int32_t)(blk + (size_t)(v / NV)));
		_Pragma("GCC unroll 8")
		for (int q = 0; q < TQ; q++) {
			vf d = V_FMADD(acc[q][v], m2, nrm);
			vmask k = V_LT(d, minv[q][v % NV]);
			minv[q][v % NV] = V_BLEND(minv[q][v % NV], d, k);
			idxv[q][v % NV] = VI_BLEND(idxv[q][v % NV], bi, k);
		}
	}
}

static void qtile_argmin(const dist_packed *c, const float *const xq[TQ],
			 int nvalid, size_t b0, size_t b1, uint32_t *label,
			 float *best)
{
	const size_t dim = c->dim, bstride = dim * DIST_BLOCK;
	vf minv[TQ][NV];
	vi idxv[TQ][NV];
	for (int q = 0; q < TQ; q++) {
		for (int v = 0; v < NV; v++) {
			minv[q][v] = V_SET1(INFINITY);
			idxv[q][v] = VI_ZERO();
		}
	}
	size_t b = b0;
	for (; b + TB <= b1; b += TB) {
		vf acc[TQ][TV];
		tile_dots(xq, c->blocks + b * bstride, bstride, dim, TB, acc);
		tile_min(acc, TB, c->norms + b * DIST_BLOCK, b, minv, idxv);
	}
	for (; b < b1; b++) {
		vf acc[TQ][TV];
		tile_dots(xq, c->blocks + b * bstride, bstride, dim, 1, acc);
		tile_min(acc, 1, c->norms + b * DIST_BLOCK, b, minv, idxv);
	}
	/* Across lanes: the smallest value, on a tie the lowest index. Then
	 * merged with the earlier chunks, whose indices are all lower. */
	_Pragma("GCC unroll 8")
	for (int q = 0; q < TQ; q++) {
		if (q >= nvalid)
			break;
		float bv = INFINITY;
		uint32_t bid = UINT32_MAX;
		for (int v = 0; v < NV; v++) {
			float val[W];
			int32_t id[W];
			V_STOREU(val, minv[q][v]);
			VI_STOREU(id, idxv[q][v]);
			for (int l = 0; l < W; l++) {
				uint32_t cand = (uint32_t)id[l] * DIST_BLOCK +
						(uint32_t)(v * W + l);
				if (val[l] < bv || (val[l] == bv && cand < bid)) {
					bv = val[l];
					bid = cand;
				}
			}
		}
		if (bv < best[q]) {
			best[q] = bv;
			label[q] = bid;
		}
	}
}

static ALWAYS_INLINE void tile_topm(vf acc[TQ][TV], int nb, int nvalid,
				    const float *norms, size_t blk, size_t m,
				    uint32_t *labels, float *vals)
{
	const vf m2 = V_SET1(-2.0f);
	_Pragma("GCC unroll 4")
	for (int v = 0; v < nb * NV; v++) {
		vf nrm = V_LOAD(norms + v * W);
		/* Constant bounds, so that acc[q][v] stays a register. */
		_Pragma("GCC unroll 8")
		for (int q = 0; q < TQ; q++) {
			if (q >= nvalid)
				break;
			float *qv = vals + (size_t)q * m;
			uint32_t *ql = labels + (size_t)q * m;
			vf d = V_FMADD(acc[q][v], m2, nrm);
			unsigned k = V_BITS(V_LT(d, V_SET1(qv[m - 1])));
			if (!k)
				continue;
			float lanes[W];
			V_STOREU(lanes, d);
			while (k) {
				int l = __builtin_ctz(k);
				k &= k - 1;
				if (lanes[l] < qv[m - 1])
					topm_insert(qv, ql, m, lanes[l],
						    (uint32_t)((blk + (size_t)(v / NV)) *
							       DIST_BLOCK +
							       (size_t)((v % NV) * W + l)));
			}
		}
	}
}

static void qtile_topm(const dist_packed *c, const float *const xq[TQ],
		       int nvalid, size_t b0, size_t b1, size_t m,
		       uint32_t *labels, float *vals)
{
	const size_t dim = c->dim, bstride = dim * DIST_BLOCK;
	size_t b = b0;
	for (; b + TB <= b1; b += TB) {
		vf acc[TQ][TV];
		tile_dots(xq, c->blocks + b * bstride, bstride, dim, TB, acc);
		tile_topm(acc, TB, nvalid, c->norms + b * DIST_BLOCK, b, m,
			  labels, vals);
	}
	for (; b < b1; b++) {
		vf acc[TQ][TV];
		tile_dots(xq, c->blocks + b * bstride, bstride, dim, 1, acc);
		tile_topm(acc, 1, nvalid, c->norms + b * DIST_BLOCK, b, m,
			  labels, vals);
	}
}

/* Independent multiply-add chains on registers: twelve cover the latency
 * times the throughput of the FMA units (4 cycles x 2 units on recent
 * cores; without FMA, a multiply then an add) without spilling. */
static uint64_t NAME(fma_peak)(uint64_t iters, float *sink)
{
	vf a = V_SET1(sink[0]), b = V_SET1(sink[1]);
	vf acc[PEAK_ACC];
	/* Every loop over acc unrolled, so that it lives in registers. */
	_Pragma("GCC unroll 16")
	for (int i = 0; i < PEAK_ACC; i++)
		acc[i] = V_SET1(sink[2] + (float)i);
	for (uint64_t it = 0; it < iters; it++) {
		_Pragma("GCC unroll 16")
		for (int i = 0; i < PEAK_ACC; i++)
			acc[i] = V_FMADD(acc[i], a, b);
	}
	vf s = acc[0];
	_Pragma("GCC unroll 16")
	for (int i = 1; i < PEAK_ACC; i++)
		s = V_ADD(s, acc[i]);
	sink[3] = hsum(s);
	return iters * PEAK_ACC * W;
}

#endif /* SIMD targets */

/* ------------------------------------------------------------------------
 * The tiled driver (see the top of the file): m == 0 is argmin into
 * labels[nq], vals[nq]; m > 0 is top-m into labels[nq * m], vals[nq * m].
 * vals hold |c|^2 - 2 x.c until the caller adds |x|^2.
 * ------------------------------------------------------------------------ */
static void run_tiles(const dist_packed *c, const float *x, size_t nq,
		      size_t xs, size_t m, uint32_t *labels, float *vals)
{
	const size_t row_bytes = c->dim * sizeof(float);
	size_t qbatch = QUERY_BYTES / row_bytes / TQ * TQ;
	size_t chunk = CHUNK_BYTES / (row_bytes * DIST_BLOCK) / TB * TB;
	if (qbatch < TQ)
		qbatch = TQ;
	if (chunk < TB)
		chunk = TB;

	for (size_t q0 = 0; q0 < nq; q0 += qbatch) {
		size_t qend = q0 + qbatch < nq ? q0 + qbatch : nq;
		for (size_t b0 = 0; b0 < c->nblocks; b0 += chunk) {
			size_t b1 = b0 + chunk < c->nblocks ? b0 + chunk
							    : c->nblocks;
			for (size_t q = q0; q < qend; q += TQ) {
				int nvalid = (int)(qend - q < TQ ? qend - q : TQ);
				const float *xq[TQ];
				for (int i = 0; i < TQ; i++)
					xq[i] = x + (q + (size_t)(i < nvalid ? i : nvalid - 1)) * xs;
				if (m == 0)
					qtile_argmin(c, xq, nvalid, b0, b1,
						     labels + q, vals + q);
				else
					qtile_topm(c, xq, nvalid, b0, b1, m,
						   labels + q * m, vals + q * m);
			}
		}
	}
}

static void NAME(assign)(const dist_packed *c, const float *x, size_t nq,
			 size_t x_stride, uint32_t *label, float *dist)
{
	for (size_t i = 0; i < nq; i++) {
		label[i] = 0;
		dist[i] = INFINITY;
	}
	run_tiles(c, x, nq, x_stride, 0, label, dist);
	for (size_t i = 0; i < nq; i++) {
		const float *xi = x + i * x_stride;
		float d = NAME(ip)(xi, xi, c->dim) + dist[i];
		dist[i] = d > 0 ? d : 0;
	}
}

static void NAME(topm)(const dist_packed *c, const float *x, size_t nq,
		       size_t x_stride, size_t m, uint32_t *labels,
		       float *dists)
{
	for (size_t i = 0; i < nq * m; i++) {
		labels[i] = UINT32_MAX;
		dists[i] = INFINITY;
	}
	run_tiles(c, x, nq, x_stride, m, labels, dists);
	for (size_t i = 0; i < nq; i++) {
		const float *xi = x + i * x_stride;
		float nx = NAME(ip)(xi, xi, c->dim);
		for (size_t r = 0; r < m; r++) {
			float d = nx + dists[i * m + r];
			dists[i * m + r] = d > 0 ? d : 0;
		}
	}
}

const dist_kernels CAT(dist_kernels, KERN_SUFFIX) = {
	.l2sq = NAME(l2sq),
	.ip = NAME(ip),
	.cosine = NAME(cosine),
	.l2sq_many = NAME(l2sq_many),
	.ip_many = NAME(ip_many),
	.cosine_many = NAME(cosine_many),
	.l2sq_u8 = NAME(l2sq_u8),
	.l2sq_u8_max = NAME(l2sq_u8_max),
	.ip_u8 = NAME(ip_u8),
	.assign = NAME(assign),
	.topm = NAME(topm),
	.fma_peak = NAME(fma_peak),
};
