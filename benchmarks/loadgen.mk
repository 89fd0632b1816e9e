# benchmarks/loadgen.mk -- builds the benchmark load generator.
#
# Included by the top-level Makefile (`include benchmarks/loadgen.mk`):
#
#   make loadgen         build/loadgen from benchmarks/loadgen.c, and
#                        build/epoll_echo (the plain-epoll C reference server)
#   make loadgen-clean   remove them
#
# Paths are relative to the directory make runs in (the repository root).
# Including this file never changes the includer's default goal, whether it
# is included before or after the includer's first rule.

_LOADGEN_SAVED_GOAL := $(.DEFAULT_GOAL)

LOADGEN_SRC    := $(patsubst ./%,%,$(dir $(lastword $(MAKEFILE_LIST)))loadgen.c)
LOADGEN_BIN    := build/loadgen
EPOLL_ECHO_SRC := $(dir $(LOADGEN_SRC))epoll_echo.c
EPOLL_ECHO_BIN := build/epoll_echo
LOADGEN_CC     ?= $(if $(filter default,$(origin CC)),gcc,$(CC))
LOADGEN_CFLAGS ?= -O2 -Wall -Wextra -Werror
LOADGEN_LIBS   ?= -pthread

.PHONY: loadgen loadgen-clean

loadgen: $(LOADGEN_BIN) $(EPOLL_ECHO_BIN)

$(LOADGEN_BIN): $(LOADGEN_SRC) $(lastword $(MAKEFILE_LIST))
	@mkdir -p $(dir $@)
	$(LOADGEN_CC) $(LOADGEN_CFLAGS) -o $@ $< $(LOADGEN_LIBS)

$(EPOLL_ECHO_BIN): $(EPOLL_ECHO_SRC) $(lastword $(MAKEFILE_LIST))
	@mkdir -p $(dir $@)
	$(LOADGEN_CC) $(LOADGEN_CFLAGS) -o $@ $<

loadgen-clean:
	rm -f $(LOADGEN_BIN) $(EPOLL_ECHO_BIN)

.DEFAULT_GOAL := $(_LOADGEN_SAVED_GOAL)
