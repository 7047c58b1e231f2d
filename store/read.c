/*
 * read.c -- get and get_many.
 *
 * Each key is read under its stripe lock taken shared: concurrent readers
 * of one stripe proceed together, and a row is never seen half written.
 * Aggregates are returned as their value at the read time `at` (decay
 * columns decayed to it). A batch owns its output arrays and grows them to
 * the largest call it has seen.
 */
#include <math.h>
#include <string.h>

#include "store_int.h"

struct cohort_batch_int {
	size_t cap;                   /* keys the arrays hold */
	const cohort_table *t;
};

/* Value of an aggregate cell read at `at`. */
static inline double agg_value(const tcol *c, const colchunk *ch,
			       uint32_t o, int64_t at)
{
	double v = ((const double *)ch->plane0)[o];
	if (c->type == COHORT_DECAY)
		v *= exp2(-((double)at - (double)ch->plane1[o]) *
			  c->inv_half_life);
	return v;
}

static int cols_check(const cohort_table *t, const int *cols, size_t ncols)
{
	if (ncols && !cols)
		return seterr(COHORT_EINVAL, "NULL column list");
	for (size_t i = 0; i < ncols; i++) {
		int rc = column_check(t, cols[i]);
		if (rc)
			return rc;
	}
	return 0;
}

/* Look a key up under its stripe lock, which the caller holds: the row's
 * status, and when PRESENT its slot and event time (else *rt = 0). */
static int row_find(const cohort_table *t, const stripe *s, uint64_t h,
		    const void *key, size_t key_len, int64_t at,
		    uint32_t *slot, int64_t *rt)
{
	*rt = 0;
	int64_t found = keymap_find(t, s, h, key, (uint32_t)key_len);
	if (found < 0)
		return COHORT_ROW_MISSING;
	*slot = (uint32_t)found;
	int64_t time = tab_chunk(t, *slot)->time[slot_off(*slot)];
	if (row_expired(t, time, at))
		return COHORT_ROW_EXPIRED;
	*rt = time;
	return COHORT_ROW_PRESENT;
}

/* Start the cache misses of a row's cell, so that a row's columns overlap
 * theirs instead of waiting one after another. */
static inline void cell_prefetch(const tcol *c, uint32_t slot)
{
	const colchunk *ch = col_chunk(c, slot);
	uint32_t o = slot_off(slot);
	__builtin_prefetch((const char *)ch->plane0 + (size_t)o * c->width);
	__builtin_prefetch(&ch->valid[o >> 6]);
}

int cohort_get(const cohort_table *t, const void *key, size_t key_len,
	       const int *cols, size_t ncols, cohort_time at,
	       cohort_value *out, float *vec_buf, size_t vec_buf_len,
	       cohort_time *row_time)
{
	if (!t || (!key && key_len) || (ncols && !out))
		return seterr(COHORT_EINVAL, "get: NULL argument");
	int rc = key_check(t, key_len);
	if (rc)
		return rc;
	rc = cols_check(t, cols, ncols);
	if (rc)
		return rc;
	size_t need = 0;
	for (size_t i = 0; i < ncols; i++)
		if (t->cols[cols[i]]->type == COHORT_VEC)
			need += t->cols[cols[i]]->dim;
	if (need > vec_buf_len || (need && !vec_buf))
		return seterr(COHORT_ERANGE, "get: the vectors asked for need "
			      "%zu floats of vec_buf, %zu given", need,
			      vec_buf ? vec_buf_len : 0);
	at = time_resolve(at);

	uint64_t h = key_hash(key, key_len);
	stripe *s = stripe_of((cohort_table *)t, h);
	pthread_rwlock_rdlock(&s->lock);
	uint32_t slot = 0;
	int64_t rt;
	int status = row_find(t, s, h, key, key_len, at, &slot, &rt);
	if (status == COHORT_ROW_PRESENT)
		for (size_t i = 0; i < ncols; i++)
			cell_prefetch(t->cols[cols[i]], slot);
	size_t vpos = 0;
	for (size_t i = 0; i < ncols; i++) {
		cohort_value *v = &out[i];
		memset(v, 0, sizeof(*v));
		v->type = COHORT_NULL;
		if (status != COHORT_ROW_PRESENT)
			continue;
		uint32_t o = slot_off(slot);
		const tcol *c = t->cols[cols[i]];
		const colchunk *ch = col_chunk(c, slot);
		if (!bit_get(ch->valid, o))
			continue;
		const char *p = (const char *)ch->plane0 + (size_t)o * c->width;
		switch (c->type) {
		case COHORT_F32:
			v->type = COHORT_F32;
			memcpy(&v->v.f32, p, 4);
			break;
		case COHORT_F64:
			v->type = COHORT_F64;
			memcpy(&v->v.f64, p, 8);
			break;
		case COHORT_I32:
			v->type = COHORT_I32;
			memcpy(&v->v.i32, p, 4);
			break;
		case COHORT_I64:
			v->type = COHORT_I64;
			memcpy(&v->v.i64, p, 8);
			break;
		case COHORT_BOOL:
			v->type = COHORT_BOOL;
			v->v.b = *p != 0;
			break;
		case COHORT_CAT: {
			uint32_t code;
			memcpy(&code, p, 4);
			v->type = COHORT_CAT;
			v->v.str.ptr = dict_get(c->dict, code, &v->v.str.len);
			break;
		}
		case COHORT_VEC:
			v->type = COHORT_VEC;
			memcpy(vec_buf + vpos, p, c->dim * sizeof(float));
			v->v.vec.ptr = vec_buf + vpos;
			v->v.vec.dim = c->dim;
			vpos += c->dim;
			break;
		default:
			v->type = COHORT_F64;
			v->v.f64 = agg_value(c, ch, o, at);
			break;
		}
	}
	pthread_rwlock_unlock(&s->lock);
	if (row_time)
		*row_time = rt;
	return status;
}

/* ------------------------------------------------------------------------
 * Batches
 * ------------------------------------------------------------------------ */
static cohort_type read_type(cohort_type t)
{
	return t >= COHORT_COUNTER ? COHORT_F64 : t;
}

int cohort_batch_new(const cohort_table *t, const int *cols, size_t ncols,
		     cohort_batch **out)
{
	if (!t || !out)
		return seterr(COHORT_EINVAL, "cohort_batch_new: NULL argument");
	*out = NULL;
	int rc = cols_check(t, cols, ncols);
	if (rc)
		return rc;
	cohort_batch *b = ccalloc(1, sizeof(*b));
	struct cohort_batch_int *priv = ccalloc(1, sizeof(*priv));
	cohort_block *blocks = ccalloc(ncols ? ncols : 1, sizeof(cohort_block));
	if (!b || !priv || !blocks) {
		cfree(b);
		cfree(priv);
		cfree(blocks);
		return seterr(COHORT_ENOMEM, "cohort_batch_new: out of memory");
	}
	priv->t = t;
	b->priv = priv;
	b->cols = blocks;
	b->ncols = ncols;
	for (size_t i = 0; i < ncols; i++) {
		const tcol *c = t->cols[cols[i]];
		blocks[i].column = cols[i];
		blocks[i].type = read_type(c->type);
		blocks[i].dim = c->type == COHORT_VEC ? c->dim : 1;
		blocks[i].width = c->type == COHORT_VEC ?
			c->dim * sizeof(float) :
			c->type >= COHORT_COUNTER ? 8 : c->width;
	}
	*out = b;
	return 0;
}

void cohort_batch_free(cohort_batch *b)
{
	if (!b)
		return;
	for (size_t i = 0; i < b->ncols; i++) {
		cfree(b->cols[i].values);
		cfree(b->cols[i].valid);
	}
	cfree(b->cols);
	cfree(b->status);
	cfree(b->time);
	cfree(b->priv);
	cfree(b);
}

/* Room for n keys; all or nothing. */
static int batch_reserve(cohort_batch *b, size_t n)
{
	if (n <= b->priv->cap)
		return 0;
	size_t cap = b->priv->cap ? b->priv->cap : 16;
	while (cap < n)
		cap *= 2;
	size_t nptr = 2 + 2 * b->ncols;
	void **fresh = ccalloc(nptr, sizeof(void *));
	if (!fresh)
		return COHORT_ENOMEM;
	bool ok = true;
	fresh[0] = caligned(64, cap);
	fresh[1] = caligned(64, cap * sizeof(cohort_time));
	for (size_t i = 0; i < b->ncols; i++) {
		fresh[2 + 2 * i] = caligned(64, cap * b->cols[i].width);
		fresh[3 + 2 * i] = caligned(64, cap);
	}
	for (size_t i = 0; i < nptr; i++)
		ok = ok && fresh[i];
	if (!ok) {
		for (size_t i = 0; i < nptr; i++)
			cfree(fresh[i]);
		cfree(fresh);
		return COHORT_ENOMEM;
	}
	cfree(b->status);
	cfree(b->time);
	b->status = fresh[0];
	b->time = fresh[1];
	for (size_t i = 0; i < b->ncols; i++) {
		cfree(b->cols[i].values);
		cfree(b->cols[i].valid);
		b->cols[i].values = fresh[2 + 2 * i];
		b->cols[i].valid = fresh[3 + 2 * i];
	}
	cfree(fresh);
	b->priv->cap = cap;
	return 0;
}

/* Copy slot's value of column c into block position i. */
static inline void block_put(const tcol *c, const colchunk *ch, uint32_t o,
			     int64_t at, cohort_block *blk, size_t i)
{
	char *dst = (char *)blk->values + i * blk->width;
	if (!bit_get(ch->valid, o)) {
		blk->valid[i] = 0;
		memset(dst, 0, blk->width);
		return;
	}
	blk->valid[i] = 1;
	const char *src = (const char *)ch->plane0 + (size_t)o * c->width;
	switch (c->type) {
	case COHORT_F32: case COHORT_I32: case COHORT_CAT:
		memcpy(dst, src, 4);
		break;
	case COHORT_F64: case COHORT_I64:
		memcpy(dst, src, 8);
		break;
	case COHORT_BOOL:
		*dst = *src;
		break;
	case COHORT_VEC:
		memcpy(dst, src, blk->width);
		break;
	default: {
		double v = agg_value(c, ch, o, at);
		memcpy(dst, &v, 8);
		break;
	}
	}
}

int cohort_get_many(const cohort_table *t, const cohort_key *keys,
		    size_t nkeys, cohort_time at, cohort_batch *b)
{
	if (!t || !b || (nkeys && !keys))
		return seterr(COHORT_EINVAL, "get_many: NULL argument");
	if (b->priv->t != t)
		return seterr(COHORT_EINVAL, "get_many: the batch was made for "
			      "table '%s', not '%s'", b->priv->t->name, t->name);
	for (size_t i = 0; i < nkeys; i++) {
		if (keys[i].len == 0 || keys[i].len > COHORT_MAX_KEY ||
		    !keys[i].ptr)
			return seterr(COHORT_EKEY, "get_many: key %zu of %zu has "
				      "%zu bytes (must be 1 to %d)", i, nkeys,
				      keys[i].len, COHORT_MAX_KEY);
	}
	if (batch_reserve(b, nkeys))
		return seterr(COHORT_ENOMEM, "get_many: out of memory for %zu "
			      "keys", nkeys);
	at = time_resolve(at);
	b->nkeys = nkeys;
	const tcol *cols[COHORT_MAX_COLUMNS];
	for (size_t j = 0; j < b->ncols; j++)
		cols[j] = t->cols[b->cols[j].column];

	for (size_t i = 0; i < nkeys; i++) {
		uint64_t h = key_hash(keys[i].ptr, keys[i].len);
		stripe *s = stripe_of((cohort_table *)t, h);
		pthread_rwlock_rdlock(&s->lock);
		uint32_t slot = 0;
		int64_t rt;
		int status = row_find(t, s, h, keys[i].ptr, keys[i].len, at,
				      &slot, &rt);
		b->status[i] = (uint8_t)status;
		b->time[i] = rt;
		if (status == COHORT_ROW_PRESENT) {
			for (size_t j = 0; j < b->ncols; j++)
				cell_prefetch(cols[j], slot);
			for (size_t j = 0; j < b->ncols; j++)
				block_put(cols[j], col_chunk(cols[j], slot),
					  slot_off(slot), at, &b->cols[j], i);
		} else {
			for (size_t j = 0; j < b->ncols; j++) {
				b->cols[j].valid[i] = 0;
				memset((char *)b->cols[j].values +
				       i * b->cols[j].width, 0,
				       b->cols[j].width);
			}
		}
		pthread_rwlock_unlock(&s->lock);
	}
	return 0;
}
