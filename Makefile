# narun: build, generated docs, install, packages.
#
# This file is the one place install paths live: debian/rules and
# rpm/narun.spec both call `make build` and `make install DESTDIR=...`.
#
#   make build [ARCH=amd64|arm64|riscv64]   release binary (cross from amd64)
#   make install DESTDIR=/tmp/root [ARCH=...] [UNITDIR=...]
#   make docs                              regenerate man/*.1 and packaging/completions/
#   make check-docs                        fail if they are stale (CI)
#   make packages                          every .deb and .rpm, all three arches
#                                          (packaging/build-all.sh; out: target/packages/)
#
# ARCH uses Debian names. The native build uses the `cargo` on PATH and the
# usual target dir (target/release, shared with development builds). Cross
# builds use Debian's rustc-web toolchain (/usr/bin/cargo, 1.96): arm64 with
# its prebuilt std (libstd-rust-web-dev:arm64), riscv64 with -Zbuild-std
# (rust-web-src), in their own target dir (target/cross). packaging/prereqs.sh
# installs all of that.

SHELL := /bin/bash

VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -n1)
NATIVE_ARCH := $(shell dpkg --print-architecture 2>/dev/null || uname -m | sed -e 's/x86_64/amd64/' -e 's/aarch64/arm64/')
ARCH ?= $(NATIVE_ARCH)

# Debian arch -> Rust target triple, GNU triplet (cross gcc), rpm arch.
triple_amd64   := x86_64-unknown-linux-gnu
triple_arm64   := aarch64-unknown-linux-gnu
triple_riscv64 := riscv64gc-unknown-linux-gnu
gnu_amd64      := x86_64-linux-gnu
gnu_arm64      := aarch64-linux-gnu
gnu_riscv64    := riscv64-linux-gnu
TRIPLE := $(triple_$(ARCH))
GNU    := $(gnu_$(ARCH))
ifeq ($(TRIPLE),)
$(error unsupported ARCH=$(ARCH): use amd64, arm64 or riscv64)
endif

CARGO ?= cargo
CARGO_TARGET_DIR ?= $(CURDIR)/target
CROSS_CARGO ?= /usr/bin/cargo
CROSS_RUSTC ?= /usr/bin/rustc
CROSS_TARGET_DIR ?= $(CURDIR)/target/cross
TRIPLE_ENV := $(shell echo $(TRIPLE) | tr 'a-z-' 'A-Z_')
TRIPLE_CC  := $(shell echo $(TRIPLE) | tr '-' '_')
# riscv64: bookworm ships no riscv64 std, so build it from rust-web-src.
BUILD_STD_riscv64 := RUSTC_BOOTSTRAP=1
BUILD_STD_FLAG_riscv64 := -Zbuild-std=std,panic_unwind,panic_abort

# The same binary whoever builds it: dpkg-buildpackage and rpmbuild export C
# flags and SOURCE_DATE_EPOCH, which would otherwise rebuild the C parts
# (ring) and relink.
CLEAN_ENV := env -u CFLAGS -u CXXFLAGS -u CPPFLAGS -u LDFLAGS -u RUSTFLAGS -u SOURCE_DATE_EPOCH

# The programs: narun (CLI and daemons), narun-gateway and narun-node
# (`narun gateway` and `narun node` as binaries of their own, which the
# units run: each maps only its own code) and narun-exec (the landlock exec
# wrapper the node agent puts in front of `mode: landlock` apps).
# narun-node is built with the `lean` profile (Cargo.toml: small over fast).
BINS := --bin narun --bin narun-gateway --bin narun-exec
ifeq ($(ARCH),$(NATIVE_ARCH))
OUT := $(CARGO_TARGET_DIR)/release
LEAN_OUT := $(CARGO_TARGET_DIR)/lean
CARGO_BUILD := $(CLEAN_ENV) CARGO_TARGET_DIR=$(CARGO_TARGET_DIR) \
	$(CARGO) build --locked
else
OUT := $(CROSS_TARGET_DIR)/$(TRIPLE)/release
LEAN_OUT := $(CROSS_TARGET_DIR)/$(TRIPLE)/lean
CARGO_BUILD := $(CLEAN_ENV) CARGO_TARGET_DIR=$(CROSS_TARGET_DIR) RUSTC=$(CROSS_RUSTC) \
	CC_$(TRIPLE_CC)=$(GNU)-gcc AR_$(TRIPLE_CC)=$(GNU)-ar \
	CARGO_TARGET_$(TRIPLE_ENV)_LINKER=$(GNU)-gcc \
	$(BUILD_STD_$(ARCH)) \
	$(CROSS_CARGO) build --locked --target $(TRIPLE) $(BUILD_STD_FLAG_$(ARCH))
endif
BUILD_CMD := $(CARGO_BUILD) --release $(BINS) && \
	$(CARGO_BUILD) --profile lean --bin narun-node
BIN := $(OUT)/narun
EXEC_BIN := $(OUT)/narun-exec
GATEWAY_BIN := $(OUT)/narun-gateway
NODE_BIN := $(LEAN_OUT)/narun-node

# Install layout (FHS; the defaults suit rpm/Fedora, debian/rules overrides
# UNITDIR for bookworm's /lib/systemd/system).
DESTDIR ?=
PREFIX ?= /usr
BINDIR ?= $(PREFIX)/bin
LIBEXECDIR ?= $(PREFIX)/libexec
MANDIR ?= $(PREFIX)/share/man
SYSCONFDIR ?= /etc
UNITDIR ?= $(PREFIX)/lib/systemd/system
PRESETDIR ?= $(PREFIX)/lib/systemd/system-preset
SYSUSERSDIR ?= $(PREFIX)/lib/sysusers.d
TMPFILESDIR ?= $(PREFIX)/lib/tmpfiles.d
BASHCOMPDIR ?= $(PREFIX)/share/bash-completion/completions
ZSHCOMPDIR ?= $(PREFIX)/share/zsh/vendor-completions
FISHCOMPDIR ?= $(PREFIX)/share/fish/vendor_completions.d

UNITS := units/narun-gateway.service units/narun-gateway.socket \
	units/narun-gateway-grpc.socket units/narun-node.service units/narun.slice

.PHONY: all build bin-path exec-bin-path install docs check-docs packages install-test clean-packages

all: build

build:
	$(BUILD_CMD)

# Where `make build` puts the binaries for ARCH (for scripts).
bin-path:
	@echo $(BIN)

exec-bin-path:
	@echo $(EXEC_BIN)

# narun-exec goes where the node agent's --exec-wrapper default points.
install:
	@for b in $(BIN) $(GATEWAY_BIN) $(NODE_BIN) $(EXEC_BIN); do test -x $$b || { echo "make install: $$b is missing; run 'make build ARCH=$(ARCH)' first" >&2; exit 1; }; done
	install -D -m 0755 $(BIN) $(DESTDIR)$(BINDIR)/narun
	install -D -m 0755 $(EXEC_BIN) $(DESTDIR)$(LIBEXECDIR)/narun/narun-exec
	install -D -m 0755 $(GATEWAY_BIN) $(DESTDIR)$(LIBEXECDIR)/narun/narun-gateway
	install -D -m 0755 $(NODE_BIN) $(DESTDIR)$(LIBEXECDIR)/narun/narun-node
	install -d -m 0755 $(DESTDIR)$(UNITDIR)
	install -m 0644 $(UNITS) $(DESTDIR)$(UNITDIR)/
	install -D -m 0644 units/80-narun.preset $(DESTDIR)$(PRESETDIR)/80-narun.preset
	install -D -m 0644 units/sysusers.d/narun.conf $(DESTDIR)$(SYSUSERSDIR)/narun.conf
	install -D -m 0644 units/tmpfiles.d/narun.conf $(DESTDIR)$(TMPFILESDIR)/narun.conf
	install -d -m 0755 $(DESTDIR)$(SYSCONFDIR)/narun
	install -m 0644 units/config/gateway.yaml $(DESTDIR)$(SYSCONFDIR)/narun/gateway.yaml
	install -m 0600 units/config/node.env $(DESTDIR)$(SYSCONFDIR)/narun/node.env
	install -d -m 0755 $(DESTDIR)$(MANDIR)/man1 $(DESTDIR)$(MANDIR)/man5
	install -m 0644 man/*.1 $(DESTDIR)$(MANDIR)/man1/
	install -m 0644 man/*.5 $(DESTDIR)$(MANDIR)/man5/
	install -D -m 0644 packaging/completions/narun.bash $(DESTDIR)$(BASHCOMPDIR)/narun
	install -D -m 0644 packaging/completions/_narun $(DESTDIR)$(ZSHCOMPDIR)/_narun
	install -D -m 0644 packaging/completions/narun.fish $(DESTDIR)$(FISHCOMPDIR)/narun.fish

# Generated from the clap definition by the native binary: `narun man` and
# `narun completions`. Committed, so packaging (and cross builds) never run
# the binary; CI runs check-docs.
docs:
	bash packaging/gen-docs.sh $(BIN)

check-docs:
	bash packaging/gen-docs.sh --check $(BIN)

packages:
	bash packaging/build-all.sh

install-test:
	bash packaging/install-test.sh

clean-packages:
	rm -rf target/packages debian/.debhelper debian/narun debian/files \
		debian/narun.substvars debian/debhelper-build-stamp debian/narun.*.debhelper
