package main

import (
	"fmt"
	"os"
	"path/filepath"
	"syscall"

	"github.com/containerd/console"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/spec"
)

// loadSpecQuiet decodes config.json without validation, for peeking at a
// field before the real load reports errors.
func loadSpecQuiet(bundle string) (*specs.Spec, error) {
	b, err := os.ReadFile(filepath.Join(bundle, "config.json"))
	if err != nil {
		return nil, err
	}
	var s specs.Spec
	return &s, spec.Unmarshal(b, &s)
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

// forwardUntilExit relays the signals arriving on sigs to pid until wait
// reports the process's exit, and returns its state. SIGWINCH resizes term
// (the container's pty) when there is one instead of being relayed.
func forwardUntilExit(pid int, wait func() (*os.ProcessState, error), sigs <-chan os.Signal, term console.Console) *os.ProcessState {
	waitc := make(chan *os.ProcessState, 1)
	go func() {
		ps, _ := wait()
		waitc <- ps
	}()
	for {
		select {
		case sig := <-sigs:
			s := sig.(syscall.Signal)
			if s != unix.SIGWINCH {
				_ = unix.Kill(pid, s)
			} else if term != nil {
				if cur, err := console.Current().Size(); err == nil {
					_ = term.Resize(cur)
				}
			}
		case ps := <-waitc:
			return ps
		}
	}
}
