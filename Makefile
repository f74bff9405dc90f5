# onefile: one self-updating executable for any app.
#
#   make demo    build, pack a sample app, serve updates on loopback, run it, update it
#   make test    the whole test suite (unit + end-to-end against the real binaries)
#   make lint    rustfmt check, clippy with -D warnings (Linux and Windows
#                targets), rustdoc with -D warnings
#   make bench   benchmarks: ratios against baselines measured in the same run
#   make fleet   200 installs through a staged release against nginx on
#                loopback: rollout share, halt, 304 checks (docs/fleet.md)
#   make build   release binaries: target/release/{bootstrap,payload-tools}
#   make stub    only the release stub, target/release/bootstrap, std built
#                for size (docs/benchmarks.md, "Stub size"); fails if it
#                is over 2 MiB
#   make windows       release bootstrap.exe and payload-tools.exe (docs/windows.md);
#                      fails if bootstrap.exe is over 2 MiB
#   make test-windows  the library's tests and end-to-end tests of the Windows
#                      executables, under Wine
#   make bench-windows the Windows benchmarks, under Wine (docs/benchmarks.md)
#   make wheel   the payload-tools command with the release stubs of
#                make stub and make windows, as a Python wheel
#                (target/wheel/dist; maturin from PyPI, in a venv there)
#   make test-install  the wheel pip-installed into a fresh venv, and
#                cargo install --path payload-tools, each used with nothing
#                else on PATH: stubs, pack without --stub, run (Windows under Wine)
#   make deps    install what those need from the distribution's packages
#                (as root; FOR="demo test" for only some), saying what and why
#
# Each command first checks what it needs (scripts/install-deps.sh) and lists
# what is missing; none of them installs anything.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build stub test lint demo bench fleet bench-peers soak fuzz clean deps windows test-windows lint-windows bench-windows wheel test-install

FOR ?= build demo test lint bench

all: build

deps:
	@bash scripts/install-deps.sh --install $(FOR)

# What a command needs: checked, never installed (make deps does that).
needs-%:
	@bash scripts/install-deps.sh $*

# The release payload-tools carries the release stub (build.rs embeds what
# ONEFILE_EMBED_STUBS names), so that a copy of it alone still packs. By
# default that is target/embed, which holds only the stub of make stub,
# copied when it changed: build.rs watches the folder, so a second make
# build compiles nothing. ONEFILE_EMBED_STUBS=DIR embeds DIR's stubs
# instead, ONEFILE_EMBED_STUBS= (empty) none.
build: needs-build stub
ifeq ($(origin ONEFILE_EMBED_STUBS),undefined)
	@mkdir -p target/embed && \
	cmp -s target/release/bootstrap target/embed/bootstrap || cp target/release/bootstrap target/embed/bootstrap
	ONEFILE_EMBED_STUBS=$(CURDIR)/target/embed $(CARGO) build --release --locked -p payload-tools
else
	ONEFILE_EMBED_STUBS="$(ONEFILE_EMBED_STUBS)" $(CARGO) build --release --locked -p payload-tools
endif

# The stub ships inside every packed file, so its std is built from source
# for size (-Zbuild-std with optimize_for_size, and a panic aborts at once,
# without a message): 400 KB less than with rustup's std. That needs an
# unstable flag and std's sources: Debian's rust-web compiler brings both
# (scripts/windows-toolchain.sh --rust-only: no root, no Wine). It builds
# into target/stub, so that no other build is invalidated, and is copied
# where payload-tools looks for it (next to itself; the copy replaces
# cargo's hard link rather than writing through it, and is made only when
# the stub changed, so that nothing watching it rebuilds). Elsewhere,
# STUB_STD=rustup builds it with rustup's std, bigger. The tests keep
# rustup's debug stub.
LINUX_TARGET = x86_64-unknown-linux-gnu
STUB_LIMIT = 2097152
STUB_STD ?= source

stub: needs-build
ifeq ($(STUB_STD),rustup)
	$(CARGO) build --release --locked -p bootstrap
else
	stub_env=$$(bash scripts/windows-toolchain.sh --rust-only) && eval "$$stub_env" && \
	CARGO_TARGET_X86_64_UNKNOWN_LINUX_GNU_RUSTFLAGS="$$ONEFILE_STD_REMAP -Zunstable-options -Cpanic=immediate-abort" \
	"$$ONEFILE_WINDOWS_CARGO" build --release --locked --target $(LINUX_TARGET) \
	  -Zbuild-std=std,panic_abort -Zbuild-std-features=optimize_for_size --target-dir target/stub -p bootstrap
	@mkdir -p target/release && \
	cmp -s target/stub/$(LINUX_TARGET)/release/bootstrap target/release/bootstrap || \
	{ rm -f target/release/bootstrap && cp target/stub/$(LINUX_TARGET)/release/bootstrap target/release/bootstrap; }
endif
	@size=$$(stat -c %s target/release/bootstrap) && \
	if [ "$$size" -gt $(STUB_LIMIT) ]; then \
	  echo "bootstrap is $$size bytes, over its budget of $(STUB_LIMIT) bytes" >&2; exit 1; \
	else echo "bootstrap: $$size bytes, budget $(STUB_LIMIT)"; fi

# The end-to-end tests drive the binaries of the same profile as themselves,
# so `cargo build` first puts them in place.
test: needs-test
	$(CARGO) build --locked -p bootstrap -p payload-tools
	CARGO=$(CARGO) bash scripts/test.sh

lint: needs-lint
	$(CARGO) fmt --all --check
	$(CARGO) clippy --locked --workspace --all-targets -- -D warnings
	RUSTDOCFLAGS="-D warnings" $(CARGO) doc --locked --workspace --no-deps --document-private-items
	@$(MAKE) --no-print-directory lint-windows

# Windows: Debian's rust-web compiler, mingw-w64 and Wine, installed once
# per user by scripts/windows-toolchain.sh (rustup's toolchain is left
# alone); std is built from source, into target/windows so that the Linux
# build is never invalidated.
WINDOWS_TARGET = x86_64-pc-windows-gnu
WINDOWS_CARGO = windows_env=$$(bash scripts/windows-toolchain.sh) && eval "$$windows_env" && "$$ONEFILE_WINDOWS_CARGO"
WINDOWS_FLAGS = --locked --target $(WINDOWS_TARGET) -Zbuild-std=std,panic_abort --target-dir target/windows

# The Windows stub ships inside every packed .exe: the build fails when it
# outgrows its budget, as make stub does for the Linux stub.
WINDOWS_STUB_LIMIT = $(STUB_LIMIT)

windows:
	$(WINDOWS_CARGO) build --release $(WINDOWS_FLAGS) -p bootstrap -p payload-tools
	@ls -l target/windows/$(WINDOWS_TARGET)/release/bootstrap.exe target/windows/$(WINDOWS_TARGET)/release/payload-tools.exe
	@size=$$(stat -c %s target/windows/$(WINDOWS_TARGET)/release/bootstrap.exe) && \
	if [ "$$size" -gt $(WINDOWS_STUB_LIMIT) ]; then \
	  echo "bootstrap.exe is $$size bytes, over its budget of $(WINDOWS_STUB_LIMIT) bytes" >&2; exit 1; \
	else echo "bootstrap.exe: $$size bytes, budget $(WINDOWS_STUB_LIMIT)"; fi

# Clippy for the Windows target, every crate and test (the Unix-only tests
# are compiled out there); part of make lint. It checks (metadata only):
# nothing it builds is shared with test-windows or windows, see
# docs/windows.md.
lint-windows:
	$(WINDOWS_CARGO) clippy $(WINDOWS_FLAGS) --workspace --all-targets -- -D warnings

test-windows:
	CARGO=$(CARGO) bash scripts/test-windows.sh

# The wheel reuses the release stubs of make stub and make windows (built
# once each) and compiles only payload-tools again (scripts/wheel.sh).
# make build, make wheel and make test-install's cargo install each build
# target/release/payload-tools with other stubs in it: the one left there
# is the last one's (after test-install: cargo install's, with only the
# host's stub), and the next of the others links it again.
wheel: needs-wheel stub windows
	bash scripts/wheel.sh

test-install: needs-install wheel
	CARGO=$(CARGO) bash scripts/test-install.sh

demo: needs-demo build
	@bash demo/demo.sh

bench: needs-bench build
	@python3 bench/run.py
	@STATS_LOG_MIB=256 python3 bench/stats.py

# The Windows executables under Wine: the release stub's size, warm start
# and update against baselines run under Wine too (docs/benchmarks.md).
bench-windows: windows
	$(WINDOWS_CARGO) build --release $(WINDOWS_FLAGS) -p onefile-tests --bin probe --bin fetch
	@python3 bench/windows.py

# A fleet of installs, each a real launch of the release stub, through a
# staged rollout published with `payload-tools publish` (docs/fleet.md).
fleet: needs-fleet build
	@python3 bench/fleet.py

# Against PyInstaller (installed from PyPI into a venv under bench-work/).
bench-peers: needs-bench build
	@python3 bench/peers.py

clean:
	$(CARGO) clean
	rm -rf demo-work bench-work bench-work-windows fleet-work

# The long fault-injection run: 50 random kills per scenario and the
# 300-cycle soak. Seeds are printed; ONEFILE_FAULT_SEED replays one.
soak: needs-test
	$(CARGO) build --locked -p bootstrap -p payload-tools
	ONEFILE_FAULT_TRIALS=50 $(CARGO) test --locked -p onefile-tests --test it -- faults:: --include-ignored --nocapture --test-threads 1

# Fuzz the trailer/metadata parser, update.toml and payload extraction,
# FUZZ_SECONDS each (default 600), in parallel.
fuzz:
	bash scripts/fuzz.sh
