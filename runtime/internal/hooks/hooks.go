// Package hooks runs OCI lifecycle hooks: each gets the container state as
// JSON on stdin, exactly its own args and env, and an optional timeout.
package hooks

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os/exec"
	"runtime"
	"strings"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cubo-dev/cubo/runtime/nsenter"
)

// Run executes hooks in order and stops at the first failure. kind names
// the hook list in errors ("prestart", "poststop", ...).
func Run(list []specs.Hook, st *specs.State, kind string) error {
	if len(list) == 0 {
		return nil
	}
	state, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state for %s hook: %w", kind, err)
	}
	for i, h := range list {
		if err := runOne(h, state); err != nil {
			return fmt.Errorf("%s hook #%d: %w", kind, i, err)
		}
	}
	return nil
}

// RunAll executes every hook even when some fail, and returns their errors
// joined: for poststart and poststop, whose failures the runtime spec makes
// warnings that must not stop the remaining hooks or the lifecycle.
func RunAll(list []specs.Hook, st *specs.State, kind string) error {
	if len(list) == 0 {
		return nil
	}
	state, err := json.Marshal(st)
	if err != nil {
		return fmt.Errorf("encode state for %s hook: %w", kind, err)
	}
	var errs []error
	for i, h := range list {
		if err := runOne(h, state); err != nil {
			errs = append(errs, fmt.Errorf("%s hook #%d: %w", kind, i, err))
		}
	}
	return errors.Join(errs...)
}

// start forks cmd from a thread with cubo-runc's caller's timer slack: the
// runtime's own threads run with a coarse one (see runtime/nsenter).
func start(cmd *exec.Cmd) error {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	nsenter.RestoreTimerSlack()
	return cmd.Start()
}

func runOne(h specs.Hook, state []byte) error {
	cmd := &exec.Cmd{Path: h.Path, Args: h.Args, Env: h.Env, Stdin: bytes.NewReader(state)}
	if len(cmd.Args) == 0 {
		cmd.Args = []string{h.Path}
	}
	if cmd.Env == nil {
		// A nil Env would inherit ours; hooks get only what they ask for.
		cmd.Env = []string{}
	}
	var out bytes.Buffer
	cmd.Stdout = &out
	cmd.Stderr = &out
	if err := start(cmd); err != nil {
		return err
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	var timeout <-chan time.Time
	if h.Timeout != nil && *h.Timeout > 0 {
		t := time.NewTimer(time.Duration(*h.Timeout) * time.Second)
		defer t.Stop()
		timeout = t.C
	}
	select {
	case err := <-done:
		if err != nil {
			msg := strings.TrimSpace(out.String())
			var ee *exec.ExitError
			if errors.As(err, &ee) && msg != "" {
				return fmt.Errorf("%s: %w, stdout: %s", h.Path, err, msg)
			}
			return fmt.Errorf("%s: %w", h.Path, err)
		}
		return nil
	case <-timeout:
		_ = cmd.Process.Kill()
		<-done
		return fmt.Errorf("%s: timeout after %d seconds", h.Path, *h.Timeout)
	}
}
