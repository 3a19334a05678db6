# shardlog -- see README.md.  Quick start: `make demo`, `make test`.
#
#   make                 libshardlog.a, libshardlog.so (SONAME), shardlog.pc
#   make test            build and run every tests/test_*.c (cmocka)
#   make SAN=address,undefined test     the same under ASan + UBSan
#   make SAN=thread test-threads        the threaded tests (threads, shard,
#                                       iterator) under TSan
#   make demo            build and run examples/agent_telemetry.c
#   make bench           shardlog vs LMDB, RocksDB, SQLite and the machine's
#                        limits (bench/; 5 rounds, under 15 minutes on 2 cores)
#   make bench-quick     the same, smaller and 3 rounds (under 2 minutes)
#                        (BENCH_ARGS="--dir DIR --only append,durable" etc.)
#   make install / uninstall   honour PREFIX, LIBDIR, INCLUDEDIR and DESTDIR
#   make check-exports   fail if the shared library exports a non-sl_ symbol
#   make install-check   install to a temporary prefix (and DESTDIR), build and
#                        run an outside program via pkg-config, uninstall
#   make stress          the long run: the crash test with SL_CRASH_ITERS=500
#
# `test`, `demo` and `bench` first run scripts/deps, which installs missing
# Debian packages (as root) or names them, then re-enter make so that the
# pkg-config flags below are computed after the install.  Only the bench
# targets install the peers (`scripts/deps bench`).

VERSION := $(shell sed -n 's/^\#define SL_VERSION_STRING "\(.*\)"/\1/p' include/shardlog.h)
ABI     := $(shell sed -n 's/^\#define SL_ABI_VERSION \([0-9]*\)/\1/p' include/shardlog.h)

PREFIX     ?= /usr/local
LIBDIR     ?= $(PREFIX)/lib
INCLUDEDIR ?= $(PREFIX)/include
PCDIR      ?= $(LIBDIR)/pkgconfig
BINDIR     ?= $(PREFIX)/bin
DATADIR    ?= $(PREFIX)/share

DEPS := libzstd libxxhash libcrypto
CC      ?= cc
CFLAGS  ?= -O2 -g
XCFLAGS := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes \
           -D_GNU_SOURCE -Iinclude -pthread -fvisibility=hidden \
           $(shell pkg-config --cflags $(DEPS) 2>/dev/null)
LIBS    := $(shell pkg-config --libs $(DEPS) 2>/dev/null) -pthread
TESTLIBS := $(shell pkg-config --libs cmocka jansson 2>/dev/null)

comma := ,
ifneq ($(SAN),)
XCFLAGS += -fsanitize=$(SAN) -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=$(SAN)
endif
B := build/$(or $(subst $(comma),-,$(SAN)),default)

SRC     := $(wildcard lib/*.c)
SONAME  := libshardlog.so.$(ABI)
SOFILE  := libshardlog.so.$(VERSION)
TESTS   := $(patsubst tests/%.c,$(B)/tests/%,$(wildcard tests/test_*.c))
THREAD_TESTS := $(addprefix $(B)/tests/,test_threads test_shard test_iterator test_commit \
                test_scheduler test_consumer test_ratelimit test_retention test_cold \
                test_reshard test_crypto test_verify)
EXAMPLES := $(patsubst examples/%.c,$(B)/examples/%,$(wildcard examples/*.c))
# The benchmark is one program built from every bench/*.c, linked with the
# peers (a peer without a .pc file is linked as -l<name>).
BENCH_OBJ  := $(patsubst bench/%.c,$(B)/bench/obj/%.o,$(wildcard bench/*.c))
BENCH_MODS := lmdb rocksdb sqlite3
BENCH_CFLAGS := $(foreach m,$(BENCH_MODS),$(shell pkg-config --cflags $(m) 2>/dev/null)) \
                -DBENCH_ROCKSDB_VERSION='"$(shell pkg-config --modversion rocksdb 2>/dev/null)"'
BENCH_LIBS := $(foreach m,$(BENCH_MODS),$(or $(shell pkg-config --libs $(m) 2>/dev/null),-l$(m)))

.PHONY: all deps test test-run test-threads demo demo-run bench bench-run \
        bench-quick bench-quick-run bench-deps \
        examples check-exports install uninstall clean $(B)/shardlog.pc \
        install-check stress stress-run

all: $(B)/libshardlog.a $(B)/$(SOFILE) $(B)/shardlog.pc $(B)/shardlog

# The command-line tool (tools/): the static archive, jansson for JSON.
TOOL_OBJ := $(patsubst tools/%.c,$(B)/tools/%.o,$(wildcard tools/*.c))
$(B)/tools/%.o: tools/%.c tools/cli.h
	@mkdir -p $(@D)
	$(CC) $(XCFLAGS) $(CFLAGS) $(shell pkg-config --cflags jansson 2>/dev/null) -MMD -MP -c $< -o $@
$(B)/shardlog: $(TOOL_OBJ) $(B)/libshardlog.a
	$(CC) $(LDFLAGS) -o $@ $(TOOL_OBJ) $(B)/libshardlog.a \
	    $(shell pkg-config --libs jansson 2>/dev/null) $(LIBS) -lm

$(B)/obj/%.o: lib/%.c
	@mkdir -p $(@D)
	$(CC) $(XCFLAGS) $(CFLAGS) -MMD -MP -c $< -o $@
$(B)/pic/%.o: lib/%.c
	@mkdir -p $(@D)
	$(CC) $(XCFLAGS) $(CFLAGS) -fPIC -MMD -MP -c $< -o $@

$(B)/libshardlog.a: $(SRC:lib/%.c=$(B)/obj/%.o)
	rm -f $@ && $(AR) rcs $@ $^
$(B)/$(SOFILE): $(SRC:lib/%.c=$(B)/pic/%.o)
	$(CC) -shared -Wl,-soname,$(SONAME) -Wl,--no-undefined $(LDFLAGS) -o $@ $^ $(LIBS)
	ln -sf $(SOFILE) $(B)/$(SONAME)
	ln -sf $(SONAME) $(B)/libshardlog.so

# Phony, so that `make` then `make install PREFIX=/usr` never installs a .pc
# that names the wrong prefix.
$(B)/shardlog.pc: pkgconfig/shardlog.pc.in
	@mkdir -p $(@D)
	sed -e 's|@PREFIX@|$(PREFIX)|;s|@LIBDIR@|$(LIBDIR)|' \
	    -e 's|@INCLUDEDIR@|$(INCLUDEDIR)|;s|@VERSION@|$(VERSION)|' $< > $@

# Tests and examples link the static archive: tests may use lib/ internals
# (the OS shim) and examples then run without LD_LIBRARY_PATH.
$(B)/tests/%: tests/%.c tests/testutil.h $(B)/libshardlog.a
	@mkdir -p $(@D)
	$(CC) $(XCFLAGS) $(CFLAGS) -Ilib $(LDFLAGS) -o $@ $< $(B)/libshardlog.a \
	    $(TESTLIBS) $(LIBS)
# test_faults fails the library's memory allocations too: it links a copy of
# the archive whose calls to them go to its hooks (sl__fi_malloc, ...).
FI_SYMS := malloc calloc realloc strdup aligned_alloc asprintf
$(B)/libshardlog-fi.a: $(B)/libshardlog.a
	objcopy $(foreach f,$(FI_SYMS),--redefine-sym $(f)=sl__fi_$(f)) $< $@
$(B)/tests/test_faults: tests/test_faults.c tests/testutil.h $(B)/libshardlog-fi.a
	@mkdir -p $(@D)
	$(CC) $(XCFLAGS) $(CFLAGS) -Ilib $(LDFLAGS) -o $@ $< $(B)/libshardlog-fi.a \
	    $(TESTLIBS) $(LIBS)
# The CLI's test runs the built tool.
$(B)/tests/test_cli: $(B)/shardlog
$(B)/tests/test_cli: XCFLAGS += -DSHARDLOG_CLI='"$(abspath $(B)/shardlog)"' \
    -DSHARDLOG_PRICES='"$(abspath tools/prices.json)"'
$(B)/examples/%: examples/%.c $(B)/libshardlog.a
	@mkdir -p $(@D)
	$(CC) $(XCFLAGS) $(CFLAGS) $(LDFLAGS) -o $@ $< $(B)/libshardlog.a $(LIBS)
# Benchmarks use the public API (and link the static archive, like examples).
$(B)/bench/obj/%.o: bench/%.c
	@mkdir -p $(@D)
	$(CC) $(XCFLAGS) $(CFLAGS) $(BENCH_CFLAGS) -MMD -MP -c $< -o $@
$(B)/bench/bench: $(BENCH_OBJ) $(B)/libshardlog.a
	$(CC) $(LDFLAGS) -o $@ $(BENCH_OBJ) $(B)/libshardlog.a $(BENCH_LIBS) $(LIBS)

deps:
	@scripts/deps

test: deps
	@$(MAKE) --no-print-directory test-run
test-run: $(TESTS)
	@set -e; for t in $(TESTS); do echo "== $$t"; $$t; done; \
	  echo "all $(words $(TESTS)) test programs passed"
test-threads: deps
	@$(MAKE) --no-print-directory $(THREAD_TESTS)
	@set -e; for t in $(THREAD_TESTS); do echo "== $$t"; $$t; done

examples: $(EXAMPLES)
demo: deps
	@$(MAKE) --no-print-directory demo-run
demo-run: $(B)/examples/agent_telemetry
	$(B)/examples/agent_telemetry $(DEMO_ARGS)

# Tables go to stdout; progress and the build's output to stderr, so that
# `make bench > bench.md` keeps just the report.
bench-deps:
	@scripts/deps bench >&2
bench: bench-deps
	@$(MAKE) --no-print-directory $(B)/bench/bench >&2
	@$(MAKE) --no-print-directory bench-run
bench-run: $(B)/bench/bench
	@$(B)/bench/bench --cmd "make bench$(if $(BENCH_ARGS), BENCH_ARGS=\"$(BENCH_ARGS)\")" $(BENCH_ARGS)
bench-quick: bench-deps
	@$(MAKE) --no-print-directory $(B)/bench/bench >&2
	@$(MAKE) --no-print-directory bench-quick-run
bench-quick-run: $(B)/bench/bench
	@$(B)/bench/bench --quick --cmd "make bench-quick$(if $(BENCH_ARGS), BENCH_ARGS=\"$(BENCH_ARGS)\")" $(BENCH_ARGS)

check-exports: $(B)/$(SOFILE)
	@bad=$$(nm -D --defined-only $< | awk '{print $$3}' | grep -v '^sl_' || true); \
	if [ -n "$$bad" ]; then echo "non-sl_ exports:"; echo "$$bad"; exit 1; fi; \
	echo "exports ok: $$(nm -D --defined-only $< | grep -c ' T sl_') sl_ functions"

install: all
	install -d $(DESTDIR)$(LIBDIR) $(DESTDIR)$(INCLUDEDIR) $(DESTDIR)$(PCDIR) \
	  $(DESTDIR)$(BINDIR) $(DESTDIR)$(DATADIR)/shardlog
	install -m 755 $(B)/shardlog $(DESTDIR)$(BINDIR)/
	install -m 644 tools/prices.json $(DESTDIR)$(DATADIR)/shardlog/
	install -m 644 include/shardlog.h $(DESTDIR)$(INCLUDEDIR)/
	install -m 644 $(B)/libshardlog.a $(DESTDIR)$(LIBDIR)/
	install -m 644 $(B)/shardlog.pc $(DESTDIR)$(PCDIR)/
	install -m 755 $(B)/$(SOFILE) $(DESTDIR)$(LIBDIR)/
	ln -sf $(SOFILE) $(DESTDIR)$(LIBDIR)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(LIBDIR)/libshardlog.so
uninstall:
	rm -f $(DESTDIR)$(INCLUDEDIR)/shardlog.h $(DESTDIR)$(PCDIR)/shardlog.pc \
	  $(addprefix $(DESTDIR)$(LIBDIR)/,libshardlog.a libshardlog.so $(SONAME) $(SOFILE)) \
	  $(DESTDIR)$(BINDIR)/shardlog $(DESTDIR)$(DATADIR)/shardlog/prices.json
	-rmdir $(DESTDIR)$(DATADIR)/shardlog 2>/dev/null

# Installs into temporary directories only; see scripts/install-check.
install-check:
	@MAKE="$(MAKE)" CC="$(CC)" scripts/install-check

# The long runs (issue 9): the crash test, 500 SIGKILL rounds per case
# (6 cases) instead of 25; the crash matrix, 200 rounds per case (24 cases,
# 4,800 kills) instead of 14; the power-cut simulation, 5,000 cut points
# (15,000 rebuilt streams) instead of 400; the fault sweep with every
# injection even if it grows past its sampling threshold.  16.5 min on 2 vCPUs.
STRESS_ITERS ?= 500
STRESS_MATRIX_ITERS ?= 200
STRESS_POWERCUT_ITERS ?= 5000
STRESS_TESTS := $(addprefix $(B)/tests/,test_crash test_crashmatrix test_powercut test_faults)
stress: deps
	@$(MAKE) --no-print-directory stress-run
stress-run: $(STRESS_TESTS)
	SL_CRASH_ITERS=$(STRESS_ITERS) $(B)/tests/test_crash
	SL_CRASH_ITERS=$(STRESS_MATRIX_ITERS) $(B)/tests/test_crashmatrix
	SL_POWERCUT_ITERS=$(STRESS_POWERCUT_ITERS) $(B)/tests/test_powercut
	SL_FAULT_ALL=1 $(B)/tests/test_faults

clean:
	rm -rf build

-include $(wildcard $(B)/obj/*.d $(B)/pic/*.d $(B)/bench/obj/*.d)

# ==== fuzzing (fuzz/, issue 9) ================================================
#   make fuzz            build the libFuzzer targets (clang; ASan + UBSan) and
#                        run each for FUZZ_SECONDS (60), from its seed corpus
#                        fuzz/corpus/<target>/; needs clang's libFuzzer
#                        (`scripts/deps fuzz` installs it as root)
#   make fuzz-short      the same, 10 s each (CI; `make -j2` runs two at once)
#   make fuzz-build      build only;  make fuzz-corpus  rewrite the seeds
#   make fuzz-run-<t>    run one target (FUZZ_ARGS: more libFuzzer options)
# Everything is built into build/fuzz, its own tree, whatever B and SAN say.
# Inputs found during runs go to build/fuzz/corpus/<t>/ (the committed
# corpus is only read), crashes to build/fuzz/artifacts/<t>-*, logs to
# build/fuzz/logs/<t>.log.  Reproduce a crash: build/fuzz/fuzz_<t> <file>.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := record segment cold manifest slots journal jsonl
FZ           := build/fuzz
FUZZ_FLAGS   := -std=c11 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -D_GNU_SOURCE \
                -Iinclude -pthread -fvisibility=hidden -O1 -g -fno-omit-frame-pointer \
                -fsanitize=address,undefined -fno-sanitize-recover=all \
                $(shell pkg-config --cflags $(DEPS) jansson 2>/dev/null)
FUZZ_LIBS    := $(LIBS) $(shell pkg-config --libs jansson 2>/dev/null) -lm
FUZZ_RUN_ENV := ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
                UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1
FUZZ_BINS    := $(addprefix $(FZ)/fuzz_,$(FUZZ_TARGETS))
FUZZ_COMMON  := $(FZ)/fuzz/fixture.o $(FZ)/libshardlog.a
# the tool's sources, for jsonl (main() renamed: libFuzzer has its own)
FUZZ_TOOL    := $(patsubst tools/%.c,$(FZ)/tools/%.o,$(wildcard tools/*.c))

# (fuzz-run-<t> is a pattern rule: make skips those for .PHONY targets)
.PHONY: fuzz fuzz-short fuzz-deps fuzz-build fuzz-run fuzz-corpus

fuzz-deps:
	@FUZZ_CC=$(FUZZ_CC) scripts/deps fuzz >&2
fuzz: fuzz-deps
	@$(MAKE) --no-print-directory fuzz-build
	@$(MAKE) --no-print-directory fuzz-run
fuzz-short:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10
fuzz-build: $(FUZZ_BINS)
fuzz-run: $(addprefix fuzz-run-,$(FUZZ_TARGETS))
	@echo "fuzz: $(words $(FUZZ_TARGETS)) targets ran $(FUZZ_SECONDS) s each, no crash"

# The library and the tool with coverage (fuzzer-no-link), the targets with
# libFuzzer's main.  (Their objects are kept: no rebuild on every run.)
.SECONDARY: $(patsubst %,$(FZ)/fuzz/fuzz_%.o,$(FUZZ_TARGETS)) $(FZ)/fuzz/make_corpus.o
$(FZ)/obj/%.o: lib/%.c
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
$(FZ)/libshardlog.a: $(SRC:lib/%.c=$(FZ)/obj/%.o)
	rm -f $@ && $(AR) rcs $@ $^
$(FZ)/tools/%.o: tools/%.c tools/cli.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link $(if $(filter main,$*),-Dmain=shardlog_main) \
	    -MMD -MP -c $< -o $@
$(FZ)/fuzz/%.o: fuzz/%.c fuzz/fuzz.h
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link -Ilib -Itools -MMD -MP -c $< -o $@
$(FZ)/fuzz_%: $(FZ)/fuzz/fuzz_%.o $(FUZZ_COMMON)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_COMMON) $(FUZZ_LIBS)
$(FZ)/fuzz_jsonl: $(FZ)/fuzz/fuzz_jsonl.o $(FUZZ_TOOL) $(FUZZ_COMMON)
	$(FUZZ_CC) -fsanitize=fuzzer,address,undefined -o $@ $< $(FUZZ_TOOL) $(FUZZ_COMMON) $(FUZZ_LIBS)
$(FZ)/make_corpus: $(FZ)/fuzz/make_corpus.o $(FUZZ_COMMON)
	$(FUZZ_CC) -fsanitize=address,undefined -o $@ $< $(FUZZ_COMMON) $(FUZZ_LIBS)

# One run: the scratch corpus first (where libFuzzer adds), then the seeds.
fuzz-run-%: $(FZ)/fuzz_%
	@mkdir -p $(FZ)/corpus/$* $(FZ)/artifacts $(FZ)/logs
	@echo "fuzz $*: running $(FUZZ_SECONDS) s (log: $(FZ)/logs/$*.log)"
	@if $(FUZZ_RUN_ENV) $(FZ)/fuzz_$* -max_total_time=$(FUZZ_SECONDS) -timeout=25 \
	      -rss_limit_mb=2048 -print_final_stats=1 -artifact_prefix=$(FZ)/artifacts/$*- \
	      $(FUZZ_ARGS) $(FZ)/corpus/$* fuzz/corpus/$* > $(FZ)/logs/$*.log 2>&1; then \
	    awk -v t=$* '/^stat::number_of_executed_units/ {n=$$2} \
	      /^stat::average_exec_per_sec/ {r=$$2} /^stat::new_units_added/ {u=$$2} \
	      / cov: / {c=$$0; sub(/.* cov: /, "", c); sub(/ .*/, "", c)} \
	      END {printf "fuzz %s: %s runs, %s exec/s, coverage %s, %s new inputs\n", t, n, r, c, u}' \
	      $(FZ)/logs/$*.log; \
	else \
	    echo "fuzz $*: FAILED; the end of $(FZ)/logs/$*.log:"; tail -n 60 $(FZ)/logs/$*.log; \
	    ls $(FZ)/artifacts/$*-* 2>/dev/null; exit 1; \
	fi

# Rewrite the committed seeds (deterministic; see fuzz/make_corpus.c).
fuzz-corpus: $(FZ)/make_corpus
	$(FUZZ_RUN_ENV) $(FZ)/make_corpus fuzz/corpus

-include $(wildcard $(FZ)/obj/*.d $(FZ)/tools/*.d $(FZ)/fuzz/*.d)
