# onefile: one self-updating executable for any app.
#
#   make demo    build, pack a sample app, serve updates on loopback, run it, update it
#   make test    the whole test suite (unit + end-to-end against the real binaries)
#   make lint    rustfmt check, clippy with -D warnings (Linux and Windows
#                targets), rustdoc with -D warnings
#   make bench   benchmarks: ratios against baselines measured in the same run
#   make build   release binaries: target/release/{bootstrap,payload-tools}
#   make windows       release bootstrap.exe and payload-tools.exe (docs/windows.md);
#                      fails if bootstrap.exe is over 2 MiB
#   make test-windows  the library's tests and end-to-end tests of the Windows
#                      executables, under Wine
#   make bench-windows the Windows benchmarks, under Wine (docs/benchmarks.md)
#   make deps    install what those need from the distribution's packages
#                (as root; FOR="demo test" for only some), saying what and why
#
# Each command first checks what it needs (scripts/install-deps.sh) and lists
# what is missing; none of them installs anything.

CARGO ?= cargo
export CARGO_TERM_COLOR ?= never

.PHONY: all build test lint demo bench bench-peers soak fuzz clean deps windows test-windows lint-windows bench-windows

FOR ?= build demo test lint bench

all: build

deps:
	@bash scripts/install-deps.sh --install $(FOR)

# What a command needs: checked, never installed (make deps does that).
needs-%:
	@bash scripts/install-deps.sh $*

build: needs-build
	$(CARGO) build --release --locked -p bootstrap -p payload-tools

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
# outgrows its budget, as the Linux stub's is watched by make bench.
WINDOWS_STUB_LIMIT = 2097152

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

demo: needs-demo build
	@bash demo/demo.sh

bench: needs-bench build
	@python3 bench/run.py

# The Windows executables under Wine: the release stub's size, warm start
# and update against baselines run under Wine too (docs/benchmarks.md).
bench-windows: windows
	$(WINDOWS_CARGO) build --release $(WINDOWS_FLAGS) -p onefile-tests --bin probe --bin fetch
	@python3 bench/windows.py

# Against PyInstaller (installed from PyPI into a venv under bench-work/).
bench-peers: needs-bench build
	@python3 bench/peers.py

clean:
	$(CARGO) clean
	rm -rf demo-work bench-work bench-work-windows

# The long fault-injection run: 50 random kills per scenario and the
# 300-cycle soak. Seeds are printed; ONEFILE_FAULT_SEED replays one.
soak: needs-test
	$(CARGO) build --locked -p bootstrap -p payload-tools
	ONEFILE_FAULT_TRIALS=50 $(CARGO) test --locked -p onefile-tests --test it -- faults:: --include-ignored --nocapture --test-threads 1

# Fuzz the trailer/metadata parser, update.toml and payload extraction,
# FUZZ_SECONDS each (default 600), in parallel.
fuzz:
	bash scripts/fuzz.sh
