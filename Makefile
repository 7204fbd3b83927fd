# Cairn. `make run` boots it in QEMU; `make test` runs every test, QEMU ones
# included; `make bench` measures boot time and memory beside a busybox init.
SHELL := /bin/bash
.DEFAULT_GOAL := run

TARGET := x86_64-unknown-linux-gnu
RELEASE := $(shell sed -n 's/^release=//p' kernel-config/kernel.lock)
KERNEL_DIR := build/kernel
# The metal disk's kernel (Debian's generic one): docs/hardware.md.
METAL_RELEASE := $(shell sed -n 's/^release=//p' kernel-config/kernel-metal.lock)
METAL_KERNEL_DIR := build/kernel-metal
METAL := build/metal
DEBROOT := build/debroot
INIT_BIN := target/$(TARGET)/release/cairn-init
CTL_BIN := target/$(TARGET)/release/cairnctl
# The test images' cairnctl: honours `pause-at` (fault injection) for the
# power-cut tests. out/cairn.raw never carries it.
CTL_FAULT_BIN := build/cairnctl-fault-injection
# Likewise the test images' cairn-config: honours `cairn.config.pause=`.
CONFIG_FAULT_BIN := build/cairn-config-fault-injection
SVCLOAD_BIN := target/$(TARGET)/release/cairn-svcload
CONFIG_BIN := target/$(TARGET)/release/cairn-config
NETD_BIN := target/$(TARGET)/release/cairn-netd
# The embedded default configuration, one for every platform: the graphical
# console and the serial one (the last console= is /dev/console, which the
# tests read), NVMe without an I/O timeout (AWS detaches EBS volumes slowly;
# harmless elsewhere), quiet kernel, reboot 5 s after a kernel panic, and LSMs
# picked so AppArmor stays off (Docker needs it so).
CMDLINE := console=tty1 console=ttyS0,115200n8 nvme_core.io_timeout=4294967295 quiet panic=5 lsm=landlock,lockdown,yama,integrity,bpf
SYSAGENT_BIN := target/$(TARGET)/release/sysagent
# Same commit, same bytes.
export SOURCE_DATE_EPOCH ?= $(shell git log -1 --format=%ct 2>/dev/null || echo 0)
CARGO := cargo
RUNS ?= 5
# The OS version this build installs as (VERSION_ID in /etc/os-release).
VERSION ?= 0.1.0
# Update signing keys: made on first build, never overwritten, never committed.
KEYS := build/keys
# Root images the update tests install: see tests/tests/update.rs.
TESTDIR := build/test

.PHONY: deps kernel debs build keys image images test-fixtures schemathesis run test unit-test qemu-test test-cluster bench clean

deps:
	@scripts/install-deps

kernel: deps
	@kernel-config/fetch-kernel $(KERNEL_DIR)
	@kernel-config/fetch-kernel $(METAL_KERNEL_DIR) kernel-config/kernel-metal.lock
	@$(CARGO) run -q --release -p cairn-kconfig -- check $(KERNEL_DIR)/boot/config-$(RELEASE)
	@$(CARGO) run -q --release -p cairn-kconfig -- check $(METAL_KERNEL_DIR)/boot/config-$(METAL_RELEASE)

STATIC := RUSTFLAGS="-C target-feature=+crt-static -C relocation-model=static"
# The fault-injection cairnctl and cairn-config first, so $(CTL_BIN) and
# $(CONFIG_BIN) are the production ones afterwards (cargo keeps both builds;
# switching back costs no compile).
build: deps
	$(STATIC) $(CARGO) build -q --release --locked --target $(TARGET) -p cairnctl --features cairnctl/fault-injection
	@mkdir -p build && cp $(CTL_BIN) $(CTL_FAULT_BIN)
	$(STATIC) $(CARGO) build -q --release --locked --target $(TARGET) -p cairn-config --features cairn-config/fault-injection
	cp $(CONFIG_BIN) $(CONFIG_FAULT_BIN)
	$(STATIC) $(CARGO) build -q --release --locked --target $(TARGET) -p cairn-init -p cairnctl -p cairn-svcload -p cairn-config -p cairn-netd -p cairn-sysagent
	$(CARGO) build -q --release --locked -p cairn-image -p cairn-qemu -p cairn-kconfig

debs: deps
	@image/fetch-debs $(DEBROOT)

IMAGE := target/release/cairn-image
keys: build
	@test -f $(KEYS)/release.key || $(IMAGE) keygen --out $(KEYS)/release.key --id release
	@(echo "threshold 1"; cat $(KEYS)/release.key.pub) > $(KEYS)/keyring

ROOT_INPUTS = --init $(INIT_BIN) --svcload $(SVCLOAD_BIN) --netd $(NETD_BIN) --sysagent $(SYSAGENT_BIN) --kernel $(KERNEL_DIR) --debroot $(DEBROOT) --keyring $(KEYS)/keyring
ROOT_ARGS = $(ROOT_INPUTS) --cairnctl $(CTL_BIN) --config-loader $(CONFIG_BIN)
# The debug disk and the update fixtures: the same root with the fault-injection
# cairnctl and cairn-config.
TEST_ROOT_ARGS = $(ROOT_INPUTS) --cairnctl $(CTL_FAULT_BIN) --config-loader $(CONFIG_FAULT_BIN)
image: kernel debs build keys
	@mkdir -p out
	echo "$(SOURCE_DATE_EPOCH)" > out/source-date-epoch
	$(IMAGE) initramfs --out out/initramfs.img --init $(INIT_BIN) --kernel $(KERNEL_DIR)
	$(IMAGE) initramfs --out out/initramfs-debug.img --init $(INIT_BIN) --kernel $(KERNEL_DIR) --busybox /bin/busybox
	$(IMAGE) initramfs --out out/bench-busybox.img --init bench/busybox-init --busybox /bin/busybox
	cp $(KERNEL_DIR)/boot/vmlinuz-$(RELEASE) out/vmlinuz
	$(IMAGE) root --out build/root.img $(ROOT_ARGS) --services services --version $(VERSION)
	$(IMAGE) root --out build/test-root.img $(TEST_ROOT_ARGS) --services services --version $(VERSION)
	$(IMAGE) disk --out out/cairn.raw --root build/root.img --vmlinuz out/vmlinuz --initramfs out/initramfs.img \
		--cmdline "$(CMDLINE)" --cmdline-out out/cmdline --qcow2 out/cairn.qcow2 --version $(VERSION)
	$(IMAGE) disk --out build/cairn-debug.raw --root build/test-root.img --vmlinuz out/vmlinuz --initramfs out/initramfs-debug.img \
		--cmdline "$(CMDLINE) cairn.debug=shell" --cmdline-out build/cmdline-debug --qcow2 out/cairn-debug.qcow2 --version $(VERSION)
	@# The metal disk: the same root contents on the generic kernel, and its
	@# debug twin (the same root, a busybox initramfs) for the tests.
	@mkdir -p $(METAL)
	cp $(METAL_KERNEL_DIR)/boot/vmlinuz-$(METAL_RELEASE) $(METAL)/vmlinuz
	$(IMAGE) initramfs --out $(METAL)/initramfs.img --init $(INIT_BIN) --kernel $(METAL_KERNEL_DIR)
	$(IMAGE) initramfs --out $(METAL)/initramfs-debug.img --init $(INIT_BIN) --kernel $(METAL_KERNEL_DIR) --busybox /bin/busybox
	$(IMAGE) root --out $(METAL)/root.img $(subst --kernel $(KERNEL_DIR),--kernel $(METAL_KERNEL_DIR),$(ROOT_ARGS)) --services services --version $(VERSION)
	$(IMAGE) disk --out out/cairn-metal.raw --root $(METAL)/root.img --vmlinuz $(METAL)/vmlinuz --initramfs $(METAL)/initramfs.img \
		--cmdline "$(CMDLINE)" --version $(VERSION)
	$(IMAGE) disk --out $(METAL)/cairn-metal-debug.raw --root $(METAL)/root.img --vmlinuz $(METAL)/vmlinuz --initramfs $(METAL)/initramfs-debug.img \
		--cmdline "$(CMDLINE) cairn.debug=shell" --qcow2 out/cairn-metal-debug.qcow2 --version $(VERSION)

# Every cloud format from the one disk, with SHA256SUMS and a signed
# manifest (docs/images.md).
images: image
	$(IMAGE) images --raw out/cairn.raw --metal-raw out/cairn-metal.raw --out out/images --version $(VERSION) --key $(KEYS)/release.key

# What the update tests install over the debug image: the same build as a
# newer version, one with a service that is never healthy, one whose stage 2
# hangs, one whose service loader fails, one without the NIC's driver (root
# and initramfs), and an initramfs the kernel cannot run (a kernel panic); and
# a disk of that newer version to attach beside a machine's own.
test-fixtures: image
	@mkdir -p $(TESTDIR)
	$(STATIC) $(CARGO) build -q --release --locked --target $(TARGET) -p cairn-hostile
	echo "$(CMDLINE) cairn.debug=shell" > $(TESTDIR)/cmdline
	$(IMAGE) root --out $(TESTDIR)/good-root.img $(TEST_ROOT_ARGS) --services services --version 0.2.0
	$(IMAGE) root --out $(TESTDIR)/unhealthy-root.img $(TEST_ROOT_ARGS) --services services --services tests/fixtures/services --version 0.2.0
	$(IMAGE) root --out $(TESTDIR)/hang-root.img $(TEST_ROOT_ARGS) --services services --version 0.2.0 --init tests/fixtures/hang-init
	$(IMAGE) initramfs --out $(TESTDIR)/panic-initramfs.img --init tests/fixtures/no-init
	$(IMAGE) root --out $(TESTDIR)/loader-fails-root.img $(TEST_ROOT_ARGS) --services services --version 0.2.0 --svcload tests/fixtures/failing-svcload
	$(IMAGE) root --out $(TESTDIR)/no-nic-root.img $(TEST_ROOT_ARGS) --services services --version 0.2.0 --drop-module virtio_net
	$(IMAGE) initramfs --out $(TESTDIR)/no-nic-initramfs.img --init $(INIT_BIN) --kernel $(KERNEL_DIR) --busybox /bin/busybox --drop-module virtio_net
	$(IMAGE) disk --out $(TESTDIR)/other-disk.raw --root $(TESTDIR)/good-root.img --vmlinuz out/vmlinuz \
		--initramfs out/initramfs.img --cmdline "$(CMDLINE)" --version 0.2.0

# The API checker the agent test runs against a booted VM (PyPI, pinned), in
# a venv of Debian's python3 under build/.
SCHEMATHESIS_VERSION := 4.32.5
SCHEMATHESIS_VENV := build/venv-schemathesis
SCHEMATHESIS_STAMP := $(SCHEMATHESIS_VENV)/.schemathesis-$(SCHEMATHESIS_VERSION)
schemathesis: $(SCHEMATHESIS_STAMP)
$(SCHEMATHESIS_STAMP): | deps
	rm -rf $(SCHEMATHESIS_VENV)
	/usr/bin/python3 -m venv $(SCHEMATHESIS_VENV)
	$(SCHEMATHESIS_VENV)/bin/pip install -q schemathesis==$(SCHEMATHESIS_VERSION)
	touch $@

run: image
	target/release/cairn-qemu run

# Some unit tests read the pinned kernel's modules and the Debian packages.
unit-test: deps kernel debs
	$(CARGO) test -q --locked --workspace --exclude cairn-tests

qemu-test: test-fixtures images schemathesis
	$(CARGO) test --locked -p cairn-tests -- --test-threads=2

test: unit-test qemu-test
	@echo "make test: SKIPPED tests/tests/cluster.rs (three VMs, about 25 minutes: swarm, stack, rollout); run it with make test-cluster"

# The three-VM swarm and rollout test, apart from `make test` for its time.
test-cluster: test-fixtures
	$(IMAGE) root --out $(TESTDIR)/good-0.3.0-root.img $(TEST_ROOT_ARGS) --services services --version 0.3.0
	$(CARGO) test --locked -p cairn-tests --test cluster -- --ignored --nocapture

bench: test-fixtures
	@scripts/install-deps podman crun runc rauc squashfs-tools dbus-daemon openssl
	target/release/cairn-qemu bench --runs $(RUNS)

clean:
	rm -rf out build target
