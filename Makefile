# Cubo build, test and lint entry points. `make test` is what CI runs (as root).
GO        ?= go
export PATH := /usr/local/go/bin:$(PATH)
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
# cubo-runc links a small cgo constructor (runtime/nsenter); link it
# statically so the runtime starts without the dynamic loader and runs in
# any rootfs. osusergo/netgo keep libc's NSS out of the static binary.
TAGS      := osusergo,netgo
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
RUNC_LDFLAGS := $(LDFLAGS) -extldflags -static
# cubo-runc's C part is compiled and linked statically with musl when
# musl-gcc is there (else glibc): glibc's static start-up (IRELATIVE
# relocations, CPU and cache detection by cpuid, which traps in a VM) costs
# every runtime process, container inits included, about 0.3 ms and 100 page
# faults, and the binary is 0.8 MB smaller.
BUILD_DEBS := gcc libc6-dev musl-tools
# Debian packages the tests use as fixtures and peers.
TEST_DEBS := busybox-static runc crun skopeo umoci docker-registry gcc libc6-dev \
             containernetworking-plugins iptables iproute2 curl \
             containerd podman conmon docker.io

.PHONY: all build build-deps test unit-test integration deps lint conformance interop bench fuzz demo clean

all: build

build: build-deps
	CC=$$(command -v musl-gcc || echo gcc) CGO_ENABLED=1 $(GO) build -trimpath -tags $(TAGS) -ldflags '$(RUNC_LDFLAGS)' -o $(BIN)/cubo-runc ./cmd/cubo-runc
	@if [ -d cmd/cubo ]; then $(GO) build -trimpath -tags $(TAGS) -ldflags '$(LDFLAGS)' -o $(BIN)/cubo ./cmd/cubo; fi

# build-deps installs the C toolchain cubo-runc's cgo part needs, only when a
# package is missing (and only as root: otherwise the build says what fails).
build-deps:
	@missing=""; for p in $(BUILD_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ] && [ "$$(id -u)" = 0 ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

# deps installs the Debian packages the tests need, only when one is missing.
deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi
	$(GO) mod download

# test runs the unit tests and, as root, the integration tests against the
# binaries just built (not a second build of them).
test: deps build
	$(GO) vet ./...
	CUBO_RUNC=$(CURDIR)/$(BIN)/cubo-runc CUBO_BIN=$(CURDIR)/$(BIN) $(GO) test -count=1 -timeout 30m ./...
	@# The containers' shared cgroup parent (/cubo in each hierarchy) outlives
	@# them, like docker's /docker. Test packages run in parallel, so none of
	@# them can tell it is the last user; once all are done, remove it if empty
	@# (rmdir refuses a parent that still has containers).
	@for d in /sys/fs/cgroup/*/cubo; do rmdir "$$d" 2>/dev/null || true; done

unit-test:
	$(GO) test -count=1 -short ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@v0.7.0 ./...

# conformance runs the OCI runtime-tools validation suite against cubo-runc and
# writes docs/conformance.md, with a column for each runtime's last recorded run
# (.conformance/results-<runtime>.txt). CONFORMANCE_PEERS are run first, e.g.
# CONFORMANCE_PEERS="runc crun tests/conformance/crun-oci1.0.2"; CONFORMANCE_V1=0
# keeps the host's cgroup layout (see tests/conformance/run.sh).
CONFORMANCE_PEERS ?=
conformance: build
	./tests/conformance/run.sh $(foreach p,$(CONFORMANCE_PEERS),-c $(p)) $(CURDIR)/$(BIN)/cubo-runc

# interop runs containerd (ctr and CRI), podman and Docker with cubo-runc as
# their runtime; `make test` runs the same checks through go test.
interop: build
	./tests/interop/run.sh $(CURDIR)/$(BIN)/cubo-runc

# bench measures cubo-runc against runc and crun, and cubo against podman,
# side by side; it writes docs/benchmarks.md (about 13 minutes).
# BENCH_FLAGS passes flags to the harness, e.g. BENCH_FLAGS='-n 10 -batches 3' for a quick run.
BENCH_FLAGS ?=
bench: build
	$(GO) run ./tests/bench $(BENCH_FLAGS)

# fuzz runs every fuzz target for FUZZTIME each (plain `go test` runs only
# their seed corpora).
FUZZTIME ?= 20s
FUZZ_TARGETS := spec:FuzzLoad spec:FuzzParseMountOptions images:FuzzNormalizeName images:FuzzApplyTar images:FuzzExtractArchive \
                manager:FuzzLogs cmd/cubo-runc:FuzzArgv cmd/cubo-runc:FuzzArgvPositional build/cubofile:FuzzParse
fuzz:
	@for t in $(FUZZ_TARGETS); do pkg=$${t%%:*}; fn=$${t##*:}; echo "== fuzz ./$$pkg $$fn ($(FUZZTIME))"; \
		$(GO) test ./$$pkg -run '^$$' -fuzz "^$$fn$$" -fuzztime $(FUZZTIME) || exit 1; done

# demo runs a real container offline: Debian's busybox-static as the image.
demo: build
	@dpkg -s busybox-static >/dev/null 2>&1 || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq busybox-static; }
	./scripts/demo.sh $(CURDIR)/$(BIN)

clean:
	rm -rf $(BIN) .conformance
