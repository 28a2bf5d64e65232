// The Go runtime would read the cgroup CPU quota at startup (and keep those
// files open, where the container init could inherit them) and poll it to
// adjust GOMAXPROCS; a short-lived runtime process wants neither.
//
//go:debug containermaxprocs=0
//go:debug updatemaxprocs=0

// Command cubo-runc is Cubo's OCI runtime: a drop-in for runc that takes an
// OCI bundle and runs the container's lifecycle (create, start, kill,
// delete, state, ...) with runc's CLI contract.
package main

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"reflect"
	goruntime "runtime"
	"runtime/debug"
	"strings"
	"time"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"
)

// Set by the linker (see the Makefile).
var (
	version = "dev"
	commit  = "unknown"
)

// specVersion is the OCI runtime-spec version this build implements.
const specVersion = "1.3.0"

// globals are runc's global flags.
type globals struct {
	Root          string      `help:"Root directory for storage of container state (default: /run/cubo-runc, or $XDG_RUNTIME_DIR/cubo-runc when rootless)."`
	Log           string      `help:"Set the log file to write runtime logs to (default: stderr)."`
	LogFormat     string      `name:"log-format" default:"text" enum:"text,json" help:"Set the log format ('text' (default), or 'json')."`
	Debug         bool        `help:"Enable debug logging."`
	SystemdCgroup bool        `name:"systemd-cgroup" help:"Use the systemd cgroup path syntax (slice:prefix:name); recorded at create."`
	Rootless      string      `default:"auto" enum:"true,false,auto" help:"Ignore cgroup permission errors (true, false or auto)."`
	Criu          string      `hidden:"" help:"Ignored; accepted for compatibility."`
	Version       versionFlag `short:"v" help:"Print the version."`

	log zerolog.Logger
}

type versionFlag bool

// BeforeReset prints the version before kong checks required arguments, so
// `cubo-runc --version` works alone, as with runc.
func (versionFlag) BeforeReset(app *kong.Kong) error {
	fmt.Fprintf(app.Stdout, "cubo-runc version %s\ncommit: %s\nspec: %s\n", version, commit, specVersion)
	app.Exit(0)
	return nil
}

// cli is the root of the command line: runc's global flags. The commands
// are added to it with kong.DynamicCommand (see newParser).
type cli struct {
	globals
}

// commands are runc's verbs, in `--help` order.
var commands = []struct {
	name, help string
	new        func() any
}{
	{"create", "Create a container.", func() any { return &createCmd{} }},
	{"start", "Start a created container.", func() any { return &startCmd{} }},
	{"run", "Create and run a container.", func() any { return &runCmd{} }},
	{"state", "Output the state of a container.", func() any { return &stateCmd{} }},
	{"list", "List containers started by cubo-runc with the given root.", func() any { return &listCmd{} }},
	{"kill", "Send a signal to a container's init (or all) processes.", func() any { return &killCmd{} }},
	{"delete", "Delete any resources held by the container.", func() any { return &deleteCmd{} }},
	{"spec", "Create a new specification file.", func() any { return &specCmd{} }},
	{"features", "Show the enabled features.", func() any { return &featuresCmd{} }},
	{"pause", "Pause all processes inside the container.", func() any { return &pauseCmd{} }},
	{"resume", "Resume all processes that have been previously paused.", func() any { return &resumeCmd{} }},
	{"ps", "Display the processes running inside a container.", func() any { return &psCmd{} }},
	{"exec", "Execute a new process inside the container.", func() any { return &execCmd{} }},
	{"update", "Update the resource limits of a container.", func() any { return &updateCmd{} }},
	{"events", "Display container events such as OOM notifications and resource usage statistics.", func() any { return &eventsCmd{} }},
}

// newParser builds the kong parser for args. Building kong's model costs
// reflection over every command's flags (about 0.6 ms, on every call of a
// runtime that lives for milliseconds), so when args name a verb only that
// command is added; `--help` and unknown verbs get them all. It returns
// the command object args will fill (nil for the full set).
func newParser(c *cli, args []string, opts ...kong.Option) (*kong.Kong, any, error) {
	verb := findVerb(args)
	var chosen any
	base := []kong.Option{
		kong.Name("cubo-runc"),
		kong.Description("Cubo's OCI runtime, compatible with runc's command line."),
		kong.NamedMapper("raw", rawString),
	}
	for _, cmd := range commands {
		if verb != "" && cmd.name != verb {
			continue
		}
		obj := cmd.new()
		if verb != "" {
			chosen = obj
		}
		base = append(base, kong.DynamicCommand(cmd.name, cmd.help, "", obj))
	}
	p, err := kong.New(c, append(base, opts...)...)
	return p, chosen, err
}

// rawString is kong's string mapper without its JSON round trip, which turns
// bytes that are not UTF-8 into U+FFFD: a container's argv, environment and
// paths are bytes (`exec ID ls caf\xe9` must list that Latin-1 name). On a
// []string it appends: one value for a (repeatable) flag, every remaining
// value for a positional argument.
var rawString = kong.MapperFunc(func(ctx *kong.DecodeContext, target reflect.Value) error {
	pop := func() (string, error) {
		t, err := ctx.Scan.PopValue("value")
		if err != nil {
			return "", err
		}
		s, ok := t.Value.(string)
		if !ok {
			return "", fmt.Errorf("expected a string, got %v", t.Value)
		}
		return s, nil
	}
	switch {
	case target.Kind() == reflect.String:
		s, err := pop()
		if err != nil {
			return err
		}
		target.SetString(s)
	case target.Kind() == reflect.Slice && target.Type().Elem().Kind() == reflect.String:
		for first := true; first || ctx.Value.Flag == nil && ctx.Scan.Peek().IsValue(); first = false {
			s, err := pop()
			if err != nil {
				return err
			}
			target.Set(reflect.Append(target, reflect.ValueOf(s).Convert(target.Type().Elem())))
		}
	default:
		return fmt.Errorf("raw mapper on %s", target.Type())
	}
	return nil
})

// valueGlobals are the global flags that take their value as the next word.
var valueGlobals = map[string]bool{"root": true, "log": true, "log-format": true, "rootless": true, "criu": true}

// findVerb returns the command args name, or "" if there is none or it is
// unknown (or help is asked for).
func findVerb(args []string) string {
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			return ""
		}
		if strings.HasPrefix(a, "-") {
			name := strings.TrimLeft(a, "-")
			if name == "h" || name == "help" {
				return ""
			}
			if !strings.Contains(name, "=") && valueGlobals[name] {
				i++
			}
			continue
		}
		for _, cmd := range commands {
			if cmd.name == a {
				return a
			}
		}
		return ""
	}
	return ""
}

func main() {
	// A cubo-runc command lives for milliseconds and allocates a few MB:
	// collecting garbage would only cost time. The limit keeps a runaway
	// (a huge config.json, a long `events` stream) bounded anyway.
	debug.SetGCPercent(-1)
	debug.SetMemoryLimit(128 << 20)
	// One P for the commands that wait on the container's processes: with an
	// idle second P every blocking syscall and goroutine wake-up spins up or
	// wakes another thread (a third more context switches per `run`). The
	// quick verbs skip it: resizing to one P flushes the second P's caches,
	// which costs a `state` about 5% of its CPU.
	switch findVerb(os.Args[1:]) {
	case "run", "create", "exec":
		goruntime.GOMAXPROCS(1)
	}
	os.Exit(run(os.Args[1:]))
}

// exitError carries a process exit status out of a command without an
// error message (run and exec return the container process's status).
type exitError struct{ code int }

func (e *exitError) Error() string { return fmt.Sprintf("exit status %d", e.code) }

func run(args []string) int {
	var c cli
	parser, _, err := newParser(&c, args, kong.UsageOnError(), kong.Exit(os.Exit))
	if err != nil {
		fmt.Fprintln(os.Stderr, "cubo-runc:", err)
		return 1
	}
	args = normalizeArgs(parser, args)
	kctx, err := parser.Parse(args)
	// Logging is configured from whatever global flags did parse, so even a
	// flag error lands in the --log file as callers expect.
	c.globals.setupLog()
	if err != nil {
		return c.globals.fail(err, 1)
	}
	if c.Criu != "" {
		c.globals.log.Warn().Msg("--criu is ignored")
	}
	err = kctx.Run(&c.globals)
	if err == nil {
		return 0
	}
	var ee *exitError
	if errors.As(err, &ee) {
		return ee.code
	}
	code := 1
	if strings.HasPrefix(kctx.Command(), "exec") {
		code = 255
	}
	return c.globals.fail(err, code)
}

// fail reports err as one error log entry, and also plainly on stderr when
// the log goes elsewhere, as containerd and conmon read one or the other.
func (g *globals) fail(err error, code int) int {
	msg := err.Error()
	g.log.Error().Msg(msg)
	if g.Log != "" && g.Log != "/dev/stderr" {
		fmt.Fprintln(os.Stderr, msg)
	}
	return code
}

func (g *globals) setupLog() {
	out := os.Stderr
	if g.Log != "" {
		f, err := os.OpenFile(g.Log, os.O_WRONLY|os.O_APPEND|os.O_CREATE|os.O_SYNC, 0o644)
		if err == nil {
			out = f
		} else {
			fmt.Fprintf(os.Stderr, "open log file %s: %v\n", g.Log, err)
		}
	}
	zerolog.TimeFieldFormat = time.RFC3339
	zerolog.MessageFieldName = "msg"
	zerolog.LevelFieldMarshalFunc = func(l zerolog.Level) string {
		if l == zerolog.WarnLevel {
			return "warning"
		}
		return l.String()
	}
	level := zerolog.WarnLevel
	if g.Debug {
		level = zerolog.DebugLevel
	}
	if g.LogFormat == "json" {
		g.log = zerolog.New(out).Level(level).With().Timestamp().Logger()
		return
	}
	w := zerolog.ConsoleWriter{
		Out:        out,
		NoColor:    true,
		TimeFormat: time.RFC3339,
		PartsOrder: []string{zerolog.TimestampFieldName, zerolog.LevelFieldName, zerolog.MessageFieldName},
		FormatTimestamp: func(i any) string {
			return fmt.Sprintf("time=%q", fmt.Sprint(i))
		},
		FormatLevel: func(i any) string {
			s := fmt.Sprint(i)
			if s == "warn" {
				s = "warning"
			}
			return "level=" + s
		},
		FormatMessage: func(i any) string {
			return fmt.Sprintf("msg=%q", fmt.Sprint(i))
		},
	}
	g.log = zerolog.New(w).Level(level).With().Timestamp().Logger()
}

// root returns the state root: --root, or runc's default rule.
func (g *globals) root() (string, error) {
	r := g.Root
	if r == "" {
		r = "/run/cubo-runc"
		if xdg := os.Getenv("XDG_RUNTIME_DIR"); xdg != "" && g.rootlessMode() {
			r = filepath.Join(xdg, "cubo-runc")
		}
	}
	abs, err := filepath.Abs(r)
	if err != nil {
		return "", fmt.Errorf("resolve root %s: %w", r, err)
	}
	if abs == "/" {
		return "", errors.New("refusing to use / as the state root")
	}
	return abs, nil
}

// rootlessMode is runc's rule: euid != 0, or root in a user namespace
// whose USER is not root.
func (g *globals) rootlessMode() bool {
	switch g.Rootless {
	case "true":
		return true
	case "false":
		return false
	}
	if os.Geteuid() != 0 {
		return true
	}
	if inUserNS() {
		return os.Getenv("USER") != "root"
	}
	return false
}

func inUserNS() bool {
	b, err := os.ReadFile("/proc/self/uid_map")
	if err != nil {
		return false
	}
	f := strings.Fields(string(b))
	return !(len(f) == 3 && f[0] == "0" && f[1] == "0" && f[2] == "4294967295")
}
