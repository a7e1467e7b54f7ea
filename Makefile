# wsharness: lb, refserver, loadgen on one shared static library (common/).
# Targets: `make help` lists them (the `## ` lines below, one above each target).  `make SANITIZE=1` builds with ASan+UBSan into build/san/.

CC      ?= cc
CSTD    := -std=c11 -D_POSIX_C_SOURCE=200809L -D_DEFAULT_SOURCE
WARN    := -Wall -Wextra -Werror -Wshadow -Wstrict-prototypes -Wmissing-prototypes -Wformat=2
OPT     ?= -O2 -g
CFLAGS  += $(CSTD) $(WARN) $(OPT) -I. -MMD -MP
LDLIBS  := -lev -lhiredis -ljansson -lssl -lcrypto -lz -lm
# The build's commit for --version and reports ("unknown" outside git); main objects rebuild when it changes.
WSH_COMMIT := $(or $(shell git describe --always --dirty 2>/dev/null),unknown)
CFLAGS  += -DWSH_COMMIT='"$(WSH_COMMIT)"'

ifeq ($(SANITIZE),1)
BUILD   := build/san
CFLAGS  += -fsanitize=address,undefined -fno-sanitize-recover=all -fno-omit-frame-pointer
LDFLAGS += -fsanitize=address,undefined
else
BUILD   := build
endif

COMMON_SRC := $(wildcard common/*.c)
COMMON_OBJ := $(COMMON_SRC:%.c=$(BUILD)/obj/%.o)
REF_SRC    := $(wildcard refserver/*.c)
REF_OBJ    := $(REF_SRC:%.c=$(BUILD)/obj/%.o)
REF_LIBOBJ := $(filter-out %/main.o,$(REF_OBJ))
LG_SRC     := $(wildcard loadgen/*.c)
LG_OBJ     := $(LG_SRC:%.c=$(BUILD)/obj/%.o)
LG_LIBOBJ  := $(filter-out %/main.o,$(LG_OBJ))
LG_LIBSRC  := $(filter-out %/main.c,$(LG_SRC))
LB_SRC     := $(wildcard lb/*.c)
LB_OBJ     := $(LB_SRC:%.c=$(BUILD)/obj/%.o)
LB_LIBOBJ  := $(filter-out %/main.o,$(LB_OBJ))
LB_LIBSRC  := $(filter-out %/main.c,$(LB_SRC))
UNIT_SRC   := $(wildcard tests/unit/test_*.c)
UNIT_BIN   := $(UNIT_SRC:tests/unit/%.c=$(BUILD)/tests/%)
TOOL_SRC   := $(wildcard tests/tools/*.c)
TOOL_BIN   := $(TOOL_SRC:tests/tools/%.c=$(BUILD)/%)
FUZZ_SRC   := $(wildcard fuzz/fuzz_*.c)
FUZZ_BIN   := $(FUZZ_SRC:fuzz/%.c=build/fuzz/%)
FUZZ_SECONDS ?= 10

.PHONY: all test unit itest interop conformance check fuzz bench demo deps need-deps lint clean scenario compare gate baseline help
## all  build lb, refserver and loadgen into build/ (the default; installs missing Debian packages first)
all: need-deps $(BUILD)/refserver $(BUILD)/loadgen $(if $(wildcard lb/main.c),$(BUILD)/lb) $(TOOL_BIN)

# Fail early, with the remedy, when a build dependency is missing; install it when we can.
need-deps:
	@scripts/deps.sh --check || scripts/deps.sh

## deps  install the Debian packages the build, tests and scenarios use
deps:
	@scripts/deps.sh

## help  this list
help:
	@awk '/^## /{sub(/^## /, ""); t=$$1; sub(/^[^ ]+ +/, ""); printf "  make %-16s %s\n", t, $$0}' $(firstword $(MAKEFILE_LIST))

# The npm peers (ws, socket.io) of the interop tests and bench-socketio, from the committed lockfile; npm writes
# node_modules/.package-lock.json last, so an older one means the lockfile changed.
INTEROP_DEPS := tests/interop/node_modules/.package-lock.json
$(INTEROP_DEPS): tests/interop/package-lock.json | need-deps
	cd tests/interop && npm ci --no-audit --no-fund

# Order-only on need-deps: with -j the compiler must not start before the headers are installed.
$(BUILD)/obj/%.o: %.c | need-deps
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -c $< -o $@

# Rewritten only when the commit changes, so an unchanged tree does not rebuild.
$(BUILD)/commit.stamp: FORCE
	@mkdir -p $(dir $@)
	@echo '$(WSH_COMMIT)' | cmp -s - $@ || echo '$(WSH_COMMIT)' > $@
$(filter %/main.o,$(REF_OBJ) $(LG_OBJ) $(LB_OBJ)) $(BUILD)/obj/loadgen/report.o: $(BUILD)/commit.stamp
.PHONY: FORCE
FORCE:

$(BUILD)/libcommon.a: $(COMMON_OBJ)
	rm -f $@ && ar rcs $@ $^

# refserver's modules minus main(), so unit tests can link them.
$(BUILD)/librefserver.a: $(REF_LIBOBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/refserver: $(REF_OBJ) $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# loadgen's modules minus main(), for the unit tests and the fuzzers.
$(BUILD)/libloadgen.a: $(LG_LIBOBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/loadgen: $(LG_OBJ) $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

# lb's modules minus main(), for the unit tests and the fuzzers (the lb binary comes with lb/main.c).
$(BUILD)/liblb.a: $(LB_LIBOBJ)
	rm -f $@ && ar rcs $@ $^

$(BUILD)/lb: $(LB_OBJ) $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/%: $(BUILD)/obj/tests/tools/%.o $(BUILD)/libcommon.a
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -o $@

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/liblb.a $(BUILD)/libloadgen.a $(BUILD)/librefserver.a $(BUILD)/libcommon.a
	@mkdir -p $(dir $@)
	$(CC) $(LDFLAGS) $^ $(LDLIBS) -lcmocka -o $@

# Every test layer; the last line is the plain "N passed, N failed" summary.
## test  every test layer: unit, integration, interop, conformance
test: all $(UNIT_BIN)
	@scripts/run-tests.sh $(BUILD) unit integration interop conformance

## unit  the cmocka unit tests
unit: all $(UNIT_BIN)
	@scripts/run-tests.sh $(BUILD) unit

## itest  the Python integration tests
itest: all
	@scripts/run-tests.sh $(BUILD) integration

## interop  the node --test interop tests against npm peers
interop: all
	@scripts/run-tests.sh $(BUILD) interop

## conformance  socket.io-protocol's conformance suite against refserver
conformance: all
	@scripts/run-tests.sh $(BUILD) conformance

## check  the tests under ASan+UBSan, then each fuzzer for FUZZ_SECONDS (10)
check:
	$(MAKE) SANITIZE=1 test
	$(MAKE) fuzz FUZZ_SECONDS=$(FUZZ_SECONDS)

# libFuzzer targets always build with clang, against the sources directly (no static lib: it is built with $(CC)).
# The library sources are compiled once (fuzzer-no-link: coverage instrumented, no main) and linked into every target.
FUZZ_FLAGS  := $(CSTD) -I. -g -O1 -MMD -MP
FUZZ_LIBOBJ := $(patsubst %.c,build/fuzz/obj/%.o,$(COMMON_SRC) $(LG_LIBSRC) $(LB_LIBSRC))

build/fuzz/obj/%.o: %.c
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer-no-link,address,undefined -c $< -o $@

build/fuzz/%: fuzz/%.c $(FUZZ_LIBOBJ)
	@mkdir -p $(dir $@)
	clang $(FUZZ_FLAGS) -fsanitize=fuzzer,address,undefined $< $(FUZZ_LIBOBJ) $(LDLIBS) -o $@

## fuzz  the libFuzzer targets for FUZZ_SECONDS each
fuzz: need-deps $(FUZZ_BIN)
	@for f in $(FUZZ_BIN); do \
		t=$$(basename $$f); mkdir -p build/fuzz/work-$$t; \
		echo "fuzz $$t for $(FUZZ_SECONDS)s"; \
		$$f -max_total_time=$(FUZZ_SECONDS) -dict=fuzz/$${t#fuzz_}.dict build/fuzz/work-$$t fuzz/corpus/$${t#fuzz_} \
			2>build/fuzz/$$t.log || { tail -40 build/fuzz/$$t.log; exit 1; }; \
		grep -E '^Done|#[0-9]+.*DONE' build/fuzz/$$t.log | tail -1; \
	done

## bench  memory per connection, fan-out, loadgen's cost, lb against HAProxy, Socket.IO
bench: all $(INTEROP_DEPS)
	@bench/run.sh
	@bench/lb.sh
	@bench/socketio.sh

.PHONY: bench-lb
## bench-lb  our lb against HAProxy
bench-lb: all
	@bench/lb.sh

.PHONY: bench-socketio
## bench-socketio  Socket.IO broadcast: refserver against Node.js socket.io
bench-socketio: all $(INTEROP_DEPS)
	@bench/socketio.sh

# new connections lost to 30 reloads under a connection storm: our lb (SIGHUP) against haproxy -W (SIGUSR2).
.PHONY: bench-reload
## bench-reload  connections lost to 30 reloads: our lb against haproxy -W
bench-reload: all
	@bench/reload.py

# 10k, 30k and 100k clients through the lb and straight to the nodes, beside the kernel's floor (several minutes).
.PHONY: bench-scale
## bench-scale  10k, 30k and 100k clients through the lb and direct (minutes)
bench-scale: all
	@bench/scale.py

## demo  two nodes, no balancer
demo: all
	@scripts/demo.sh

# `make scenario broadcast-100` (or NAME=broadcast-100); `make compare broadcast-100`. The words after the target
# are the scenario's name, not targets of their own.
ifneq ($(filter scenario compare,$(firstword $(MAKECMDGOALS))),)
SCENARIO_ARGS := $(wordlist 2,$(words $(MAKECMDGOALS)),$(MAKECMDGOALS))
$(eval $(SCENARIO_ARGS):;@:)
endif
NAME ?= $(SCENARIO_ARGS)

## scenario  NAME: run one scenario (scenarios/run --list shows them)
scenario: all
	@test -n "$(NAME)" || { echo "usage: make scenario NAME (scenarios/*.ini)"; exit 2; }
	@scenarios/run $(NAME)

## compare  NAME: the scenario through our lb, HAProxy and nginx side by side
compare: all
	@test -n "$(NAME)" || { echo "usage: make compare NAME (scenarios/*.ini)"; exit 2; }
	@scenarios/compare $(NAME)

## gate  the regression gate against the committed baselines
gate: all
	@scenarios/gate

## baseline  record new baselines for the gate
baseline: all
	@scenarios/gate --update

## lint  clang-format and clang-tidy
lint:
	clang-format --dry-run -Werror common/*.[ch] refserver/*.[ch] loadgen/*.[ch] $(wildcard lb/*.[ch]) tests/unit/*.[ch] tests/tools/*.c fuzz/*.c
	clang-tidy common/*.c refserver/*.c loadgen/*.c $(wildcard lb/*.c) -- $(CSTD) -I.

## clean  remove build/
clean:
	rm -rf build

-include $(shell find build -name '*.d' 2>/dev/null)
.SECONDARY:
