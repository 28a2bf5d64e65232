package main

import (
	"reflect"
	"testing"

	"github.com/alecthomas/kong"
	"golang.org/x/sys/unix"
)

func newParser(t *testing.T) *kong.Kong {
	t.Helper()
	var c cli
	p, err := kong.New(&c, kong.Name("cubo-runc"), kong.Exit(func(int) { t.Fatal("parser exited") }))
	if err != nil {
		t.Fatal(err)
	}
	return p
}

func TestNormalizeArgs(t *testing.T) {
	p := newParser(t)
	cases := []struct{ in, want []string }{
		// go-runc's single-dash long flags.
		{[]string{"--root", "/r", "run", "-no-subreaper", "-d", "x"}, []string{"--root", "/r", "run", "--no-subreaper", "-d", "x"}},
		{[]string{"-log-format=json", "state", "x"}, []string{"--log-format=json", "state", "x"}},
		// exec: everything after the ID is the process's argv.
		{[]string{"exec", "-t", "x", "ls", "-la", "--env", "A"}, []string{"exec", "-t", "x", "--", "ls", "-la", "--env", "A"}},
		// kill: the signal after the ID stays positional.
		{[]string{"kill", "--all", "x", "9"}, []string{"kill", "--all", "x", "--", "9"}},
		// create's --detach is a no-op go-runc may send.
		{[]string{"create", "--detach", "--bundle", "/b", "x"}, []string{"create", "--bundle", "/b", "x"}},
		// runc's `spec --rootless` is a bool.
		{[]string{"spec", "--rootless"}, []string{"spec", "--rootless=true"}},
		// flags after the ID for commands without trailing args.
		{[]string{"delete", "x", "-force"}, []string{"delete", "x", "--force"}},
	}
	for _, c := range cases {
		if got := normalizeArgs(p, c.in); !reflect.DeepEqual(got, c.want) {
			t.Errorf("%q: got %q, want %q", c.in, got, c.want)
		}
	}
}

func TestParseExecArgs(t *testing.T) {
	var c cli
	p, err := kong.New(&c, kong.Name("cubo-runc"))
	if err != nil {
		t.Fatal(err)
	}
	args := normalizeArgs(p, []string{"exec", "--env", "A=1,2", "-e", "B=3", "x", "sh", "-c", "echo -n"})
	if _, err := p.Parse(args); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(c.Exec.Env, []string{"A=1,2", "B=3"}) {
		t.Fatalf("env split or lost: %q", c.Exec.Env)
	}
	if c.Exec.ID != "x" || !reflect.DeepEqual(c.Exec.Command, []string{"sh", "-c", "echo -n"}) {
		t.Fatalf("id %q command %q", c.Exec.ID, c.Exec.Command)
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]unix.Signal{"9": unix.SIGKILL, "KILL": unix.SIGKILL, "sigkill": unix.SIGKILL, "SIGTERM": unix.SIGTERM, "usr1": unix.SIGUSR1} {
		got, err := parseSignal(in)
		if err != nil || got != want {
			t.Errorf("%q: got %v %v", in, got, err)
		}
	}
	for _, in := range []string{"", "0", "65", "-1", "NOPE", "SIG"} {
		if _, err := parseSignal(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}

func TestMergeEnv(t *testing.T) {
	got := mergeEnv([]string{"PATH=/bin", "A=1"}, []string{"A=2", "B=3", "A=4"})
	want := []string{"PATH=/bin", "A=4", "B=3"}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("got %q", got)
	}
}

func TestParseSize(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "64m": 64 << 20, "1G": 1 << 30, "2k": 2048, "-1": -1, "512b": 512} {
		if got, err := parseSize(in); err != nil || got != want {
			t.Errorf("%q: %d %v", in, got, err)
		}
	}
	for _, in := range []string{"", "x", "-5", "1q"} {
		if _, err := parseSize(in); err == nil {
			t.Errorf("%q accepted", in)
		}
	}
}
