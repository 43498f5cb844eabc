# moat build.  Everything lands under $(O)/ (out of tree); `make help` lists
# the targets.  V=1 shows full commands.
O        ?= build
CC       ?= gcc
CLANG    ?= clang
BPFTOOL  ?= bpftool
PKG_CONFIG ?= pkg-config
ARCH     := $(shell uname -m | sed 's/x86_64/x86/;s/aarch64/arm64/')
MULTIARCH := $(shell $(CC) -print-multiarch 2>/dev/null)

ifeq ($(V),1)
Q =
msg =
else
Q = @
msg = @printf '  %-8s %s\n' "$(1)" "$(2)";
endif

# pkg-config module -> Debian package, checked before anything is built.
PKGS := libbpf:libbpf-dev libxdp:libxdp-dev libnl-3.0:libnl-3-dev \
	libnl-route-3.0:libnl-route-3-dev libpcap:libpcap-dev jansson:libjansson-dev \
	libcurl:libcurl4-openssl-dev yaml-0.1:libyaml-dev libmicrohttpd:libmicrohttpd-dev \
	libcap:libcap-dev libcrypto:libssl-dev cmocka:libcmocka-dev
PKG_MODS := $(foreach p,$(PKGS),$(firstword $(subst :, ,$(p))))
ifeq ($(filter clean help setup,$(MAKECMDGOALS)),)
MISSING := $(foreach p,$(PKGS),$(if $(shell $(PKG_CONFIG) --exists $(firstword $(subst :, ,$(p))) && echo y),,$(word 2,$(subst :, ,$(p)))))
ifneq ($(strip $(MISSING)),)
$(error missing libraries; install the Debian packages: apt-get install $(MISSING))
endif
ifeq ($(shell command -v $(CLANG) 2>/dev/null),)
$(error $(CLANG) not found; install the Debian package: apt-get install clang llvm)
endif
ifeq ($(shell command -v $(BPFTOOL) 2>/dev/null),)
$(error $(BPFTOOL) not found; install the Debian package: apt-get install bpftool)
endif
endif

SANITIZE ?= 0
# Recursively expanded: `make setup all` installs the libraries first, and
# the flags are only asked for when a recipe runs.
PKG_CFLAGS = $(shell $(PKG_CONFIG) --cflags $(PKG_MODS) 2>/dev/null)
CFLAGS_BASE = -std=gnu17 -Wall -Wextra -Werror -g -O2 -D_GNU_SOURCE \
	-Iinclude -I$(O) -Ioffload -Ihostd -Itests/lib -MMD -MP $(PKG_CFLAGS)
ifeq ($(SANITIZE),1)
EXTRA_CFLAGS += -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined
LDFLAGS += -fsanitize=address,undefined
endif
EXTRA_CFLAGS ?=
CFLAGS = $(CFLAGS_BASE) $(EXTRA_CFLAGS)
LIBS_DP   = $(shell $(PKG_CONFIG) --libs libbpf libxdp 2>/dev/null) -lelf -lz
LIBS_HOST = $(shell $(PKG_CONFIG) --libs libnl-route-3.0 libnl-3.0 jansson yaml-0.1 libmicrohttpd libcurl libpcap libcap libcrypto 2>/dev/null) -lpthread -lm
LIBS_TEST = $(shell $(PKG_CONFIG) --libs cmocka 2>/dev/null)

BPF_CFLAGS := -g -O2 -target bpf -mcpu=v3 -D__TARGET_ARCH_$(ARCH) -D__bpf__ \
	-Wall -Wextra -Werror -Wno-unused-parameter -Iinclude -Ixdp \
	-I/usr/include/$(MULTIARCH) -MMD -MP

.DEFAULT_GOAL := all
.DELETE_ON_ERROR:
.SECONDARY:

# ---- BPF ------------------------------------------------------------------
BPF_PROGS := moat bench prefilter
BPF_OBJS  := $(patsubst %,$(O)/xdp/%.bpf.o,$(BPF_PROGS))
BPF_SKELS := $(patsubst %,$(O)/xdp/%.skel.h,$(BPF_PROGS))

$(O)/xdp/%.tmp.bpf.o: xdp/%.bpf.c | $(O)/xdp
	$(call msg,BPF,$@)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

$(O)/xdp/%.bpf.o: $(O)/xdp/%.tmp.bpf.o
	$(call msg,GEN-OBJ,$@)
	$(Q)$(BPFTOOL) gen object $@ $<

$(O)/xdp/%.skel.h: $(O)/xdp/%.bpf.o Makefile
	$(call msg,GEN-SKEL,$@)
	$(Q)$(BPFTOOL) gen skeleton $< name $(subst .,_,$*)_bpf > $@

# Fit-checker fixtures (tests/unit/test_fitcheck.c): small objects, each
# breaking the nfp offload rules in known ways; never loaded.
FIXTURE_OBJS := $(patsubst tests/fixtures/bpf/%.bpf.c,$(O)/tests/fixtures/bpf/%.bpf.o,$(wildcard tests/fixtures/bpf/*.bpf.c))
$(O)/tests/fixtures/bpf/%.bpf.o: tests/fixtures/bpf/%.bpf.c
	$(call msg,BPF,$@)
	@mkdir -p $(@D)
	$(Q)$(CLANG) $(BPF_CFLAGS) -c $< -o $@

# ---- user space -------------------------------------------------------------
DP_SRCS   := $(wildcard offload/*.c)
HOST_LIB_SRCS := $(filter-out hostd/moatd.c hostd/moatctl.c,$(wildcard hostd/*.c))
DP_OBJS   := $(patsubst %.c,$(O)/%.o,$(DP_SRCS))
HOST_LIB_OBJS := $(patsubst %.c,$(O)/%.o,$(HOST_LIB_SRCS))


$(O)/libmoatdp.a: $(DP_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

$(O)/libmoathost.a: $(HOST_LIB_OBJS)
	$(call msg,AR,$@)
	$(Q)rm -f $@ && ar rcs $@ $^

BINS := $(O)/moatd $(O)/moatctl
$(O)/moatd: $(O)/hostd/moatd.o $(O)/libmoathost.a $(O)/libmoatdp.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_HOST) $(LIBS_DP)

$(O)/moatctl: $(O)/hostd/moatctl.o $(O)/libmoathost.a $(O)/libmoatdp.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_HOST) $(LIBS_DP)

# ---- tests and tools --------------------------------------------------------
TEST_LIB_SRCS := $(wildcard tests/lib/*.c)
TEST_LIB_OBJS := $(patsubst %.c,$(O)/%.o,$(TEST_LIB_SRCS))
UNIT_SRCS := $(wildcard tests/unit/test_*.c)
BPFT_SRCS := $(wildcard tests/bpf/test_*.c)
UNIT_BINS := $(patsubst tests/unit/%.c,$(O)/tests/unit/%,$(UNIT_SRCS))
BPFT_BINS := $(patsubst tests/bpf/%.c,$(O)/tests/bpf/%,$(BPFT_SRCS))
TOOL_SRCS := $(wildcard tests/tools/*.c)
TOOL_BINS := $(patsubst tests/tools/%.c,$(O)/tests/tools/%,$(TOOL_SRCS))
BENCH_SRCS := $(wildcard bench/*.c)
BENCH_BINS := $(patsubst bench/%.c,$(O)/bench/%,$(BENCH_SRCS))

$(O)/tests/unit/%: $(O)/tests/unit/%.o $(TEST_LIB_OBJS) $(O)/libmoathost.a $(O)/libmoatdp.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_TEST) $(LIBS_HOST) $(LIBS_DP)

$(O)/tests/bpf/%: $(O)/tests/bpf/%.o $(TEST_LIB_OBJS) $(O)/libmoathost.a $(O)/libmoatdp.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_TEST) $(LIBS_HOST) $(LIBS_DP)

$(O)/tests/tools/%: $(O)/tests/tools/%.o $(O)/libmoathost.a $(O)/libmoatdp.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_HOST) $(LIBS_DP)

$(O)/bench/%: $(O)/bench/%.o $(TEST_LIB_OBJS) $(O)/libmoathost.a $(O)/libmoatdp.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_HOST) $(LIBS_DP)

# Fuzz targets (tests/fuzz/fuzz_*.c, libFuzzer's entry point).  The ordinary
# build links each with tests/fuzz/replay.c, which `make check` runs over the
# seed corpus and the regression inputs; `make fuzz` builds them with clang's
# libFuzzer and ASan+UBSan in $(O)/libfuzzer and fuzzes each for FUZZ_SECONDS.
FUZZ_SRCS := $(wildcard tests/fuzz/fuzz_*.c)
FUZZ_REPLAY_BINS := $(patsubst tests/fuzz/%.c,$(O)/tests/fuzz/%,$(FUZZ_SRCS))
FUZZ_LF_BINS := $(patsubst tests/fuzz/%.c,$(O)/fuzz/%,$(FUZZ_SRCS))
FUZZ_SECONDS ?= 60
ifeq ($(FUZZ),1)
EXTRA_CFLAGS += -fsanitize=fuzzer-no-link
endif

$(O)/tests/fuzz/%: $(O)/tests/fuzz/%.o $(O)/tests/fuzz/replay.o $(TEST_LIB_OBJS) $(O)/libmoathost.a $(O)/libmoatdp.a
	$(call msg,LD,$@)
	$(Q)$(CC) $(LDFLAGS) -o $@ $^ $(LIBS_HOST) $(LIBS_DP)

$(O)/fuzz/%: $(O)/tests/fuzz/%.o $(TEST_LIB_OBJS) $(O)/libmoathost.a $(O)/libmoatdp.a
	$(call msg,LD,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(LDFLAGS) -fsanitize=fuzzer -o $@ $^ $(LIBS_HOST) $(LIBS_DP)

fuzz-bins: $(FUZZ_LF_BINS)

USER_SRCS := $(DP_SRCS) $(HOST_LIB_SRCS) hostd/moatd.c hostd/moatctl.c \
	$(TEST_LIB_SRCS) $(UNIT_SRCS) $(BPFT_SRCS) $(TOOL_SRCS) $(BENCH_SRCS) \
	$(FUZZ_SRCS) tests/fuzz/replay.c
USER_OBJS := $(patsubst %.c,$(O)/%.o,$(USER_SRCS))
$(USER_OBJS): $(O)/%.o: %.c | $(BPF_SKELS)
	$(call msg,CC,$@)
	@mkdir -p $(@D)
	$(Q)$(CC) $(CFLAGS) -c $< -o $@

$(O)/xdp:
	@mkdir -p $@

# ---- targets ------------------------------------------------------------------
.PHONY: all check check-unit check-bpf check-fuzz check-e2e check-conformance bench demo \
	format clean help install lint setup fuzz fuzz-bins
setup:
	$(Q).ci/deps

all: $(BPF_OBJS) $(BINS) $(TOOL_BINS)

tests: all $(UNIT_BINS) $(BPFT_BINS) $(BENCH_BINS) $(FIXTURE_OBJS) $(FUZZ_REPLAY_BINS)

check: tests
	$(Q)O=$(O) tests/run-all

check-unit: tests
	$(Q)O=$(O) tests/run-all unit

check-bpf: tests
	$(Q)O=$(O) tests/run-all bpf

check-fuzz: tests
	$(Q)O=$(O) tests/run-all fuzz

check-e2e: tests
	$(Q)O=$(O) tests/run-all e2e

check-conformance: all
	$(Q)O=$(O) tests/conformance/run

# libFuzzer needs clang: a separate out-of-tree build under $(O)/libfuzzer
fuzz: $(BPF_SKELS)
	$(Q)$(MAKE) --no-print-directory O=$(O)/libfuzzer CC=$(CLANG) SANITIZE=1 FUZZ=1 fuzz-bins
	$(Q)O=$(O) FUZZ_BIN_DIR=$(O)/libfuzzer/fuzz tests/fuzz/run fuzz $(FUZZ_SECONDS)

bench: tests
	$(Q)O=$(O) bench/run

demo: all
	$(Q)O=$(O) tests/lab/demo

# cppcheck + clang-tidy (+ clang-format --dry-run once .clang-format exists)
lint: $(BPF_SKELS)
	$(Q)O=$(O) tests/lint/run

format:
	clang-format -i $$(git ls-files '*.c' '*.h')

clean:
	rm -rf $(O)

help:
	@echo 'make [O=dir] [V=1] [SANITIZE=1] target'
	@echo '  setup              install the Debian packages, mount bpffs (root)'
	@echo '  all                BPF objects, moatd, moatctl, test tools'
	@echo '  check              every test (unit, BPF_PROG_TEST_RUN, fuzz replay, lab end-to-end,'
	@echo '                     conformance, unit+BPF again under ASan+UBSan, libFuzzer smoke, lint)'
	@echo '  check-unit | check-bpf | check-e2e | check-conformance'
	@echo '  fuzz               libFuzzer (clang, ASan+UBSan): each target FUZZ_SECONDS (60)'
	@echo '  bench              benchmarks -> $(O)/bench/results.json'
	@echo '  lint               cppcheck, clang-tidy (.clang-tidy, .cppcheck/): zero findings'
	@echo '  demo               lab + example app + live verdicts (root)'
	@echo '  clean'

-include $(shell find $(O) -name '*.d' 2>/dev/null)
