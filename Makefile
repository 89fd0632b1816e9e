# libcasyncio (the C engine) and the cffi module of py_async_lib.
#
#   make            the library, then the cffi module
#   make lib        libcasyncio/libcasyncio.so only
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

# make's built-in default for CC is "cc"; use gcc unless told otherwise.
ifeq ($(origin CC),default)
CC      := gcc
endif
PYTHON  ?= python3
VALGRIND ?= valgrind

WARN     := -Wall -Wextra -Werror
CFLAGS   ?= -O2
LIB_CFLAGS = $(CFLAGS) $(WARN) -std=gnu11 -fPIC -fvisibility=hidden
ASANFLAGS := -O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer \
             -fno-sanitize-recover=undefined

LIBDIR  := libcasyncio
SRCS    := $(addprefix $(LIBDIR)/,core.c timer.c io.c stream.c process.c)
HDRS    := $(LIBDIR)/casyncio.h $(LIBDIR)/internal.h
LIB     := $(LIBDIR)/libcasyncio.so

OBJS      := $(patsubst $(LIBDIR)/%.c,build/obj/%.o,$(SRCS))
ASAN_OBJS := $(patsubst $(LIBDIR)/%.c,build/asan/obj/%.o,$(SRCS))
ASAN_LIB  := build/asan/libcasyncio.so

TESTS     := test_core test_timer test_io test_stream test_process test_demo
TEST_BINS := $(addprefix build/tests/,$(TESTS))
ASAN_BINS := $(addprefix build/asan/tests/,$(TESTS))
TEST_HDRS := tests/c/ctest.h $(LIBDIR)/casyncio.h

.PHONY: all lib ffi asan ctest ctest-asan valgrind check check-python clean

all: lib ffi loadgen

lib: $(LIB)

ffi: lib
	# A new file renamed over the old one: a process running the old
	# library keeps its mapping (copying in place would crash it).
	cp $(LIB) py_async_lib/libcasyncio.so.tmp
	mv -f py_async_lib/libcasyncio.so.tmp py_async_lib/libcasyncio.so
	$(PYTHON) build_ffi.py

asan: $(ASAN_LIB)

# ---- library ---------------------------------------------------------------

build/obj/%.o: $(LIBDIR)/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(LIB_CFLAGS) -c $< -o $@

# The soname keeps a module linked against this file independent of the
# path it was linked from.
$(LIB): $(OBJS)
	$(CC) -shared -Wl,-soname,libcasyncio.so -o $@ $(OBJS) $(LDFLAGS) -lm

build/asan/obj/%.o: $(LIBDIR)/%.c $(HDRS)
	@mkdir -p $(@D)
	$(CC) $(ASANFLAGS) $(WARN) -std=gnu11 -fPIC -fvisibility=hidden -c $< -o $@

$(ASAN_LIB): $(ASAN_OBJS)
	$(CC) $(ASANFLAGS) -shared -Wl,-soname,libcasyncio.so -o $@ $(ASAN_OBJS) -lm

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

# Each program prints "<name>: N passed, M failed" and exits non-zero on a
# failure; every program runs, and the target fails if any did.
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
valgrind: $(TEST_BINS)
	@fail=0; for t in $(TEST_BINS); do \
	    $(VALGRIND) --leak-check=full --error-exitcode=1 \
	        --errors-for-leak-kinds=definite $$t || fail=1; \
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
	rm -rf build $(LIB) py_async_lib/libcasyncio.so py_async_lib/_casyncio*.so

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
# quarantine) makes their RSS bounds meaningless.
ASAN_RT  = $(shell $(CC) -print-file-name=libasan.so)
UBSAN_RT = $(shell $(CC) -print-file-name=libubsan.so)
ASAN_PYTEST_ARGS ?= tests -m "not soak"
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
