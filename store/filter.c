/*
 * filter.c -- predicates over columns, combined with and / or / not,
 * evaluated over the whole table into a bitmap of slots.
 *
 * Evaluation goes chunk by chunk (CHUNK_ROWS rows): every node writes two
 * bitmaps of one chunk, T (rows where it is true) and F (rows where it is
 * false); rows in neither are unknown (a comparison with null). That is SQL's
 * three-valued logic: AND: T = Ta & Tb, F = Fa | Fb; OR: T = Ta | Tb,
 * F = Fa & Fb; NOT swaps T and F. F is only computed under a NOT. Leaves run
 * the SIMD comparison kernels of index/cmp.h over the column's value plane
 * and mask with its validity bitmap. The root's T, masked with the live rows
 * (present and not expired at the read time), is the answer. A chunk's
 * bitmaps stay in L1 while its columns stream through once.
 *
 * Numeric constants are turned into the column's own type when the filter
 * is built, exactly: for an f32 column, x < 0.1 (a double) is x < the
 * smallest float >= 0.1, and a constant no value of the column can equal
 * becomes a fixed leaf (true or false on every non-null row). Cat strings
 * are looked up in the dictionary when the filter runs, so rows written
 * after the filter was built are judged by their value.
 *
 * Locks: evaluation takes every stripe of the table shared; see
 * store_int.h.
 */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cmp.h"
#include "persona_int.h"

enum node_kind { N_CMP, N_FIXED, N_IN, N_ISNULL, N_NOTNULL, N_AND, N_OR, N_NOT,
		 N_PERSONA };
enum cmp_kind { K_F32, K_F64, K_I32, K_I64, K_U8, K_DECAY, K_CAT };

typedef struct fnode {
	uint8_t kind;
	uint8_t cmp;              /* CMP_* */
	uint8_t ckind;            /* K_* */
	bool fixed_true;          /* N_FIXED: true (else false) on non-null rows */
	int col;
	int a, b;                 /* operands */
	union {
		float f32;
		double f64;
		int32_t i32;
		int64_t i64;
		uint8_t u8;
	} c;
	char **strs;              /* cat: the strings (EQ/NE: one; IN: n) */
	uint32_t *lens;
	uint32_t nstrs;
} fnode;

struct cohort_filter {
	const cohort_table *t;
	fnode *nodes;
	uint32_t n, cap;
};

struct cohort_bitmap {
	uint64_t nbits;
	uint64_t count;
	uint64_t *words;
};

/* ------------------------------------------------------------------------
 * Building
 * ------------------------------------------------------------------------ */
int cohort_filter_new(const cohort_table *t, cohort_filter **out)
{
	if (!t || !out)
		return seterr(COHORT_EINVAL, "cohort_filter_new: NULL argument");
	cohort_filter *f = ccalloc(1, sizeof(*f));
	if (!f)
		return seterr(COHORT_ENOMEM, "cohort_filter_new: out of memory");
	f->t = t;
	*out = f;
	return 0;
}

void cohort_filter_free(cohort_filter *f)
{
	if (!f)
		return;
	for (uint32_t i = 0; i < f->n; i++) {
		for (uint32_t j = 0; j < f->nodes[i].nstrs; j++)
			cfree(f->nodes[i].strs[j]);
		cfree(f->nodes[i].strs);
		cfree(f->nodes[i].lens);
	}
	cfree(f->nodes);
	cfree(f);
}

/* A new node (zeroed); returns its id or an error. */
static int node_new(cohort_filter *f, fnode **out)
{
	if (f->n == MAX_FILTER_NODES)
		return seterr(COHORT_ELIMIT, "filter has the maximum of %d "
			      "nodes", MAX_FILTER_NODES);
	if (f->n == f->cap) {
		uint32_t cap = f->cap ? f->cap * 2 : 8;
		fnode *nodes = crealloc(f->nodes, cap * sizeof(fnode));
		if (!nodes)
			return seterr(COHORT_ENOMEM, "filter: out of memory");
		f->nodes = nodes;
		f->cap = cap;
	}
	*out = &f->nodes[f->n];
	memset(*out, 0, sizeof(fnode));
	return (int)f->n++;
}

static int leaf_check(const cohort_filter *f, int column)
{
	if (!f)
		return seterr(COHORT_EINVAL, "filter is NULL");
	return column_check(f->t, column);
}

static int set_fixed(fnode *n, bool value)
{
	n->kind = N_FIXED;
	n->fixed_true = value;
	return 0;
}

/*
 * x <cmp> C for every x of a type T with neighbours up (smallest T >= C)
 * and down (largest T <= C): x < C iff x < up, x <= C iff x <= down,
 * x > C iff x > down, x >= C iff x >= up, x == C iff C is a T and x == C.
 */
#define NORM_FLOAT(T, FIELD, NEXT)                                            \
	static void norm_##FIELD(fnode *n, int cmp, long double C)            \
	{                                                                     \
		T f = (T)C;                                                   \
		T up = (long double)f >= C ? f : NEXT(f, (T)INFINITY);        \
		T down = (long double)f <= C ? f : NEXT(f, -(T)INFINITY);     \
		bool exact = (long double)f == C;                             \
		n->kind = N_CMP;                                              \
		n->cmp = (uint8_t)cmp;                                        \
		switch (cmp) {                                                \
		case CMP_LT: case CMP_GE: n->c.FIELD = up; break;             \
		case CMP_LE: case CMP_GT: n->c.FIELD = down; break;           \
		default:                                                      \
			if (!exact)                                           \
				set_fixed(n, cmp == CMP_NE);                  \
			n->c.FIELD = f;                                       \
		}                                                             \
	}
NORM_FLOAT(float, f32, nextafterf)
NORM_FLOAT(double, f64, nextafter)

#define NORM_INT(T, FIELD, LO, HI)                                            \
	static void norm_##FIELD(fnode *n, int cmp, long double C)            \
	{                                                                     \
		long double lo = floorl(C), hi = ceill(C);                    \
		n->kind = N_CMP;                                              \
		n->cmp = (uint8_t)cmp;                                        \
		switch (cmp) {                                                \
		case CMP_LT: /* x < hi */                                     \
			if (hi > (long double)(HI)) set_fixed(n, true);       \
			else if (hi <= (long double)(LO)) set_fixed(n, false);\
			else n->c.FIELD = (T)hi;                              \
			break;                                                \
		case CMP_GE: /* x >= hi */                                    \
			if (hi > (long double)(HI)) set_fixed(n, false);      \
			else if (hi <= (long double)(LO)) set_fixed(n, true); \
			else n->c.FIELD = (T)hi;                              \
			break;                                                \
		case CMP_LE: /* x <= lo */                                    \
			if (lo >= (long double)(HI)) set_fixed(n, true);      \
			else if (lo < (long double)(LO)) set_fixed(n, false); \
			else n->c.FIELD = (T)lo;                              \
			break;                                                \
		case CMP_GT: /* x > lo */                                     \
			if (lo >= (long double)(HI)) set_fixed(n, false);     \
			else if (lo < (long double)(LO)) set_fixed(n, true);  \
			else n->c.FIELD = (T)lo;                              \
			break;                                                \
		default:                                                      \
			if (lo != C || C < (long double)(LO) ||               \
			    C > (long double)(HI))                            \
				set_fixed(n, cmp == CMP_NE);                  \
			else                                                  \
				n->c.FIELD = (T)C;                            \
		}                                                             \
	}
NORM_INT(int32_t, i32, INT32_MIN, INT32_MAX)
NORM_INT(int64_t, i64, INT64_MIN, INT64_MAX)

static int copy_strings(fnode *n, const cohort_value *set, size_t count)
{
	n->strs = ccalloc(count ? count : 1, sizeof(char *));
	n->lens = ccalloc(count ? count : 1, sizeof(uint32_t));
	if (!n->strs || !n->lens)
		return COHORT_ENOMEM;
	for (size_t i = 0; i < count; i++) {
		n->strs[i] = cmalloc(set[i].v.str.len + 1);
		if (!n->strs[i])
			return COHORT_ENOMEM;
		if (set[i].v.str.len)
			memcpy(n->strs[i], set[i].v.str.ptr, set[i].v.str.len);
		n->strs[i][set[i].v.str.len] = 0;
		n->lens[i] = set[i].v.str.len;
		n->nstrs = (uint32_t)i + 1;
	}
	return 0;
}

static int cat_value_check(const cohort_filter *f, const tcol *c,
			   const cohort_value *v)
{
	if (v->type != COHORT_CAT)
		return seterr(COHORT_ETYPE, "filter on cat column '%s' of table "
			      "'%s': value of type %s, want a string", c->name,
			      f->t->name, cohort_type_name(v->type));
	if ((!v->v.str.ptr && v->v.str.len) || v->v.str.len > COHORT_MAX_CAT)
		return seterr(COHORT_EINVAL, "filter on cat column '%s': bad "
			      "string", c->name);
	return 0;
}

int cohort_filter_cmp(cohort_filter *f, int column, cohort_cmp cmp,
		      cohort_value value)
{
	int rc = leaf_check(f, column);
	if (rc)
		return rc;
	const tcol *c = f->t->cols[column];
	if (cmp < COHORT_EQ || cmp > COHORT_GE)
		return seterr(COHORT_EINVAL, "filter: unknown comparison %d",
			      (int)cmp);
	bool eqne = cmp == COHORT_EQ || cmp == COHORT_NE;
	if (c->type == COHORT_VEC || ((c->type == COHORT_BOOL ||
				       c->type == COHORT_CAT) && !eqne))
		return seterr(COHORT_EOP, "filter: comparison %d is not valid on "
			      "%s column '%s'", (int)cmp,
			      cohort_type_name(c->type), c->name);
	long double C = 0;
	if (c->type == COHORT_BOOL) {
		if (value.type != COHORT_BOOL)
			return seterr(COHORT_ETYPE, "filter on bool column '%s': "
				      "value of type %s", c->name,
				      cohort_type_name(value.type));
	} else if (c->type == COHORT_CAT) {
		rc = cat_value_check(f, c, &value);
		if (rc)
			return rc;
	} else {
		switch (value.type) {
		case COHORT_F32: C = value.v.f32; break;
		case COHORT_F64: C = value.v.f64; break;
		case COHORT_I32: C = value.v.i32; break;
		case COHORT_I64: C = value.v.i64; break;
		default:
			return seterr(COHORT_ETYPE, "filter on %s column '%s': "
				      "value of type %s, want a number",
				      cohort_type_name(c->type), c->name,
				      cohort_type_name(value.type));
		}
		if (isnan(C))
			return seterr(COHORT_ENAN, "filter on column '%s': NaN "
				      "constant", c->name);
	}
	fnode *n;
	int id = node_new(f, &n);
	if (id < 0)
		return id;
	n->col = column;
	n->kind = N_CMP;
	n->cmp = (uint8_t)cmp;
	switch (c->type) {
	case COHORT_BOOL:
		n->ckind = K_U8;
		n->c.u8 = value.v.b ? 1 : 0;
		break;
	case COHORT_CAT:
		n->ckind = K_CAT;
		if (copy_strings(n, &value, 1))
			return seterr(COHORT_ENOMEM, "filter: out of memory");
		break;
	case COHORT_F32:
		n->ckind = K_F32;
		norm_f32(n, cmp, C);
		break;
	case COHORT_I32:
		n->ckind = K_I32;
		norm_i32(n, cmp, C);
		break;
	case COHORT_I64:
		n->ckind = K_I64;
		norm_i64(n, cmp, C);
		break;
	default: /* f64 and aggregates, all double */
		n->ckind = c->type == COHORT_DECAY ? K_DECAY : K_F64;
		norm_f64(n, cmp, C);
		break;
	}
	return id;
}

int cohort_filter_in(cohort_filter *f, int column, const cohort_value *set,
		     size_t count)
{
	int rc = leaf_check(f, column);
	if (rc)
		return rc;
	const tcol *c = f->t->cols[column];
	if (c->type != COHORT_CAT)
		return seterr(COHORT_EOP, "filter: in-set is for cat columns, "
			      "'%s' is %s", c->name, cohort_type_name(c->type));
	if (count && !set)
		return seterr(COHORT_EINVAL, "filter: NULL set");
	for (size_t i = 0; i < count; i++) {
		rc = cat_value_check(f, c, &set[i]);
		if (rc)
			return rc;
	}
	fnode *n;
	int id = node_new(f, &n);
	if (id < 0)
		return id;
	n->kind = N_IN;
	n->col = column;
	n->ckind = K_CAT;
	if (copy_strings(n, set, count))
		return seterr(COHORT_ENOMEM, "filter: out of memory");
	return id;
}

static int null_node(cohort_filter *f, int column, int kind)
{
	int rc = leaf_check(f, column);
	if (rc)
		return rc;
	fnode *n;
	int id = node_new(f, &n);
	if (id < 0)
		return id;
	n->kind = (uint8_t)kind;
	n->col = column;
	return id;
}

int cohort_filter_is_null(cohort_filter *f, int column)
{
	return null_node(f, column, N_ISNULL);
}

int cohort_filter_not_null(cohort_filter *f, int column)
{
	return null_node(f, column, N_NOTNULL);
}

int cohort_filter_persona(cohort_filter *f, const char *model, uint32_t p)
{
	if (!f || !model)
		return seterr(COHORT_EINVAL, "filter: NULL filter or model");
	fnode *n;
	int id = node_new(f, &n);
	if (id < 0)
		return id;
	n->kind = N_PERSONA;
	n->c.i64 = p;
	cohort_value v = cohort_cat(model);
	if (copy_strings(n, &v, 1))
		return seterr(COHORT_ENOMEM, "filter: out of memory");
	return id;
}

static int operand_check(const cohort_filter *f, int a)
{
	if (a < 0)
		return a;    /* an error from building the operand */
	if (!f || (uint32_t)a >= f->n)
		return seterr(COHORT_EINVAL, "filter: no node %d", a);
	return 0;
}

static int combine(cohort_filter *f, int kind, int a, int b)
{
	int rc = operand_check(f, a);
	if (rc == 0 && kind != N_NOT)
		rc = operand_check(f, b);
	if (rc)
		return rc;
	fnode *n;
	int id = node_new(f, &n);
	if (id < 0)
		return id;
	n->kind = (uint8_t)kind;
	n->a = a;
	n->b = b;
	return id;
}

int cohort_filter_and(cohort_filter *f, int a, int b)
{
	return combine(f, N_AND, a, b);
}

int cohort_filter_or(cohort_filter *f, int a, int b)
{
	return combine(f, N_OR, a, b);
}

int cohort_filter_not(cohort_filter *f, int a)
{
	return combine(f, N_NOT, a, a);
}

/* ------------------------------------------------------------------------
 * Evaluation
 * ------------------------------------------------------------------------ */
typedef struct evalctx {
	const cohort_filter *f;
	const cmp_kernels *k;
	int64_t at;
	uint64_t *T, *F;          /* per node, CHUNK_WORDS words each */
	bool *needF;              /* per node */
	int64_t *code;            /* per node: cat EQ/NE code, -1 absent */
	uint64_t **codeset;       /* per node: cat IN bitmap of codes */
	uint32_t *codeset_n;      /* codes covered by codeset */
} evalctx;

static void eval_node(evalctx *x, int id, uint32_t chunk);

/* Word-wise AND / OR of two chunk bitmaps; restrict lets them vectorise. */
static void and_words(uint64_t *restrict d, const uint64_t *restrict a,
		      const uint64_t *restrict b)
{
	for (uint32_t w = 0; w < CHUNK_WORDS; w++)
		d[w] = a[w] & b[w];
}

static void or_words(uint64_t *restrict d, const uint64_t *restrict a,
		     const uint64_t *restrict b)
{
	for (uint32_t w = 0; w < CHUNK_WORDS; w++)
		d[w] = a[w] | b[w];
}

/* bits of a comparison leaf over one chunk, masked with mask (NULL: none) */
static void eval_leaf_cmp(evalctx *x, const fnode *n, const tcol *c,
			  const colchunk *ch, const uint64_t *mask,
			  uint64_t *bits)
{
	const void *p = ch->plane0;
	const cmp_kernels *k = x->k;
	switch (n->ckind) {
	case K_F32: k->f32(p, CHUNK_ROWS, n->cmp, n->c.f32, mask, bits); break;
	case K_F64: k->f64(p, CHUNK_ROWS, n->cmp, n->c.f64, mask, bits); break;
	case K_I32: k->i32(p, CHUNK_ROWS, n->cmp, n->c.i32, mask, bits); break;
	case K_I64: k->i64(p, CHUNK_ROWS, n->cmp, n->c.i64, mask, bits); break;
	case K_U8: k->u8(p, CHUNK_ROWS, n->cmp, n->c.u8, mask, bits); break;
	case K_DECAY: {
		/* the value at `at` is v * 2^(-(at - t_ref) / h): per row */
		const double *v = p;
		const int64_t *tr = ch->plane1;
		double cth = n->c.f64, at = (double)x->at;
		for (uint32_t w = 0; w < CHUNK_WORDS; w++) {
			uint64_t m = 0, valid = ch->valid[w];
			while (valid) {
				int i = __builtin_ctzll(valid);
				uint32_t r = w * 64 + (uint32_t)i;
				double d = v[r] * exp2(-(at - (double)tr[r]) *
						       c->inv_half_life);
				bool hit;
				switch (n->cmp) {
				case CMP_EQ: hit = d == cth; break;
				case CMP_NE: hit = d != cth; break;
				case CMP_LT: hit = d < cth; break;
				case CMP_LE: hit = d <= cth; break;
				case CMP_GT: hit = d > cth; break;
				default: hit = d >= cth; break;
				}
				m |= (uint64_t)hit << i;
				valid &= valid - 1;
			}
			bits[w] = m & (mask ? mask[w] : ~UINT64_C(0));
		}
		break;
	}
	case K_CAT: {
		int64_t code = x->code[n - x->f->nodes];
		if (code < 0) {
			/* no row holds the string: EQ is false, NE true */
			uint64_t fill = n->cmp == CMP_NE ? ~UINT64_C(0) : 0;
			for (uint32_t w = 0; w < CHUNK_WORDS; w++)
				bits[w] = fill & (mask ? mask[w] : ~UINT64_C(0));
		} else {
			k->u32(p, CHUNK_ROWS, n->cmp, (uint32_t)code, mask, bits);
		}
		break;
	}
	}
}

static void eval_node(evalctx *x, int id, uint32_t chunk)
{
	const fnode *n = &x->f->nodes[id];
	uint64_t *T = x->T + (size_t)id * CHUNK_WORDS;
	uint64_t *F = x->F + (size_t)id * CHUNK_WORDS;
	bool needF = x->needF[id];
	const cohort_table *t = x->f->t;
	uint32_t slot0 = chunk << CHUNK_SHIFT;

	if (n->kind == N_AND || n->kind == N_OR || n->kind == N_NOT) {
		eval_node(x, n->a, chunk);
		const uint64_t *Ta = x->T + (size_t)n->a * CHUNK_WORDS;
		const uint64_t *Fa = x->F + (size_t)n->a * CHUNK_WORDS;
		if (n->kind == N_NOT) {
			/* needF of the child was set when this node needs T */
			memcpy(T, Fa, CHUNK_WORDS * 8);
			if (needF)
				memcpy(F, Ta, CHUNK_WORDS * 8);
			return;
		}
		const fnode *nb = &x->f->nodes[n->b];
		if (n->kind == N_AND && !needF && nb->kind == N_CMP &&
		    !x->needF[n->b]) {
			/* AND with a comparison: run its kernel under the mask
			 * Ta & valid(b), straight into T: no extra passes */
			const colchunk *cb = col_chunk(t->cols[nb->col], slot0);
			and_words(T, Ta, cb->valid);
			eval_leaf_cmp(x, nb, t->cols[nb->col], cb, T, T);
			return;
		}
		eval_node(x, n->b, chunk);
		const uint64_t *Tb = x->T + (size_t)n->b * CHUNK_WORDS;
		const uint64_t *Fb = x->F + (size_t)n->b * CHUNK_WORDS;
		if (n->kind == N_AND) {
			and_words(T, Ta, Tb);
			if (needF)
				or_words(F, Fa, Fb);
		} else {
			or_words(T, Ta, Tb);
			if (needF)
				and_words(F, Fa, Fb);
		}
		return;
	}

	if (n->kind == N_PERSONA) {
		/* a row is in the persona or not: never unknown */
		persona_chunk_members(t, n->strs[0], (uint32_t)n->c.i64, chunk,
				      T);
		const uint64_t *L = tab_chunk(t, slot0)->live;
		for (uint32_t w = 0; needF && w < CHUNK_WORDS; w++)
			F[w] = L[w] & ~T[w];
		return;
	}
	const tcol *c = t->cols[n->col];
	const colchunk *ch = col_chunk(c, slot0);
	const uint64_t *V = ch->valid;
	switch (n->kind) {
	case N_ISNULL:
		for (uint32_t w = 0; w < CHUNK_WORDS; w++) {
			T[w] = ~V[w];
			F[w] = V[w];
		}
		return;
	case N_NOTNULL:
		for (uint32_t w = 0; w < CHUNK_WORDS; w++) {
			T[w] = V[w];
			F[w] = ~V[w];
		}
		return;
	case N_FIXED:
		for (uint32_t w = 0; w < CHUNK_WORDS; w++) {
			T[w] = n->fixed_true ? V[w] : 0;
			F[w] = n->fixed_true ? 0 : V[w];
		}
		return;
	case N_IN: {
		const uint64_t *set = x->codeset[id];
		uint32_t nset = x->codeset_n[id];
		const uint32_t *codes = ch->plane0;
		for (uint32_t w = 0; w < CHUNK_WORDS; w++) {
			uint64_t m = 0;
			for (int i = 0; i < 64; i++) {
				uint32_t code = codes[w * 64 + (uint32_t)i];
				bool hit = code < nset &&
					((set[code >> 6] >> (code & 63)) & 1);
				m |= (uint64_t)hit << i;
			}
			T[w] = m & V[w];
			F[w] = ~m & V[w];
		}
		return;
	}
	default: /* N_CMP */
		if (!needF) {
			eval_leaf_cmp(x, n, c, ch, V, T);
			return;
		}
		eval_leaf_cmp(x, n, c, ch, NULL, T);
		for (uint32_t w = 0; w < CHUNK_WORDS; w++) {
			uint64_t m = T[w];
			T[w] = m & V[w];
			F[w] = ~m & V[w];
		}
		return;
	}
}

/* Which nodes must compute F: those below an odd or even number of NOTs
 * whose parent needs it. Walk from the root. */
static void mark_needs(evalctx *x, int id, bool needT, bool needF)
{
	const fnode *n = &x->f->nodes[id];
	if (needF)
		x->needF[id] = true;
	if (n->kind == N_NOT)
		mark_needs(x, n->a, needF, needT);
	else if (n->kind == N_AND || n->kind == N_OR) {
		mark_needs(x, n->a, needT, needF);
		mark_needs(x, n->b, needT, needF);
	}
}

static void ctx_free(evalctx *x)
{
	if (x->codeset)
		for (uint32_t i = 0; i < x->f->n; i++)
			cfree(x->codeset[i]);
	cfree(x->codeset);
	cfree(x->codeset_n);
	cfree(x->code);
	cfree(x->needF);
	cfree(x->T);
	cfree(x->F);
}

/* Resolve cat strings to codes; called with all stripes held. */
static int ctx_resolve(evalctx *x)
{
	const cohort_filter *f = x->f;
	for (uint32_t i = 0; i < f->n; i++) {
		const fnode *n = &f->nodes[i];
		x->code[i] = -1;
		if (n->kind == N_PERSONA) {
			int rc = persona_check(f->t, n->strs[0],
					       (uint32_t)n->c.i64);
			if (rc)
				return rc;
			continue;
		}
		if (n->ckind != K_CAT || !n->nstrs)
			continue;
		dict *d = f->t->cols[n->col]->dict;
		if (n->kind == N_CMP) {
			uint32_t code;
			if (dict_find(d, n->strs[0], n->lens[0], &code) == 0)
				x->code[i] = code;
			continue;
		}
		uint32_t nset = dict_count(d);
		x->codeset_n[i] = nset;
		x->codeset[i] = ccalloc((nset + 63) / 64 + 1, 8);
		if (!x->codeset[i])
			return COHORT_ENOMEM;
		for (uint32_t j = 0; j < n->nstrs; j++) {
			uint32_t code;
			if (dict_find(d, n->strs[j], n->lens[j], &code) == 0 &&
			    code < nset)
				x->codeset[i][code >> 6] |= UINT64_C(1) << (code & 63);
		}
	}
	return 0;
}

/*
 * Evaluate root over every chunk, the caller holding every stripe; f NULL
 * matches every live row. restrict (may be NULL) may clear bits of a
 * chunk's matches before they are counted. The matching rows go to words
 * (if not NULL) and to cb (if not NULL). *nbits gets the slots covered.
 */
static int run_locked(const cohort_table *t, const cohort_filter *f,
		      int root, cohort_time at, chunk_restrict_fn restrict_fn,
		      void *rctx, uint64_t **words, uint64_t *nbits,
		      uint64_t *count, cohort_key_cb cb, void *ctx)
{
	int rc = 0;
	evalctx x = { .f = f, .k = cmp_get(), .at = time_resolve(at) };
	if (f) {
		rc = operand_check(f, root);
		if (rc)
			return rc;
		size_t n = f->n;
		x.T = caligned(64, n * CHUNK_WORDS * 8);
		x.F = caligned(64, n * CHUNK_WORDS * 8);
		x.needF = ccalloc(n, sizeof(bool));
		x.code = ccalloc(n, sizeof(int64_t));
		x.codeset = ccalloc(n, sizeof(uint64_t *));
		x.codeset_n = ccalloc(n, sizeof(uint32_t));
		if (!x.T || !x.F || !x.needF || !x.code || !x.codeset ||
		    !x.codeset_n) {
			ctx_free(&x);
			return seterr(COHORT_ENOMEM, "filter: out of memory");
		}
		mark_needs(&x, root, true, false);
		rc = ctx_resolve(&x);
	}
	uint64_t live[CHUNK_WORDS] __attribute__((aligned(64)));
	uint64_t all[CHUNK_WORDS] __attribute__((aligned(64)));

	uint32_t nchunks = atomic_load(&((cohort_table *)t)->nchunks);
	*nbits = (uint64_t)nchunks * CHUNK_ROWS;
	if (rc == 0 && words) {
		*words = caligned(64, nchunks * CHUNK_WORDS * 8);
		if (!*words)
			rc = COHORT_ENOMEM;
	}
	uint64_t total = 0;
	int stop = 0;
	/* TTL: live rows are those with time >= at - ttl */
	bool ttl = t->ttl_ms > 0;
	int64_t cutoff = 0;
	if (ttl) {
		cutoff = x.at < INT64_MIN + t->ttl_ms ? INT64_MIN :
			x.at - t->ttl_ms;
	}
	for (uint32_t ci = 0; ci < nchunks && rc == 0 && !stop; ci++) {
		const tabchunk *tc = tab_chunk(t, ci << CHUNK_SHIFT);
		const uint64_t *lv = tc->live;
		if (ttl) {
			x.k->i64(tc->time, CHUNK_ROWS, CMP_GE, cutoff, tc->live,
				 live);
			lv = live;
		}
		uint64_t *T = all;
		if (f) {
			eval_node(&x, root, ci);
			T = x.T + (size_t)root * CHUNK_WORDS;
		} else {
			memcpy(all, lv, sizeof(all));
		}
		if (restrict_fn) {
			/* matches are T & lv: make T exactly that first */
			for (uint32_t w = 0; f && w < CHUNK_WORDS; w++)
				T[w] &= lv[w];
			restrict_fn(ci, T, rctx);
		}
		total += x.k->mask_count(T, lv, CHUNK_WORDS);
		if (words)
			memcpy(*words + (size_t)ci * CHUNK_WORDS, T,
			       CHUNK_WORDS * 8);
		for (uint32_t w = 0; cb && w < CHUNK_WORDS && !stop; w++) {
			for (uint64_t m = T[w]; m && !stop; m &= m - 1) {
				uint32_t slot = (ci << CHUNK_SHIFT) + w * 64 +
					(uint32_t)__builtin_ctzll(m);
				uint32_t len;
				const char *k = table_slot_key(t, slot, &len);
				stop = cb(k, len, ctx);
			}
		}
	}
	ctx_free(&x);
	if (rc) {
		if (words) {
			cfree(*words);
			*words = NULL;
		}
		return seterr(rc, "filter: out of memory");
	}
	if (count)
		*count = total;
	return stop;
}

const cohort_table *filter_table(const cohort_filter *f)
{
	return f->t;
}

int filter_scan_locked(const cohort_table *t, const cohort_filter *f,
		       int root, cohort_time at, chunk_restrict_fn restrict_fn,
		       void *rctx, cohort_key_cb cb, void *ctx,
		       uint64_t *count)
{
	if (f && f->t != t)
		return seterr(COHORT_EINVAL, "filter is on another table");
	uint64_t nbits;
	return run_locked(t, f, root, at, restrict_fn, rctx, NULL, &nbits,
			  count, cb, ctx);
}

static int run(const cohort_filter *f, int root, cohort_time at,
	       uint64_t **words, uint64_t *nbits, uint64_t *count,
	       cohort_key_cb cb, void *ctx)
{
	if (!f)
		return seterr(COHORT_EINVAL, "filter is NULL");
	table_rdlock_all(f->t);
	int rc = run_locked(f->t, f, root, at, NULL, NULL, words, nbits,
			    count, cb, ctx);
	table_unlock_all(f->t);
	return rc;
}

int cohort_filter_count(const cohort_filter *f, int root, cohort_time at,
			uint64_t *count)
{
	uint64_t nbits, c = 0;
	int rc = run(f, root, at, NULL, &nbits, &c, NULL, NULL);
	if (rc >= 0 && count)
		*count = c;
	return rc;
}

int cohort_filter_eval(const cohort_filter *f, int root, cohort_time at,
		       cohort_bitmap **out)
{
	if (!out)
		return seterr(COHORT_EINVAL, "cohort_filter_eval: out is NULL");
	*out = NULL;
	cohort_bitmap *bm = ccalloc(1, sizeof(*bm));
	if (!bm)
		return seterr(COHORT_ENOMEM, "filter: out of memory");
	int rc = run(f, root, at, &bm->words, &bm->nbits, &bm->count, NULL,
		     NULL);
	if (rc < 0) {
		cfree(bm);
		return rc;
	}
	*out = bm;
	return 0;
}

int cohort_filter_keys(const cohort_filter *f, int root, cohort_time at,
		       cohort_key_cb cb, void *ctx, uint64_t *count)
{
	if (!cb)
		return seterr(COHORT_EINVAL, "cohort_filter_keys: NULL callback");
	uint64_t nbits;
	return run(f, root, at, NULL, &nbits, count, cb, ctx);
}

uint64_t cohort_bitmap_count(const cohort_bitmap *bm)
{
	return bm ? bm->count : 0;
}

uint64_t cohort_bitmap_nbits(const cohort_bitmap *bm)
{
	return bm ? bm->nbits : 0;
}

bool cohort_bitmap_test(const cohort_bitmap *bm, uint64_t slot)
{
	if (!bm || slot >= bm->nbits)
		return false;
	return (bm->words[slot >> 6] >> (slot & 63)) & 1;
}

const uint64_t *cohort_bitmap_words(const cohort_bitmap *bm)
{
	return bm ? bm->words : NULL;
}

void cohort_bitmap_free(cohort_bitmap *bm)
{
	if (!bm)
		return;
	cfree(bm->words);
	cfree(bm);
}
