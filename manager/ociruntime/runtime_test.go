package ociruntime

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
)

func TestClassify(t *testing.T) {
	for msg, want := range map[string]error{
		"container does not exist":                               errdefs.ErrNotFound,
		"container with given ID already exists":                 errdefs.ErrAlreadyExists,
		"container not running":                                  errdefs.ErrFailedPrecondition,
		"cannot delete container x that is not stopped: running": errdefs.ErrFailedPrecondition,
		"cannot start a container that has stopped":              errdefs.ErrFailedPrecondition,
		`unknown signal "FOO"`:                                   errdefs.ErrInvalidArgument,
		"open /x: permission denied":                             errdefs.ErrPermissionDenied,
		"something else broke":                                   errdefs.ErrUnknown,
	} {
		if got := Classify(msg); !errors.Is(got, want) {
			t.Errorf("%q: %v, want %v", msg, got, want)
		}
	}
}

// A fake runtime: the error comes from the --log JSON (only this call's lines), the exit
// status travels as *ExitError, and the text is classified.
func TestErrorsFromLog(t *testing.T) {
	dir := t.TempDir()
	bin := filepath.Join(dir, "rt")
	script := `#!/bin/sh
log=$2
echo '{"level":"error","msg":"an old error","time":"2024-01-01T00:00:00Z"}' >> "$log.old"
case "$5" in
state) echo '{"level":"error","msg":"container does not exist","time":"2024-01-01T00:00:00Z"}' >> "$log"; exit 1;;
kill) echo "stderr only: container not running" >&2; exit 3;;
esac
`
	if err := os.WriteFile(bin, []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	log := filepath.Join(dir, "log.json")
	os.WriteFile(log, []byte(`{"level":"error","msg":"container with given ID already exists","time":"x"}`+"\n"), 0o644)
	r := &Runtime{Command: bin, Log: log}
	_, err := r.State(context.Background(), "x")
	var ee *ExitError
	if !errors.Is(err, errdefs.ErrNotFound) || !errors.As(err, &ee) || ee.Status != 1 || err.Error() != "container does not exist" {
		t.Fatalf("state: %v", err)
	}
	r.Log = filepath.Join(dir, "empty.json")
	err = r.Kill(context.Background(), "x", 9, false)
	if !errors.Is(err, errdefs.ErrFailedPrecondition) || !errors.As(err, &ee) || ee.Status != 3 {
		t.Fatalf("kill: %v", err)
	}
}
