package main

import (
	"io"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/alecthomas/kong"
)

// kongExit is what a test parser's Exit panics with, so --help and --version stop
// parsing without ending the test binary.
type kongExit int

// testParser builds the real CLI with output discarded and Exit turned into a panic.
func testParser(t *testing.T, args []string) (*kong.Kong, any) {
	t.Helper()
	var c cli
	p, chosen, err := newParser(&c, args, kong.Writers(io.Discard, io.Discard),
		kong.Exit(func(code int) { panic(kongExit(code)) }))
	if err != nil {
		t.Fatal(err)
	}
	return p, chosen
}

// parse runs normalizeArgs and kong on args as run does, and reports a kong exit (help,
// version) as exited.
func parse(t *testing.T, args []string) (c any, cmd string, exited bool, err error) {
	t.Helper()
	p, c := testParser(t, args)
	defer func() {
		if r := recover(); r != nil {
			if _, ok := r.(kongExit); ok {
				exited = true
				return
			}
			panic(r)
		}
	}()
	ctx, err := p.Parse(normalizeArgs(p, args))
	if err == nil {
		cmd = ctx.Command()
	}
	return c, cmd, false, err
}

func splitArgs(s string) []string {
	if s == "" {
		return nil
	}
	return strings.Split(s, "\x00")
}

// FuzzArgv parses arbitrary command lines (words separated by NUL bytes): normalizeArgs
// and kong must never panic, and a parse error is one line.
func FuzzArgv(f *testing.F) {
	for _, s := range []string{
		"exec\x00ctr\x00ls\x00-la", "--root\x00/r\x00exec\x00-t\x00ctr\x00sh", "-root\x00/r\x00-log-format\x00json\x00kill\x00ctr\x00KILL",
		"ps\x00ctr\x00-ef", "exec\x00--\x00ctr\x00ls", "create\x00-d\x00--bundle\x00b\x00c", "spec\x00-rootless", "kill\x00-a\x00ctr\x009",
		"--help", "-v", "exec\x00ctr\x00--\x00--\x00-x", "run\x00-d\x00--pid-file=p\x00c", "exec\x00-e\x00A=B\x00-u\x000:0\x00ctr\x00id",
		"", "-", "--", "---", "-=", "--=", "exec\x00-e", "update\x00--memory\x00-1\x00c", "events\x00--interval\x005s\x00c",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		_, _, _, err := parse(t, splitArgs(s))
		if err != nil && strings.ContainsAny(err.Error(), "\n\r") && !strings.ContainsAny(s, "\n\r") {
			t.Fatalf("error is not one line: %q", err)
		}
	})
}

// The flags FuzzArgvPositional puts before the container ID: global ones (with runc's
// single-dash spelling too) and each command's own, values included.
var (
	fuzzGlobalFlags = [][]string{{"--root", "/run/x"}, {"-root", "/run/x"}, {"--debug"}, {"-debug"}, {"--log", "/dev/null"},
		{"--log-format=json"}, {"-log-format", "text"}, {"--systemd-cgroup"}, {"--rootless", "false"}}
	fuzzCmdFlags = map[string][][]string{
		"exec": {{"-t"}, {"--tty"}, {"-d"}, {"--detach"}, {"-e", "A=B"}, {"--env", "-x"}, {"-u", "0:0"}, {"--cwd", "/"}, {"-cwd", "/tmp"},
			{"--cap", "CAP_KILL"}, {"-p", "/p.json"}, {"--process=/p.json"}, {"--preserve-fds", "2"}, {"--pid-file", "/pid"}, {"-no-new-privs"}, {"--ignore-paused"}},
		"kill": {{"-a"}, {"--all"}, {"-all"}},
		"ps":   {{"-f", "json"}, {"--format", "table"}, {"-format=json"}},
	}
	fuzzCmds = []string{"exec", "kill", "ps"}
)

// FuzzArgvPositional checks that for exec, kill and ps everything after the container
// ID reaches the command untouched, however dash-like: `exec ID ls -la --x` runs
// ["ls" "-la" "--x"] (runc drops only one "--" right after the ID), and flags before the
// ID, global or the command's, in runc's single-dash spelling or not, are still flags.
func FuzzArgvPositional(f *testing.F) {
	f.Add(uint8(0), []byte{0, 4}, "ctr", "ls\x00-la")
	f.Add(uint8(0), []byte{1, 16}, "ctr", "--\x00sh\x00-c\x00echo --root")
	f.Add(uint8(0), []byte{}, "ctr", "-e\x00X=1")
	f.Add(uint8(0), []byte{5, 6}, "c1", "--help")
	f.Add(uint8(0), []byte{}, "ctr", "--version\x00-v")
	f.Add(uint8(1), []byte{1}, "ctr", "KILL")
	f.Add(uint8(1), []byte{2}, "ctr", "-9")
	f.Add(uint8(2), []byte{0, 3}, "ctr", "-ef")
	f.Add(uint8(2), []byte{}, "ctr", "--\x00aux")
	f.Add(uint8(0), []byte{}, "ctr", "--\x00--\x00x")
	f.Add(uint8(0), []byte{7}, "ctr", "-")
	f.Fuzz(func(t *testing.T, which uint8, flagPicks []byte, id, rest string) {
		// A container ID is ASCII (ValidateID refuses anything else), so it
		// need not survive as bytes; the words after it must.
		if id == "" || strings.HasPrefix(id, "-") || strings.ContainsRune(id, 0) || !utf8.ValidString(id) {
			id = "ctr"
		}
		cmdName := fuzzCmds[int(which)%len(fuzzCmds)]
		var args, before []string
		// Globals before the command, then the command's flags and globals mixed.
		for i, p := range flagPicks {
			if i >= 8 {
				break
			}
			if p%2 == 0 && len(args) == len(before) {
				before = append(before, fuzzGlobalFlags[int(p/2)%len(fuzzGlobalFlags)]...)
				args = before
				continue
			}
			cf := fuzzCmdFlags[cmdName]
			pick := append(slices.Clone(fuzzGlobalFlags), cf...)
			args = append(args, pick[int(p)%len(pick)]...)
		}
		// Split: flags before the command, flags after it.
		argv := append(slices.Clone(before), cmdName)
		argv = append(argv, args[len(before):]...)
		argv = append(argv, id)
		tail := splitArgs(rest)
		argv = append(argv, tail...)

		c, cmd, exited, err := parse(t, argv)
		if exited {
			t.Fatalf("%q: a word after the container ID was taken as --help/--version", argv)
		}
		want := tail
		if len(want) > 0 && want[0] == "--" {
			want = want[1:]
		}
		switch cmdName {
		case "exec":
			if err != nil {
				t.Fatalf("%q: %v", argv, err)
			}
			if !strings.HasPrefix(cmd, "exec <container-id>") {
				t.Fatalf("%q: parsed as %q", argv, cmd)
			}
			e := c.(*execCmd)
			if e.ID != id || !slices.Equal(e.Command, want) && !(len(want) == 0 && len(e.Command) == 0) {
				t.Fatalf("%q: exec ID %q command %q, want %q %q", argv, e.ID, e.Command, id, want)
			}
		case "ps":
			if err != nil {
				t.Fatalf("%q: %v", argv, err)
			}
			ps := c.(*psCmd)
			if ps.ID != id || !slices.Equal(ps.Args, want) && !(len(want) == 0 && len(ps.Args) == 0) {
				t.Fatalf("%q: ps ID %q args %q, want %q %q", argv, ps.ID, ps.Args, id, want)
			}
		case "kill":
			switch {
			case len(want) > 1:
				if err == nil {
					t.Fatalf("%q: kill with %d words after the ID parsed", argv, len(want))
				}
			case err != nil:
				t.Fatalf("%q: %v", argv, err)
			case c.(*killCmd).ID != id:
				t.Fatalf("%q: kill ID %q", argv, c.(*killCmd).ID)
			case len(want) == 1 && c.(*killCmd).Signal != want[0]:
				t.Fatalf("%q: kill signal %q, want %q", argv, c.(*killCmd).Signal, want[0])
			}
		}
	})
}

// TestArgvNotUTF8: the command line is bytes, and parsing keeps them: kong's
// own string mapper went through JSON and turned them into U+FFFD. `ps ID
// ARGS` hands its words to ps(1) as given; an exec'd process's words and
// environment are then encoded as OCI JSON, where they become U+FFFD as with
// runc (tests/exec_test.go TestExecNotUTF8). Found by FuzzArgvPositional
// (testdata/fuzz/FuzzArgvPositional/de985239ceb90215).
func TestArgvNotUTF8(t *testing.T) {
	for _, tc := range []struct {
		argv []string
		got  func(any) []string
		want []string
	}{
		{[]string{"exec", "ctr", "printf", "\xad"}, func(c any) []string { return c.(*execCmd).Command }, []string{"printf", "\xad"}},
		{[]string{"exec", "ctr", "ls", "caf\xe9"}, func(c any) []string { return c.(*execCmd).Command }, []string{"ls", "caf\xe9"}},
		{[]string{"ps", "ctr", "-o", "\xff"}, func(c any) []string { return c.(*psCmd).Args }, []string{"-o", "\xff"}},
		{[]string{"exec", "--env", "F=caf\xe9", "-e", "G=\xff", "ctr", "true"}, func(c any) []string { return c.(*execCmd).Env }, []string{"F=caf\xe9", "G=\xff"}},
		{[]string{"exec", "--cwd", "/caf\xe9", "ctr", "true"}, func(c any) []string { return []string{c.(*execCmd).Cwd} }, []string{"/caf\xe9"}},
	} {
		c, _, _, err := parse(t, tc.argv)
		if err != nil {
			t.Fatalf("%q: %v", tc.argv, err)
		}
		if got := tc.got(c); !slices.Equal(got, tc.want) {
			t.Fatalf("%q: the command gets %q, want %q", tc.argv, got, tc.want)
		}
	}
}

// TestArgvKillDefault: kill's signal goes through the raw mapper, its default too.
func TestArgvKillDefault(t *testing.T) {
	for argv, want := range map[string]string{"kill ctr": "SIGTERM", "kill ctr 9": "9", "kill --all ctr KILL": "KILL"} {
		c, _, _, err := parse(t, strings.Fields(argv))
		if err != nil {
			t.Fatalf("%q: %v", argv, err)
		}
		if got := c.(*killCmd).Signal; got != want {
			t.Errorf("%q: signal %q, want %q", argv, got, want)
		}
	}
}

// TestArgvDashValue: runc's flag parsing takes the next word as a flag's value even when
// it starts with "-": `update --memory -1 ID` (runc's documented "unlimited") and
// `exec --env -x ID cmd`. Found by FuzzArgvPositional
// (testdata/fuzz/FuzzArgvPositional/4169aa58266e1c7a).
func TestArgvDashValue(t *testing.T) {
	for _, argv := range [][]string{
		{"update", "--memory", "-1", "ctr"},
		{"update", "--memory-swap", "-1", "ctr"},
		{"exec", "--env", "-x", "ctr", "true"},
		{"exec", "--cwd", "-dir", "ctr", "true"},
	} {
		if _, _, _, err := parse(t, argv); err != nil {
			t.Fatalf("%q: %v", argv, err)
		}
	}
}
