# collector: build, test, benchmark.
#
# `make test` runs every test in the repository (unit, fuzz seed corpora, end-to-end) with the race
# detector; it installs what it needs first. `make demo` runs the main job end to end on this machine.

GO        ?= go
PKGS      := ./...
BIN       := bin/collector
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
LDFLAGS   := -X main.version=$(VERSION)
FUZZTIME  ?= 10s
BENCHTIME ?= 1s
TEST_TIMEOUT ?= 20m

.PHONY: all build test test-unit test-e2e bench lint fuzz deps clean thanos

all: lint build test

build:
	CGO_ENABLED=0 $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN) ./cmd/collector

# deps installs what the tests need on a fresh Debian machine (root): Debian's prometheus package.
deps:
	@command -v prometheus >/dev/null 2>&1 || { \
		echo "installing prometheus (Debian package)"; \
		DEBIAN_FRONTEND=noninteractive apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus >/dev/null; }
	@command -v prometheus >/dev/null 2>&1 || { echo "prometheus is still missing after the install" >&2; exit 1; }
	@systemctl stop prometheus >/dev/null 2>&1 || true

# prometheus3 builds Prometheus 3 (cmd/prometheus of the version tools/prometheus3/go.mod pins, its
# own module so that its dependencies stay out of collector's) into .cache/bin, once per version:
# the end-to-end tests use it as a remote-write 2.0 receiver. Tagged remove_all_sd (no service
# discovery but file and http: the receiver scrapes nothing) and without builtinassets (the API is
# all the tests need, not the web UI).
PROMETHEUS3_VERSION := $(shell sed -n 's,^require github.com/prometheus/prometheus ,,p' tools/prometheus3/go.mod)
PROMETHEUS3         := .cache/bin/prometheus-$(PROMETHEUS3_VERSION)

.PHONY: prometheus3
prometheus3: $(PROMETHEUS3)

$(PROMETHEUS3): tools/prometheus3/go.mod tools/prometheus3/go.sum
	@mkdir -p $(@D)
	cd tools/prometheus3 && CGO_ENABLED=0 $(GO) build -trimpath -tags remove_all_sd -o ../../$@.tmp github.com/prometheus/prometheus/cmd/prometheus
	mv $@.tmp $@

test: deps lint thanos prometheus3
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $(PKGS)

# thanos builds the Thanos binary the end-to-end tests run as the hub, pinned by tools/thanos/go.mod,
# into .cache/bin/thanos-VERSION (ignored by git). The first build compiles for about 9 CPU-minutes
# (about 5 minutes on an idle 2-core machine, far longer on a loaded one);
# later runs reuse it. The e2e tests build it the same way when it is missing.
THANOS_VERSION := $(shell awk '$$1 == "github.com/thanos-io/thanos" { print $$2 }' tools/thanos/go.mod)
THANOS         := .cache/bin/thanos-$(THANOS_VERSION)
thanos: $(THANOS)
$(THANOS): tools/thanos/go.mod tools/thanos/go.sum
	@echo "building thanos $(THANOS_VERSION) (first time: several minutes)"
	cd tools/thanos && CGO_ENABLED=0 $(GO) build -trimpath -tags netgo,slicelabels \
		-ldflags "-X github.com/prometheus/common/version.Version=$(THANOS_VERSION:v%=%)" -o ../../$(THANOS) github.com/thanos-io/thanos/cmd/thanos

# test-unit runs everything but the end-to-end suite (deploy tests still need promtool).
test-unit: deps
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) $$($(GO) list $(PKGS) | grep -v /e2e)

test-e2e: deps build thanos prometheus3
	$(GO) test -race -count=1 -timeout $(TEST_TIMEOUT) ./e2e/...

bench:
	$(GO) test -run '^$$' -bench . -benchmem -benchtime $(BENCHTIME) $(PKGS)

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go' 2>/dev/null; git ls-files --others --exclude-standard '*.go' 2>/dev/null)); \
		if [ -n "$$out" ]; then echo "gofmt needed:"; echo "$$out"; exit 1; fi
	$(GO) vet $(PKGS)

# fuzz runs every fuzz target for FUZZTIME each.
fuzz:
	@set -e; for pkg in $$($(GO) list $(PKGS)); do \
		for f in $$($(GO) test -list '^Fuzz' $$pkg 2>/dev/null | grep '^Fuzz' || true); do \
			echo "fuzz $$pkg $$f"; \
			$(GO) test -run '^$$' -fuzz "^$$f$$" -fuzztime $(FUZZTIME) $$pkg; \
		done; \
	done

clean:
	rm -rf bin .cache

.PHONY: bench-e2e
# bench-e2e runs collector, then Prometheus in agent mode, on the same generated federate workload
# (SERIES series every INTERVAL, DURATION of steady state each) and prints CPU-seconds per million
# samples delivered, peak RSS and bytes per sample on the wire for each, and their ratio.
# BENCH_E2E_FLAGS passes more flags (-pprof DIR, -outage 1h, -agents collector, -collector-args ...).
SERIES   ?= 200000
DURATION ?= 3m
INTERVAL ?= 15s
BENCH_E2E_FLAGS ?=
bench-e2e: deps build
	$(GO) build -o bin/benche2e ./e2e/benche2e
	./bin/benche2e -series $(SERIES) -duration $(DURATION) -interval $(INTERVAL) -collector $(BIN) $(BENCH_E2E_FLAGS)

.PHONY: demo demo-outage
# demo runs a source Prometheus, a receiver Prometheus and collector between them (Ctrl-C stops all).
demo:
	./e2e/demo/demo.sh

# demo-outage does the same, then stops the receiver for a minute and shows the backlog and the drain.
demo-outage:
	DEMO_OUTAGE=1 ./e2e/demo/demo.sh

.PHONY: image
# image builds the container image from the Dockerfile with docker or podman (CONTAINER_ENGINE
# picks one). IMAGE names it.
IMAGE            ?= collector:$(VERSION)
CONTAINER_ENGINE ?= $(shell command -v docker 2>/dev/null || command -v podman 2>/dev/null)
image:
	@if [ -z "$(CONTAINER_ENGINE)" ]; then \
		echo "make image: no container engine found: install docker or podman, or set CONTAINER_ENGINE" >&2; exit 1; fi
	@if ! $(CONTAINER_ENGINE) info >/dev/null 2>&1; then \
		echo "make image: $(CONTAINER_ENGINE) is installed but does not answer (is its daemon or socket running?)" >&2; exit 1; fi
	$(CONTAINER_ENGINE) build --build-arg VERSION=$(VERSION) -t $(IMAGE) .
