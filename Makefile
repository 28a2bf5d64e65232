# Cubo build, test and lint entry points. `make test` is what CI runs (as root).
GO        ?= go
export PATH := /usr/local/go/bin:$(PATH)
BIN       := bin
VERSION   ?= $(shell git describe --tags --always --dirty 2>/dev/null || echo dev)
COMMIT    ?= $(shell git rev-parse HEAD 2>/dev/null || echo unknown)
LDFLAGS   := -s -w -X main.version=$(VERSION) -X main.commit=$(COMMIT)
# Debian packages the root integration tests use as fixtures and peers.
TEST_DEBS := busybox-static runc crun skopeo umoci docker-registry

.PHONY: all build test unit-test root-test deps lint conformance bench clean

all: build

build:
	$(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/cubo-runc ./cmd/cubo-runc
	@if [ -d cmd/cubo ]; then $(GO) build -trimpath -ldflags '$(LDFLAGS)' -o $(BIN)/cubo ./cmd/cubo; fi

# deps installs the Debian packages the tests need, only when one is missing.
deps:
	@missing=""; for p in $(TEST_DEBS); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing:$$missing"; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing; \
	fi

test: deps build
	$(GO) vet ./...
	$(GO) test -count=1 ./...

lint:
	@out=$$(gofmt -l $$(git ls-files '*.go')); if [ -n "$$out" ]; then echo "gofmt:"; echo "$$out"; exit 1; fi
	$(GO) vet ./...
	$(GO) run honnef.co/go/tools/cmd/staticcheck@2025.1.1 ./...

conformance: build
	./tests/conformance/run.sh $(CURDIR)/$(BIN)/cubo-runc

clean:
	rm -rf $(BIN) .conformance
