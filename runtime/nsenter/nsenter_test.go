package nsenter

import (
	"fmt"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
)

// The test binary re-executes itself with _CUBO_NSENTER set, so the
// constructor runs for real before the Go runtime, then reports.
func TestMain(m *testing.M) {
	if os.Getenv("NSENTER_TEST_REPORT") != "" {
		if err := Err(); err != nil {
			fmt.Println("error:", err)
			os.Exit(0)
		}
		for _, ns := range []string{"net", "mnt", "uts"} {
			l, _ := os.Readlink("/proc/self/ns/" + ns)
			fmt.Printf("%s=%s\n", ns, l)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func report(t *testing.T, env ...string) map[string]string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append([]string{"NSENTER_TEST_REPORT=1"}, env...)
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%v: %s", err, out)
	}
	res := map[string]string{}
	for _, line := range strings.Split(strings.TrimSpace(string(out)), "\n") {
		if strings.HasPrefix(line, "error: ") {
			res["error"] = strings.TrimPrefix(line, "error: ")
			continue
		}
		k, v, _ := strings.Cut(line, "=")
		res[k] = v
	}
	return res
}

func TestJoin(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("joining namespaces needs root")
	}
	// A holder process in new net, mnt and uts namespaces.
	holder := exec.Command("sleep", "1000")
	holder.SysProcAttr = &syscall.SysProcAttr{Cloneflags: syscall.CLONE_NEWNET | syscall.CLONE_NEWNS | syscall.CLONE_NEWUTS}
	if err := holder.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { _ = holder.Process.Kill(); _ = holder.Wait() }()
	pid := strconv.Itoa(holder.Process.Pid)
	want := map[string]string{}
	for _, ns := range []string{"net", "mnt", "uts"} {
		l, err := os.Readlink("/proc/" + pid + "/ns/" + ns)
		if err != nil {
			t.Fatal(err)
		}
		want[ns] = l
	}
	got := report(t, EnvNSEnter+"=net=/proc/"+pid+"/ns/net;mnt=/proc/"+pid+"/ns/mnt;uts=/proc/"+pid+"/ns/uts")
	for ns, w := range want {
		if got[ns] != w {
			t.Errorf("%s: got %s, want %s (%v)", ns, got[ns], w, got)
		}
	}
	// Unsharing after joining gives yet another namespace.
	got = report(t, EnvNSEnter+"=net=/proc/"+pid+"/ns/net", EnvUnshare+"="+strconv.Itoa(syscall.CLONE_NEWUTS))
	if got["net"] != want["net"] || got["uts"] == want["uts"] || got["uts"] == "" {
		t.Errorf("unshare after join: %v", got)
	}
}

func TestErrors(t *testing.T) {
	for _, env := range []string{
		EnvNSEnter + "=net=/nonexistent",
		EnvNSEnter + "=bogus=/proc/self/ns/net",
		EnvNSEnter + "=net",
	} {
		if got := report(t, env); got["error"] == "" {
			t.Errorf("%s: no error reported: %v", env, got)
		}
	}
	if got := report(t); got["error"] != "" {
		t.Errorf("constructor acted without its variables: %v", got)
	}
}
