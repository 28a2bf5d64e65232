package interop

import (
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

const (
	podmanBridge = "cubopm0"
	podmanSubnet = "10.213.77.0/24"
)

var podmanScope = scope{
	markers:      []string{podmanBridge, "10.213.77.", `name: \"podman\"`},
	sharedChains: []string{"CNI-HOSTPORT"},
}

// podmanConfig writes containers.conf, storage.conf and a CNI network
// under dir and returns the environment that points podman at them.
func podmanConfig(dir, runtimeName string) ([]string, error) {
	var nofile, nproc unix.Rlimit
	unix.Getrlimit(unix.RLIMIT_NOFILE, &nofile)
	unix.Getrlimit(unix.RLIMIT_NPROC, &nproc)
	// Root lacks CAP_SYS_RESOURCE here: podman's default (1048576) would
	// exceed the hard limits, so stay at them. Podman lowers its own (and
	// so conmon's and the runtime's) RLIMIT_NPROC to kernel.pid_max.
	if b, err := os.ReadFile("/proc/sys/kernel/pid_max"); err == nil {
		if pm, err := strconv.ParseUint(strings.TrimSpace(string(b)), 10, 64); err == nil && pm < nproc.Max {
			nproc.Max = pm
		}
	}
	ulimits := fmt.Sprintf(`["nofile=%d:%d", "nproc=%d:%d"]`, nofile.Max, nofile.Max, nproc.Max, nproc.Max)
	conf := fmt.Sprintf(`[containers]
default_ulimits = %s
log_driver = "k8s-file"

[network]
network_backend = "cni"
cni_plugin_dirs = ["/usr/lib/cni", "/usr/libexec/cni", "/opt/cni/bin"]
network_config_dir = %q
default_network = "podman"

[engine]
cgroup_manager = "cgroupfs"
events_logger = "file"
events_logfile_path = %q
tmp_dir = %q
static_dir = %q
volume_path = %q
runtime_supports_json = ["crun", "runc", "kata", "runsc", "krun", %q]
`, ulimits, filepath.Join(dir, "net"), filepath.Join(dir, "events.log"), filepath.Join(dir, "t"),
		filepath.Join(dir, "s"), filepath.Join(dir, "v"), runtimeName)
	storage := fmt.Sprintf(`[storage]
driver = "overlay"
runroot = %q
graphroot = %q
`, filepath.Join(dir, "r"), filepath.Join(dir, "g"))
	network := cniBridgeConflist("podman", podmanBridge, filepath.Join(dir, "ipam"), podmanSubnet)
	if err := os.MkdirAll(filepath.Join(dir, "net"), 0o755); err != nil {
		return nil, err
	}
	files := map[string]string{
		"containers.conf":     conf,
		"storage.conf":        storage,
		"net/podman.conflist": network,
	}
	for name, content := range files {
		if err := os.WriteFile(filepath.Join(dir, name), []byte(content), 0o644); err != nil {
			return nil, err
		}
	}
	return []string{
		"CONTAINERS_CONF=" + filepath.Join(dir, "containers.conf"),
		"CONTAINERS_STORAGE_CONF=" + filepath.Join(dir, "storage.conf"),
	}, nil
}

func TestPodman(t *testing.T) {
	requireEngine(t, "podman", "podman", "conmon", "skopeo", "iptables")
	cgParent := fmt.Sprintf("cuboit-pm-%d", os.Getpid())
	// Short: a store path over ~46 bytes makes every run stall ~20 s
	// (unix socket path limit).
	dir := mkTemp(t, "pi.")
	before := takeSnapshot(dir, cgParent)
	// With cgroupfs, podman puts conmon in /libpod_parent/conmon of every
	// hierarchy and never removes it: remove it if this test made it.
	libpodBefore, _ := filepath.Glob("/sys/fs/cgroup/*/libpod_parent")
	env, err := podmanConfig(dir, filepath.Base(runtimeBin))
	if err != nil {
		t.Fatal(err)
	}
	pm := func(args ...string) []string {
		return append([]string{"--runtime", runtimeBin}, args...)
	}
	runArgs := func(args ...string) []string {
		return pm(append([]string{"run", "--cgroup-parent", "/" + cgParent}, args...)...)
	}
	var once sync.Once
	teardown := func() {
		once.Do(func() {
			if r := runCmd(env, nil, "podman", pm("rm", "--all", "--force", "--time", "0")...); r.err != nil {
				t.Logf("cleanup: %s", r)
			}
			removeEngineLeftovers(t, dir, cgParent, before, podmanScope, podmanBridge)
			if len(libpodBefore) == 0 {
				removeEmptyCgroups("libpod_parent/conmon", "libpod_parent")
			}
		})
	}
	defer teardown()

	check(t, "podman/image-load", func(t *testing.T) {
		bb, _, err := imageArchives()
		if err != nil {
			t.Fatal(err)
		}
		must(t, env, "podman", "load", "-i", bb)
		if out := must(t, env, "podman", "images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(out, busyboxRef) {
			t.Fatalf("image %s not listed:\n%s", busyboxRef, out)
		}
	})

	check(t, "podman/run-rm-output", func(t *testing.T) {
		out := must(t, env, "podman", runArgs("--rm", busyboxRef, "sh", "-c", "echo hello-from-$(hostname); cat /proc/self/cgroup")...)
		if !strings.Contains(out, "hello-from-") {
			t.Fatalf("output %q", out)
		}
		if !strings.Contains(out, "/"+cgParent+"/") {
			t.Errorf("container not under the cgroup parent /%s:\n%s", cgParent, out)
		}
	})

	check(t, "podman/run-exit-code", func(t *testing.T) {
		r := runCmd(env, nil, "podman", runArgs("--rm", busyboxRef, "sh", "-c", "exit 7")...)
		if r.code != 7 {
			t.Fatalf("want exit 7\n%s", r)
		}
	})

	check(t, "podman/run-missing-executable-127", func(t *testing.T) {
		r := runCmd(env, nil, "podman", runArgs("--rm", busyboxRef, "/no/such/binary")...)
		if r.code != 127 {
			t.Fatalf("want exit 127 (as with runc)\n%s", r)
		}
	})

	check(t, "podman/run-not-executable-126", func(t *testing.T) {
		r := runCmd(env, nil, "podman", runArgs("--rm", busyboxRef, "/etc/passwd")...)
		if r.code != 126 {
			t.Fatalf("want exit 126 (as with runc)\n%s", r)
		}
	})

	inspect, waitState := engineState(env, "podman")

	detached := check(t, "podman/run-detached-logs", func(t *testing.T) {
		must(t, env, "podman", runArgs("-d", "--name", "pd", busyboxRef,
			"sh", "-c", "echo started-ok; trap 'exit 0' TERM; while true; do sleep 1; done")...)
		waitState(t, "pd", "running")
		if err := waitFor("logs", 60*time.Second, func() error {
			r := runCmd(env, nil, "podman", "logs", "pd")
			if !strings.Contains(r.stdout, "started-ok") {
				return fmt.Errorf("%s", r)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})

	check(t, "podman/exec", func(t *testing.T) {
		need(t, detached, "podman/run-detached-logs")
		out := must(t, env, "podman", pm("exec", "pd", "sh", "-c", "echo exec-ok; cat /proc/1/cmdline | tr '\\0' ' '")...)
		if !strings.Contains(out, "exec-ok") || !strings.Contains(out, "while true") {
			t.Fatalf("exec output %q", out)
		}
		r := runCmd(env, nil, "podman", pm("exec", "pd", "sh", "-c", "exit 5")...)
		if r.code != 5 {
			t.Fatalf("want exit 5\n%s", r)
		}
	})

	check(t, "podman/exec-tty", func(t *testing.T) {
		need(t, detached, "podman/run-detached-logs")
		p, err := startPty(env, "podman", pm("exec", "-it", "pd", "sh", "-c", "tty; echo exec-tty-ok")...)
		if err != nil {
			t.Fatal(err)
		}
		defer p.kill()
		if err := p.expect("exec-tty-ok"); err != nil {
			t.Fatal(err)
		}
		if code, err := p.wait(); code != 0 || err != nil || !strings.Contains(p.output(), "/dev/pts/") {
			t.Fatalf("exit %d (%v): %q", code, err, p.output())
		}
	})

	check(t, "podman/pause-unpause", func(t *testing.T) {
		need(t, detached, "podman/run-detached-logs")
		must(t, env, "podman", pm("pause", "pd")...)
		waitState(t, "pd", "paused")
		must(t, env, "podman", pm("unpause", "pd")...)
		waitState(t, "pd", "running")
	})

	check(t, "podman/stop-rm", func(t *testing.T) {
		need(t, detached, "podman/run-detached-logs")
		must(t, env, "podman", pm("stop", "--time", "60", "pd")...)
		waitState(t, "pd", "exited")
		if code := inspect("pd", "{{.State.ExitCode}}"); code != "0" {
			t.Errorf("exit code %q, want 0 (SIGTERM trapped)", code)
		}
		must(t, env, "podman", pm("rm", "pd")...)
	})

	check(t, "podman/run-it-pty", func(t *testing.T) {
		p, err := startPty(env, "podman", runArgs("-it", "--rm", busyboxRef, "sh")...)
		if err != nil {
			t.Fatal(err)
		}
		defer p.kill()
		if err := p.send("echo pty-$((6*7)); tty\n"); err != nil {
			t.Fatal(err)
		}
		if err := p.expect("pty-42"); err != nil {
			t.Fatal(err)
		}
		if err := p.send("exit 3\n"); err != nil {
			t.Fatal(err)
		}
		code, err := p.wait()
		if err != nil || code != 3 {
			t.Fatalf("exit %d (%v), want 3: %q", code, err, p.output())
		}
		if !strings.Contains(p.output(), "/dev/pts/0") {
			t.Errorf("no pty in the container: %q", p.output())
		}
	})

	check(t, "podman/publish-port-http", func(t *testing.T) {
		port := freePort(t)
		must(t, env, "podman", runArgs("-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), busyboxRef,
			"sh", "-c", "mkdir -p /www && echo web-ok-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www")...)
		defer runCmd(env, nil, "podman", pm("rm", "--force", "--time", "0", "web")...)
		waitState(t, "web", "running")
		if ns := inspect("web", "{{.NetworkSettings.SandboxKey}}"); !strings.HasPrefix(ns, "/") {
			t.Errorf("no netns path: %q", ns)
		}
		if err := httpGetEventually("http://127.0.0.1:"+strconv.Itoa(port)+"/", "web-ok-"); err != nil {
			t.Fatal(err)
		}
		must(t, env, "podman", pm("rm", "--force", "--time", "0", "web")...)
	})

	teardown()
	leakCheck(t, "podman/no-leaks", before, dir, cgParent, podmanScope)
}
