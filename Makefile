# diskkit - plain Makefile. `make deps`, `make`, `make check`, `make asan`,
# `make install PREFIX=/usr/local DESTDIR=`, `make demo`, `make bench`.
# Sources are found by wildcard: a new lib/, formats/<fmt>/, tools/ or
# tests/unit/check_*.c file needs no edit here.

BUILD    ?= build
PREFIX   ?= /usr/local
DESTDIR  ?=
CC       ?= gcc
VERSION  := 0.1.0
SOVER    := 0

PKGS     := zlib libzstd ext2fs com_err
# libcrypto is not linked: lib/crypto-lib.c dlopens it on first use, so
# only its headers are needed here.
PKG_CFLAGS := $(shell pkg-config --cflags $(PKGS) libcrypto 2>/dev/null)
PKG_LIBS   := $(shell pkg-config --libs $(PKGS) 2>/dev/null)
FUSE_CFLAGS := $(shell pkg-config --cflags fuse3 2>/dev/null)
FUSE_LIBS   := $(shell pkg-config --libs fuse3 2>/dev/null)
CHECK_CFLAGS := $(shell pkg-config --cflags check 2>/dev/null)
CHECK_LIBS   := $(shell pkg-config --libs check 2>/dev/null)

OPT      ?= -O2
SAN      ?=
CFLAGS   ?=
override CFLAGS += $(OPT) -g -std=gnu11 -Wall -Wextra -Wno-unused-parameter \
                   -fPIC -pthread -D_GNU_SOURCE -D_FILE_OFFSET_BITS=64 \
                   -Iinclude -Ilib $(PKG_CFLAGS) $(SAN)
LDLIBS   := $(PKG_LIBS) -lpthread -lm

LIB_SRCS  := $(sort $(wildcard lib/*.c lib/util/*.c formats/*/*.c))
TOOL_SRCS := $(sort $(wildcard tools/*.c))
FUSE_SRCS := $(sort $(wildcard fuse/*.c))
UNIT_SRCS := $(sort $(wildcard tests/unit/check_*.c))

LIB_OBJS  := $(LIB_SRCS:%.c=$(BUILD)/obj/%.o)
TOOL_OBJS := $(TOOL_SRCS:%.c=$(BUILD)/obj/%.o)
FUSE_OBJS := $(FUSE_SRCS:%.c=$(BUILD)/obj/%.o)
UNIT_BINS := $(UNIT_SRCS:tests/unit/%.c=$(BUILD)/tests/%)

BINS := $(BUILD)/diskkit $(if $(FUSE_SRCS),$(BUILD)/diskkit-mount)

.PHONY: all deps bench-deps check check-unit check-interop asan fuzz install uninstall demo bench clean
all: $(BUILD)/libdiskkit.a $(BUILD)/libdiskkit.so $(BINS) $(BUILD)/diskkit.pc

$(BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/fuse/%.o: fuse/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(FUSE_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/obj/tests/%.o: tests/%.c
	@mkdir -p $(dir $@)
	$(CC) $(CFLAGS) $(CHECK_CFLAGS) -MMD -MP -c $< -o $@

$(BUILD)/libdiskkit.a: $(LIB_OBJS)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/libdiskkit.so: $(LIB_OBJS)
	$(CC) -shared -Wl,-soname,libdiskkit.so.$(SOVER) $(SAN) -o $@ $^ $(LDLIBS)

$(BUILD)/diskkit: $(TOOL_OBJS) $(BUILD)/libdiskkit.a
	$(CC) $(SAN) -o $@ $(TOOL_OBJS) $(BUILD)/libdiskkit.a $(LDLIBS)

$(BUILD)/diskkit-mount: $(FUSE_OBJS) $(BUILD)/libdiskkit.a
	$(CC) $(SAN) -o $@ $(FUSE_OBJS) $(BUILD)/libdiskkit.a $(FUSE_LIBS) $(LDLIBS)

$(BUILD)/tests/%: $(BUILD)/obj/tests/unit/%.o $(BUILD)/libdiskkit.a
	@mkdir -p $(dir $@)
	$(CC) $(SAN) -o $@ $< $(BUILD)/libdiskkit.a $(CHECK_LIBS) $(LDLIBS)

$(BUILD)/diskkit.pc: diskkit.pc.in Makefile
	@mkdir -p $(BUILD)
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' $< > $@

# Debian packages needed to build and test (idempotent).
DEPS := build-essential pkg-config zlib1g-dev libzstd-dev libssl-dev libfuse3-dev \
        fuse3 e2fsprogs libext2fs-dev comerr-dev check qemu-utils fdisk python3 \
        libvmdk-utils python3-libvmdk python3-vmdkstream dosfstools strace lvm2
# Peers the benchmarks compare against (not needed by the tests);
# libguestfs needs a kernel for its appliance (linux-image-amd64).
BENCH_DEPS := hyperfine fuse2fs qemu-system-common time libguestfs-tools linux-image-amd64
deps:
	@if [ "$$(id -u)" = 0 ]; then SUDO=; else SUDO=sudo; fi; \
	missing=$$(for p in $(DEPS); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null \
	   | grep -q 'install ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  $$SUDO apt-get update -qq && \
	  DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq --no-install-recommends $$missing; \
	else echo "deps: all installed"; fi

bench-deps:
	@$(MAKE) --no-print-directory deps DEPS="$(BENCH_DEPS)"

check: all $(UNIT_BINS)
	@BUILD=$(BUILD) tests/run-tests.sh

check-unit: all $(UNIT_BINS)
	@BUILD=$(BUILD) ONLY=unit tests/run-tests.sh

check-interop: all
	@BUILD=$(BUILD) ONLY=interop tests/run-tests.sh

# The whole suite under AddressSanitizer + UBSan, in its own build tree.
asan:
	$(MAKE) BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" \
	  check

# Mutation fuzzing of the image and guest parsers under ASan+UBSan
# (tests/fuzz/run.sh; N mutated inputs per family, default 300).
fuzz:
	$(MAKE) BUILD=build-asan OPT=-O1 \
	  SAN="-fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all
	BUILD=build-asan tests/fuzz/run.sh

install: all
	install -d $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(PREFIX)/lib/pkgconfig \
	  $(DESTDIR)$(PREFIX)/include $(DESTDIR)$(PREFIX)/share/man/man1
	install -m 755 $(BINS) $(DESTDIR)$(PREFIX)/bin/
	install -m 644 $(BUILD)/libdiskkit.a $(DESTDIR)$(PREFIX)/lib/
	install -m 755 $(BUILD)/libdiskkit.so $(DESTDIR)$(PREFIX)/lib/libdiskkit.so.$(VERSION)
	ln -sf libdiskkit.so.$(VERSION) $(DESTDIR)$(PREFIX)/lib/libdiskkit.so.$(SOVER)
	ln -sf libdiskkit.so.$(SOVER) $(DESTDIR)$(PREFIX)/lib/libdiskkit.so
	install -m 644 include/diskkit.h $(DESTDIR)$(PREFIX)/include/
	sed -e 's|@PREFIX@|$(PREFIX)|g' -e 's|@VERSION@|$(VERSION)|g' diskkit.pc.in \
	  > $(DESTDIR)$(PREFIX)/lib/pkgconfig/diskkit.pc
	chmod 644 $(DESTDIR)$(PREFIX)/lib/pkgconfig/diskkit.pc
	install -m 644 man/*.1 $(DESTDIR)$(PREFIX)/share/man/man1/

uninstall:
	rm -f $(DESTDIR)$(PREFIX)/bin/diskkit $(DESTDIR)$(PREFIX)/bin/diskkit-mount \
	  $(DESTDIR)$(PREFIX)/lib/libdiskkit.* $(DESTDIR)$(PREFIX)/include/diskkit.h \
	  $(DESTDIR)$(PREFIX)/lib/pkgconfig/diskkit.pc $(DESTDIR)$(PREFIX)/share/man/man1/diskkit*.1

demo: all
	@BUILD=$(BUILD) tests/demo.sh

bench: all bench-deps
	@BUILD=$(BUILD) bench/run-all.sh

clean:
	rm -rf build build-asan

-include $(shell find $(BUILD)/obj -name '*.d' 2>/dev/null)
.SECONDARY:
