/*
 * write.c -- put, event and delete.
 *
 * A put is an event whose updates are all SET, so both go through one path:
 *   1. prepare: check every update against its column (type, op, NaN,
 *      dimension) and intern cat strings, without any row lock;
 *   2. under the key's stripe lock (exclusive): find or create the row, then
 *      simulate the updates in order on private copies of the cells they
 *      touch, so that a failing update (integer overflow) aborts the event
 *      before anything is written;
 *   3. commit the final cells and the row time.
 * Readers take the same stripe lock shared, so they see all of an event or
 * none of it.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ann_int.h"
#include "persona_int.h"

/* An update checked against its column, value converted to the column. */
typedef struct prep {
	int col;
	uint8_t op;
	bool null;
	union {
		float f32;
		double f64;
		int32_t i32;
		int64_t i64;
		uint8_t b;
		uint32_t code;
		const float *vec;
		struct {
			const char *ptr;
			uint32_t len;
		} str;
	} v;
} prep;

/* A cell as the event builds it: value plane, time plane, validity. */
typedef struct cell {
	bool valid;
	union {
		float f32;
		double f64;
		int32_t i32;
		int64_t i64;
		uint8_t b;
		uint32_t code;
	} v;
	int64_t t;
	const float *vec;          /* VEC: the new value (input memory) */
	const prep *cat;           /* CAT: the update whose string it holds */
} cell;

typedef struct pending {
	int col;
	cell c;
} pending;

static bool is_aggregate(cohort_type t)
{
	return t >= COHORT_COUNTER;
}

static const char *op_name(int op)
{
	return op == COHORT_OP_SET ? "set" : op == COHORT_OP_ADD ? "add" :
	       op == COHORT_OP_OBSERVE ? "observe" : "?";
}

/* Any numeric value as a double; false if v is not numeric. */
static bool numeric(const cohort_value *v, double *out)
{
	switch (v->type) {
	case COHORT_F32: *out = v->v.f32; return true;
	case COHORT_F64: *out = v->v.f64; return true;
	case COHORT_I32: *out = v->v.i32; return true;
	case COHORT_I64: *out = (double)v->v.i64; return true;
	default: return false;
	}
}

static int type_err(const cohort_table *t, const tcol *c,
		    const cohort_value *v, int op)
{
	return seterr(COHORT_ETYPE, "table '%s' column '%s' (%s): %s of a %s "
		      "value", t->name, c->name, cohort_type_name(c->type),
		      op_name(op), cohort_type_name(v->type));
}

static int nan_err(const cohort_table *t, const tcol *c, const char *what)
{
	return seterr(COHORT_ENAN, "table '%s' column '%s': %s", t->name,
		      c->name, what);
}

/* Finite number for an aggregate or an ADD. */
static int prep_number(const cohort_table *t, const tcol *c,
		       const cohort_value *v, int op, double *out)
{
	if (!numeric(v, out))
		return type_err(t, c, v, op);
	if (!isfinite(*out))
		return nan_err(t, c, "value must be a finite number");
	return 0;
}

static int prep_set(cohort_table *t, const tcol *c, const cohort_value *v,
		    prep *p)
{
	const int op = COHORT_OP_SET;
	if (v->type == COHORT_NULL) {
		p->null = true;
		return 0;
	}
	if (is_aggregate(c->type))
		return prep_number(t, c, v, op, &p->v.f64);
	switch (c->type) {
	case COHORT_F32:
		if (v->type != COHORT_F32)
			return type_err(t, c, v, op);
		if (isnan(v->v.f32))
			return nan_err(t, c, "NaN is not a value (use null)");
		p->v.f32 = v->v.f32;
		return 0;
	case COHORT_F64:
		if (v->type == COHORT_F64)
			p->v.f64 = v->v.f64;
		else if (v->type == COHORT_F32)
			p->v.f64 = v->v.f32;
		else if (v->type == COHORT_I32)
			p->v.f64 = v->v.i32;
		else
			return type_err(t, c, v, op);
		if (isnan(p->v.f64))
			return nan_err(t, c, "NaN is not a value (use null)");
		return 0;
	case COHORT_I32:
		if (v->type != COHORT_I32)
			return type_err(t, c, v, op);
		p->v.i32 = v->v.i32;
		return 0;
	case COHORT_I64:
		if (v->type == COHORT_I64)
			p->v.i64 = v->v.i64;
		else if (v->type == COHORT_I32)
			p->v.i64 = v->v.i32;
		else
			return type_err(t, c, v, op);
		return 0;
	case COHORT_BOOL:
		if (v->type != COHORT_BOOL)
			return type_err(t, c, v, op);
		p->v.b = v->v.b ? 1 : 0;
		return 0;
	case COHORT_CAT: {
		if (v->type != COHORT_CAT)
			return type_err(t, c, v, op);
		if (v->v.str.len > COHORT_MAX_CAT)
			return seterr(COHORT_ERANGE, "table '%s' column '%s': "
				      "string of %u bytes (max %d)", t->name,
				      c->name, v->v.str.len, COHORT_MAX_CAT);
		if (!v->v.str.ptr && v->v.str.len)
			return seterr(COHORT_EINVAL, "table '%s' column '%s': "
				      "NULL string", t->name, c->name);
		/* interned only once the whole write is known to succeed */
		p->v.str.ptr = v->v.str.ptr ? v->v.str.ptr : "";
		p->v.str.len = v->v.str.len;
		return 0;
	}
	case COHORT_VEC:
		if (v->type != COHORT_VEC)
			return type_err(t, c, v, op);
		if (v->v.vec.dim != c->dim)
			return seterr(COHORT_EDIM, "table '%s' column '%s': "
				      "vector of dimension %u, column has %u",
				      t->name, c->name, v->v.vec.dim, c->dim);
		if (!v->v.vec.ptr)
			return seterr(COHORT_EINVAL, "table '%s' column '%s': "
				      "NULL vector", t->name, c->name);
		for (uint32_t i = 0; i < c->dim; i++)
			if (!isfinite(v->v.vec.ptr[i]))
				return seterr(COHORT_ENAN, "table '%s' column "
					      "'%s': element %u of the vector "
					      "is not finite", t->name, c->name,
					      i);
		p->v.vec = v->v.vec.ptr;
		return 0;
	default:
		return type_err(t, c, v, op);
	}
}

static int prep_update(cohort_table *t, const cohort_update *u, prep *p)
{
	int rc = column_check(t, u->column);
	if (rc)
		return rc;
	const tcol *c = t->cols[u->column];
	p->col = u->column;
	p->op = (uint8_t)u->op;
	p->null = false;
	switch (u->op) {
	case COHORT_OP_SET:
		return prep_set(t, c, &u->value, p);
	case COHORT_OP_ADD:
		switch (c->type) {
		case COHORT_I32: case COHORT_I64:
			if (u->value.type == COHORT_I32)
				p->v.i64 = u->value.v.i32;
			else if (u->value.type == COHORT_I64)
				p->v.i64 = u->value.v.i64;
			else
				return type_err(t, c, &u->value, u->op);
			return 0;
		case COHORT_F32: case COHORT_F64: case COHORT_COUNTER:
		case COHORT_DECAY:
			return prep_number(t, c, &u->value, u->op, &p->v.f64);
		default:
			break;
		}
		break;
	case COHORT_OP_OBSERVE:
		if (is_aggregate(c->type))
			return prep_number(t, c, &u->value, u->op, &p->v.f64);
		break;
	default:
		return seterr(COHORT_EINVAL, "table '%s' column '%s': unknown "
			      "operation %d", t->name, c->name, (int)u->op);
	}
	return seterr(COHORT_EOP, "table '%s' column '%s': %s is not valid on "
		      "a %s column", t->name, c->name, op_name(u->op),
		      cohort_type_name(c->type));
}

/* ------------------------------------------------------------------------
 * Cells
 * ------------------------------------------------------------------------ */
static void cell_load(const tcol *c, uint32_t slot, cell *out)
{
	colchunk *ch = col_chunk(c, slot);
	uint32_t o = slot_off(slot);
	memset(out, 0, sizeof(*out));
	out->valid = bit_get(ch->valid, o);
	if (!out->valid || c->type == COHORT_VEC)
		return;
	memcpy(&out->v, (char *)ch->plane0 + (size_t)o * c->width, c->width);
	if (ch->plane1)
		out->t = ch->plane1[o];
}

static void cell_store(const tcol *c, uint32_t slot, const cell *in)
{
	colchunk *ch = col_chunk(c, slot);
	uint32_t o = slot_off(slot);
	char *dst = (char *)ch->plane0 + (size_t)o * c->width;
	if (!in->valid) {
		bit_clear(ch->valid, o);
		memset(dst, 0, c->width);
		if (ch->plane1)
			ch->plane1[o] = 0;
		return;
	}
	if (c->type == COHORT_VEC) {
		if (in->vec)
			memcpy(dst, in->vec, c->dim * sizeof(float));
	} else {
		memcpy(dst, &in->v, c->width);
	}
	if (ch->plane1)
		ch->plane1[o] = in->t;
	bit_set(ch->valid, o);
}

static inline double decay_factor(double dt_ms, double inv_half_life)
{
	return exp2(-dt_ms * inv_half_life);
}

/* Apply one prepared update to a cell at event time `time`. */
static int cell_apply(const cohort_table *t, const tcol *c, cell *x,
		      const prep *p, int64_t time)
{
	if (p->op == COHORT_OP_SET) {
		x->valid = !p->null;
		x->t = time;
		if (p->null)
			return 0;
		if (c->type == COHORT_VEC)
			x->vec = p->v.vec;
		else if (c->type == COHORT_CAT)
			x->cat = p;
		else if (is_aggregate(c->type))
			x->v.f64 = p->v.f64;
		else
			memcpy(&x->v, &p->v, c->width);
		return 0;
	}
	double r;
	switch (c->type) {
	case COHORT_I32: {
		int64_t s = (x->valid ? x->v.i32 : 0) + p->v.i64;
		if (p->v.i64 > INT32_MAX || p->v.i64 < INT32_MIN ||
		    s > INT32_MAX || s < INT32_MIN)
			goto overflow;
		x->v.i32 = (int32_t)s;
		break;
	}
	case COHORT_I64: {
		int64_t s;
		if (__builtin_add_overflow(x->valid ? x->v.i64 : 0, p->v.i64, &s))
			goto overflow;
		x->v.i64 = s;
		break;
	}
	/* Plain float columns hold infinities, so their sums may reach one;
	 * only NaN (inf - inf) is refused. Aggregates stay finite. */
	case COHORT_F32:
		r = (x->valid ? (double)x->v.f32 : 0.0) + p->v.f64;
		if (isnan(r))
			goto overflow;
		x->v.f32 = (float)r;
		break;
	case COHORT_F64:
		r = (x->valid ? x->v.f64 : 0.0) + p->v.f64;
		if (isnan(r))
			goto overflow;
		x->v.f64 = r;
		break;
	case COHORT_COUNTER:
		r = (x->valid ? x->v.f64 : 0.0) + p->v.f64;
		if (!isfinite(r))
			goto overflow;
		x->v.f64 = r;
		break;
	case COHORT_DECAY:
		if (!x->valid) {
			r = p->v.f64;
			x->t = time;
		} else if (time >= x->t) {
			/* decay the sum forward to the new event */
			r = x->v.f64 * decay_factor((double)time - (double)x->t,
						    c->inv_half_life) + p->v.f64;
			x->t = time;
		} else {
			/* a late event: decay it to the stored time */
			r = x->v.f64 + p->v.f64 *
				decay_factor((double)x->t - (double)time,
					     c->inv_half_life);
		}
		if (!isfinite(r))
			goto overflow;
		x->v.f64 = r;
		break;
	case COHORT_MIN:
		if (!x->valid || p->v.f64 < x->v.f64)
			x->v.f64 = p->v.f64;
		break;
	case COHORT_MAX:
		if (!x->valid || p->v.f64 > x->v.f64)
			x->v.f64 = p->v.f64;
		break;
	case COHORT_LAST:
		if (!x->valid || time >= x->t) {
			x->v.f64 = p->v.f64;
			x->t = time;
		}
		break;
	default:
		return seterr(COHORT_EOP, "column '%s': bad operation", c->name);
	}
	x->valid = true;
	return 0;
overflow:
	return seterr(COHORT_ERANGE, "table '%s' column '%s': %s overflows the "
		      "%s column", t->name, c->name, op_name(p->op),
		      cohort_type_name(c->type));
}

/* ------------------------------------------------------------------------
 * The one write path
 * ------------------------------------------------------------------------ */
#define STACK_UPDATES 64

static int row_apply(cohort_table *t, const void *key, size_t key_len,
		     cohort_time time, const prep *ps, size_t n, bool unique,
		     const recbuf *rec, uint64_t *lsn)
{
	pending stack_pend[STACK_UPDATES];
	pending *pend = n <= STACK_UPDATES ? stack_pend :
		cmalloc(n * sizeof(pending));
	if (!pend)
		return seterr(COHORT_ENOMEM, "out of memory");
	uint64_t h = key_hash(key, key_len);
	stripe *s = stripe_of(t, h);
	int rc = 0;

	pthread_rwlock_wrlock(&s->lock);
	int64_t found = keymap_find(t, s, h, key, (uint32_t)key_len);
	uint32_t slot = 0;
	bool fresh = found < 0, reset = false;
	int64_t row_time = INT64_MIN;
	if (!fresh) {
		slot = (uint32_t)found;
		row_time = tab_chunk(t, slot)->time[slot_off(slot)];
		/* An expired row restarts empty: no expired value comes back. */
		reset = row_expired(t, row_time, time);
	}

	/* Simulate the updates on copies of their cells. */
	size_t npend = 0;
	for (size_t i = 0; i < n && rc == 0; i++) {
		const tcol *c = t->cols[ps[i].col];
		/* a put names each column once: no need to look */
		size_t k = unique ? npend : 0;
		while (k < npend && pend[k].col != ps[i].col)
			k++;
		if (k == npend) {
			pend[k].col = ps[i].col;
			/* a SET defines the whole cell: no need to read it */
			if (fresh || reset || ps[i].op == COHORT_OP_SET)
				memset(&pend[k].c, 0, sizeof(cell));
			else
				cell_load(c, slot, &pend[k].c);
			npend++;
		}
		rc = cell_apply(t, c, &pend[k].c, &ps[i], time);
	}

	/* Strings go into the dictionaries only now, so that a write that
	 * fails leaves no trace there either. */
	for (size_t k = 0; k < npend && rc == 0; k++) {
		const prep *cp = pend[k].c.cat;
		if (!cp || !pend[k].c.valid)
			continue;
		const tcol *c = t->cols[pend[k].col];
		rc = dict_intern(c->dict, cp->v.str.ptr, cp->v.str.len,
				 &pend[k].c.v.code);
		if (rc)
			seterr(rc, "table '%s' column '%s': %s", t->name,
			       c->name, cohort_strerror(rc));
	}
	if (rc == 0 && fresh) {
		rc = table_slot_alloc(t, key, (uint32_t)key_len, h, &slot);
		if (rc == 0) {
			rc = keymap_insert(t, s, h, slot);
			if (rc)
				table_slot_free(t, slot);
		}
	}
	/* Persona models whose inputs this write changes: their features
	 * before it (the write's last chance to fail for lack of memory). */
	pw_ctx pw;
	pw.n = 0;
	pw.heap = NULL;
	aw_ctx aw;
	aw.n = 0;
	/* the written columns, for the persona models and indexes that
	 * derive from them (built once, only when there are some) */
	bool derived = persona_active(t) || ann_active(t);
	uint64_t cols[COHORT_MAX_COLUMNS / 64];
	if (derived) {
		memset(cols, 0, sizeof(cols));
		for (size_t k = 0; k < npend; k++)
			cols[pend[k].col >> 6] |= UINT64_C(1) << (pend[k].col & 63);
	}
	if (rc == 0 && persona_active(t)) {
		rc = pw_begin(t, &pw, slot, h, fresh, reset, cols);
		if (rc && fresh) {
			keymap_remove(s, h, slot);
			table_slot_free(t, slot);
		}
	}
	/* Logged under the stripe lock, so the LSN order of a key's writes is
	 * their order here, and only once nothing else can fail. */
	if (rc == 0 && rec) {
		rc = persist_log(t->db, unique ? REC_PUT : REC_EVENT, rec, lsn);
		if (rc && fresh) {
			keymap_remove(s, h, slot);
			table_slot_free(t, slot);
		}
	}
	if (rc == 0) {
		if (reset)
			table_row_clear(t, slot);
		for (size_t k = 0; k < npend; k++)
			cell_store(t->cols[pend[k].col], slot, &pend[k].c);
		int64_t *rt = &tab_chunk(t, slot)->time[slot_off(slot)];
		if (fresh || reset || time > *rt)
			__atomic_store_n(rt, time, __ATOMIC_RELAXED);
		if (pw.n)
			pw_commit(t, &pw, time, key, (uint32_t)key_len);
		if (ann_active(t))
			ann_row_written(t, &aw, slot, h, cols, reset, false);
	}
	pthread_rwlock_unlock(&s->lock);
	if (pw.n || pw.heap)
		pw_end(t, &pw);
	if (aw.n)
		ann_row_end(t, &aw);
	if (pend != stack_pend)
		cfree(pend);
	return rc;
}

static int write_check(cohort_table *t, const void *key, size_t key_len,
		       size_t n, const void *arr, const char *what)
{
	if (!t)
		return seterr(COHORT_EINVAL, "%s: NULL table", what);
	if (!key && key_len)
		return seterr(COHORT_EINVAL, "%s: NULL key", what);
	int rc = key_check(t, key_len);
	if (rc)
		return rc;
	if (n && !arr)
		return seterr(COHORT_EINVAL, "%s: NULL list of %zu updates",
			      what, n);
	if (n > MAX_UPDATES)
		return seterr(COHORT_ELIMIT, "%s: %zu updates (max %d)", what, n,
			      MAX_UPDATES);
	return 0;
}

/*
 * Prepare and apply a write of n updates, taken either from a put's fields
 * (all SET, each column once) or from an event's updates.
 */
static int write_updates(cohort_table *t, const void *key, size_t key_len,
			 cohort_time time, bool is_put,
			 const cohort_field *fields,
			 const cohort_update *updates, size_t n)
{
	const char *what = is_put ? "put" : "event";
	int rc = write_check(t, key, key_len, n,
			     is_put ? (const void *)fields : updates, what);
	if (rc)
		return rc;
	time = time_resolve(time);
	prep stack_ps[STACK_UPDATES];
	prep *ps = n <= STACK_UPDATES ? stack_ps : cmalloc(n * sizeof(prep));
	if (!ps)
		return seterr(COHORT_ENOMEM, "%s: out of memory", what);
	uint64_t seen[COHORT_MAX_COLUMNS / 64] = { 0 };
	for (size_t i = 0; i < n && rc == 0; i++) {
		if (!is_put) {
			rc = prep_update(t, &updates[i], &ps[i]);
			continue;
		}
		cohort_update u = { fields[i].column, COHORT_OP_SET,
				    fields[i].value };
		rc = prep_update(t, &u, &ps[i]);
		if (rc == 0) {
			uint64_t bit = UINT64_C(1) << (u.column & 63);
			if (seen[u.column >> 6] & bit)
				rc = seterr(COHORT_EINVAL, "put: column '%s' "
					    "appears twice",
					    t->cols[u.column]->name);
			seen[u.column >> 6] |= bit;
		}
	}
	/* The record carries the call as made; replay makes it again. */
	recbuf rec;
	rec_init(&rec);
	bool logging = t->db->wal != NULL;
	if (rc == 0 && logging) {
		rc = rec_row_begin(&rec, t->id, time, key, key_len, n);
		for (size_t i = 0; i < n && rc == 0; i++) {
			int col = is_put ? fields[i].column : updates[i].column;
			rc = rec_update(&rec, col,
					is_put ? COHORT_OP_SET : updates[i].op,
					is_put ? &fields[i].value :
						 &updates[i].value,
					t->cols[col]->dim);
		}
	}
	uint64_t lsn = 0;
	if (rc == 0)
		rc = row_apply(t, key, key_len, time, ps, n, is_put,
			       logging ? &rec : NULL, &lsn);
	rec_free(&rec);
	if (ps != stack_ps)
		cfree(ps);
	return rc ? rc : persist_sync(t->db, lsn);
}

int cohort_put(cohort_table *t, const void *key, size_t key_len,
	       cohort_time time, const cohort_field *fields, size_t nfields)
{
	return write_updates(t, key, key_len, time, true, fields, NULL,
			     nfields);
}

int cohort_event(cohort_table *t, const void *key, size_t key_len,
		 cohort_time time, const cohort_update *updates,
		 size_t nupdates)
{
	return write_updates(t, key, key_len, time, false, NULL, updates,
			     nupdates);
}

int cohort_delete(cohort_table *t, const void *key, size_t key_len)
{
	int rc = write_check(t, key, key_len, 0, NULL, "delete");
	if (rc)
		return rc;
	recbuf rec;
	rec_init(&rec);
	if (t->db->wal && rec_delete(&rec, t->id, key, key_len)) {
		rec_free(&rec);
		return seterr(COHORT_ENOMEM, "delete: out of memory");
	}
	uint64_t h = key_hash(key, key_len), lsn = 0;
	stripe *s = stripe_of(t, h);
	pthread_rwlock_wrlock(&s->lock);
	int64_t slot = keymap_find(t, s, h, key, (uint32_t)key_len);
	if (slot >= 0 && t->db->wal)
		rc = persist_log(t->db, REC_DELETE, &rec, &lsn);
	aw_ctx aw;
	aw.n = 0;
	if (slot >= 0 && rc == 0) {
		if (persona_active(t))
			persona_row_deleted(t, (uint32_t)slot, key,
					    (uint32_t)key_len);
		if (ann_active(t))
			ann_row_written(t, &aw, (uint32_t)slot, h, NULL, false,
					true);
		keymap_remove(s, h, (uint32_t)slot);
		table_slot_free(t, (uint32_t)slot);
	}
	pthread_rwlock_unlock(&s->lock);
	rec_free(&rec);
	if (aw.n)
		ann_row_end(t, &aw);
	if (rc)
		return rc;
	if (slot < 0)
		return seterr(COHORT_ENOTFOUND, "table '%s': no such key to "
			      "delete", t->name);
	return persist_sync(t->db, lsn);
}
