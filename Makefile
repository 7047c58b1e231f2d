# cohort -- one Makefile for the library, the programs, the tests and the
# benchmarks.
#
#   make            build libcohort.a and the programs into build/
#   make run        build, then serve the real data (../shared/data) with
#                   cohortd on loopback (cohort-run: ./var, Ctrl-C stops)
#   make test       build and run every test, then again under ASan + UBSan
#   make bench      build, run cohort-bench all, regenerate the tables and
#                   plots of docs/benchmarks.md (bench/report.py)
#
# Knobs: V=1 (full commands), WERROR=1, SANITIZE=address,undefined,
# MALLOC=libc|jemalloc, BUILD=dir, FUZZ=1 (with CC=clang: libFuzzer
# instrumentation; `make fuzz-replay` and `make fuzz` set it themselves),
# FUZZ_SECONDS=60.

BUILD    ?= build
SANITIZE ?=
MALLOC   ?= jemalloc
CC       ?= cc
ifeq ($(CC),cc)
CC := gcc
endif

# Packages the build needs on Debian 12; `make` installs the missing ones.
PKGS := libjemalloc-dev liburing-dev libsimde-dev libcriterion-dev pkg-config \
	python3-faiss python3-numpy libopenblas0-pthread dataset-fashion-mnist \
	g++ zlib1g-dev libhnswlib-dev gnuplot-nox redis-server clang
DEPS_STAMP := build/.deps-ok

WARN := -Wall -Wextra -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
	-Wwrite-strings -Wundef -Wno-psabi
ifeq ($(WERROR),1)
WARN += -Werror
endif

CFLAGS ?= -O2
CFLAGS += -std=c11 -g -fno-omit-frame-pointer -pthread -D_GNU_SOURCE \
	$(WARN) -Istore -Iindex -Inet -MMD -MP
LDLIBS := -luring -lm -pthread

# C++ only for the peer shims of cohort-bench (bench/*.cc: hnswlib is a
# header-only C++ library), compiled for the cpu at hand as hnswlib's own
# Python package is, so that the peer runs at its best.
CXXFLAGS ?= -O2
CXXFLAGS += -std=c++17 -g -fno-omit-frame-pointer -pthread -march=native \
	$(filter-out -Wstrict-prototypes -Wmissing-prototypes,$(WARN)) \
	-Ibench -MMD -MP

ifneq ($(SANITIZE),)
CFLAGS += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all
# hnswlib 0.6's SSE prefetches read one link past the end of a list
# (harmless, but ASan stops there): plain code for the peer in these builds
CXXFLAGS += -fsanitize=$(SANITIZE) -fno-sanitize-recover=all \
	-DNO_MANUAL_VECTORIZATION
LDFLAGS += -fsanitize=$(SANITIZE)
MALLOC := libc
endif
# libFuzzer: everything instrumented for coverage and checked by ASan and
# UBSan; the targets link -fsanitize=fuzzer (build dir of its own)
ifeq ($(FUZZ),1)
CFLAGS += -fsanitize=fuzzer-no-link,address,undefined -fno-sanitize-recover=all
LDFLAGS += -fsanitize=address,undefined
MALLOC := libc
endif
ifeq ($(MALLOC),jemalloc)
CFLAGS += -DCOHORT_JEMALLOC=1
LDLIBS += -ljemalloc
endif

ifeq ($(V),1)
Q :=
else
Q := @
endif

# ---- sources -------------------------------------------------------------
INDEX_SRC := index/alloc.c index/simd.c index/cmp.c index/crc32c.c index/dist.c index/kmeans.c index/parallel.c index/persona.c index/hnsw.c
# Kernel families: one simde source each, compiled once per SIMD target.
KERNELS   := index/cmp_kern.c index/dist_kern.c
SIMD_TARGETS := scalar sse4 avx2 avx512
FLAGS_scalar := -DKERN_SCALAR=1
FLAGS_sse4   := -msse4.1
FLAGS_avx2   := -mavx2 -mfma -mpopcnt
FLAGS_avx512 := -mavx512f -mavx512bw -mavx512dq -mavx512vl -mfma -mpopcnt

STORE_SRC := store/error.c store/keymap.c store/dict.c store/table.c \
	store/write.c store/read.c store/filter.c \
	store/io.c store/wal.c store/persist.c store/snapshot.c store/persona.c \
	store/rowq.c store/ann.c

# net/: the protocol codec and the client library (libcohort-client.a,
# which needs only cohort.h's types and error table), the server's modules
# (cohortd = server objects + cohortd.c's main), and the CLI.
CLIENT_SRC := $(wildcard net/proto.c net/client.c net/csv.c) store/error.c
SERVER_SRC := $(wildcard net/conn.c net/handler.c net/auth.c net/metrics.c \
	net/server.c)
CLIENT_LIB := $(BUILD)/libcohort-client.a
SERVER_OBJ := $(SERVER_SRC:%.c=$(BUILD)/%.o)
COHORTD := $(BUILD)/cohortd
CLI     := $(BUILD)/cohort

LIB_SRC := $(INDEX_SRC) $(STORE_SRC)
LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o) $(BUILD)/index/crc32c_hw.o \
	$(foreach t,$(SIMD_TARGETS),$(KERNELS:%.c=$(BUILD)/%.$(t).o))
LIB     := $(BUILD)/libcohort.a

RUN     := $(BUILD)/cohort-run
BENCH   := $(BUILD)/cohort-bench
BENCH_SRC := $(wildcard bench/*.c)
BENCH_CXX := $(wildcard bench/*.cc)
TESTS   := $(BUILD)/cohort-tests
TEST_SRC := $(filter-out tests/tsan/% tests/fuzz/%,$(wildcard tests/*/*.c))
# ThreadSanitizer drivers: plain programs (Criterion cannot run under it)
TSAN_BIN := $(patsubst tests/tsan/%.c,$(BUILD)/tsan-%,$(wildcard tests/tsan/*.c))
PROGRAMS := $(RUN) $(BENCH) $(if $(wildcard net/cohortd.c),$(COHORTD)) \
	$(if $(wildcard net/cli.c),$(CLI))
# The documentation's C examples (docs/examples/*.c), built as the docs
# say: against libcohort-client.a, or libcohort.a for the embedded ones;
# tests/net/test_examples.c runs them against a real cohortd.
EXAMPLES := $(patsubst docs/examples/%.c,$(BUILD)/examples/%,$(wildcard docs/examples/*.c))
# libFuzzer targets (clang): tests/fuzz/<name>.c, corpus in
# tests/fuzz/corpus/<name>/
FUZZ_BIN := $(patsubst tests/fuzz/%.c,$(BUILD)/fuzz-%,$(wildcard tests/fuzz/*.c))

.PHONY: all deps run test check tsan bench clean fuzz fuzz-replay
.DEFAULT_GOAL := all

all: $(LIB) $(CLIENT_LIB) $(PROGRAMS) $(EXAMPLES)

# ---- dependencies --------------------------------------------------------
deps: $(DEPS_STAMP)
$(DEPS_STAMP): Makefile
	@missing=""; for p in $(PKGS); do \
		dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q "ok installed" \
			|| missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
		$$SUDO apt-get update -q && \
		DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -q $$missing \
			|| exit 1; \
	fi
	@mkdir -p $(dir $@) && touch $@

# ---- compile -------------------------------------------------------------
$(BUILD)/%.o: %.c | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

define kernel_rule
$(BUILD)/%.$(1).o: %.c | $(DEPS_STAMP)
	@mkdir -p $$(dir $$@)
	@$$(if $$(Q),echo "  CC      $$< [$(1)]")
	$$(Q)$$(CC) $$(CFLAGS) $$(FLAGS_$(1)) -DKERN_SUFFIX=$(1) -c $$< -o $$@
endef
$(foreach t,$(SIMD_TARGETS),$(eval $(call kernel_rule,$(t))))

$(BUILD)/%.o: %.cc | $(DEPS_STAMP)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CXX     $<")
	$(Q)$(CXX) $(CXXFLAGS) -c $< -o $@

$(BUILD)/index/crc32c_hw.o: CFLAGS += -msse4.2

$(LIB): $(LIB_OBJ)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(CLIENT_LIB): $(CLIENT_SRC:%.c=$(BUILD)/%.o)
	@$(if $(Q),echo "  AR      $@")
	$(Q)rm -f $@ && ar rcs $@ $^

$(COHORTD): $(BUILD)/net/cohortd.o $(SERVER_OBJ) $(LIB) $(CLIENT_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(CLI): $(BUILD)/net/cli.o $(CLIENT_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ -lm -o $@

# cohort-run: a client program (libcohort-client only) that starts cohortd
$(RUN): $(BUILD)/net/run.o $(BUILD)/net/run_load.o $(CLIENT_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ -lm -o $@

# linked by the C++ driver for the shims' C++ runtime; -lz reads the
# gzip'd data sets of the ann suite
$(BENCH): $(BENCH_SRC:%.c=$(BUILD)/%.o) $(BENCH_CXX:%.cc=$(BUILD)/%.o) $(LIB) $(CLIENT_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CXX) $(LDFLAGS) $^ $(LDLIBS) -lz -o $@

$(BUILD)/examples/%: docs/examples/%.c $(LIB) $(CLIENT_LIB)
	@mkdir -p $(dir $@)
	@$(if $(Q),echo "  CC      $<")
	$(Q)$(CC) $(CFLAGS) $(LDFLAGS) $< $(CLIENT_LIB) $(LIB) $(LDLIBS) -o $@

$(TESTS): $(TEST_SRC:%.c=$(BUILD)/%.o) $(SERVER_OBJ) $(LIB) $(CLIENT_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(LDFLAGS) $^ -lcriterion $(LDLIBS) -o $@

# ---- run, test, bench ----------------------------------------------------
# cohortd on ./var, loaded from ../shared/data on first start; Ctrl-C stops
run: $(RUN) $(COHORTD)
	$(RUN)

# check: the tests of one build; test: the normal build, then sanitizers.
# integration tests start $(COHORTD) and run $(CLI): COHORT_BIN says where
# A leak in a test is reported by its worker at exit, after Criterion has
# counted the test passed: the log is searched for the report, so it fails
# the run (tests/runner/lsan.c keeps the runner's own leaks out of it).
check: $(TESTS) $(PROGRAMS) $(EXAMPLES)
	@echo "COHORT_BIN=$(BUILD) $(TESTS) --jobs 2"; \
	COHORT_BIN=$(BUILD) $(TESTS) --jobs 2 > $(BUILD)/check.log 2>&1; \
	rc=$$?; cat $(BUILD)/check.log; \
	if grep -q "ERROR: LeakSanitizer" $(BUILD)/check.log; then \
		echo "a test leaked memory: see the report above"; exit 1; fi; \
	exit $$rc
	COHORT_BIN=$(BUILD) /usr/bin/python3 net/python/test_cohort.py
	/usr/bin/python3 tests/bench/test_report.py

test:
	$(MAKE) check
	$(MAKE) check BUILD=build/san SANITIZE=address,undefined
	$(MAKE) tsan BUILD=build/tsan SANITIZE=thread
	$(MAKE) fuzz-replay BUILD=build/fuzz CC=clang FUZZ=1

$(BUILD)/tsan-%: tests/tsan/%.c $(LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -Itests/tsan $(LDFLAGS) $< $(LIB) $(LDLIBS) -o $@

# races end a driver with status 66; deadlock detection is off (it
# overflows on the table's 256 stripe locks, taken all at once by design)
tsan: $(TSAN_BIN)
	@for t in $(TSAN_BIN); do echo "  TSAN    $$t"; \
		TSAN_OPTIONS="halt_on_error=1 detect_deadlocks=0 exitcode=66" \
		$$t || exit 1; done

# libFuzzer targets: tests/fuzz/<name>.c with the library, the server's
# modules (a target may drive a whole connection in-process) and the
# client library. fuzz-replay runs each target once over its saved corpus
# tests/fuzz/corpus/<name>/ (any crash fails); fuzz explores FUZZ_SECONDS
# per target from it, new inputs into a temporary directory (tests/ is
# left alone) and crashing inputs into $(BUILD)/fuzz-artifacts/.
FUZZ_SECONDS ?= 60
FUZZ_OPTS := -timeout=10 -rss_limit_mb=2048

ifeq ($(FUZZ),1)
$(BUILD)/fuzz-%: tests/fuzz/%.c $(SERVER_OBJ) $(LIB) $(CLIENT_LIB)
	@$(if $(Q),echo "  LD      $@")
	$(Q)$(CC) $(CFLAGS) -fsanitize=fuzzer $(LDFLAGS) $< $(SERVER_OBJ) \
		$(LIB) $(CLIENT_LIB) $(LDLIBS) -o $@

fuzz-replay: $(FUZZ_BIN)
	@mkdir -p $(BUILD)/fuzz-artifacts
	@for t in $(FUZZ_BIN); do n=$${t##*/fuzz-}; c=tests/fuzz/corpus/$$n; \
		echo "  FUZZ    $$n: replay $$c"; \
		[ -d $$c ] || { echo "$$c: no corpus for $$t"; exit 1; }; \
		$$t $(FUZZ_OPTS) -runs=0 \
			-artifact_prefix=$(BUILD)/fuzz-artifacts/$$n- \
			$$c >$(BUILD)/fuzz-$$n.log 2>&1 \
			|| { tail -n 40 $(BUILD)/fuzz-$$n.log; exit 1; }; \
		grep -h "INITED\|DONE" $(BUILD)/fuzz-$$n.log | tail -n 1; \
	done

fuzz: $(FUZZ_BIN)
	@mkdir -p $(BUILD)/fuzz-artifacts
	@for t in $(FUZZ_BIN); do n=$${t##*/fuzz-}; \
		echo "  FUZZ    $$n: $(FUZZ_SECONDS) s"; \
		d=$$(mktemp -d) || exit 1; \
		$$t $(FUZZ_OPTS) -max_total_time=$(FUZZ_SECONDS) \
			-print_final_stats=1 \
			-artifact_prefix=$(BUILD)/fuzz-artifacts/$$n- \
			$$d tests/fuzz/corpus/$$n >$(BUILD)/fuzz-$$n.log 2>&1; \
		rc=$$?; rm -rf $$d; \
		if [ $$rc != 0 ]; then tail -n 60 $(BUILD)/fuzz-$$n.log; \
			echo "crash input: $(BUILD)/fuzz-artifacts/$$n-*"; \
			exit 1; fi; \
		grep -h "stat::number_of_executed_runs\|stat::new_units_added" \
			$(BUILD)/fuzz-$$n.log; \
	done
else
fuzz-replay fuzz:
	$(MAKE) $@ BUILD=build/fuzz CC=clang FUZZ=1
endif

# the net suite starts $(COHORTD) (found beside $(BENCH)) and redis-server.
# One run: the table on the terminal, the JSON lines into
# $(BUILD)/bench/results.json, from which bench/report.py rewrites the
# generated block of docs/benchmarks.md and the plots in docs/bench/.
# BENCH_FLAGS passes more, e.g. BENCH_FLAGS="--ann-n 1000000" for the ann
# suite's full-size synthetic set (about 9 minutes more on 2 cores).
BENCH_JSON := $(BUILD)/bench/results.json
BENCH_FLAGS ?=
bench: $(BENCH) $(if $(wildcard net/cohortd.c),$(COHORTD))
	@mkdir -p $(dir $(BENCH_JSON))
	$(BENCH) all $(BENCH_FLAGS) --json-file $(BENCH_JSON)
	/usr/bin/python3 bench/report.py $(BENCH_JSON) --doc docs/benchmarks.md \
		--plots docs/bench --command "make bench ($(strip \
		$(BENCH) all $(BENCH_FLAGS) --json-file $(BENCH_JSON)))"

clean:
	rm -rf build

-include $(shell find $(BUILD) -name '*.d' 2>/dev/null)
