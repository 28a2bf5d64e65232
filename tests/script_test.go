package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/rogpeppe/go-internal/testscript"
)

// TestScript runs testdata/script/*.txtar against the runtime under test.
//
// Environment of every script:
//
//	RT       the runtime binary (for `exec $RT --root $ROOT ...` in the background)
//	RUNTIME  its base name: runc, crun or cubo-runc
//	ROOT     a private --root for the runtime
//	HOSTNS_<type>   the host's namespace inode numbers (HOSTNS_net, ...)
//	CGSELF_<ctrl>   our own cgroup path per hierarchy (CGSELF_memory, ...; CGSELF_unified for v2)
//	NOFILE_HARD     our RLIMIT_NOFILE hard limit
//	UNIQ     a string unique to this script run (for cgroup names)
//
// Conditions: [root], [runc], [crun], [cubo] (the runtime under test),
// [busybox], [alpine] (the fixture is present), and those of specCondition.
//
// Commands (besides testscript's builtins):
//
//	mkbundle DIR probe|busybox|alpine [ARGS...]
//	    make a bundle (see makeBundle); for probe, ARGS are the probe's
//	[!] rt ARGS...
//	    run `$RT --root $ROOT ARGS...`; its output feeds stdout/stderr.
//	    create and run -d send the container's stdio to <id>.out and <id>.err
//	    in the current directory (id cut to 64 characters) and track the
//	    init for the leak check; exec -d sends it to exec.out and exec.err.
//	exitcode N
//	    the last rt exited with status N
//	jsonset FILE PATH VALUE / jsondel FILE PATH
//	    edit a JSON file (see jsonSet for PATH; VALUE is JSON or a string)
//	[!] jsonmatch FILE|stdout PATH REGEXP
//	    the value at PATH (strings raw, others as JSON) matches REGEXP
//	waitstate ID STATUS
//	    poll `state ID` until STATUS
//	waitfile FILE
//	    poll until FILE exists
//	statepid ID VAR
//	    set $VAR to the pid in `state ID`
//	[!] alive PID
//	    the process is alive (not a zombie); negated, wait until it is gone
//	nostate ID
//	    no state directory for ID is left in $ROOT
//	noleaks
//	    no leftover init, cgroup or mount from this script so far
//	nsinode PID TYPE VAR
//	    set $VAR to the inode number of /proc/PID/ns/TYPE
//	[!] content FILE TEXT
//	    FILE holds exactly TEXT (no trailing newline unless in TEXT)
//	[!] hasmount PATH
//	    something is mounted at PATH in the host mount namespace
func TestScript(t *testing.T) {
	requireRuntime(t)
	testscript.Run(t, testscript.Params{
		Dir:                 "testdata/script",
		WorkdirRoot:         t.TempDir(), // testscript leaves its root behind under -run filters
		RequireExplicitExec: true,
		Setup:               scriptSetup,
		Condition:           scriptCondition,
		Cmds: map[string]func(ts *testscript.TestScript, neg bool, args []string){
			"mkbundle":  cmdMkbundle,
			"rt":        cmdRt,
			"exitcode":  cmdExitcode,
			"jsonset":   cmdJSONSet,
			"jsondel":   cmdJSONDel,
			"jsonmatch": cmdJSONMatch,
			"waitstate": cmdWaitstate,
			"waitfile":  cmdWaitfile,
			"statepid":  cmdStatepid,
			"alive":     cmdAlive,
			"nostate":   cmdNostate,
			"noleaks":   cmdNoleaks,
			"hasmount":  cmdHasmount,
			"content":   cmdContent,
			"nsinode":   cmdNsinode,
			// runtime-spec feature scripts (spec_cmds_test.go)
			"readvar":    cmdReadvar,
			"waitchange": cmdWaitchange,
			"waitmatch":  cmdWaitmatch,
		},
	})
}

// scriptState is kept in every script's Env.Values.
type scriptState struct {
	h        *harness
	lastExit int
}

type stateKey struct{}

func st(ts *testscript.TestScript) *scriptState {
	return ts.Value(stateKey{}).(*scriptState)
}

func scriptSetup(env *testscript.Env) error {
	root := filepath.Join(env.WorkDir, ".rtroot")
	if err := os.Mkdir(root, 0o700); err != nil {
		return err
	}
	s := &scriptState{h: newHarness(root, env.WorkDir), lastExit: -1}
	env.Values[stateKey{}] = s
	env.Setenv("RT", runtimePath)
	env.Setenv("RUNTIME", runtimeName)
	env.Setenv("ROOT", root)
	env.Setenv("UNIQ", fmt.Sprintf("%d-%d", os.Getpid(), bundleSeq.Add(1)))
	if ents, err := os.ReadDir("/proc/self/ns"); err == nil {
		for _, e := range ents {
			if l, err := os.Readlink("/proc/self/ns/" + e.Name()); err == nil {
				if i := strings.IndexByte(l, '['); i >= 0 {
					env.Setenv("HOSTNS_"+e.Name(), strings.TrimSuffix(l[i+1:], "]"))
				}
			}
		}
	}
	for k, v := range selfCgroups() {
		name := k
		if k == "" {
			name = "unified"
		}
		if strings.Contains(name, "=") || strings.Contains(name, ",") {
			continue
		}
		env.Setenv("CGSELF_"+name, strings.TrimSuffix(v, "/"))
	}
	var lim [2]uint64
	if b, err := os.ReadFile("/proc/self/limits"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) >= 5 && strings.HasPrefix(l, "Max open files") {
				lim[1], _ = strconv.ParseUint(f[4], 10, 64)
			}
		}
	}
	env.Setenv("NOFILE_HARD", strconv.FormatUint(lim[1], 10))
	t := env.T()
	env.Defer(func() {
		if problems := s.h.cleanup(); len(problems) > 0 {
			if e, ok := t.(interface{ Errorf(string, ...any) }); ok {
				e.Errorf("after script:\n%s", strings.Join(problems, "\n"))
			} else {
				t.Log(strings.Join(problems, "\n"))
				t.Fatal("leaks after script")
			}
		}
	})
	return nil
}

func scriptCondition(cond string) (bool, error) {
	switch cond {
	case "root":
		return os.Geteuid() == 0, nil
	case "runc", "crun":
		return runtimeName == cond, nil
	case "cubo":
		return runtimeName == "cubo-runc", nil
	case "busybox":
		return len(busyboxApplets) > 0, nil
	case "alpine":
		_, err := os.Stat(alpineTar)
		return err == nil, nil
	}
	if ok, handled := specCondition(cond); handled {
		return ok, nil
	}
	return false, fmt.Errorf("unknown condition %q", cond)
}

func cmdMkbundle(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) < 2 {
		ts.Fatalf("usage: mkbundle DIR probe|busybox|alpine [ARGS...]")
	}
	dir := ts.MkAbs(args[0])
	err := makeBundle(dir, args[1], args[2:])
	if errors.Is(err, errSkip) {
		ts.Fatalf("%v (gate the script with [busybox] or [alpine])", err)
	}
	ts.Check(err)
	st(ts).h.addBundle(dir)
}

// containerID returns the last argument, which is the ID for create and run.
func containerID(args []string) string {
	if len(args) == 0 {
		return ""
	}
	return args[len(args)-1]
}

func isDetached(args []string) bool {
	if len(args) == 0 {
		return false
	}
	switch args[0] {
	case "create":
		return true
	case "run", "exec":
		for i := 1; i < len(args); i++ {
			a := args[i]
			if !strings.HasPrefix(a, "-") {
				break // the ID: what follows is exec's command
			}
			if a == "-d" || a == "--detach" || a == "-detach" || a == "--detach=true" {
				return true
			}
			if valueFlags[strings.TrimLeft(a, "-")] {
				i++
			}
		}
	}
	return false
}

// valueFlags are the create/run/exec flags that take a separate value.
var valueFlags = map[string]bool{
	"bundle": true, "b": true, "pid-file": true, "console-socket": true, "pidfd-socket": true,
	"preserve-fds": true, "cwd": true, "env": true, "e": true, "user": true, "u": true,
	"process": true, "p": true, "additional-gids": true, "g": true, "cap": true, "c": true,
	"cgroup": true, "apparmor": true, "process-label": true,
}

func cmdRt(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) == 0 {
		ts.Fatalf("usage: rt ARGS...")
	}
	s := st(ts)
	var r result
	if isDetached(args) {
		name := sanitize(containerID(args))
		if args[0] == "exec" {
			name = "exec"
		}
		if len(name) > 64 {
			name = name[:64]
		}
		r = s.h.runDetached(ts.MkAbs("."), ts.MkAbs(name+".out"), ts.MkAbs(name+".err"), args...)
	} else {
		r = s.h.runIn(ts.MkAbs("."), args...)
	}
	s.lastExit = r.code
	fmt.Fprint(ts.Stdout(), r.stdout)
	fmt.Fprint(ts.Stderr(), r.stderr)
	if r.code < 0 {
		ts.Fatalf("%s %s: %v", runtimeName, strings.Join(args, " "), r.err)
	}
	if r.code == 0 && isDetached(args) && args[0] != "exec" {
		if err := s.h.track(containerID(args)); err != nil {
			ts.Fatalf("track %s: %v", containerID(args), err)
		}
	}
	switch {
	case neg && r.code == 0:
		ts.Fatalf("%s %s: unexpected success", runtimeName, strings.Join(args, " "))
	case !neg && r.code != 0:
		ts.Fatalf("%s %s: exit status %d", runtimeName, strings.Join(args, " "), r.code)
	}
}

func cmdExitcode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: exitcode N")
	}
	want, err := strconv.Atoi(args[0])
	ts.Check(err)
	if got := st(ts).lastExit; got != want {
		ts.Fatalf("last rt exit status %d, want %d", got, want)
	}
}

func cmdJSONSet(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: jsonset FILE PATH VALUE")
	}
	editJSON(ts, args[0], func(v any) (any, error) { return jsonSet(v, args[1], parseValue(args[2])) })
}

func cmdJSONDel(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: jsondel FILE PATH")
	}
	editJSON(ts, args[0], func(v any) (any, error) { return jsonDel(v, args[1]) })
}

func editJSON(ts *testscript.TestScript, file string, f func(any) (any, error)) {
	p := ts.MkAbs(file)
	v, err := readJSON(p)
	ts.Check(err)
	v, err = f(v)
	ts.Check(err)
	ts.Check(writeJSON(p, v))
}

func cmdJSONMatch(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 3 {
		ts.Fatalf("usage: jsonmatch FILE|stdout PATH REGEXP")
	}
	var text string
	if args[0] == "stdout" {
		text = ts.ReadFile("stdout")
	} else {
		text = ts.ReadFile(args[0])
	}
	var v any
	if err := json.Unmarshal([]byte(text), &v); err != nil {
		ts.Fatalf("%s: %v", args[0], err)
	}
	for _, seg := range splitPath(args[1]) {
		// Allow field=value selection while reading too.
		if arr, ok := v.([]any); ok && strings.Contains(seg, "=") {
			k, want, _ := strings.Cut(seg, "=")
			var found any
			for _, e := range arr {
				if m, ok := e.(map[string]any); ok && fmt.Sprint(m[k]) == want {
					found = e
					break
				}
			}
			v = found
			continue
		}
		v = jsonGet(v, seg)
	}
	var got string
	switch x := v.(type) {
	case string:
		got = x
	case nil:
		got = "<missing>"
	default:
		b, _ := json.Marshal(x)
		got = string(b)
	}
	re, err := regexp.Compile(args[2])
	ts.Check(err)
	if re.MatchString(got) == neg {
		ts.Fatalf("%s: %s = %q; match %q: %v", args[0], args[1], got, args[2], !neg)
	}
}

func cmdWaitstate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: waitstate ID STATUS")
	}
	ts.Check(st(ts).h.waitState(args[0], args[1]))
}

func cmdWaitfile(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: waitfile FILE")
	}
	p := ts.MkAbs(args[0])
	end := time.Now().Add(deadline)
	for {
		if _, err := os.Stat(p); err == nil {
			return
		}
		if time.Now().After(end) {
			ts.Fatalf("%s did not appear within %v", p, deadline)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func cmdStatepid(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 2 {
		ts.Fatalf("usage: statepid ID VAR")
	}
	pid, err := st(ts).h.statePid(args[0])
	ts.Check(err)
	ts.Setenv(args[1], strconv.Itoa(pid))
}

func cmdAlive(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: alive PID")
	}
	pid, err := strconv.Atoi(args[0])
	ts.Check(err)
	if !neg {
		if !alive(pid, "") {
			ts.Fatalf("process %d is not alive", pid)
		}
		return
	}
	ts.Check(waitGone(pid, "", deadline))
}

func cmdNostate(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 1 {
		ts.Fatalf("usage: nostate ID")
	}
	p := filepath.Join(st(ts).h.root, args[0])
	if _, err := os.Lstat(p); err == nil {
		ents, _ := os.ReadDir(p)
		var names []string
		for _, e := range ents {
			names = append(names, e.Name())
		}
		ts.Fatalf("state directory %s left behind (contains %v)", p, names)
	}
}

func cmdNoleaks(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 0 {
		ts.Fatalf("usage: noleaks")
	}
	if problems := st(ts).h.leaks(false); len(problems) > 0 {
		ts.Fatalf("%s", strings.Join(problems, "\n"))
	}
}

func cmdHasmount(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 1 {
		ts.Fatalf("usage: hasmount PATH")
	}
	p := ts.MkAbs(args[0])
	found := false
	for _, m := range mountsUnder(p) {
		if m == p {
			found = true
		}
	}
	if found == neg {
		ts.Fatalf("mounted at %s: %v, want %v", p, found, !neg)
	}
}

func cmdContent(ts *testscript.TestScript, neg bool, args []string) {
	if len(args) != 2 {
		ts.Fatalf("usage: content FILE TEXT")
	}
	got := ts.ReadFile(args[0])
	if (got == args[1]) == neg {
		ts.Fatalf("%s holds %q; equal to %q: %v", args[0], got, args[1], !neg)
	}
}

func cmdNsinode(ts *testscript.TestScript, neg bool, args []string) {
	if neg || len(args) != 3 {
		ts.Fatalf("usage: nsinode PID TYPE VAR")
	}
	l, err := os.Readlink(filepath.Join("/proc", args[0], "ns", args[1]))
	ts.Check(err)
	i := strings.IndexByte(l, '[')
	if i < 0 {
		ts.Fatalf("unexpected namespace link %q", l)
	}
	ts.Setenv(args[2], strings.TrimSuffix(l[i+1:], "]"))
}
