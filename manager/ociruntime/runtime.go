// Package ociruntime drives any runc-compatible runtime binary (cubo-runc, runc, crun)
// through its command line, the way containerd's go-runc does: one method per verb, a
// per-verb options struct, exit statuses as *ExitError, and a single function (Classify)
// that maps the runtime's error text to containerd errdefs classes.
package ociruntime

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/containerd/errdefs"
)

// Runtime is one runtime binary with its global flags.
type Runtime struct {
	// Command is the binary, a path or a name looked up on PATH.
	Command string
	// Root is the runtime's state directory (--root); empty leaves the runtime's default.
	Root string
	// Log is the runtime's log file (--log, JSON format); empty means stderr. Errors are
	// read back from it (the last "error" line) when the runtime fails.
	Log string
}

// ExitError is the exit status of a runtime or container process that ended unsuccessfully.
type ExitError struct {
	// Status is the exit code, or 128+signal when the process was killed by a signal.
	Status int
}

// Error returns "exit status N".
func (e *ExitError) Error() string { return fmt.Sprintf("exit status %d", e.Status) }

// IO is the stdio a container process gets. Nil fields are /dev/null.
type IO struct {
	Stdin          *os.File
	Stdout, Stderr *os.File
}

// CreateOpts are the flags of `create`.
type CreateOpts struct {
	IO
	// PidFile receives the init's host pid.
	PidFile string
	// ConsoleSocket is the AF_UNIX socket path that receives the pty master when the
	// config asks for a terminal.
	ConsoleSocket string
	// NoPivot uses MS_MOVE + chroot instead of pivot_root.
	NoPivot bool
}

func (o *CreateOpts) args() []string {
	var a []string
	if o.PidFile != "" {
		a = append(a, "--pid-file", o.PidFile)
	}
	if o.ConsoleSocket != "" {
		a = append(a, "--console-socket", o.ConsoleSocket)
	}
	if o.NoPivot {
		a = append(a, "--no-pivot")
	}
	return a
}

// ExecOpts are the flags of `exec`.
type ExecOpts struct {
	IO
	// Tty allocates a pseudo-terminal for the process (the runtime proxies it).
	Tty bool
	// Cwd, Env and User shape the process; User is UID[:GID].
	Cwd  string
	Env  []string
	User string
	// Detach returns once the process started.
	Detach bool
	// PidFile receives the process's host pid.
	PidFile string
}

func (r *Runtime) globalArgs() []string {
	var a []string
	if r.Root != "" {
		a = append(a, "--root", r.Root)
	}
	if r.Log != "" {
		a = append(a, "--log", r.Log, "--log-format", "json")
	}
	return a
}

func (r *Runtime) command(ctx context.Context, args ...string) *exec.Cmd {
	cmd := exec.CommandContext(ctx, r.Command, append(r.globalArgs(), args...)...)
	// The runtime must never see the manager's own _CUBO_* internals: cubo-runc uses
	// that prefix for its init protocol.
	env := os.Environ()
	cmd.Env = env[:0:0]
	for _, kv := range env {
		if !strings.HasPrefix(kv, "_CUBO_") {
			cmd.Env = append(cmd.Env, kv)
		}
	}
	return cmd
}

// run executes the runtime with args, capturing stderr for error reporting.
func (r *Runtime) run(cmd *exec.Cmd) error {
	var stderr bytes.Buffer
	if cmd.Stderr == nil {
		cmd.Stderr = &stderr
	}
	off := r.logSize()
	err := cmd.Run()
	if err == nil {
		return nil
	}
	return r.wrap(cmd, err, stderr.String(), off)
}

// logSize is where this call's lines start in the shared log file.
func (r *Runtime) logSize() int64 {
	if r.Log == "" {
		return 0
	}
	fi, err := os.Stat(r.Log)
	if err != nil {
		return 0
	}
	return fi.Size()
}

// wrap turns a failed runtime invocation into one line: the runtime's own message (from
// its log file or stderr) classified, with the exit status attached.
func (r *Runtime) wrap(cmd *exec.Cmd, err error, stderr string, off int64) error {
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		return fmt.Errorf("run %s: %w", cmd.Args[0], err)
	}
	msg := r.lastLogError(off)
	if msg == "" {
		msg = lastLine(stderr)
	}
	status := &ExitError{Status: exitStatus(ee.ProcessState)}
	if msg == "" {
		return fmt.Errorf("%s %s did not terminate successfully: %w", cmd.Args[0], verb(cmd.Args), status)
	}
	return fmt.Errorf("%s%.0w%.0w", msg, Classify(msg), status)
}

func verb(args []string) string {
	for i := 1; i < len(args); i++ {
		a := args[i]
		if a == "--root" || a == "--log" || a == "--log-format" {
			i++
			continue
		}
		if !strings.HasPrefix(a, "-") {
			return a
		}
	}
	return ""
}

func lastLine(s string) string {
	s = strings.TrimSpace(s)
	if i := strings.LastIndexByte(s, '\n'); i >= 0 {
		s = s[i+1:]
	}
	return strings.TrimSpace(s)
}

// lastLogError returns the msg of the last error-level line of the JSON log, as
// containerd's getLastRuntimeError does; runc's levels are lowercase.
func (r *Runtime) lastLogError(off int64) string {
	if r.Log == "" {
		return ""
	}
	f, err := os.Open(r.Log)
	if err != nil {
		return ""
	}
	defer f.Close()
	if _, err := f.Seek(off, 0); err != nil {
		return ""
	}
	var msg string
	sc := bufio.NewScanner(f)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	for sc.Scan() {
		var l struct{ Level, Msg string }
		if json.Unmarshal(sc.Bytes(), &l) == nil && (l.Level == "error" || l.Level == "fatal") {
			msg = l.Msg
		}
	}
	return msg
}

// exitStatus returns the exit code, or 128+signal for a process killed by a signal.
func exitStatus(ps *os.ProcessState) int {
	if ws, ok := ps.Sys().(syscall.WaitStatus); ok && ws.Signaled() {
		return 128 + int(ws.Signal())
	}
	return ps.ExitCode()
}

// Classify maps a runtime's error text to an errdefs class. It is the only place that
// knows runc's wording ("container does not exist", "container not running"...), which
// cubo-runc keeps word for word and crun approximates.
func Classify(msg string) error {
	m := strings.ToLower(msg)
	switch {
	case strings.Contains(m, "does not exist"), strings.Contains(m, "not found"),
		strings.Contains(m, "no such file"):
		return errdefs.ErrNotFound
	case strings.Contains(m, "already exists"), strings.Contains(m, "already running"):
		return errdefs.ErrAlreadyExists
	case strings.Contains(m, "not running"), strings.Contains(m, "not stopped"),
		strings.Contains(m, "is stopped"), strings.Contains(m, "has stopped"),
		strings.Contains(m, "paused"), strings.Contains(m, "in the ") && strings.Contains(m, "state"):
		return errdefs.ErrFailedPrecondition
	case strings.Contains(m, "permission denied"), strings.Contains(m, "operation not permitted"):
		return errdefs.ErrPermissionDenied
	case strings.Contains(m, "invalid"), strings.Contains(m, "must not"), strings.Contains(m, "unknown signal"),
		strings.Contains(m, "cannot be empty"), strings.Contains(m, "executable file not found"):
		return errdefs.ErrInvalidArgument
	}
	return errdefs.ErrUnknown
}

// Create runs `create` for the bundle and returns once the init waits for `start`.
func (r *Runtime) Create(ctx context.Context, id, bundle string, opts *CreateOpts) error {
	if opts == nil {
		opts = &CreateOpts{}
	}
	args := append([]string{"create", "--bundle", bundle}, opts.args()...)
	cmd := r.command(ctx, append(args, id)...)
	setIO(cmd, opts.IO)
	return r.run(cmd)
}

func setIO(cmd *exec.Cmd, io IO) {
	if io.Stdin != nil {
		cmd.Stdin = io.Stdin
	}
	if io.Stdout != nil {
		cmd.Stdout = io.Stdout
	}
	if io.Stderr != nil {
		cmd.Stderr = io.Stderr
	}
}

// Start releases a created container's process.
func (r *Runtime) Start(ctx context.Context, id string) error {
	return r.run(r.command(ctx, "start", id))
}

// Kill sends sig to the init (all processes of the container with all).
func (r *Runtime) Kill(ctx context.Context, id string, sig syscall.Signal, all bool) error {
	args := []string{"kill"}
	if all {
		args = append(args, "--all")
	}
	return r.run(r.command(ctx, append(args, id, strconv.Itoa(int(sig)))...))
}

// Delete removes the container's runtime state and cgroups; force kills it first.
func (r *Runtime) Delete(ctx context.Context, id string, force bool) error {
	args := []string{"delete"}
	if force {
		args = append(args, "--force")
	}
	return r.run(r.command(ctx, append(args, id)...))
}

// State is the runtime's `state` output.
type State struct {
	ID          string            `json:"id"`
	Pid         int               `json:"pid"`
	Status      string            `json:"status"`
	Bundle      string            `json:"bundle"`
	Created     time.Time         `json:"created"`
	Annotations map[string]string `json:"annotations,omitempty"`
}

// State returns the container's state; an unknown container gives errdefs.ErrNotFound.
func (r *Runtime) State(ctx context.Context, id string) (*State, error) {
	cmd := r.command(ctx, "state", id)
	var out bytes.Buffer
	cmd.Stdout = &out
	if err := r.run(cmd); err != nil {
		return nil, err
	}
	var st State
	if err := json.Unmarshal(out.Bytes(), &st); err != nil {
		return nil, fmt.Errorf("parse %s state: %w", r.Command, err)
	}
	return &st, nil
}

// Exec runs args in the container. In the foreground it returns the process's status as
// *ExitError when non-zero; errors of the runtime itself (exit 255) are classified.
func (r *Runtime) Exec(ctx context.Context, id string, args []string, opts *ExecOpts) error {
	if opts == nil {
		opts = &ExecOpts{}
	}
	a := []string{"exec"}
	if opts.Tty {
		a = append(a, "--tty")
	}
	if opts.Cwd != "" {
		a = append(a, "--cwd", opts.Cwd)
	}
	for _, e := range opts.Env {
		a = append(a, "--env", e)
	}
	if opts.User != "" {
		a = append(a, "--user", opts.User)
	}
	if opts.Detach {
		a = append(a, "--detach")
	}
	if opts.PidFile != "" {
		a = append(a, "--pid-file", opts.PidFile)
	}
	cmd := r.command(ctx, append(append(a, id), args...)...)
	setIO(cmd, opts.IO)
	off := r.logSize()
	err := cmd.Run()
	var ee *exec.ExitError
	if errors.As(err, &ee) && exitStatus(ee.ProcessState) != 255 {
		return &ExitError{Status: exitStatus(ee.ProcessState)}
	}
	if err != nil {
		return r.wrap(cmd, err, "", off)
	}
	return nil
}

// Run runs the bundle's container in the foreground (create, start, wait, delete in one
// call) with the given stdio. A non-zero exit of the container's process is returned as
// *ExitError carrying its status; a failure of the runtime itself (an error line in the
// log) is returned classified.
func (r *Runtime) Run(ctx context.Context, id, bundle string, io IO) error {
	cmd := r.command(ctx, "run", "--bundle", bundle, id)
	setIO(cmd, io)
	off := r.logSize()
	err := cmd.Run()
	var ee *exec.ExitError
	if !errors.As(err, &ee) {
		if err != nil {
			return fmt.Errorf("run %s: %w", r.Command, err)
		}
		return nil
	}
	if msg := r.lastLogError(off); msg != "" {
		return fmt.Errorf("%s%.0w%.0w", msg, Classify(msg), &ExitError{Status: exitStatus(ee.ProcessState)})
	}
	return &ExitError{Status: exitStatus(ee.ProcessState)}
}
