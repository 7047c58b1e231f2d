/*
 * persona.c -- persona models: training and uploading versions, keeping
 * every row's persona current, reads, the change feed, and their records.
 *
 * A version is built while the table goes on: it is published as the
 * model's `next` (every stripe held, briefly), so that from then on every
 * write of a row's inputs marks the row stale in it; a bulk pass copies
 * each chunk's features under the read locks, assigns them with the tiled
 * kernel on all cores without any lock, and installs the rows that no
 * write marked meanwhile; catch-up passes do the same for the marked rows;
 * the last few are done with every stripe held exclusively, and the version
 * becomes `cur` in that same instant. Readers hold a stripe (rows) or
 * plock (sizes, centroids), so they see one version or the other.
 *
 * Kept current: a write that changes a row's inputs adds the length of the
 * change (in the version's space) to the row's mv. Inside the write,
 * persona_keep() then tries to prove with the bound on the runner-up that
 * the persona cannot have changed (one distance, O(dim)); only when that
 * fails is the row scanned (persona_nearest, O(k dim)): at once (AT_ONCE)
 * or by the worker (BACKGROUND), which batches the scans.
 * The worker takes queued rows in batches: it copies their features under
 * the row's stripe (shared), scans those that need it in one tiled call,
 * and installs under the stripe (exclusive) when the row's seq shows no
 * newer write; a newer write has queued the row again.
 */
#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "kmeans.h"
#include "parallel.h"
#include "persona.h"
#include "persona_int.h"
#include "rowq.h"

#define PDIR_MAX 65536            /* chunks of a model: 2^30 rows */
#define QUEUE_CAP 4096            /* background queue entries */
#define BATCH 256                 /* rows per background batch */
#define CATCHUP_ROUNDS 4
#define FINAL_MAX 4096            /* stale rows left for the locked pass */
#define DEFAULT_DELAY_MS 10
#define DEFAULT_KEPT 65536
#define MAX_MODEL_FLOATS (12u << 20) /* k x dim: the record must fit the log */

/* The kept state of one row in one version. lab1 = persona + 1; 0: none. */
typedef struct pstate {
	uint32_t lab1;
	uint32_t seq;             /* the model seq it reflects */
	float d1;                 /* distance to its centroid */
	float lb;                 /* lower bound on the others; -inf: none */
	double mv;                /* how far its features have moved since
	                             (sum of the lengths of the changes) */
} pstate;

typedef struct pver {
	uint64_t version;
	uint32_t k, dim;
	float *cent;              /* k x dim, standardised */
	dist_packed packed;
	persona_cents pc;
	double *mean, *sd;        /* dim each; NULL for a vec model */
	char **names;             /* k; NULL: unnamed */
	double *typical;          /* k */
	_Atomic uint64_t *sizes;  /* k */
	pstate **st;              /* PDIR_MAX chunks */
	uint64_t **stale;         /* PDIR_MAX chunks of CHUNK_WORDS */
} pver;

typedef struct pmodel {
	char name[COHORT_MAX_NAME + 1];
	cohort_table *t;
	int ninputs;
	int inputs[COHORT_PERSONA_MAX_INPUTS];
	uint64_t inmask[COHORT_MAX_COLUMNS / 64];
	bool is_vec;
	uint32_t dim;
	cohort_persona_mode mode;
	uint32_t max_delay_ms, kept;

	pver *cur, *next;         /* changed with every stripe exclusive */
	uint64_t version;         /* the last version number used */
	_Atomic uint32_t **seq;   /* PDIR_MAX chunks */

	pthread_mutex_t work_lock;
	rowq q;                   /* BACKGROUND: changed rows */
	struct wrow *wrows;       /* the worker's batch */
	float *wx;

	pthread_mutex_t fmu;      /* the change feed */
	cohort_persona_change *ring;
	uint64_t fseq;            /* changes published: seqs 1..fseq */

	pthread_mutex_t train_mu;
	bool training, trainer_on;
	atomic_bool cancel;
	pthread_t trainer;
	cohort_train_opts topts;
} pmodel;

/* ------------------------------------------------------------------------
 * Versions and per-slot state
 * ------------------------------------------------------------------------ */
static inline pstate *st_of(const pver *v, uint32_t slot)
{
	return &v->st[slot >> CHUNK_SHIFT][slot_off(slot)];
}

static void ver_free(cohort_table *t, pver *v)
{
	if (!v)
		return;
	for (uint32_t c = 0; v->st && c < PDIR_MAX && v->st[c]; c++)
		cfree_acct(v->st[c], &t->mem);
	for (uint32_t c = 0; v->stale && c < PDIR_MAX && v->stale[c]; c++)
		cfree_acct(v->stale[c], &t->mem);
	cfree(v->st);
	cfree(v->stale);
	for (uint32_t i = 0; v->names && i < v->k; i++)
		cfree(v->names[i]);
	cfree(v->names);
	dist_packed_free(&v->packed);
	cfree(v->cent);
	cfree(v->mean);
	cfree(v->sd);
	cfree(v->typical);
	cfree((void *)v->sizes);
	cfree(v);
}

static int ver_chunk_add(cohort_table *t, pver *v, uint32_t c)
{
	if (!v->st[c])
		v->st[c] = ccalloc_acct(CHUNK_ROWS, sizeof(pstate), &t->mem);
	if (!v->stale[c])
		v->stale[c] = ccalloc_acct(CHUNK_WORDS, 8, &t->mem);
	return v->st[c] && v->stale[c] ? 0 : COHORT_ENOMEM;
}

/* A version of k centroids (copied); mean and sd as given (or NULL). */
static int ver_new(pmodel *m, uint32_t k, const float *cent,
		   const double *mean, const double *sd, pver **out)
{
	pver *v = ccalloc(1, sizeof(*v));
	if (!v)
		return COHORT_ENOMEM;
	v->k = k;
	v->dim = m->dim;
	size_t kd = (size_t)k * m->dim;
	v->cent = cmalloc(kd * sizeof(float));
	v->names = ccalloc(k, sizeof(char *));
	v->typical = ccalloc(k, sizeof(double));
	v->sizes = ccalloc(k, sizeof(uint64_t));
	v->st = ccalloc(PDIR_MAX, sizeof(pstate *));
	v->stale = ccalloc(PDIR_MAX, sizeof(uint64_t *));
	if (!m->is_vec) {
		v->mean = cmalloc(m->dim * sizeof(double));
		v->sd = cmalloc(m->dim * sizeof(double));
	}
	if (!v->cent || !v->names || !v->typical || !v->sizes || !v->st ||
	    !v->stale || (!m->is_vec && (!v->mean || !v->sd))) {
		ver_free(m->t, v);
		return COHORT_ENOMEM;
	}
	memcpy(v->cent, cent, kd * sizeof(float));
	for (uint32_t j = 0; !m->is_vec && j < m->dim; j++) {
		v->mean[j] = mean ? mean[j] : 0;
		double s = sd ? sd[j] : 1;
		v->sd[j] = isfinite(s) && s > 0 ? s : 1;
	}
	int rc = persona_cents_init(&v->pc, v->cent, k, m->dim, &v->packed);
	if (rc) {
		ver_free(m->t, v);
		return rc == -ENOMEM ? COHORT_ENOMEM : COHORT_EINVAL;
	}
	*out = v;
	return 0;
}

/* Chunks for a new version; with every stripe exclusive and alloc_lock. */
static int ver_chunks(cohort_table *t, pver *v)
{
	uint32_t n = atomic_load(&t->nchunks);
	for (uint32_t c = 0; c < n; c++)
		if (ver_chunk_add(t, v, c))
			return COHORT_ENOMEM;
	return 0;
}

int persona_chunk_add(cohort_table *t, uint32_t c)
{
	int n = atomic_load(&t->nmodels);
	if (n && c >= PDIR_MAX)
		return seterr(COHORT_ELIMIT, "table '%s': persona models hold "
			      "at most %u rows", t->name,
			      PDIR_MAX << CHUNK_SHIFT);
	for (int i = 0; i < n; i++) {
		pmodel *m = t->models[i];
		if (!m->seq[c])
			m->seq[c] = ccalloc_acct(CHUNK_ROWS, sizeof(uint32_t),
						 &t->mem);
		if (!m->seq[c])
			return COHORT_ENOMEM;
		if (m->cur && ver_chunk_add(t, m->cur, c))
			return COHORT_ENOMEM;
		if (m->next && ver_chunk_add(t, m->next, c))
			return COHORT_ENOMEM;
	}
	return 0;
}

/* ------------------------------------------------------------------------
 * Features of a row
 * ------------------------------------------------------------------------ */
static bool cell_number(const tcol *c, uint32_t slot, double *out)
{
	const colchunk *ch = col_chunk(c, slot);
	uint32_t o = slot_off(slot);
	if (!bit_get(ch->valid, o))
		return false;
	const char *p = (const char *)ch->plane0 + (size_t)o * c->width;
	switch (c->type) {
	case COHORT_F32: *out = *(const float *)p; break;
	case COHORT_I32: *out = *(const int32_t *)p; break;
	case COHORT_I64: *out = (double)*(const int64_t *)p; break;
	case COHORT_BOOL: *out = *(const uint8_t *)p; break;
	default: *out = *(const double *)p; break;  /* f64, aggregates */
	}
	return isfinite(*out);
}

/* The raw inputs of a numeric model's row: raw[j], valid[j]. */
static bool row_raw(const pmodel *m, uint32_t slot, double *raw,
		    bool *valid)
{
	bool any = false;
	for (int j = 0; j < m->ninputs; j++) {
		valid[j] = cell_number(m->t->cols[m->inputs[j]], slot, &raw[j]);
		any |= valid[j];
	}
	return any;
}

/* The standardised features of a row (dim floats); false: none. */
/* A standardised input as a float, clamped to +-1e15: a tiny sd or a huge
 * value would otherwise overflow to infinity, and distances with it. The
 * clamp keeps 64 squared inputs far inside float's range. */
static float zscore(double x, double mean, double sd)
{
	double z = (x - mean) / sd;
	if (!(z > -1e15))
		return z != z ? 0.0f : -1e15f;
	return z < 1e15 ? (float)z : 1e15f;
}

static bool row_feat(const pmodel *m, const pver *v, uint32_t slot, float *z)
{
	if (m->is_vec) {
		const tcol *c = m->t->cols[m->inputs[0]];
		const colchunk *ch = col_chunk(c, slot);
		uint32_t o = slot_off(slot);
		if (!bit_get(ch->valid, o))
			return false;
		memcpy(z, (const float *)ch->plane0 + (size_t)o * c->stride,
		       m->dim * sizeof(float));
		return true;
	}
	double raw[COHORT_PERSONA_MAX_INPUTS];
	bool valid[COHORT_PERSONA_MAX_INPUTS];
	if (!row_raw(m, slot, raw, valid))
		return false;
	for (uint32_t j = 0; j < m->dim; j++)
		z[j] = valid[j] ? zscore(raw[j], v->mean[j], v->sd[j]) : 0;
	return true;
}

/* ------------------------------------------------------------------------
 * The change feed
 * ------------------------------------------------------------------------ */
static void feed_publish(pmodel *m, const void *key, uint32_t key_len,
			 int64_t time, uint64_t version, uint32_t old,
			 uint32_t new)
{
	pthread_mutex_lock(&m->fmu);
	cohort_persona_change *c = &m->ring[m->fseq % m->kept];
	c->seq = ++m->fseq;
	c->time = time;
	c->version = version;
	c->old_persona = old;
	c->new_persona = new;
	c->key_len = key_len;
	if (key_len)
		memcpy(c->key, key, key_len);
	pthread_mutex_unlock(&m->fmu);
}

/* Install a row's new state in v: sizes and, for cur, the feed. */
static void install(pmodel *m, pver *v, uint32_t slot, uint32_t lab1,
		    float d1, float lb, uint32_t seq,
		    bool publish, const void *key, uint32_t key_len,
		    int64_t time)
{
	pstate *s = st_of(v, slot);
	uint32_t old = s->lab1;
	if (old != lab1) {
		if (old)
			atomic_fetch_sub_explicit(&v->sizes[old - 1], 1,
						  memory_order_relaxed);
		if (lab1)
			atomic_fetch_add_explicit(&v->sizes[lab1 - 1], 1,
						  memory_order_relaxed);
		if (publish) {
			if (!key)
				key = table_slot_key(m->t, slot, &key_len);
			feed_publish(m, key, key_len, time, v->version,
				     old ? old - 1 : COHORT_PERSONA_NONE,
				     lab1 ? lab1 - 1 : COHORT_PERSONA_NONE);
		}
	}
	s->lab1 = lab1;
	s->d1 = d1;
	s->lb = lb;
	s->mv = 0;
	s->seq = seq;
}

/* ------------------------------------------------------------------------
 * The write path's hooks
 * ------------------------------------------------------------------------ */
static bool touches(const pmodel *m, const uint64_t *cols)
{
	for (size_t i = 0; i < COHORT_MAX_COLUMNS / 64; i++)
		if (m->inmask[i] & cols[i])
			return true;
	return false;
}

int pw_begin(cohort_table *t, pw_ctx *w, uint32_t slot, uint64_t hash,
	     bool fresh, bool reset, const uint64_t *cols)
{
	w->n = 0;
	w->heap = NULL;
	w->slot = slot;
	w->hash = hash;
	int n = atomic_load_explicit(&t->nmodels, memory_order_relaxed);
	size_t need = 0;
	for (int i = 0; i < n; i++) {
		pmodel *m = t->models[i];
		if (!reset && !touches(m, cols))
			continue;
		w->e[w->n].m = m;
		w->e[w->n].had = false;
		w->e[w->n].queue = false;
		w->n++;
		if (!fresh && !reset && m->cur)
			need += m->dim;
	}
	if (need > sizeof(w->stack) / sizeof(float)) {
		w->heap = cmalloc(need * sizeof(float));
		if (!w->heap) {
			w->n = 0;
			return seterr(COHORT_ENOMEM, "table '%s': out of memory "
				      "for persona features", t->name);
		}
	}
	float *buf = w->heap ? w->heap : w->stack;
	for (int i = 0; i < w->n && !fresh && !reset; i++) {
		pmodel *m = w->e[i].m;
		if (!m->cur)
			continue;
		w->e[i].old = buf;
		w->e[i].had = row_feat(m, m->cur, slot, buf);
		buf += m->dim;
	}
	return 0;
}

static double move_len(const float *a, const float *b, uint32_t dim)
{
	double s = 0;
	for (uint32_t j = 0; j < dim; j++) {
		double d = (double)a[j] - b[j];
		s += d * d;
	}
	return sqrt(s);
}

/* Reassign a row at once from its features z (has: it has some). */
static void assign_now(pmodel *m, pver *v, uint32_t slot, const float *z,
		       bool has, bool had, uint32_t seq, const void *key,
		       uint32_t key_len, int64_t time)
{
	pstate *s = st_of(v, slot);
	if (!has) {
		install(m, v, slot, 0, 0, -INFINITY, seq, true, key, key_len,
			time);
		return;
	}
	float d1, lb;
	if (had && s->lab1 && s->lb > -INFINITY &&
	    persona_keep(&v->pc, z, s->lab1 - 1, s->lb, s->mv, &d1, &lb)) {
		install(m, v, slot, s->lab1, d1, lb, seq, true, key, key_len,
			time);
		return;
	}
	uint32_t label;
	persona_nearest(&v->pc, z, 1, m->dim, &label, &d1, &lb);
	install(m, v, slot, label + 1, d1, lb, seq, true, key, key_len, time);
}

void pw_commit(cohort_table *t, pw_ctx *w, int64_t time, const void *key,
	       uint32_t key_len)
{
	(void)t;
	float znew[COHORT_MAX_DIM];
	uint32_t slot = w->slot, c = slot >> CHUNK_SHIFT, o = slot_off(slot);
	w->time = time;
	for (int i = 0; i < w->n; i++) {
		pmodel *m = w->e[i].m;
		uint32_t seq = atomic_fetch_add_explicit(&m->seq[c][o], 1,
							 memory_order_relaxed) + 1;
		w->e[i].seq = seq;
		w->e[i].queue = false;
		if (m->next)
			bit_set(m->next->stale[c], o);
		pver *v = m->cur;
		if (!v)
			continue;
		bool has = row_feat(m, v, slot, znew);
		pstate *ps = st_of(v, slot);
		if (w->e[i].had && has)
			ps->mv += move_len(w->e[i].old, znew, m->dim);
		else
			ps->lb = -INFINITY;  /* no bound survives */
		float d1, lb;
		if (m->mode == COHORT_PERSONA_AT_ONCE)
			assign_now(m, v, slot, znew, has, w->e[i].had, seq, key,
				   key_len, time);
		else if (has && ps->lab1 && ps->lb > -INFINITY &&
			 persona_keep(&v->pc, znew, ps->lab1 - 1, ps->lb,
				      ps->mv, &d1, &lb))
			/* proven unchanged with one distance: settled here;
			 * only rows that need a scan go to the worker */
			install(m, v, slot, ps->lab1, d1, lb, seq, false, NULL,
				0, 0);
		else
			w->e[i].queue = true;
	}
}

void pw_end(cohort_table *t, pw_ctx *w)
{
	(void)t;
	for (int i = 0; i < w->n; i++) {
		pmodel *m = w->e[i].m;
		if (!w->e[i].queue)
			continue;
		rowq_push(&m->q, (rowq_ent){ w->slot, w->e[i].seq, w->hash,
					     w->time, 0 });
	}
	cfree(w->heap);
	w->heap = NULL;
	w->n = 0;
}

void persona_row_deleted(cohort_table *t, uint32_t slot, const void *key,
			 uint32_t key_len)
{
	int n = atomic_load_explicit(&t->nmodels, memory_order_relaxed);
	uint32_t c = slot >> CHUNK_SHIFT, o = slot_off(slot);
	int64_t now = cohort_now();
	for (int i = 0; i < n; i++) {
		pmodel *m = t->models[i];
		uint32_t seq = atomic_fetch_add_explicit(&m->seq[c][o], 1,
							 memory_order_relaxed) + 1;
		if (m->next) {
			bit_set(m->next->stale[c], o);
			memset(st_of(m->next, slot), 0, sizeof(pstate));
		}
		if (m->cur)
			install(m, m->cur, slot, 0, 0, -INFINITY, seq, true,
				key, key_len, now);
	}
}

/* ------------------------------------------------------------------------
 * The background worker
 * ------------------------------------------------------------------------ */
typedef struct wrow {
	rowq_ent e;
	bool skip, scan, has;
	float d1, lb;
	uint32_t lab1;
} wrow;

static void worker_batch(pmodel *m, wrow *rows, size_t n, float *x)
{
	cohort_table *t = m->t;
	pver *v = m->cur;
	size_t nscan = 0;
	uint32_t *scan_of = (uint32_t *)(x + (size_t)BATCH * m->dim);
	float *z = x + (size_t)BATCH * m->dim + BATCH;  /* one row */
	for (size_t i = 0; i < n; i++) {
		wrow *r = &rows[i];
		uint32_t slot = r->e.slot, c = slot >> CHUNK_SHIFT;
		stripe *s = stripe_of(t, r->e.hash);
		pthread_rwlock_rdlock(&s->lock);
		r->skip = atomic_load_explicit(&m->seq[c][slot_off(slot)],
					       memory_order_relaxed) != r->e.seq;
		if (!r->skip) {
			float *dst = x + nscan * m->dim;
			r->has = row_feat(m, v, slot, dst);
			const pstate *ps = st_of(v, slot);
			r->scan = false;
			if (!r->has) {
				r->lab1 = 0;
				r->d1 = 0;
				r->lb = -INFINITY;
			} else if (ps->lab1 && ps->lb > -INFINITY &&
				   persona_keep(&v->pc, dst, ps->lab1 - 1,
						ps->lb, ps->mv,
						&r->d1, &r->lb)) {
				r->lab1 = ps->lab1;
			} else {
				r->scan = true;
				scan_of[nscan++] = (uint32_t)i;
			}
		}
		pthread_rwlock_unlock(&s->lock);
	}
	(void)z;
	if (nscan) {
		uint32_t lab[BATCH];
		float d1[BATCH], lb[BATCH];
		persona_nearest(&v->pc, x, nscan, m->dim, lab, d1, lb);
		for (size_t j = 0; j < nscan; j++) {
			wrow *r = &rows[scan_of[j]];
			r->lab1 = lab[j] + 1;
			r->d1 = d1[j];
			r->lb = lb[j];
		}
	}
	for (size_t i = 0; i < n; i++) {
		wrow *r = &rows[i];
		if (r->skip)
			continue;
		uint32_t slot = r->e.slot;
		stripe *s = stripe_of(t, r->e.hash);
		pthread_rwlock_wrlock(&s->lock);
		if (atomic_load_explicit(&m->seq[slot >> CHUNK_SHIFT]
					 [slot_off(slot)],
					 memory_order_relaxed) == r->e.seq)
			install(m, v, slot, r->lab1, r->d1, r->lb, r->e.seq,
				true, NULL, 0, r->e.time);
		pthread_rwlock_unlock(&s->lock);
	}
}

/* The queue's batch: under work_lock, so no swap happens half way. */
static void worker_fn(void *ctx, const rowq_ent *b, size_t n)
{
	pmodel *m = ctx;
	for (size_t i = 0; i < n; i++)
		m->wrows[i].e = b[i];
	pthread_mutex_lock(&m->work_lock);
	if (m->cur)
		worker_batch(m, m->wrows, n, m->wx);
	pthread_mutex_unlock(&m->work_lock);
}

/* ------------------------------------------------------------------------
 * Models
 * ------------------------------------------------------------------------ */
static int model_index(const cohort_table *t, const char *name)
{
	int n = atomic_load(&((cohort_table *)t)->nmodels);
	for (int i = 0; i < n; i++)
		if (strcmp(t->models[i]->name, name) == 0)
			return i;
	return -1;
}

static pmodel *model_find(const cohort_table *t, const char *name)
{
	int i = model_index(t, name);
	return i < 0 ? NULL : t->models[i];
}

static int no_model(const cohort_table *t, const char *name)
{
	return seterr(COHORT_ENOTFOUND, "table '%s' has no persona model "
		      "'%s'", t->name, name);
}

static void model_free(cohort_table *t, pmodel *m)
{
	if (!m)
		return;
	ver_free(t, m->cur);
	ver_free(t, m->next);
	for (uint32_t c = 0; m->seq && c < PDIR_MAX && m->seq[c]; c++)
		cfree_acct((void *)m->seq[c], &t->mem);
	cfree(m->seq);
	rowq_free(&m->q);
	cfree(m->wrows);
	cfree(m->wx);
	cfree(m->ring);
	pthread_mutex_destroy(&m->work_lock);
	pthread_mutex_destroy(&m->fmu);
	pthread_mutex_destroy(&m->train_mu);
	cfree(m);
}

static int def_check(cohort_table *t, const char *name,
		     const cohort_persona_def *def, pmodel *m)
{
	if (!def)
		return seterr(COHORT_EINVAL, "persona model '%s' is new: it "
			      "needs a definition", name);
	if (!def->columns || def->ncolumns == 0)
		return seterr(COHORT_EINVAL, "persona model '%s': no input "
			      "columns", name);
	if (def->ncolumns > COHORT_PERSONA_MAX_INPUTS)
		return seterr(COHORT_ELIMIT, "persona model '%s': %zu input "
			      "columns (max %d)", name, def->ncolumns,
			      COHORT_PERSONA_MAX_INPUTS);
	if (def->mode != COHORT_PERSONA_AT_ONCE &&
	    def->mode != COHORT_PERSONA_BACKGROUND)
		return seterr(COHORT_EINVAL, "persona model '%s': unknown mode "
			      "%d", name, (int)def->mode);
	m->ninputs = (int)def->ncolumns;
	for (size_t i = 0; i < def->ncolumns; i++) {
		int col = def->columns[i];
		int rc = column_check(t, col);
		if (rc)
			return rc;
		const tcol *c = t->cols[col];
		if (m->inmask[col >> 6] & (UINT64_C(1) << (col & 63)))
			return seterr(COHORT_EINVAL, "persona model '%s': column "
				      "'%s' given twice", name, c->name);
		m->inmask[col >> 6] |= UINT64_C(1) << (col & 63);
		m->inputs[i] = col;
		if (c->type == COHORT_VEC) {
			if (def->ncolumns != 1)
				return seterr(COHORT_EOP, "persona model '%s': "
					      "a vec column ('%s') must be the "
					      "only input", name, c->name);
			m->is_vec = true;
			m->dim = c->dim;
		} else if (c->type == COHORT_CAT) {
			return seterr(COHORT_EOP, "persona model '%s': column "
				      "'%s' is a cat column; inputs are "
				      "numeric or one vec", name, c->name);
		}
	}
	if (!m->is_vec)
		m->dim = (uint32_t)def->ncolumns;
	m->mode = def->mode;
	m->max_delay_ms = def->max_delay_ms ? def->max_delay_ms :
		DEFAULT_DELAY_MS;
	m->kept = def->changes_kept ? def->changes_kept : DEFAULT_KEPT;
	return 0;
}

/* A new model (not yet published). */
static int model_new(cohort_table *t, const char *name,
		     const cohort_persona_def *def, pmodel **out)
{
	pmodel *m = ccalloc(1, sizeof(*m));
	if (!m)
		return seterr(COHORT_ENOMEM, "out of memory");
	m->t = t;
	snprintf(m->name, sizeof(m->name), "%s", name);
	pthread_mutex_init(&m->work_lock, NULL);
	pthread_mutex_init(&m->fmu, NULL);
	pthread_mutex_init(&m->train_mu, NULL);
	int rc = def_check(t, name, def, m);
	if (rc == 0) {
		m->seq = ccalloc(PDIR_MAX, sizeof(*m->seq));
		m->ring = cmalloc((size_t)m->kept * sizeof(*m->ring));
		if (!m->seq || !m->ring || rowq_init(&m->q, QUEUE_CAP, BATCH,
							m->max_delay_ms,
							worker_fn, m))
			rc = seterr(COHORT_ENOMEM, "out of memory for persona "
				    "model '%s'", name);
	}
	if (rc) {
		model_free(t, m);
		return rc;
	}
	*out = m;
	return 0;
}

static bool same_def(const pmodel *m, const cohort_persona_def *def)
{
	if (!def)
		return true;
	if (def->ncolumns != (size_t)m->ninputs || !def->columns)
		return false;
	for (int i = 0; i < m->ninputs; i++)
		if (def->columns[i] != m->inputs[i])
			return false;
	return true;
}

/*
 * Publish v as the next version of model name (creating the model from
 * def when there is none): with every stripe exclusive, so every write
 * from now on marks what it changes in v. *out_m gets the model.
 */
static int publish_next(cohort_table *t, const char *name,
			const cohort_persona_def *def, pmodel *fresh,
			pver *v, pmodel **out_m)
{
	table_wrlock_all(t);
	pthread_rwlock_wrlock(&t->plock);
	pthread_mutex_lock(&t->alloc_lock);
	int rc = 0;
	pmodel *m = model_find(t, name);
	if (m && fresh)
		rc = seterr(COHORT_EEXIST, "persona model '%s' exists", name);
	else if (!m && !fresh)
		rc = no_model(t, name);
	else if (m && m->next)
		rc = seterr(COHORT_EBUSY, "persona model '%s' is training",
			    name);
	else if (!m && atomic_load(&t->nmodels) == COHORT_MAX_MODELS)
		rc = seterr(COHORT_ELIMIT, "table '%s' has %d persona models "
			    "(max)", t->name, COHORT_MAX_MODELS);
	(void)def;
	if (rc == 0 && !m) {
		uint32_t n = atomic_load(&t->nchunks);
		for (uint32_t c = 0; c < n && rc == 0; c++) {
			fresh->seq[c] = ccalloc_acct(CHUNK_ROWS, 4, &t->mem);
			if (!fresh->seq[c])
				rc = COHORT_ENOMEM;
		}
		m = fresh;
	}
	if (rc == 0)
		rc = ver_chunks(t, v);
	if (rc == COHORT_ENOMEM)
		rc = seterr(rc, "out of memory for persona model '%s'", name);
	if (rc == 0) {
		v->version = m->version + 1;
		m->next = v;
		if (m == fresh) {
			t->models[atomic_load(&t->nmodels)] = m;
			atomic_fetch_add(&t->nmodels, 1);
		}
	}
	pthread_mutex_unlock(&t->alloc_lock);
	pthread_rwlock_unlock(&t->plock);
	table_unlock_all(t);
	if (rc == 0)
		*out_m = m;
	return rc;
}

static int encode_ver(const cohort_table *t, const pmodel *m,
		      const pver *v, recbuf *b);

/* ------------------------------------------------------------------------
 * Building a version: bulk pass, catch-up, swap
 * ------------------------------------------------------------------------ */
typedef struct bulk {
	pmodel *m;
	pver *v;
	uint32_t *slots;
	float *x;
	uint32_t *seq;
	uint32_t *lab;
	float *d1, *lb;
	bool *has;
	size_t n, cap;
} bulk;

static int bulk_room(bulk *b, size_t more)
{
	if (b->n + more <= b->cap)
		return 0;
	size_t cap = b->cap ? b->cap : 1024;
	while (cap < b->n + more)
		cap *= 2;
	uint32_t *slots = crealloc(b->slots, cap * 4);
	if (slots)
		b->slots = slots;
	float *x = crealloc(b->x, cap * b->m->dim * sizeof(float));
	if (x)
		b->x = x;
	uint32_t *sq = crealloc(b->seq, cap * 4);
	if (sq)
		b->seq = sq;
	uint32_t *lab = crealloc(b->lab, cap * 4);
	if (lab)
		b->lab = lab;
	float *d1 = crealloc(b->d1, cap * 4);
	if (d1)
		b->d1 = d1;
	float *lb = crealloc(b->lb, cap * 4);
	if (lb)
		b->lb = lb;
	bool *has = crealloc(b->has, cap);
	if (has)
		b->has = has;
	if (!slots || !x || !sq || !lab || !d1 || !lb || !has)
		return COHORT_ENOMEM;
	b->cap = cap;
	return 0;
}

static void bulk_free(bulk *b)
{
	cfree(b->slots);
	cfree(b->x);
	cfree(b->seq);
	cfree(b->lab);
	cfree(b->d1);
	cfree(b->lb);
	cfree(b->has);
	memset(b, 0, sizeof(*b));
}

/* Copy one slot into the batch (its stripe held). */
static void bulk_copy(bulk *b, uint32_t slot)
{
	pmodel *m = b->m;
	uint32_t c = slot >> CHUNK_SHIFT, o = slot_off(slot);
	size_t i = b->n++;
	b->slots[i] = slot;
	b->has[i] = row_feat(m, b->v, slot, b->x + i * m->dim);
	b->seq[i] = atomic_load_explicit(&m->seq[c][o], memory_order_relaxed);
	bit_clear(b->v->stale[c], o);
}

static void bulk_part(void *arg, int part, size_t lo, size_t hi)
{
	(void)part;
	bulk *b = arg;
	/* rows without features are packed out of the kernel's way by
	 * assigning each run of rows that have them */
	size_t i = lo;
	while (i < hi) {
		if (!b->has[i]) {
			i++;
			continue;
		}
		size_t j = i;
		while (j < hi && b->has[j])
			j++;
		persona_nearest(&b->v->pc, b->x + i * b->m->dim, j - i,
				b->m->dim, b->lab + i, b->d1 + i, b->lb + i);
		i = j;
	}
}

/* Install the batch's rows that no write has marked since the copy. */
static void bulk_install(bulk *b)
{
	for (size_t i = 0; i < b->n; i++) {
		uint32_t slot = b->slots[i];
		if (bit_get(b->v->stale[slot >> CHUNK_SHIFT], slot_off(slot)))
			continue;
		if (b->has[i])
			install(b->m, b->v, slot, b->lab[i] + 1, b->d1[i],
				b->lb[i], b->seq[i], false, NULL,
				0, 0);
		else
			install(b->m, b->v, slot, 0, 0, -INFINITY, b->seq[i],
				false, NULL, 0, 0);
	}
}

/* Collect slots [lo, hi) that are live (all: every one; else only the
 * stale ones) and, for dead stale ones, clear them. Under rdlock_all. */
static int bulk_collect(bulk *b, uint32_t lo, uint32_t hi, bool all,
			size_t max)
{
	cohort_table *t = b->m->t;
	for (uint32_t s = lo; s < hi && b->n < max; s++) {
		uint32_t c = s >> CHUNK_SHIFT, o = slot_off(s);
		if (!all && !bit_get(b->v->stale[c], o))
			continue;
		if (!slot_live(t, s)) {
			bit_clear(b->v->stale[c], o);
			continue;
		}
		if (bulk_room(b, 1))
			return COHORT_ENOMEM;
		bulk_copy(b, s);
	}
	return 0;
}

/* Assign every live row into v (published as next), then swap it in. */
static int build_and_swap(pmodel *m, pver *v, uint32_t threads,
			  const atomic_bool *cancel)
{
	cohort_table *t = m->t;
	bulk b = { .m = m, .v = v };
	int rc = 0;
	threads = par_threads(threads);
	/* bulk pass, chunk by chunk */
	uint32_t hwm = atomic_load(&t->hwm);
	for (uint32_t lo = 0; lo < hwm && rc == 0 && !atomic_load(cancel);
	     lo += CHUNK_ROWS) {
		uint32_t hi = lo + CHUNK_ROWS < hwm ? lo + CHUNK_ROWS : hwm;
		b.n = 0;
		table_rdlock_all(t);
		rc = bulk_collect(&b, lo, hi, true, SIZE_MAX);
		table_unlock_all(t);
		if (rc)
			break;
		par_run(threads, b.n, bulk_part, &b);
		table_rdlock_all(t);
		bulk_install(&b);
		table_unlock_all(t);
	}
	/* catch up with the rows written meanwhile */
	for (int round = 0;
	     round < CATCHUP_ROUNDS && rc == 0 && !atomic_load(cancel);
	     round++) {
		b.n = 0;
		table_rdlock_all(t);
		hwm = atomic_load(&t->hwm);
		size_t nstale = 0;
		for (uint32_t s = 0; s < hwm; s += 64)
			nstale += (size_t)__builtin_popcountll(
				v->stale[s >> CHUNK_SHIFT][slot_off(s) >> 6]);
		if (nstale <= FINAL_MAX) {
			table_unlock_all(t);
			break;
		}
		rc = bulk_collect(&b, 0, hwm, false, SIZE_MAX);
		table_unlock_all(t);
		if (rc)
			break;
		par_run(threads, b.n, bulk_part, &b);
		table_rdlock_all(t);
		bulk_install(&b);
		table_unlock_all(t);
	}
	if (rc == 0 && atomic_load(cancel))
		rc = seterr(COHORT_EBUSY, "persona model '%s': training "
			    "cancelled", m->name);
	/* the last rows and the swap, with everything held */
	pthread_mutex_lock(&m->work_lock);
	cohort_db *db = t->db;
	pthread_mutex_lock(&db->lock);
	table_wrlock_all(t);
	pthread_rwlock_wrlock(&t->plock);
	uint64_t lsn = 0;
	if (rc == 0) {
		hwm = atomic_load(&t->hwm);
		b.n = 0;
		rc = bulk_collect(&b, 0, hwm, false, SIZE_MAX);
		if (rc == 0) {
			bulk_part(&b, 0, 0, b.n);
			bulk_install(&b);
		}
	}
	if (rc == 0) {
		/* typical distances, from the rows as they are now */
		double *sum = ccalloc(v->k, sizeof(double));
		if (!sum)
			rc = COHORT_ENOMEM;
		for (uint32_t s = 0; s < hwm && sum; s++) {
			const pstate *ps = st_of(v, s);
			if (ps->lab1 && slot_live(t, s))
				sum[ps->lab1 - 1] += ps->d1;
		}
		double all = 0;
		uint64_t nall = 0;
		for (uint32_t p = 0; p < v->k && sum; p++) {
			uint64_t n = atomic_load(&v->sizes[p]);
			all += sum[p];
			nall += n;
			v->typical[p] = n ? sum[p] / (double)n : 0;
		}
		for (uint32_t p = 0; p < v->k && sum; p++)
			if (v->typical[p] <= 0)
				v->typical[p] = nall ? all / (double)nall : 1;
		cfree(sum);
	}
	if (rc == 0 && db->wal) {
		recbuf rec;
		rec_init(&rec);
		rc = encode_ver(t, m, v, &rec);
		if (rc == 0)
			rc = persist_log(db, REC_PERSONA_MODEL, &rec, &lsn);
		rec_free(&rec);
	}
	pver *old = v;
	pmodel *gone = NULL;
	if (rc == 0) {
		old = m->cur;
		m->cur = v;
		m->version = v->version;
		feed_publish(m, NULL, 0, cohort_now(), v->version,
			     COHORT_PERSONA_NONE, COHORT_PERSONA_NONE);
	} else if (!m->cur) {
		/* a new model that never got a version: it goes */
		int i = model_index(t, m->name), n = atomic_load(&t->nmodels);
		memmove(&t->models[i], &t->models[i + 1],
			(size_t)(n - i - 1) * sizeof(pmodel *));
		atomic_fetch_sub(&t->nmodels, 1);
		gone = m;
	}
	m->next = NULL;
	pthread_mutex_lock(&t->alloc_lock);
	ver_free(t, old);
	pthread_mutex_unlock(&t->alloc_lock);
	pthread_rwlock_unlock(&t->plock);
	table_unlock_all(t);
	pthread_mutex_unlock(&db->lock);
	pthread_mutex_unlock(&m->work_lock);
	bulk_free(&b);
	if (gone) {
		pthread_mutex_lock(&t->alloc_lock);
		model_free(t, gone);
		pthread_mutex_unlock(&t->alloc_lock);
	}
	if (rc == COHORT_ENOMEM)
		rc = seterr(rc, "out of memory building persona model '%s'",
			    m->name);
	if (rc == 0)
		rc = persist_sync(db, lsn);
	return rc;
}

static int start_worker(pmodel *m)
{
	if (m->mode != COHORT_PERSONA_BACKGROUND || m->q.on)
		return 0;
	if (!m->wrows) {
		m->wrows = cmalloc(BATCH * sizeof(struct wrow));
		m->wx = cmalloc(((size_t)BATCH * m->dim + BATCH + m->dim) *
				sizeof(float));
	}
	if (!m->wrows || !m->wx || rowq_start(&m->q))
		return seterr(COHORT_ENOMEM, "persona model '%s': cannot start "
			      "its worker", m->name);
	return 0;
}

/*
 * Install k centroids as the next version of model `name` (created from
 * def when fresh is set) and swap it in.
 */
static int install_version(cohort_table *t, const char *name,
			   const cohort_persona_def *def, uint32_t k,
			   const float *cent, const double *mean,
			   const double *sd, uint32_t threads,
			   const atomic_bool *cancel, uint64_t version)
{
	pmodel *fresh = NULL;
	pmodel *m;
	pthread_rwlock_rdlock(&t->plock);
	m = model_find(t, name);
	pthread_rwlock_unlock(&t->plock);
	int rc = 0;
	if (!m) {
		rc = model_new(t, name, def, &fresh);
		if (rc)
			return rc;
	} else if (!same_def(m, def)) {
		return seterr(COHORT_EINVAL, "persona model '%s' exists with "
			      "other inputs", name);
	}
	pmodel *shape = fresh ? fresh : m;
	pver *v;
	rc = ver_new(shape, k, cent, mean, sd, &v);
	if (rc) {
		model_free(t, fresh);
		return seterr(rc, "persona model '%s': %s", name,
			      cohort_strerror(rc));
	}
	rc = publish_next(t, name, def, fresh, v, &m);
	if (rc) {
		ver_free(t, v);
		model_free(t, fresh);
		return rc;
	}
	if (version)
		v->version = version;
	atomic_bool no_cancel = false;
	rc = build_and_swap(m, v, threads, cancel ? cancel : &no_cancel);
	if (rc == 0)
		rc = start_worker(m);
	return rc;
}

/* ------------------------------------------------------------------------
 * Training
 * ------------------------------------------------------------------------ */
typedef struct tdata {
	double *raw;              /* n x dim (numeric) */
	uint8_t *valid;
	float *x;                 /* n x dim */
	size_t n, cap;
} tdata;

static void tdata_free(tdata *d)
{
	cfree(d->x);
	cfree(d->raw);
	cfree(d->valid);
}

/* The standardisation of numeric inputs: per column, the mean and the
 * sample standard deviation of its non-null values (1 where it is 0 or
 * undefined). */
static void column_stats(const tdata *d, uint32_t dim, double *mean,
			 double *sd)
{
	for (uint32_t j = 0; j < dim; j++) {
		double s = 0, q = 0;
		size_t c = 0;
		for (size_t i = 0; i < d->n; i++)
			if (d->valid[i * dim + j]) {
				s += d->raw[i * dim + j];
				c++;
			}
		mean[j] = c ? s / (double)c : 0;
		for (size_t i = 0; i < d->n; i++)
			if (d->valid[i * dim + j]) {
				double e = d->raw[i * dim + j] - mean[j];
				q += e * e;
			}
		sd[j] = c > 1 ? sqrt(q / (double)(c - 1)) : 1;
		if (!(sd[j] > 0))
			sd[j] = 1;
	}
}

/* Gather a random sample of the rows that have inputs. */
static int gather(pmodel *m, const cohort_train_opts *o, uint64_t want,
		  tdata *d)
{
	cohort_table *t = m->t;
	uint64_t rows = atomic_load(&t->nrows);
	double p = rows > want ? (double)want / (double)rows : 1.0;
	uint64_t thresh = p >= 1.0 ? UINT64_MAX :
		(uint64_t)(p * 18446744073709551615.0);
	uint32_t hwm = atomic_load(&t->hwm);
	int rc = 0;
	for (uint32_t lo = 0; lo < hwm && rc == 0; lo += CHUNK_ROWS) {
		uint32_t hi = lo + CHUNK_ROWS < hwm ? lo + CHUNK_ROWS : hwm;
		table_rdlock_all(t);
		for (uint32_t s = lo; s < hi && rc == 0; s++) {
			if (!slot_live(t, s))
				continue;
			uint64_t st = o->seed ^ ((uint64_t)s * 0x9e3779b97f4a7c15ull);
			if (par_rnd(&st) > thresh)
				continue;
			if (d->n == d->cap) {
				size_t cap = d->cap ? d->cap * 2 : 4096;
				float *x = crealloc(d->x, cap * m->dim * 4);
				if (x)
					d->x = x;
				if (!m->is_vec) {
					double *r = crealloc(d->raw, cap * m->dim * 8);
					if (r)
						d->raw = r;
					uint8_t *v = crealloc(d->valid, cap * m->dim);
					if (v)
						d->valid = v;
					if (!r || !v)
						x = NULL;
				}
				if (!x) {
					rc = COHORT_ENOMEM;
					break;
				}
				d->cap = cap;
			}
			bool has;
			if (m->is_vec) {
				has = row_feat(m, NULL, s, d->x + d->n * m->dim);
			} else {
				bool valid[COHORT_PERSONA_MAX_INPUTS];
				double *raw = d->raw + d->n * m->dim;
				has = row_raw(m, s, raw, valid);
				for (uint32_t j = 0; j < m->dim; j++)
					d->valid[d->n * m->dim + j] = valid[j];
			}
			if (has)
				d->n++;
		}
		table_unlock_all(t);
	}
	return rc;
}

static int train_model(cohort_table *t, const char *name,
		       const cohort_persona_def *def,
		       const cohort_train_opts *o, const atomic_bool *cancel)
{
	pmodel shape = { .t = t };
	const pmodel *m = &shape;
	pthread_rwlock_rdlock(&t->plock);
	pmodel *have = model_find(t, name);
	if (have)
		shape = (pmodel){ .t = t, .ninputs = have->ninputs,
				  .is_vec = have->is_vec, .dim = have->dim };
	if (have)
		memcpy(shape.inputs, have->inputs, sizeof(shape.inputs));
	pthread_rwlock_unlock(&t->plock);
	int rc = 0;
	if (!have)
		rc = def_check(t, name, def, &shape);
	if (rc)
		return rc;
	uint64_t want = o->sample ? o->sample :
		(uint64_t)o->k * 256 > 100000 ? (uint64_t)o->k * 256 : 100000;
	tdata d = { 0 };
	rc = gather(&shape, o, want, &d);
	double *mean = NULL, *sd = NULL;
	float *cent = NULL;
	if (rc == 0 && d.n < o->k)
		rc = seterr(COHORT_EINVAL, "persona model '%s': %zu rows with "
			    "inputs, fewer than k = %u", name, d.n, o->k);
	if (rc == 0 && !m->is_vec) {
		mean = ccalloc(m->dim, sizeof(double));
		sd = ccalloc(m->dim, sizeof(double));
		if (!mean || !sd)
			rc = COHORT_ENOMEM;
		if (rc == 0)
			column_stats(&d, m->dim, mean, sd);
		for (uint32_t j = 0; rc == 0 && j < m->dim; j++) {
			for (size_t i = 0; i < d.n; i++)
				d.x[i * m->dim + j] = d.valid[i * m->dim + j] ?
					zscore(d.raw[i * m->dim + j], mean[j],
					       sd[j]) : 0;
		}
	}
	if (rc == 0) {
		cent = cmalloc((size_t)o->k * m->dim * sizeof(float));
		if (!cent)
			rc = COHORT_ENOMEM;
	}
	if (rc == 0) {
		kmeans_opts ko = { .iters = o->iters, .seed = o->seed,
				   .threads = o->threads,
				   .batch = o->minibatch ?
					(d.n / 10 > 4096 ? d.n / 10 : 4096) : 0 };
		int krc = kmeans_train(d.x, d.n, m->dim, m->dim, o->k, &ko,
				       cent, NULL, NULL);
		if (krc)
			rc = krc == -ENOMEM ? COHORT_ENOMEM : COHORT_EINVAL;
	}
	tdata_free(&d);
	if (rc == 0 && !atomic_load(cancel))
		rc = install_version(t, name, def, o->k, cent, mean, sd,
				     o->threads, cancel, 0);
	else if (rc == COHORT_ENOMEM)
		rc = seterr(rc, "out of memory training persona model '%s'",
			    name);
	cfree(cent);
	cfree(mean);
	cfree(sd);
	return rc;
}

static int opts_check(const cohort_table *t, const char *model,
		      const cohort_train_opts *o)
{
	if (!t || !model || !o)
		return seterr(COHORT_EINVAL, "persona: NULL table, model name "
			      "or options");
	if (o->k == 0 || o->k > COHORT_MAX_PERSONAS)
		return seterr(COHORT_EINVAL, "persona model '%s': k = %u (1 to "
			      "%d)", model, o->k, COHORT_MAX_PERSONAS);
	return 0;
}

static int model_name_check(const char *model)
{
	return name_check("persona model", model);
}

typedef struct bgtrain {
	cohort_table *t;
	pmodel *m;
	char name[COHORT_MAX_NAME + 1];
	cohort_train_opts o;
} bgtrain;

static void *train_main(void *arg)
{
	bgtrain *b = arg;
	train_model(b->t, b->name, NULL, &b->o, &b->m->cancel);
	pthread_mutex_lock(&b->m->train_mu);
	b->m->training = false;
	pthread_mutex_unlock(&b->m->train_mu);
	cfree(b);
	return NULL;
}

int cohort_persona_train(cohort_table *t, const char *model,
			 const cohort_persona_def *def,
			 const cohort_train_opts *opts)
{
	int rc = opts_check(t, model, opts);
	if (rc == 0)
		rc = model_name_check(model);
	if (rc)
		return rc;
	pthread_rwlock_rdlock(&t->plock);
	pmodel *m = model_find(t, model);
	pthread_rwlock_unlock(&t->plock);
	if (m && !same_def(m, def))
		return seterr(COHORT_EINVAL, "persona model '%s' exists with "
			      "other inputs", model);
	if (!m || !opts->background) {
		if (m) {
			pthread_mutex_lock(&m->train_mu);
			bool busy = m->training;
			m->training = !busy;
			pthread_mutex_unlock(&m->train_mu);
			if (busy)
				return seterr(COHORT_EBUSY, "persona model '%s' "
					      "is training", model);
		}
		static atomic_bool no_cancel = false;
		rc = train_model(t, model, def, opts,
				 m ? &m->cancel : &no_cancel);
		if (m) {
			pthread_mutex_lock(&m->train_mu);
			m->training = false;
			pthread_mutex_unlock(&m->train_mu);
		}
		if (rc || !opts->background)
			return rc;
		return 0;
	}
	/* a retrain in the background */
	bgtrain *b = ccalloc(1, sizeof(*b));
	if (!b)
		return seterr(COHORT_ENOMEM, "out of memory");
	b->t = t;
	b->m = m;
	snprintf(b->name, sizeof(b->name), "%s", model);
	b->o = *opts;
	pthread_mutex_lock(&m->train_mu);
	if (m->training) {
		pthread_mutex_unlock(&m->train_mu);
		cfree(b);
		return seterr(COHORT_EBUSY, "persona model '%s' is training",
			      model);
	}
	if (m->trainer_on)
		pthread_join(m->trainer, NULL);
	m->trainer_on = false;
	m->training = true;
	if (pthread_create(&m->trainer, NULL, train_main, b)) {
		m->training = false;
		pthread_mutex_unlock(&m->train_mu);
		cfree(b);
		return seterr(COHORT_ENOMEM, "cannot start a training thread");
	}
	m->trainer_on = true;
	pthread_mutex_unlock(&m->train_mu);
	return 0;
}

int cohort_persona_upload(cohort_table *t, const char *model,
			  const cohort_persona_def *def, uint32_t k,
			  uint32_t dim, const float *centroids,
			  const double *mean, const double *sd)
{
	if (!t)
		return seterr(COHORT_EINVAL, "persona upload: NULL table");
	int rc = model_name_check(model);
	if (rc)
		return rc;
	if (!centroids || k == 0 || k > COHORT_MAX_PERSONAS)
		return seterr(COHORT_EINVAL, "persona model '%s': upload needs "
			      "1 to %d centroids", model, COHORT_MAX_PERSONAS);
	pmodel shape = { .t = t };
	pthread_rwlock_rdlock(&t->plock);
	pmodel *have = model_find(t, model);
	if (have)
		shape.dim = have->dim, shape.is_vec = have->is_vec;
	pthread_rwlock_unlock(&t->plock);
	if (!have && (rc = def_check(t, model, def, &shape)))
		return rc;
	if (dim != shape.dim)
		return seterr(COHORT_EDIM, "persona model '%s': centroids of "
			      "dimension %u, the model has %u inputs", model,
			      dim, shape.dim);
	if ((uint64_t)k * dim > MAX_MODEL_FLOATS)
		return seterr(COHORT_ELIMIT, "persona model '%s': k x dim = "
			      "%llu (max %u)", model,
			      (unsigned long long)k * dim, MAX_MODEL_FLOATS);
	for (uint64_t i = 0; i < (uint64_t)k * dim; i++)
		if (!isfinite(centroids[i]))
			return seterr(COHORT_ENAN, "persona model '%s': centroid "
				      "value %llu is not finite", model,
				      (unsigned long long)i);
	for (uint32_t j = 0; j < dim && (mean || sd); j++)
		if ((mean && !isfinite(mean[j])) ||
		    (sd && !(isfinite(sd[j]) && sd[j] > 0)))
			return seterr(COHORT_EINVAL, "persona model '%s': mean "
				      "and sd must be finite, sd > 0 (input "
				      "%u)", model, j);
	double *m2 = NULL, *s2 = NULL;
	if (!shape.is_vec && (!mean || !sd)) {
		/* the table's own standardisation */
		cohort_train_opts o = { .k = 1 };
		tdata d = { 0 };
		if (have) {
			shape.ninputs = have->ninputs;
			memcpy(shape.inputs, have->inputs, sizeof(shape.inputs));
		}
		rc = gather(&shape, &o, UINT64_MAX, &d);
		m2 = ccalloc(dim, 8);
		s2 = ccalloc(dim, 8);
		if (rc == 0 && (!m2 || !s2))
			rc = COHORT_ENOMEM;
		if (rc == 0)
			column_stats(&d, dim, m2, s2);
		tdata_free(&d);
		if (mean)
			memcpy(m2, mean, dim * 8);
		if (sd)
			memcpy(s2, sd, dim * 8);
	}
	if (rc == 0)
		rc = install_version(t, model, def, k, centroids,
				     m2 ? m2 : mean, s2 ? s2 : sd, 0, NULL, 0);
	cfree(m2);
	cfree(s2);
	return rc == COHORT_ENOMEM ? seterr(rc, "out of memory") : rc;
}

/* ------------------------------------------------------------------------
 * Names and drop
 * ------------------------------------------------------------------------ */
static int name_rec(recbuf *b, uint32_t table, const char *model,
		    uint64_t version, uint32_t p, const char *name)
{
	size_t ml = strlen(model), nl = strlen(name);
	uint8_t l8 = (uint8_t)ml, n8 = (uint8_t)nl;
	return rec_put(b, &table, 4) || rec_put(b, &l8, 1) ||
	       rec_put(b, model, ml) || rec_put(b, &version, 8) ||
	       rec_put(b, &p, 4) || rec_put(b, &n8, 1) || rec_put(b, name, nl);
}

static int set_name(cohort_table *t, const char *model, uint32_t p,
		    const char *name, uint64_t version, bool replay)
{
	size_t nl = name ? strnlen(name, 256) : 0;
	if (!name || nl > 255)
		return seterr(COHORT_EINVAL, "persona name must be 0 to 255 "
			      "bytes");
	char *copy = nl ? cmalloc(nl + 1) : NULL;
	if (nl && !copy)
		return seterr(COHORT_ENOMEM, "out of memory");
	if (copy)
		memcpy(copy, name, nl + 1);
	recbuf rec;
	rec_init(&rec);
	uint64_t lsn = 0;
	pthread_rwlock_wrlock(&t->plock);
	pmodel *m = model_find(t, model);
	int rc = 0;
	if (!m)
		rc = no_model(t, model);
	else if (!m->cur)
		rc = seterr(COHORT_EBUSY, "persona model '%s' has no version "
			    "yet", model);
	else if (p >= m->cur->k)
		rc = seterr(COHORT_ERANGE, "persona model '%s' has %u personas; "
			    "no persona %u", model, m->cur->k, p);
	else if (replay && version != m->cur->version)
		rc = 0;               /* names a version since replaced */
	else {
		if (t->db->wal) {
			rc = name_rec(&rec, t->id, model, m->cur->version, p,
				      name) ? COHORT_ENOMEM : 0;
			if (rc == 0)
				rc = persist_log(t->db, REC_PERSONA_NAME, &rec,
						 &lsn);
		}
		if (rc == 0) {
			char *old = m->cur->names[p];
			m->cur->names[p] = copy;
			copy = old;
		}
	}
	pthread_rwlock_unlock(&t->plock);
	cfree(copy);
	rec_free(&rec);
	return rc ? rc : persist_sync(t->db, lsn);
}

int cohort_persona_name(cohort_table *t, const char *model, uint32_t p,
			const char *name)
{
	if (!t)
		return seterr(COHORT_EINVAL, "persona name: NULL table");
	int rc = model_name_check(model);
	return rc ? rc : set_name(t, model, p, name, 0, false);
}

static void model_stop(pmodel *m)
{
	pthread_mutex_lock(&m->train_mu);
	m->cancel = true;
	bool joinable = m->trainer_on;
	m->trainer_on = false;
	pthread_mutex_unlock(&m->train_mu);
	if (joinable)
		pthread_join(m->trainer, NULL);
	rowq_stop(&m->q);
}

static int drop(cohort_table *t, const char *model)
{
	pthread_rwlock_rdlock(&t->plock);
	pmodel *m = model_find(t, model);
	pthread_rwlock_unlock(&t->plock);
	if (!m)
		return no_model(t, model);
	model_stop(m);
	recbuf rec;
	rec_init(&rec);
	uint64_t lsn = 0;
	int rc = 0;
	pthread_mutex_lock(&t->db->lock);
	table_wrlock_all(t);
	pthread_rwlock_wrlock(&t->plock);
	if (t->db->wal) {
		uint8_t l8 = (uint8_t)strlen(model);
		rc = rec_put(&rec, &t->id, 4) || rec_put(&rec, &l8, 1) ||
		     rec_put(&rec, model, l8) ? COHORT_ENOMEM : 0;
		if (rc == 0)
			rc = persist_log(t->db, REC_PERSONA_DROP, &rec, &lsn);
	}
	if (rc == 0) {
		int i = model_index(t, model), n = atomic_load(&t->nmodels);
		memmove(&t->models[i], &t->models[i + 1],
			(size_t)(n - i - 1) * sizeof(pmodel *));
		atomic_fetch_sub(&t->nmodels, 1);
		pthread_mutex_lock(&t->alloc_lock);
		model_free(t, m);
		pthread_mutex_unlock(&t->alloc_lock);
	}
	pthread_rwlock_unlock(&t->plock);
	table_unlock_all(t);
	pthread_mutex_unlock(&t->db->lock);
	rec_free(&rec);
	return rc ? rc : persist_sync(t->db, lsn);
}

int cohort_persona_drop(cohort_table *t, const char *model)
{
	if (!t)
		return seterr(COHORT_EINVAL, "persona drop: NULL table");
	int rc = model_name_check(model);
	return rc ? rc : drop(t, model);
}

void persona_table_free(cohort_table *t)
{
	int n = atomic_load(&t->nmodels);
	for (int i = 0; i < n; i++)
		model_stop(t->models[i]);
	for (int i = 0; i < n; i++)
		model_free(t, t->models[i]);
	atomic_store(&t->nmodels, 0);
}

/* ------------------------------------------------------------------------
 * Records
 * ------------------------------------------------------------------------ */
static int encode_ver(const cohort_table *t, const pmodel *m,
		      const pver *v, recbuf *b)
{
	uint8_t l8 = (uint8_t)strlen(m->name), mode = (uint8_t)m->mode;
	uint16_t nin = (uint16_t)m->ninputs;
	uint8_t has_sd = v->mean != NULL;
	int bad = rec_put(b, &t->id, 4) || rec_put(b, &l8, 1) ||
		  rec_put(b, m->name, l8) || rec_put(b, &mode, 1) ||
		  rec_put(b, &m->max_delay_ms, 4) || rec_put(b, &m->kept, 4) ||
		  rec_put(b, &nin, 2);
	for (int j = 0; j < m->ninputs && !bad; j++) {
		uint16_t c = (uint16_t)m->inputs[j];
		bad = rec_put(b, &c, 2);
	}
	bad = bad || rec_put(b, &v->version, 8) || rec_put(b, &v->k, 4) ||
	      rec_put(b, &v->dim, 4) || rec_put(b, &has_sd, 1);
	if (has_sd && !bad)
		bad = rec_put(b, v->mean, v->dim * 8) ||
		      rec_put(b, v->sd, v->dim * 8);
	if (!bad)
		bad = rec_put(b, v->cent, (size_t)v->k * v->dim * 4);
	for (uint32_t p = 0; p < v->k && !bad; p++) {
		const char *nm = v->names[p] ? v->names[p] : "";
		uint8_t n8 = (uint8_t)strlen(nm);
		bad = rec_put(b, &n8, 1) || rec_put(b, nm, n8);
	}
	return bad ? COHORT_ENOMEM : 0;
}

int persona_encode(const cohort_table *t, int i, recbuf *b)
{
	const pmodel *m = t->models[i];
	return m->cur ? encode_ver(t, m, m->cur, b) : 1;
}

static int bad_rec(uint64_t lsn, const char *what)
{
	return seterr(COHORT_ECORRUPT, "log record %llu: %s",
		      (unsigned long long)lsn, what);
}

static bool get_str(bytes_in *r, char *out, size_t max)
{
	uint8_t n = (uint8_t)bin_uint(r, 1);
	const char *s = bin_take(r, n);
	if (!s || n > max)
		return false;
	memcpy(out, s, n);
	out[n] = 0;
	return true;
}

static int replay_model(cohort_table *t, bytes_in *r, uint64_t lsn)
{
	char name[COHORT_MAX_NAME + 1];
	if (!get_str(r, name, COHORT_MAX_NAME))
		return bad_rec(lsn, "bad persona model name");
	cohort_persona_def def = { 0 };
	def.mode = (cohort_persona_mode)bin_uint(r, 1);
	def.max_delay_ms = (uint32_t)bin_uint(r, 4);
	def.changes_kept = (uint32_t)bin_uint(r, 4);
	uint16_t nin = (uint16_t)bin_uint(r, 2);
	if (nin > COHORT_PERSONA_MAX_INPUTS)
		return bad_rec(lsn, "persona model with too many inputs");
	int cols[COHORT_PERSONA_MAX_INPUTS];
	for (int j = 0; j < nin; j++)
		cols[j] = (int)bin_uint(r, 2);
	def.columns = cols;
	def.ncolumns = nin;
	uint64_t version = bin_uint(r, 8);
	uint32_t k = (uint32_t)bin_uint(r, 4), dim = (uint32_t)bin_uint(r, 4);
	uint8_t has_sd = (uint8_t)bin_uint(r, 1);
	if (r->bad || k == 0 || dim == 0 ||
	    (uint64_t)k * dim > MAX_MODEL_FLOATS || k > COHORT_MAX_PERSONAS)
		return bad_rec(lsn, "bad persona model header");
	const void *mean = has_sd ? bin_take(r, (uint64_t)dim * 8) : NULL;
	const void *sd = has_sd ? bin_take(r, (uint64_t)dim * 8) : NULL;
	const void *cent = bin_take(r, (uint64_t)k * dim * 4);
	if (r->bad)
		return bad_rec(lsn, "truncated persona model");
	/* the payload is not aligned for floats: copy */
	float *c = cmalloc((size_t)k * dim * 4);
	double *mn = has_sd ? cmalloc(dim * 8) : NULL;
	double *s = has_sd ? cmalloc(dim * 8) : NULL;
	char **names = ccalloc(k, sizeof(char *));
	int rc = 0;
	if (!c || !names || (has_sd && (!mn || !s)))
		rc = seterr(COHORT_ENOMEM, "replay: out of memory");
	if (rc == 0) {
		memcpy(c, cent, (size_t)k * dim * 4);
		if (has_sd) {
			memcpy(mn, mean, dim * 8);
			memcpy(s, sd, dim * 8);
		}
		for (uint32_t p = 0; p < k && rc == 0; p++) {
			char nm[256];
			if (!get_str(r, nm, 255))
				rc = bad_rec(lsn, "bad persona name");
			else if (nm[0] && !(names[p] = cmalloc(strlen(nm) + 1)))
				rc = seterr(COHORT_ENOMEM, "out of memory");
			else if (nm[0])
				strcpy(names[p], nm);
		}
	}
	if (rc == 0)
		rc = install_version(t, name, &def, k, c, mn, s, 0, NULL,
				     version);
	if (rc == 0) {
		pmodel *m = model_find(t, name);
		for (uint32_t p = 0; p < k; p++) {
			m->cur->names[p] = names[p];
			names[p] = NULL;
		}
	}
	for (uint32_t p = 0; names && p < k; p++)
		cfree(names[p]);
	cfree(names);
	cfree(c);
	cfree(mn);
	cfree(s);
	return rc;
}

int persona_replay(cohort_db *db, uint8_t type, bytes_in *r, uint64_t lsn)
{
	uint32_t id = (uint32_t)bin_uint(r, 4);
	if (r->bad || id >= cohort_db_ntables(db))
		return bad_rec(lsn, "unknown table id");
	cohort_table *t = db->tables[id];
	if (type == REC_PERSONA_MODEL)
		return replay_model(t, r, lsn);
	char model[COHORT_MAX_NAME + 1];
	if (!get_str(r, model, COHORT_MAX_NAME))
		return bad_rec(lsn, "bad persona model name");
	if (type == REC_PERSONA_DROP)
		return drop(t, model);
	uint64_t version = bin_uint(r, 8);
	uint32_t p = (uint32_t)bin_uint(r, 4);
	char name[256];
	if (!get_str(r, name, 255) || r->bad)
		return bad_rec(lsn, "bad persona name record");
	return set_name(t, model, p, name, version, true);
}

/* ------------------------------------------------------------------------
 * Reads
 * ------------------------------------------------------------------------ */
int cohort_persona_models(const cohort_table *t, const char **names,
			  size_t max, size_t *n)
{
	if (!t || !n || (max && !names))
		return seterr(COHORT_EINVAL, "persona models: NULL argument");
	cohort_table *w = (cohort_table *)t;
	pthread_rwlock_rdlock(&w->plock);
	int nm = atomic_load(&w->nmodels);
	for (int i = 0; i < nm && (size_t)i < max; i++)
		names[i] = t->models[i]->name;
	*n = (size_t)nm;
	pthread_rwlock_unlock(&w->plock);
	return 0;
}

/* Look the model up for a reader holding plock or a stripe. */
static int reader_model(const cohort_table *t, const char *model,
			pmodel **out)
{
	if (!t)
		return seterr(COHORT_EINVAL, "persona: NULL table");
	if (!model)
		return seterr(COHORT_EBADNAME, "persona model name is NULL");
	pmodel *m = model_find(t, model);
	if (!m)
		return no_model(t, model);
	if (!m->cur)
		return seterr(COHORT_EBUSY, "persona model '%s' has no version "
			      "yet (being trained)", model);
	*out = m;
	return 0;
}

int cohort_persona_describe(const cohort_table *t, const char *model,
			    cohort_persona_info *out)
{
	if (!t || !model || !out)
		return seterr(COHORT_EINVAL, "persona describe: NULL argument");
	cohort_table *w = (cohort_table *)t;
	pthread_rwlock_rdlock(&w->plock);
	pmodel *m = model_find(t, model);
	int rc = m ? 0 : no_model(t, model);
	if (rc == 0) {
		memset(out, 0, sizeof(*out));
		out->version = m->cur ? m->cur->version : 0;
		out->k = m->cur ? m->cur->k : 0;
		out->dim = m->dim;
		out->ncolumns = (size_t)m->ninputs;
		memcpy(out->columns, m->inputs,
		       (size_t)m->ninputs * sizeof(int));
		out->mode = m->mode;
		out->max_delay_ms = m->max_delay_ms;
		pthread_mutex_lock(&m->train_mu);
		out->training = m->next != NULL || m->training;
		pthread_mutex_unlock(&m->train_mu);
		out->pending = rowq_pending(&m->q, NULL);
		for (uint32_t p = 0; m->cur && p < m->cur->k; p++)
			out->assigned += atomic_load(&m->cur->sizes[p]);
	}
	pthread_rwlock_unlock(&w->plock);
	return rc;
}

int cohort_persona_centroid(const cohort_table *t, const char *model,
			    uint32_t p, const char **name, double *centroid,
			    uint64_t *size, double *typical)
{
	cohort_table *w = (cohort_table *)t;
	if (!t)
		return seterr(COHORT_EINVAL, "persona centroid: NULL table");
	pthread_rwlock_rdlock(&w->plock);
	pmodel *m;
	int rc = reader_model(t, model, &m);
	if (rc == 0 && p >= m->cur->k)
		rc = seterr(COHORT_ERANGE, "persona model '%s' has %u personas; "
			    "no persona %u", model, m->cur->k, p);
	if (rc == 0) {
		const pver *v = m->cur;
		if (name)
			*name = v->names[p];
		for (uint32_t j = 0; centroid && j < v->dim; j++) {
			double c = v->cent[(size_t)p * v->dim + j];
			centroid[j] = v->mean ? c * v->sd[j] + v->mean[j] : c;
		}
		if (size)
			*size = atomic_load(&v->sizes[p]);
		if (typical)
			*typical = v->typical[p];
	}
	pthread_rwlock_unlock(&w->plock);
	return rc;
}

int cohort_persona_sizes(const cohort_table *t, const char *model,
			 uint64_t *sizes, size_t n, uint64_t *version)
{
	cohort_table *w = (cohort_table *)t;
	if (!t || (!sizes && n))
		return seterr(COHORT_EINVAL, "persona sizes: NULL argument");
	/* every stripe: no write is half way between two personas */
	table_rdlock_all(t);
	pthread_rwlock_rdlock(&w->plock);
	pmodel *m;
	int rc = reader_model(t, model, &m);
	if (rc == 0 && n < m->cur->k)
		rc = seterr(COHORT_ERANGE, "persona model '%s' has %u personas; "
			    "room for %zu", model, m->cur->k, n);
	for (uint32_t p = 0; rc == 0 && p < m->cur->k; p++)
		sizes[p] = atomic_load(&m->cur->sizes[p]);
	if (rc == 0 && version)
		*version = m->cur->version;
	pthread_rwlock_unlock(&w->plock);
	table_unlock_all(t);
	return rc;
}

static int64_t lag_of(pmodel *m)
{
	int64_t lag;
	rowq_pending(&m->q, &lag);
	return lag;
}

int cohort_persona_get(const cohort_table *t, const char *model,
		       const void *key, size_t key_len,
		       cohort_persona_state *out)
{
	if (!t || !out || (!key && key_len))
		return seterr(COHORT_EINVAL, "persona get: NULL argument");
	int rc = key_check(t, key_len);
	if (rc)
		return rc;
	uint64_t h = key_hash(key, key_len);
	stripe *s = stripe_of((cohort_table *)t, h);
	memset(out, 0, sizeof(*out));
	out->persona = COHORT_PERSONA_NONE;
	pthread_rwlock_rdlock(&s->lock);
	pmodel *m;
	rc = reader_model(t, model, &m);
	if (rc == 0) {
		int64_t found = keymap_find(t, s, h, key, (uint32_t)key_len);
		out->status = COHORT_ROW_MISSING;
		out->version = m->cur->version;
		if (found >= 0) {
			uint32_t slot = (uint32_t)found;
			int64_t rt = tab_chunk(t, slot)->time[slot_off(slot)];
			out->status = row_expired(t, rt, cohort_now()) ?
				COHORT_ROW_EXPIRED : COHORT_ROW_PRESENT;
			const pstate *ps = st_of(m->cur, slot);
			out->persona = ps->lab1 ? ps->lab1 - 1 :
				COHORT_PERSONA_NONE;
			out->distance = ps->d1;
			uint32_t seq = atomic_load_explicit(
				&m->seq[slot >> CHUNK_SHIFT][slot_off(slot)],
				memory_order_relaxed);
			out->pending = seq != ps->seq;
		}
	}
	pthread_rwlock_unlock(&s->lock);
	if (rc == 0 && out->pending)
		out->lag_ms = (uint32_t)lag_of(m);
	return rc ? rc : out->status;
}

/* The full answer for features z (has: there are some). */
static void assign_full(const pmodel *m, const pver *v, const float *z,
			bool has, const double *raw, size_t mwant,
			cohort_persona_result *out)
{
	memset(out, 0, sizeof(*out));
	out->version = v->version;
	out->persona = COHORT_PERSONA_NONE;
	if (!has)
		return;
	size_t mm = mwant < 2 ? 2 : mwant;
	if (mm > v->k)
		mm = v->k;
	uint32_t lab[COHORT_PERSONA_M_MAX];
	float d[COHORT_PERSONA_M_MAX];
	persona_topm_exact(&v->pc, z, mm, lab, d);
	out->persona = lab[0];
	out->distance = d[0];
	double typ = v->typical[lab[0]];
	out->anomaly = typ > 0 ? (float)(d[0] / typ) : 0;
	out->m = mwant < v->k ? mwant : v->k;
	memcpy(out->nearest, lab, out->m * sizeof(uint32_t));
	memcpy(out->distances, d, out->m * sizeof(float));
	uint32_t idx[COHORT_PERSONA_EXPLAIN];
	double con[COHORT_PERSONA_EXPLAIN];
	const float *ca = v->cent + (size_t)lab[0] * v->dim;
	const float *cb = mm > 1 ? v->cent + (size_t)lab[1] * v->dim : NULL;
	out->nexplain = persona_explain(z, ca, cb, v->dim,
					COHORT_PERSONA_EXPLAIN, idx, con);
	for (size_t i = 0; i < out->nexplain; i++) {
		cohort_persona_feature *f = &out->explain[i];
		uint32_t j = idx[i];
		f->contribution = con[i];
		if (m->is_vec) {
			f->column = m->inputs[0];
			f->element = j;
			f->value = z[j];
			f->centroid = ca[j];
		} else {
			f->column = m->inputs[j];
			f->value = raw ? raw[j] : z[j] * v->sd[j] + v->mean[j];
			f->centroid = ca[j] * v->sd[j] + v->mean[j];
		}
	}
}

int cohort_persona_assign(const cohort_table *t, const char *model,
			  const void *key, size_t key_len, size_t m,
			  cohort_persona_result *out)
{
	if (!t || !out || (!key && key_len))
		return seterr(COHORT_EINVAL, "persona assign: NULL argument");
	if (m == 0 || m > COHORT_PERSONA_M_MAX)
		return seterr(COHORT_EINVAL, "persona assign: m = %zu (1 to %d)",
			      m, COHORT_PERSONA_M_MAX);
	int rc = key_check(t, key_len);
	if (rc)
		return rc;
	uint64_t h = key_hash(key, key_len);
	stripe *s = stripe_of((cohort_table *)t, h);
	float z[COHORT_MAX_DIM];
	pthread_rwlock_rdlock(&s->lock);
	pmodel *pm;
	rc = reader_model(t, model, &pm);
	if (rc == 0) {
		int64_t found = keymap_find(t, s, h, key, (uint32_t)key_len);
		memset(out, 0, sizeof(*out));
		out->persona = COHORT_PERSONA_NONE;
		out->version = pm->cur->version;
		rc = COHORT_ROW_MISSING;
		if (found >= 0) {
			uint32_t slot = (uint32_t)found;
			int64_t rt = tab_chunk(t, slot)->time[slot_off(slot)];
			rc = row_expired(t, rt, cohort_now()) ?
				COHORT_ROW_EXPIRED : COHORT_ROW_PRESENT;
		}
		if (rc == COHORT_ROW_PRESENT) {
			uint32_t slot = (uint32_t)found;
			double raw[COHORT_PERSONA_MAX_INPUTS];
			bool valid[COHORT_PERSONA_MAX_INPUTS];
			bool has = row_feat(pm, pm->cur, slot, z);
			if (!pm->is_vec) {
				row_raw(pm, slot, raw, valid);
				for (int j = 0; j < pm->ninputs; j++)
					if (!valid[j])
						raw[j] = NAN;
			}
			assign_full(pm, pm->cur, z, has,
				    pm->is_vec ? NULL : raw, m, out);
		}
	}
	pthread_rwlock_unlock(&s->lock);
	return rc;
}

int cohort_persona_assign_values(const cohort_table *t, const char *model,
				 const cohort_value *values, size_t n,
				 size_t m, cohort_persona_result *out)
{
	if (!t || !out || (!values && n))
		return seterr(COHORT_EINVAL, "persona assign: NULL argument");
	if (m == 0 || m > COHORT_PERSONA_M_MAX)
		return seterr(COHORT_EINVAL, "persona assign: m = %zu (1 to %d)",
			      m, COHORT_PERSONA_M_MAX);
	cohort_table *w = (cohort_table *)t;
	float z[COHORT_MAX_DIM];
	pthread_rwlock_rdlock(&w->plock);
	pmodel *pm;
	int rc = reader_model(t, model, &pm);
	if (rc == 0 && n != (size_t)pm->ninputs)
		rc = seterr(COHORT_EINVAL, "persona model '%s' has %d inputs; "
			    "%zu values given", model, pm->ninputs, n);
	bool has = false;
	double raw[COHORT_PERSONA_MAX_INPUTS];
	for (size_t i = 0; rc == 0 && i < n; i++) {
		const cohort_value *v = &values[i];
		const pver *ver = pm->cur;
		if (pm->is_vec) {
			if (v->type == COHORT_NULL)
				break;
			if (v->type != COHORT_VEC || !v->v.vec.ptr)
				rc = seterr(COHORT_ETYPE, "persona model '%s' "
					    "takes a vector", model);
			else if (v->v.vec.dim != pm->dim)
				rc = seterr(COHORT_EDIM, "persona model '%s': "
					    "vector of dimension %u, model has "
					    "%u", model, v->v.vec.dim, pm->dim);
			for (uint32_t j = 0; rc == 0 && j < pm->dim; j++) {
				if (!isfinite(v->v.vec.ptr[j]))
					rc = seterr(COHORT_ENAN, "persona "
						    "assign: element %u is "
						    "not finite", j);
				z[j] = v->v.vec.ptr[j];
			}
			has = rc == 0;
			break;
		}
		double x;
		switch (v->type) {
		case COHORT_NULL: z[i] = 0; raw[i] = NAN; continue;
		case COHORT_F32: x = v->v.f32; break;
		case COHORT_F64: x = v->v.f64; break;
		case COHORT_I32: x = v->v.i32; break;
		case COHORT_I64: x = (double)v->v.i64; break;
		case COHORT_BOOL: x = v->v.b; break;
		default:
			rc = seterr(COHORT_ETYPE, "persona model '%s': input %zu "
				    "takes a number, not %s", model, i,
				    cohort_type_name(v->type));
			continue;
		}
		if (!isfinite(x)) {
			rc = seterr(COHORT_ENAN, "persona model '%s': input %zu "
				    "is not finite", model, i);
			continue;
		}
		raw[i] = x;
		z[i] = zscore(x, ver->mean[i], ver->sd[i]);
		has = true;
	}
	if (rc == 0)
		assign_full(pm, pm->cur, z, has, pm->is_vec ? NULL : raw, m,
			    out);
	pthread_rwlock_unlock(&w->plock);
	return rc;
}

typedef struct mctx {
	const pver *v;
	uint32_t lab1;
} mctx;

static void members_restrict(uint32_t chunk, uint64_t *words, void *arg)
{
	const mctx *c = arg;
	const pstate *st = c->v->st[chunk];
	for (uint32_t w = 0; w < CHUNK_WORDS; w++)
		for (uint64_t bits = words[w]; bits; bits &= bits - 1) {
			uint32_t o = w * 64 + (uint32_t)__builtin_ctzll(bits);
			if (st[o].lab1 != c->lab1)
				words[w] &= ~(UINT64_C(1) << (o & 63));
		}
}

int cohort_persona_members(const cohort_table *t, const char *model,
			   uint32_t p, const cohort_filter *f, int root,
			   cohort_time at, cohort_key_cb cb, void *ctx,
			   uint64_t *count)
{
	if (!t || !cb)
		return seterr(COHORT_EINVAL, "persona members: NULL table or "
			      "callback");
	table_rdlock_all(t);
	pmodel *m;
	int rc = reader_model(t, model, &m);
	if (rc == 0 && p >= m->cur->k)
		rc = seterr(COHORT_ERANGE, "persona model '%s' has %u personas; "
			    "no persona %u", model, m->cur->k, p);
	mctx c = { rc == 0 ? m->cur : NULL, p + 1 };
	if (rc == 0)
		rc = filter_scan_locked(t, f, root, at, members_restrict, &c,
					cb, ctx, count);
	table_unlock_all(t);
	return rc;
}

int cohort_persona_changes(const cohort_table *t, const char *model,
			   uint64_t *cursor, cohort_persona_change *out,
			   size_t max, uint64_t *lost)
{
	if (!t || !cursor || (!out && max))
		return seterr(COHORT_EINVAL, "persona changes: NULL argument");
	cohort_table *w = (cohort_table *)t;
	pthread_rwlock_rdlock(&w->plock);
	pmodel *m = model ? model_find(t, model) : NULL;
	if (!m) {
		pthread_rwlock_unlock(&w->plock);
		return model ? no_model(t, model) :
			seterr(COHORT_EBADNAME, "persona model name is NULL");
	}
	pthread_mutex_lock(&m->fmu);
	uint64_t first = m->fseq > m->kept ? m->fseq - m->kept + 1 : 1;
	uint64_t from = *cursor + 1, missed = 0;
	if (from < first) {
		missed = first - from;
		from = first;
	}
	if (from > m->fseq + 1)
		from = m->fseq + 1;   /* a cursor from before a restart */
	size_t n = 0;
	for (uint64_t s = from; s <= m->fseq && n < max; s++)
		out[n++] = m->ring[(s - 1) % m->kept];
	*cursor = from - 1 + n;
	pthread_mutex_unlock(&m->fmu);
	pthread_rwlock_unlock(&w->plock);
	if (lost)
		*lost = missed;
	return (int)(n > INT32_MAX ? INT32_MAX : n);
}

int persona_check(const cohort_table *t, const char *model, uint32_t p)
{
	pmodel *m;
	int rc = reader_model(t, model, &m);
	if (rc == 0 && p >= m->cur->k)
		rc = seterr(COHORT_ERANGE, "persona model '%s' has %u personas; "
			    "no persona %u", model, m->cur->k, p);
	return rc;
}

void persona_chunk_members(const cohort_table *t, const char *model,
			   uint32_t p, uint32_t chunk, uint64_t *words)
{
	memset(words, 0, CHUNK_WORDS * 8);
	pmodel *m = model_find(t, model);
	if (!m || !m->cur)
		return;
	const pstate *st = m->cur->st[chunk];
	for (uint32_t o = 0; o < CHUNK_ROWS; o++)
		if (st[o].lab1 == p + 1)
			words[o >> 6] |= UINT64_C(1) << (o & 63);
}
