package main

import (
	"reflect"
	"strings"
	"testing"

	"github.com/alecthomas/kong"
	"golang.org/x/sys/unix"
)

func fullParser(t *testing.T) *kong.Kong {
	t.Helper()
	var c cli
	p, chosen, err := newParser(&c, nil, kong.Exit(func(int) { t.Fatal("parser exited") }))
	if err != nil || chosen != nil {
		t.Fatal(err, chosen)
	}
	return p
}

func TestNormalizeArgs(t *testing.T) {
	p := fullParser(t)
	cases := []struct{ in, want []string }{
		// go-runc's single-dash long flags.
		{[]string{"--root", "/r", "run", "-no-subreaper", "-d", "x"}, []string{"--root=/r", "run", "--no-subreaper", "-d", "x"}},
		// values starting with "-" stay values.
		{[]string{"update", "--memory", "-1", "x"}, []string{"update", "--memory=-1", "x"}},
		{[]string{"exec", "-e", "-x", "x", "sh"}, []string{"exec", "--env=-x", "x", "--", "sh"}},
		{[]string{"-log-format=json", "state", "x"}, []string{"--log-format=json", "state", "x"}},
		// exec: everything after the ID is the process's argv.
		{[]string{"exec", "-t", "x", "ls", "-la", "--env", "A"}, []string{"exec", "-t", "x", "--", "ls", "-la", "--env", "A"}},
		// kill: the signal after the ID stays positional.
		{[]string{"kill", "--all", "x", "9"}, []string{"kill", "--all", "x", "--", "9"}},
		// create's --detach is a no-op go-runc may send.
		{[]string{"create", "--detach", "--bundle", "/b", "x"}, []string{"create", "--bundle=/b", "x"}},
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
	in := []string{"--root", "/r", "exec", "--env", "A=1,2", "-e", "B=3", "x", "sh", "-c", "echo -n"}
	p, chosen, err := newParser(&c, in)
	if err != nil {
		t.Fatal(err)
	}
	e, ok := chosen.(*execCmd)
	if !ok {
		t.Fatalf("parser built for %T, want only exec", chosen)
	}
	if _, err := p.Parse(normalizeArgs(p, in)); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(e.Env, []string{"A=1,2", "B=3"}) {
		t.Fatalf("env split or lost: %q", e.Env)
	}
	if e.ID != "x" || !reflect.DeepEqual(e.Command, []string{"sh", "-c", "echo -n"}) || c.Root != "/r" {
		t.Fatalf("id %q command %q root %q", e.ID, e.Command, c.Root)
	}
}

func TestFindVerb(t *testing.T) {
	for in, want := range map[string]string{
		"--root /r --log-format json create x": "create",
		"-log /l kill x 9":                     "kill",
		"--root=/r state x":                    "state",
		"--help":                               "",
		"bogus x":                              "",
		"--debug delete -f x":                  "delete",
	} {
		if got := findVerb(strings.Fields(in)); got != want {
			t.Errorf("%q: got %q, want %q", in, got, want)
		}
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
