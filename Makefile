# Postern: GNU make, pkg-config.
#   make            release build in build/
#   make test       installs test dependencies, builds release and
#                   ASan/UBSan builds, runs unit, integration and fuzz smoke tests
#   make run        demo configuration in demo/ and the server in the foreground
#   make fuzz       longer fuzzing runs (clang)
#   make bench      benchmark against Dovecot (BENCH_ARGS=--quick: a short run)
#   make install    PREFIX=/usr/local DESTDIR=

PREFIX  ?= /usr/local
DESTDIR ?=
CC      ?= gcc
PYTHON  ?= /usr/bin/python3

PKGS     := libevent_core libevent_pthreads libevent_openssl libevent_extra openssl inih libxcrypt libargon2
# The password policy and QR codes are the CLI's alone: the server does not load them.
CLI_PKGS := pwquality libqrencode
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) $(CLI_PKGS) 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
CLI_LIBS   := $(shell pkg-config --libs $(CLI_PKGS) 2>/dev/null)

WARN     := -std=c17 -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes \
            -Wno-missing-field-initializers
HARDEN   := -D_FORTIFY_SOURCE=3 -fstack-protector-strong -fPIE
CPPFLAGS := -D_GNU_SOURCE -Isrc $(PKG_CFLAGS)
CFLAGS_RELEASE := $(WARN) -O2 -g $(HARDEN)
LDFLAGS_RELEASE := -pie -Wl,-z,relro,-z,now
# The sanitizer build: FORTIFY is left out (ASan does the checking and the
# two conflict); -O1 keeps the stack traces readable.
SAN      := -fsanitize=address,undefined -fno-sanitize-recover=undefined -fno-omit-frame-pointer
CFLAGS_ASAN := $(WARN) -O1 -g $(SAN) -fPIE
LDFLAGS_ASAN := $(SAN) -pie

LIB_SRC  := $(wildcard src/lib/*.c)
POP3_SRC := $(wildcard src/pop3/*.c src/pop3/sasl/*.c)
STORE_SRC := $(wildcard src/store/*.c)
AUTH_SRC := $(wildcard src/auth/*.c)
GUARD_SRC := $(wildcard src/guard/*.c)
NET_SRC  := $(wildcard src/net/*.c)
CORE_SRC := $(LIB_SRC) $(POP3_SRC) $(STORE_SRC) $(AUTH_SRC) $(GUARD_SRC) src/daemon/config.c
DAEMON_SRC := $(CORE_SRC) $(NET_SRC) src/daemon/main.c
# `postern check` loads the TLS certificate the way the server does.
CLI_SRC  := $(CORE_SRC) src/net/tls.c $(wildcard src/cli/*.c)

UNIT_TESTS := $(patsubst tests/unit/%.c,%,$(filter-out tests/unit/mock_%.c,$(wildcard tests/unit/test_*.c)))
UNIT_MOCKS := $(wildcard tests/unit/mock_*.c)

# Unit-test and fuzz objects are intermediate files to make; keep them so
# a second `make test` does not compile everything again.
.SECONDARY:

.PHONY: all asan test unit integration fuzz fuzz-smoke run install clean deps-build format bench \
        bench-tools
all: deps-build build/posternd build/postern

deps-build:
	@scripts/deps build

# --- objects: one tree per build flavour ---
# V=1 shows the full compiler command lines.
Q := $(if $(V),,@)
build/release/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC      $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_RELEASE) -MMD -MP -c $< -o $@
build/asan/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC asan $<")
	$(Q)$(CC) $(CPPFLAGS) $(CFLAGS_ASAN) -MMD -MP -c $< -o $@

obj = $(patsubst %.c,build/$(1)/%.o,$(2))

build/posternd: $(call obj,release,$(DAEMON_SRC))
	$(CC) $(LDFLAGS_RELEASE) -o $@ $^ $(PKG_LIBS) -lpthread
build/postern: $(call obj,release,$(CLI_SRC))
	$(CC) $(LDFLAGS_RELEASE) -o $@ $^ $(PKG_LIBS) $(CLI_LIBS) -lpthread
build/asan/posternd: $(call obj,asan,$(DAEMON_SRC))
	$(CC) $(LDFLAGS_ASAN) -o $@ $^ $(PKG_LIBS) -lpthread
build/asan/postern: $(call obj,asan,$(CLI_SRC))
	$(CC) $(LDFLAGS_ASAN) -o $@ $^ $(PKG_LIBS) $(CLI_LIBS) -lpthread

asan: build/asan/posternd build/asan/postern

# Unit tests link the modules they test (not main, not net) plus mocks.
build/asan/tests/%: $(call obj,asan,tests/unit/%.c $(UNIT_MOCKS) $(CORE_SRC))
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS_ASAN) -o $@ $^ $(PKG_LIBS) -lcmocka -lpthread

# --- tests ---
test:
	@scripts/deps test
	@$(MAKE) --no-print-directory all asan bench-tools $(addprefix build/asan/tests/,$(UNIT_TESTS))
	@$(MAKE) --no-print-directory unit integration fuzz-smoke

unit: $(addprefix build/asan/tests/,$(UNIT_TESTS))
	@set -e; for t in $^; do echo "== $$t"; $$t; done

integration: build/posternd build/postern build/asan/posternd build/asan/postern
	POSTERN_BUILD=$(CURDIR)/build $(PYTHON) -m pytest -q tests/integration

# libFuzzer needs clang; without it the fuzz targets are skipped, saying so.
FUZZ_TARGETS := $(patsubst tests/fuzz/fuzz_%.c,%,$(wildcard tests/fuzz/fuzz_*.c))
FUZZ_SAN := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS := -std=c17 -D_GNU_SOURCE -Isrc -Itests/unit $(PKG_CFLAGS) -g -O1 $(FUZZ_SAN)
# The modules are compiled once for all targets (instrumented, not linked
# with the fuzzer's main); each target then only compiles its own file.
build/fuzzobj/%.o: %.c
	@mkdir -p $(dir $@)
	@$(if $(V),,echo "  CC fuzz $<")
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@
build/fuzz/%: tests/fuzz/fuzz_%.c $(call obj,fuzzobj,$(CORE_SRC) $(UNIT_MOCKS))
	@mkdir -p build/fuzz
	$(Q)clang $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $^ $(PKG_LIBS) -lpthread

# The one target outside CORE_SRC: the metrics endpoint's request judge.
build/fuzz/metrics_http: $(call obj,fuzzobj,src/net/metrics_http.c)

FUZZ_SMOKE_SECONDS ?= 6
FUZZ_SECONDS ?= 300
fuzz-smoke:
	@if command -v clang >/dev/null; then \
	  $(MAKE) --no-print-directory $(addprefix build/fuzz/,$(FUZZ_TARGETS)) && \
	  for t in $(FUZZ_TARGETS); do \
	    mkdir -p build/fuzz/corpus-$$t; \
	    echo "== fuzz $$t ($(FUZZ_SMOKE_SECONDS)s)"; \
	    build/fuzz/$$t -max_total_time=$(FUZZ_SMOKE_SECONDS) -print_final_stats=0 \
	      build/fuzz/corpus-$$t tests/fuzz/corpus/$$t 2>build/fuzz/$$t.log \
	      || { tail -50 build/fuzz/$$t.log; exit 1; }; \
	  done; \
	else echo "clang not found: fuzz targets skipped"; fi

fuzz:
	@scripts/deps test
	@$(MAKE) --no-print-directory fuzz-smoke FUZZ_SMOKE_SECONDS=$(FUZZ_SECONDS)

# --- benchmark tools (bench/PROTOCOL.md): load generator, the two ceilings, the TLS floor ---
BENCH_TOOLS := $(addprefix build/bench/,loadgen lineserver sendfile_server tls_floor)
bench-tools: $(BENCH_TOOLS)

build/bench/loadgen build/bench/tls_floor: build/bench/%: bench/%.c
	@mkdir -p $(dir $@)
	$(CC) -D_GNU_SOURCE $(CFLAGS_RELEASE) $(LDFLAGS_RELEASE) -o $@ $< -lssl -lcrypto
build/bench/%: bench/%.c bench/bench_server.h
	@mkdir -p $(dir $@)
	$(CC) -D_GNU_SOURCE $(CFLAGS_RELEASE) $(LDFLAGS_RELEASE) -o $@ $< -lpthread

# --- benchmark: Postern against Dovecot on loopback (issue 4, bench/run.py) ---
# Long (about 40 minutes); BENCH_ARGS='--quick' for a short check, '--help' for
# the options. Writes bench/RESULTS.md; the data stays in bench/work/.
BENCH_ARGS ?=
bench:
	@scripts/deps bench
	@$(MAKE) --no-print-directory all bench-tools
	/usr/bin/python3 bench/run.py $(BENCH_ARGS)

# --- demo ---
run:
	@scripts/deps run
	@$(MAKE) --no-print-directory all
	@scripts/demo

install: all
	install -d $(DESTDIR)$(PREFIX)/sbin $(DESTDIR)$(PREFIX)/bin
	install -m 755 build/posternd $(DESTDIR)$(PREFIX)/sbin/posternd
	install -m 755 build/postern $(DESTDIR)$(PREFIX)/bin/postern
	install -d $(DESTDIR)$(PREFIX)/share/man/man1 $(DESTDIR)$(PREFIX)/share/man/man5 \
	           $(DESTDIR)$(PREFIX)/share/man/man8
	install -m 644 docs/postern.1 $(DESTDIR)$(PREFIX)/share/man/man1/postern.1
	install -m 644 docs/postern.conf.5 $(DESTDIR)$(PREFIX)/share/man/man5/postern.conf.5
	install -m 644 docs/posternd.8 $(DESTDIR)$(PREFIX)/share/man/man8/posternd.8

format:
	clang-format -i $(shell find src tests -name '*.[ch]')

clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
