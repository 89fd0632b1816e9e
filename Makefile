# libcasyncio (the C engine) and the cffi module of py_async_lib.
#
#   make            the library, the cffi module (when cffi is installed;
#                   otherwise `pip install .` builds it) and the load generator
#   make lib        libcasyncio/libcasyncio.so only
#   make examples   build/echo_server (examples/echo_server.c, C on the
#                   library alone)
#   make install    libcasyncio.so.$(SOVERSION), casyncio.h and casyncio.pc under
#                   PREFIX (/usr/local), staged under DESTDIR if given;
#                   make uninstall removes them
#   make ctest      C unit tests against the library
#   make ctest-asan the same tests, built with ASan + UBSan
#   make valgrind   the plain test programs under valgrind
#   make asan       build/asan/libcasyncio.so
#   make check      the whole test suite: C unit tests (plain, ASan+UBSan,
#                   valgrind), make check-python, then pytest again on the
#                   ASan build (make asan-pytest)
#   make check-python PYTHON=python3.X  the suite on one interpreter: its
#                   cffi module, pytest, CPython's test.test_asyncio on our
#                   loop (tests/cpython/whole_suite.py)
#   make asan-pytest pytest (less the soak tests) on build/asan/libcasyncio.so
#   make fuzz       the libFuzzer harnesses, FUZZ_SECONDS (60) each (clang)
#   make fuzz-smoke the same, 10 s each
#   make DEBUG=1    the library with its assert()s (release builds define
#                   NDEBUG; the ASan, fuzz and C test builds never do)

# make's built-in default for CC is "cc"; use gcc unless told otherwise.
ifeq ($(origin CC),default)
CC      := gcc
endif
PYTHON  ?= python3
VALGRIND ?= valgrind

WARN     := -Wall -Wextra -Werror
CFLAGS   ?= -O2
# The library's assert()s check its own invariants (LOOP_UNREACHABLE in
# internal.h).  The release build compiles them out, and a broken invariant
# is then counted in loop_stats' events_dropped instead of aborting.
ifeq ($(DEBUG),1)
LIB_DEFS :=
else
LIB_DEFS := -DNDEBUG
endif
LIB_CFLAGS = $(CFLAGS) $(LIB_DEFS) $(WARN) -std=gnu11 -fPIC -fvisibility=hidden
ASANFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=undefined

LIBDIR  := libcasyncio
SRCS    := $(addprefix $(LIBDIR)/,core.c timer.c io.c stream.c process.c)
HDRS    := $(LIBDIR)/casyncio.h $(LIBDIR)/internal.h
LIB     := $(LIBDIR)/libcasyncio.so

# The version has one home, py_async_lib/__init__.py (pyproject.toml reads it
# too).  SOVERSION is the ABI's: it changes when casyncio.h breaks a program
# built against an older one (see the header's promise), and names the soname.
VERSION   := $(shell sed -n 's/^__version__ = "\(.*\)"$$/\1/p' py_async_lib/__init__.py)
SOVERSION := 0
SONAME    := libcasyncio.so.$(SOVERSION)

OBJS      := $(patsubst $(LIBDIR)/%.c,build/obj/%.o,$(SRCS))
ASAN_OBJS := $(patsubst $(LIBDIR)/%.c,build/asan/obj/%.o,$(SRCS))
ASAN_LIB  := build/asan/libcasyncio.so

TESTS     := test_core test_timer test_io test_stream test_process test_demo \
             test_invariants test_ctest
TEST_BINS := $(addprefix build/tests/,$(TESTS))
ASAN_BINS := $(addprefix build/asan/tests/,$(TESTS))
TEST_HDRS := tests/c/ctest.h $(LIBDIR)/casyncio.h

.PHONY: all lib ffi asan ctest ctest-asan valgrind check check-python clean \
        examples install uninstall soname FORCE

all: lib ffi loadgen examples

lib: $(LIB)

# The extension asks for the library by its soname, so the copy beside it
# carries that name.  cffi is what `pip install` brings: without it the
# module is left to `pip install .`, which builds it and puts it here too.
ffi: lib
	# A new file renamed over the old one: a process running the old
	# library keeps its mapping (copying in place would crash it).
	cp $(LIB) py_async_lib/$(SONAME).tmp
	mv -f py_async_lib/$(SONAME).tmp py_async_lib/$(SONAME)
	@if $(PYTHON) -c 'import cffi' 2>/dev/null; then \
	    echo "$(PYTHON) build_ffi.py"; $(PYTHON) build_ffi.py; \
	else \
	    echo "make: cffi is not installed for $(PYTHON): the extension module" \
	         "is built by \`pip install .\` (or by make once cffi is there)"; \
	fi

asan: $(ASAN_LIB)

# ---- library ---------------------------------------------------------------

# The flags the objects were built with: a change (DEBUG=1, CFLAGS=...)
# rebuilds them instead of linking stale ones.
build/obj/flags: FORCE
	@mkdir -p $(@D)
	@echo '$(CC) $(LIB_CFLAGS)' | cmp -s - $@ || echo '$(CC) $(LIB_CFLAGS)' >$@

build/obj/%.o: $(LIBDIR)/%.c $(HDRS) build/obj/flags
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -c $< -o $@

# The soname keeps a module linked against this file independent of the
# path it was linked from; what links it looks for $(SONAME), which the
# symlink beside it provides in the build tree.  Relinked when this file
# changes (the soname is written here).
$(LIB): $(OBJS) Makefile
	$(CC) -shared -Wl,-soname,$(SONAME) -o $@ $(OBJS) $(LDFLAGS) -lm
	ln -sf libcasyncio.so $(LIBDIR)/$(SONAME)

build/asan/obj/%.o: $(LIBDIR)/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(ASANFLAGS) $(WARN) -std=gnu11 -fPIC -fvisibility=hidden -c $< -o $@

$(ASAN_LIB): $(ASAN_OBJS)
	$(CC) $(ASANFLAGS) -shared -Wl,-soname,$(SONAME) -o $@ $(ASAN_OBJS) -lm
	ln -sf libcasyncio.so build/asan/$(SONAME)

# ---- examples --------------------------------------------------------------
# C programs on the public header alone, linked like an outside user's
# program (-lcasyncio), with an rpath to the library in the tree.

EXAMPLES := build/echo_server

examples: $(EXAMPLES)

$(EXAMPLES): build/%: examples/%.c $(LIBDIR)/casyncio.h $(LIB)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) $(WARN) -std=gnu11 -I$(LIBDIR) $< -o $@ -L$(LIBDIR) -lcasyncio \
	    -Wl,-rpath,'$$ORIGIN/../$(LIBDIR)'

# ---- C tests ---------------------------------------------------------------
# Linked with an rpath to the library they test, so no LD_LIBRARY_PATH.

TEST_CFLAGS := -O1 -g $(WARN) -std=gnu11 -D_GNU_SOURCE -I$(LIBDIR)

build/tests/%: tests/c/%.c $(TEST_HDRS) $(LIB)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) $< -o $@ -L$(LIBDIR) -lcasyncio \
	    -Wl,-rpath,'$$ORIGIN/../../$(LIBDIR)' -lpthread

build/asan/tests/%: tests/c/%.c $(TEST_HDRS) $(ASAN_LIB)
	@mkdir -p $(@D)
	$(CC) $(ASANFLAGS) $(WARN) -std=gnu11 -D_GNU_SOURCE -I$(LIBDIR) $< -o $@ \
	    -Lbuild/asan -lcasyncio -Wl,-rpath,'$$ORIGIN/..' -lpthread

# test_invariants breaks the library's invariants from inside, so it is
# built from the sources: with NDEBUG as the release library is (events
# counted as dropped), and, for ctest-asan, without (assert() fires).
build/tests/test_invariants: tests/c/test_invariants.c $(TEST_HDRS) $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(TEST_CFLAGS) -DNDEBUG $< $(SRCS) -o $@ -lm

build/asan/tests/test_invariants: tests/c/test_invariants.c $(TEST_HDRS) $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(ASANFLAGS) $(WARN) -std=gnu11 -D_GNU_SOURCE -I$(LIBDIR) $< $(SRCS) \
	    -o $@ -lm

# Each program runs each of its tests in a child process of its own, with a
# timeout, and names the test that failed, crashed or hung (tests/c/ctest.h;
# test_ctest checks that); it prints "<name>: N passed, M failed" and exits
# non-zero on a failure.  Every program runs, and the target fails if any
# did.
ctest: $(TEST_BINS)
	@fail=0; for t in $(TEST_BINS); do $$t || fail=1; done; exit $$fail

ctest-asan: $(ASAN_BINS)
	@fail=0; for t in $(ASAN_BINS); do \
	    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
	    UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 $$t || fail=1; \
	done; exit $$fail

# valgrind 3.19 does not know epoll_pwait2 (the loop falls back to
# epoll_wait, after one "unhandled syscall" warning) nor pidfd_open
# (test_process then checks the -ENOSYS path and skips the rest).
# valgrind follows the fork of each test's child by itself and checks it as
# it exits (its error exit status fails that test); --trace-children also
# follows test_ctest's exec of itself.  -q: only errors, not a summary for
# every child.
valgrind: $(TEST_BINS)
	@fail=0; for t in $(TEST_BINS); do \
	    $(VALGRIND) -q --trace-children=yes --leak-check=full \
	        --error-exitcode=1 --errors-for-leak-kinds=definite $$t || fail=1; \
	done; exit $$fail

# The README's test command.  `python -m pytest` from the repository root
# imports the package built in place by `make`.
check: ctest ctest-asan valgrind
	$(MAKE) --no-print-directory check-python
	$(MAKE) --no-print-directory asan-pytest

# The suite on one interpreter (.ci/run: every Python from 3.11 to 3.15):
# the cffi module for PYTHON (each version's file has its own name, all of
# them share py_async_lib/libcasyncio.so), pytest, then CPython's whole
# test.test_asyncio of PYTHON on our loop.  Both run; either failing fails.
check-python: lib
	$(MAKE) --no-print-directory ffi PYTHON=$(PYTHON)
	@status=0; \
	echo "$(PYTHON) -m pytest -q"; $(PYTHON) -m pytest -q || status=1; \
	echo "$(PYTHON) tests/cpython/whole_suite.py"; \
	$(PYTHON) tests/cpython/whole_suite.py || status=1; \
	exit $$status

clean:
	rm -rf build $(LIB) $(LIBDIR)/$(SONAME) py_async_lib/libcasyncio.so* \
	    py_async_lib/_casyncio*.so

# What the extension asks for (setup.py ships the library under this name).
soname:
	@echo $(SONAME)

# ---- make install: the library for C programs ------------------------------
# The real file carries the full version; the soname symlink is what programs
# load, the unversioned one what -lcasyncio finds when they are built.

PREFIX      ?= /usr/local
libdir      ?= $(PREFIX)/lib
includedir  ?= $(PREFIX)/include
pkgconfigdir ?= $(libdir)/pkgconfig
INSTALL     ?= install

install: lib
	$(INSTALL) -d $(DESTDIR)$(libdir) $(DESTDIR)$(includedir) $(DESTDIR)$(pkgconfigdir)
	$(INSTALL) -m 755 $(LIB) $(DESTDIR)$(libdir)/libcasyncio.so.$(VERSION)
	ln -sf libcasyncio.so.$(VERSION) $(DESTDIR)$(libdir)/$(SONAME)
	ln -sf $(SONAME) $(DESTDIR)$(libdir)/libcasyncio.so
	$(INSTALL) -m 644 $(LIBDIR)/casyncio.h $(DESTDIR)$(includedir)/casyncio.h
	sed -e 's|@prefix@|$(PREFIX)|' -e 's|@libdir@|$(libdir)|' \
	    -e 's|@includedir@|$(includedir)|' -e 's|@version@|$(VERSION)|' \
	    $(LIBDIR)/casyncio.pc.in > $(DESTDIR)$(pkgconfigdir)/casyncio.pc
	chmod 644 $(DESTDIR)$(pkgconfigdir)/casyncio.pc

uninstall:
	rm -f $(DESTDIR)$(libdir)/libcasyncio.so.$(VERSION) \
	    $(DESTDIR)$(libdir)/$(SONAME) $(DESTDIR)$(libdir)/libcasyncio.so \
	    $(DESTDIR)$(includedir)/casyncio.h $(DESTDIR)$(pkgconfigdir)/casyncio.pc

# The benchmarks' load generator (make loadgen).
include benchmarks/loadgen.mk

# ---- reliability: pytest under ASan, fuzzing --------------------------------

# pytest with the cffi module running on build/asan/libcasyncio.so.  The
# module finds libcasyncio through a RUNPATH ($ORIGIN), which the dynamic
# loader searches after LD_LIBRARY_PATH, so pointing LD_LIBRARY_PATH at
# build/asan swaps the library without rebuilding the module; the first
# command checks that the ASan build is the one loaded.  Python itself is
# not instrumented, so the sanitizer runtimes (from the gcc that built the
# library) are preloaded.  No leak detection: CPython keeps memory alive at
# exit by design.  The soak tests are left out: ASan's allocator (redzones,
# quarantine) makes their RSS bounds meaningless; so are the packaging
# tests, which build and run installed copies, not the ASan build.
ASAN_RT  = $(shell $(CC) -print-file-name=libasan.so)
UBSAN_RT = $(shell $(CC) -print-file-name=libubsan.so)
ASAN_PYTEST_ARGS ?= tests -m "not soak and not packaging"
ASAN_PYTEST_ENV = \
	LD_LIBRARY_PATH=$(CURDIR)/build/asan$${LD_LIBRARY_PATH:+:$$LD_LIBRARY_PATH} \
	LD_PRELOAD="$(ASAN_RT) $(UBSAN_RT)" \
	ASAN_OPTIONS=detect_leaks=0:halt_on_error=1:abort_on_error=1 \
	UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1

asan-pytest: $(ASAN_LIB)
	@$(ASAN_PYTEST_ENV) $(PYTHON) -c 'import sys, py_async_lib; \
	    sys.exit("$(ASAN_LIB) is not the libcasyncio loaded" \
	             if "$(CURDIR)/$(ASAN_LIB)" not in open("/proc/self/maps").read() \
	             else 0)'
	$(ASAN_PYTEST_ENV) $(PYTHON) -m pytest -q $(ASAN_PYTEST_ARGS)

# libFuzzer harnesses (tests/fuzz/), built with clang over the library's
# sources.  `make fuzz` runs each for FUZZ_SECONDS (60), `make fuzz-smoke`
# for 10.  Corpora stay in build/fuzz/corpus/; a failing input is saved as
# build/fuzz/<harness>-crash-* (and -leak-, -timeout-) and fails the target;
# `build/fuzz/<harness> <file>` replays it.
FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_FLAGS   := -g -O1 -fsanitize=fuzzer,address,undefined \
                -fno-sanitize-recover=undefined -fno-omit-frame-pointer
FUZZERS      := fuzz_timer fuzz_stream fuzz_fdtable
FUZZ_BINS    := $(addprefix build/fuzz/,$(FUZZERS))

build/fuzz/%: tests/fuzz/%.c tests/fuzz/fuzz_common.h $(SRCS) $(HDRS)
	@mkdir -p $(@D)
	$(FUZZ_CC) $(FUZZ_FLAGS) $(WARN) -std=gnu11 -D_GNU_SOURCE -I$(LIBDIR) \
	    $< $(SRCS) -o $@ -lm

# Each harness prints its executions; the last line counts the harnesses
# that passed and failed.
fuzz: $(FUZZ_BINS)
	@pass=0; fail=0; for f in $(FUZZERS); do \
	    mkdir -p build/fuzz/corpus/$$f; \
	    if build/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -max_len=4096 \
	            -timeout=30 -print_final_stats=1 \
	            -artifact_prefix=build/fuzz/$$f- build/fuzz/corpus/$$f \
	            >build/fuzz/$$f.log 2>&1; then \
	        pass=$$((pass + 1)); \
	    else \
	        fail=$$((fail + 1)); tail -n 40 build/fuzz/$$f.log; \
	    fi; \
	    echo "$$f: $$(sed -n 's/^stat::number_of_executed_units: *//p' \
	        build/fuzz/$$f.log) executions in $(FUZZ_SECONDS) s"; \
	done; \
	echo "fuzz: $$pass passed, $$fail failed"; test $$fail -eq 0

fuzz-smoke:
	@$(MAKE) --no-print-directory fuzz FUZZ_SECONDS=10

.PHONY: asan-pytest fuzz fuzz-smoke
