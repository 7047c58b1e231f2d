/*
 * fuzz/proto.c -- libFuzzer target for the wire codec (net/proto.c).
 *
 * The input is a byte stream as a server receives it: requests are
 * decoded one after another until one is incomplete or refused. Every
 * request that decodes is encoded again and must come out as the very
 * bytes it was decoded from (the codec is canonical but for the few cases
 * listed in canonical()), which also reads every decoded field, so ASan
 * sees any pointer into the arena or the frame that is off. The same bytes
 * are then read as a response: a status (and message), and a GET_MANY
 * columnar block, whose every value is read.
 *
 * Seeds: tests/fuzz/corpus/proto/, one valid frame of every request form
 * (written by tests/net/test_proto.c with COHORT_WRITE_CORPUS=dir) and a
 * few blocks and responses. `make fuzz-replay` runs them once,
 * `make fuzz` explores from them.
 */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "proto.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

/* Whether re-encoding q must reproduce its frame byte for byte. */
static int canonical(const proto_req *q)
{
	switch (q->hdr.opcode) {
	case PROTO_OP_HELLO:
		/* the client's name is cut to 64 bytes and made printable */
		return 0;
	case PROTO_OP_PERSONA_UPLOAD:
		/* has_stats = 1 with dim 0 carries no stats */
		return q->u.upload.dim != 0 || q->u.upload.mean;
	default:
		/* an opcode version 1 does not know has its body skipped */
		return proto_op_name(q->hdr.opcode) != NULL;
	}
}

static void requests(const uint8_t *data, size_t size)
{
	proto_arena arena = { .limit = 64u << 20 };
	proto_wbuf w = { 0 };
	proto_req q;
	size_t off = 0;
	while (off < size) {
		proto_arena_reset(&arena);
		int rc = proto_req_decode(data + off, size - off, 1u << 20,
					  10000, &arena, &q);
		if (rc < 0 && !q.why)
			abort();           /* a refusal always says why */
		if (rc <= 0)
			break;
		if (canonical(&q)) {
			w.len = 0;
			proto_req_encode(&w, &q);
			if (w.err || w.len != (size_t)rc ||
			    memcmp(w.buf, data + off, w.len) != 0)
				abort();
		}
		off += (size_t)rc;
	}
	proto_wbuf_free(&w);
	proto_arena_free(&arena);
}

static volatile uint64_t sink;

static void block(const uint8_t *data, size_t size)
{
	proto_arena arena = { .limit = 64u << 20 };
	proto_rbuf r = { data, data + size, 0, NULL };
	proto_block b;
	if (proto_r_block(&r, &arena, &b) == 0) {
		uint64_t h = 0;
		for (uint32_t i = 0; i < b.nkeys; i++)
			h += b.status[i] + (uint64_t)b.time[i];
		for (uint16_t j = 0; j < b.ncols; j++) {
			const proto_block_col *c = &b.cols[j];
			const uint8_t *v = c->values;
			for (size_t i = 0; i < (size_t)b.nkeys * c->width; i++)
				h += v[i];
			for (uint32_t i = 0; i < b.nkeys; i++) {
				uint32_t code;
				if (c->type != COHORT_CAT || !c->valid[i])
					continue;
				memcpy(&code, v + (size_t)i * 4, 4);
				if (code >= b.nstrings)
					abort();
				uint16_t len = b.str_len[code];
				if (len)
					h += (uint8_t)b.strings[code][len - 1];
			}
		}
		sink = h;
	} else if (!r.err || !r.why) {
		abort();
	}
	proto_arena_free(&arena);
}

static void response(const uint8_t *data, size_t size)
{
	proto_rbuf r = { data, data + size, 0, NULL };
	const char *msg;
	size_t len;
	int st = proto_resp_status(&r, &msg, &len);
	if (st > 0)
		abort();
	if (st < 0 && !r.err) {
		if (len && (msg < (const char *)data ||
			    msg + len > (const char *)data + size))
			abort();
		if (len)
			sink = (uint8_t)msg[len - 1];
	}
	/* a GET_MANY response: the block after the status */
	if (st == 0)
		block(r.p, (size_t)(r.end - r.p));
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	requests(data, size);
	block(data, size);
	response(data, size);
	return 0;
}
