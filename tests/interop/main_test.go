// Package interop checks that an OCI runtime binary works as a drop-in
// replacement for runc under real engines: containerd (ctr), podman, Docker
// and containerd's CRI plugin (driven by crictl, as the kubelet would).
//
// Every engine runs privately under a temp dir (own root, state, sockets,
// cgroup parent, bridge names) and is stopped by PID. The runtime under test
// is $CUBO_INTEROP_RUNTIME, by default the repo's bin/cubo-runc (built when
// missing), so the same checks can be proven against Debian's runc first:
//
//	CUBO_INTEROP_RUNTIME=/usr/sbin/runc go test -count=1 -v ./tests/interop/
//
// Each check prints "ok <name>" or "not ok <name>" and TestMain closes with
// "N passed, M failed". See docs/compatibility.md.
package interop

import (
	"flag"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"testing"
)

const (
	imagesDir   = "/work/shared/images"
	busyboxOCI  = imagesDir + "/busybox-1.38.0-musl-amd64.oci"
	busyboxRef  = "localhost/cubo-interop/busybox:1.38"
	pauseRef    = "localhost/cubo-interop/pause:1"
	ociRefName  = "busybox:1.38.0-musl"
	goBinDir    = "/usr/local/go/bin"
	crictlPkg   = "sigs.k8s.io/cri-tools/cmd/crictl@v1.37.0"
	envRuntime  = "CUBO_INTEROP_RUNTIME"
	envEngines  = "CUBO_INTEROP_ENGINES" // comma-separated subset: containerd,podman,docker,cri
	envKeepLogs = "CUBO_INTEROP_KEEP"    // keep temp dirs (daemon logs) for debugging
)

var (
	runtimeBin  string // absolute path of the runtime under test
	runtimeErr  error  // why runtimeBin is unusable
	fixturesDir string // shared temp dir: image archives, tools
	results     []result
	resultsMu   sync.Mutex
)

type result struct {
	name string
	ok   bool
	skip bool
}

func TestMain(m *testing.M) {
	flag.Parse()
	if os.Geteuid() != 0 {
		fmt.Println("skip: the interop suite needs root (engines, cgroups, netns)")
		os.Exit(0)
	}
	os.Setenv("PATH", os.Getenv("PATH")+":/usr/sbin:/sbin:"+goBinDir)
	runtimeBin, runtimeErr = resolveRuntime()
	if runtimeErr == nil {
		fmt.Printf("# runtime under test: %s\n", runtimeBin)
	} else {
		fmt.Printf("# runtime unusable: %v\n", runtimeErr)
	}
	var err error
	fixturesDir, err = os.MkdirTemp("", "cubo-interop-fx.")
	if err != nil {
		fmt.Println(err)
		os.Exit(1)
	}
	code := m.Run()
	if os.Getenv(envKeepLogs) == "" {
		os.RemoveAll(fixturesDir)
	}
	printSummary()
	os.Exit(code)
}

// resolveRuntime returns $CUBO_INTEROP_RUNTIME or the repo's bin/cubo-runc,
// building the latter when it is missing.
func resolveRuntime() (string, error) {
	if p := os.Getenv(envRuntime); p != "" {
		abs, err := exec.LookPath(p)
		if err != nil {
			return "", fmt.Errorf("%s=%s: %w", envRuntime, p, err)
		}
		return filepath.Abs(abs)
	}
	root, err := filepath.Abs("../..")
	if err != nil {
		return "", err
	}
	bin := filepath.Join(root, "bin", "cubo-runc")
	if _, err := os.Stat(bin); err == nil {
		return bin, nil
	}
	cmd := exec.Command(filepath.Join(goBinDir, "go"), "build", "-o", bin, "./cmd/cubo-runc")
	cmd.Dir = root
	if out, err := cmd.CombinedOutput(); err != nil {
		return "", fmt.Errorf("build cubo-runc: %v\n%s", err, out)
	}
	return bin, nil
}

func engineEnabled(name string) bool {
	sel := os.Getenv(envEngines)
	if sel == "" {
		return true
	}
	for _, e := range strings.Split(sel, ",") {
		if strings.TrimSpace(e) == name {
			return true
		}
	}
	return false
}

func record(name string, ok, skip bool) {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	results = append(results, result{name, ok, skip})
	switch {
	case skip:
		fmt.Printf("skip %s\n", name)
	case ok:
		fmt.Printf("ok %s\n", name)
	default:
		fmt.Printf("not ok %s\n", name)
	}
}

func printSummary() {
	resultsMu.Lock()
	defer resultsMu.Unlock()
	var pass, fail, skip int
	var failed []string
	for _, r := range results {
		switch {
		case r.skip:
			skip++
		case r.ok:
			pass++
		default:
			fail++
			failed = append(failed, r.name)
		}
	}
	sort.Strings(failed)
	fmt.Printf("# runtime: %s\n", runtimeBin)
	for _, f := range failed {
		fmt.Printf("# failed: %s\n", f)
	}
	fmt.Printf("%d passed, %d failed, %d skipped\n", pass, fail, skip)
}

// check runs one named check as a subtest and records its outcome.
func check(t *testing.T, name string, f func(t *testing.T)) bool {
	t.Helper()
	skipped, ran := false, false
	ok := t.Run(name, func(t *testing.T) {
		ran = true
		defer func() { skipped = t.Skipped() }()
		f(t)
	})
	if ran { // not filtered out by -run
		record(name, ok, skipped)
	}
	return ok && !skipped
}

// requireEngine skips the whole engine test when a binary or fixture is
// missing, with a message naming what to install.
func requireEngine(t *testing.T, engine string, bins ...string) {
	t.Helper()
	if !engineEnabled(engine) {
		t.Skipf("%s not selected in %s", engine, envEngines)
	}
	if runtimeErr != nil {
		t.Fatalf("runtime: %v", runtimeErr)
	}
	if _, err := os.Stat(busyboxOCI); err != nil {
		record(engine+"/fixtures", true, true)
		t.Skipf("busybox OCI layout missing (%s): skipping %s", busyboxOCI, engine)
	}
	for _, b := range bins {
		if _, err := exec.LookPath(b); err != nil {
			record(engine+"/tools", true, true)
			t.Skipf("%s not installed (%v): skipping %s; apt-get install containerd podman docker.io containernetworking-plugins conmon skopeo iptables", b, err, engine)
		}
	}
}
