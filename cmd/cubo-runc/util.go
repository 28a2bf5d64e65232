package main

import (
	"encoding/json"
	"fmt"
	"golang.org/x/sys/unix"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// loadSpecQuiet decodes config.json without validation, for peeking at a
// field before the real load reports errors.
func loadSpecQuiet(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	return &s, json.Unmarshal(b, &s)
}

func absPath(p string) (string, error) {
	a, err := filepath.Abs(p)
	if err != nil {
		return "", fmt.Errorf("resolve %s: %w", p, err)
	}
	return a, nil
}

// forwardedSignals are relayed to the container's process by a foreground
// run or exec (plus SIGWINCH, handled for the pty).
//
// Not every signal, as runc does: os/signal enables each one by waking a
// goroutine locked to its own thread, two context switches per signal,
// which for all 64 signals was about a tenth of a `run`'s CPU. These are
// the ones a terminal, a supervisor or a user sends. There is no
// signal.Stop either: the process exits right after.
var forwardedSignals = []os.Signal{
	unix.SIGHUP, unix.SIGINT, unix.SIGQUIT, unix.SIGTERM, unix.SIGUSR1,
	unix.SIGUSR2, unix.SIGALRM, unix.SIGCONT, unix.SIGWINCH, unix.SIGPWR,
	unix.SIGVTALRM, unix.SIGXCPU, unix.SIGXFSZ, unix.SIGTSTP, unix.SIGTTIN, unix.SIGTTOU,
}
