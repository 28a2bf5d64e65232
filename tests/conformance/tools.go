//go:build tools

// Package conformance pins the OCI runtime-tools validation suite that
// tests/conformance/run.sh builds and runs against cubo-runc (`make
// conformance`). The blank import keeps the pinned version (v0.9.1-0.2025…:
// the v0.9.0 tag does not build against runtime-spec v1.3.0) in go.mod.
package conformance

import (
	_ "github.com/opencontainers/runtime-tools/validation/util"
)
