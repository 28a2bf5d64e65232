package interop

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	criBridge = "cuboc0"
	criSubnet = "10.215.77.0/24"
)

var criScope = scope{
	markers:      []string{criBridge, "10.215.77.", `name: \"cuboit-cri\"`},
	sharedChains: []string{"CNI-HOSTPORT"},
}

var (
	crictlOnce sync.Once
	crictlPath string
	crictlErr  error
)

// crictl returns crictl from PATH, or builds the pinned version into the
// fixtures dir (no Debian package; not a module dependency).
func crictl() (string, error) {
	crictlOnce.Do(func() {
		if p, err := exec.LookPath("crictl"); err == nil {
			crictlPath = p
			return
		}
		gobin := filepath.Join(fixturesDir, "gobin")
		cmd := exec.Command(filepath.Join(goBinDir, "go"), "install", crictlPkg)
		cmd.Env = append(os.Environ(), "GOBIN="+gobin, "GOFLAGS=-mod=mod", "GOWORK=off")
		cmd.Dir = fixturesDir // outside the module: go.mod is not touched
		if out, err := cmd.CombinedOutput(); err != nil {
			crictlErr = fmt.Errorf("go install %s: %v\n%s", crictlPkg, err, out)
			return
		}
		crictlPath = filepath.Join(gobin, "crictl")
	})
	return crictlPath, crictlErr
}

func TestCRI(t *testing.T) {
	requireEngine(t, "cri", "containerd", "ctr", "skopeo", "iptables")
	if _, err := os.Stat("/usr/lib/cni/bridge"); err != nil {
		record("cri/tools", true, true)
		t.Skip("CNI plugins missing (/usr/lib/cni/bridge): apt-get install containernetworking-plugins")
	}
	cgParent := fmt.Sprintf("cuboit-cri-%d", os.Getpid())
	dir := mkTemp(t, "cr.")
	before := takeSnapshot(dir, cgParent)
	var c *containerd
	var cli string
	crictlArgs := func(args ...string) []string {
		return append([]string{"--config", filepath.Join(dir, "crictl.yaml"),
			"--runtime-endpoint", "unix://" + c.sock, "--image-endpoint", "unix://" + c.sock,
			"--timeout", "60s"}, args...)
	}
	cr := func(t *testing.T, args ...string) string {
		t.Helper()
		return must(t, nil, cli, crictlArgs(args...)...)
	}
	var podID, ctrID string
	var once sync.Once
	teardown := func() {
		once.Do(func() {
			if c != nil && cli != "" {
				r := runCmd(nil, nil, cli, crictlArgs("pods", "-q")...)
				for _, id := range strings.Fields(r.stdout) {
					runCmd(nil, nil, cli, crictlArgs("stopp", id)...)
					runCmd(nil, nil, cli, crictlArgs("rmp", "-f", id)...)
				}
			}
			if k := c.stop(); len(k) > 0 {
				t.Logf("killed leftover shims: %v", k)
			}
			removeEngineLeftovers(t, dir, cgParent, before, criScope, criBridge)
		})
	}
	defer teardown()

	started := check(t, "cri/daemon-start", func(t *testing.T) {
		var err error
		if cli, err = crictl(); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "crictl.yaml"), nil, 0o644); err != nil {
			t.Fatal(err)
		}
		cniDir := filepath.Join(dir, "cni")
		if err := os.MkdirAll(cniDir, 0o755); err != nil {
			t.Fatal(err)
		}
		conflist := cniBridgeConflist("cuboit-cri", criBridge, filepath.Join(dir, "ipam"), criSubnet)
		if err := os.WriteFile(filepath.Join(cniDir, "10-cuboit.conflist"), []byte(conflist), 0o644); err != nil {
			t.Fatal(err)
		}
		cri := fmt.Sprintf(`
[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = %q
  restrict_oom_score_adj = true
  disable_apparmor = true
  disable_hugetlb_controller = true
  stream_server_address = "127.0.0.1"
  stream_server_port = "0"
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cubo]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.cubo.options]
        BinaryName = %q
        Root = %q
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "/usr/lib/cni"
    conf_dir = %q
    max_conf_num = 1
`, pauseRef, runtimeBin, filepath.Join(dir, "cubo-root"), cniDir)
		if c, err = startContainerd(dir, true, cri); err != nil {
			t.Fatal(err)
		}
		if err := waitFor("CRI ready", daemonTimeout, func() error {
			r := runCmd(nil, nil, cli, crictlArgs("info")...)
			if r.err != nil {
				return fmt.Errorf("%s", r)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})
	if !started {
		teardown()
		leakCheck(t, "cri/no-leaks", before, dir, cgParent, criScope)
		return
	}

	check(t, "cri/image-import", func(t *testing.T) {
		bb, pause, err := imageArchives()
		if err != nil {
			t.Fatal(err)
		}
		for _, a := range []string{pause, bb} {
			must(t, nil, "ctr", "--address", c.sock, "--namespace", "k8s.io", "images", "import", a)
		}
		out := cr(t, "images")
		if !strings.Contains(out, "cubo-interop/busybox") || !strings.Contains(out, "cubo-interop/pause") {
			t.Fatalf("images not listed:\n%s", out)
		}
	})

	hostPort := freePort(t)
	podJSON := filepath.Join(dir, "pod.json")
	ctrJSON := filepath.Join(dir, "ctr.json")
	writeJSON(podJSON, map[string]any{
		"metadata":      map[string]any{"name": "cubo-pod", "namespace": "default", "uid": "cubo-pod-uid", "attempt": 0},
		"hostname":      "cubo-pod",
		"log_directory": filepath.Join(dir, "logs"),
		"port_mappings": []any{map[string]any{"container_port": 80, "host_port": hostPort, "host_ip": "127.0.0.1"}},
		"linux":         map[string]any{"cgroup_parent": "/" + cgParent + "/pod1"},
	})
	writeJSON(ctrJSON, map[string]any{
		"metadata": map[string]any{"name": "web"},
		"image":    map[string]any{"image": busyboxRef},
		"command": []string{"sh", "-c", "mkdir -p /www && echo web-ok-$(hostname) > /www/index.html && httpd -p 80 -h /www && " +
			"echo started-ok && trap 'exit 0' TERM && while true; do sleep 1; done"},
		"log_path": "web.log",
		"linux":    map[string]any{"resources": map[string]any{"memory_limit_in_bytes": 64 << 20}},
	})

	podOK := check(t, "cri/runp", func(t *testing.T) {
		podID = strings.TrimSpace(cr(t, "runp", "--runtime", "cubo", podJSON))
		if out := cr(t, "inspectp", "--output", "go-template", "--template", "{{.status.state}}", podID); !strings.Contains(out, "SANDBOX_READY") {
			t.Fatalf("pod state %q", out)
		}
	})

	ctrOK := check(t, "cri/create-start", func(t *testing.T) {
		need(t, podOK, "cri/runp")
		ctrID = strings.TrimSpace(cr(t, "create", podID, ctrJSON, podJSON))
		cr(t, "start", ctrID)
		if err := waitFor("container running", 60*time.Second, func() error {
			r := runCmd(nil, nil, cli, crictlArgs("inspect", "--output", "go-template", "--template", "{{.status.state}}", ctrID)...)
			if !strings.Contains(r.stdout, "CONTAINER_RUNNING") {
				return fmt.Errorf("%s", r)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})

	check(t, "cri/logs", func(t *testing.T) {
		need(t, ctrOK, "cri/create-start")
		if err := waitFor("logs", 60*time.Second, func() error {
			r := runCmd(nil, nil, cli, crictlArgs("logs", ctrID)...)
			if !strings.Contains(r.stdout+r.stderr, "started-ok") {
				return fmt.Errorf("%s", r)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})

	check(t, "cri/exec-sync", func(t *testing.T) {
		need(t, ctrOK, "cri/create-start")
		if out := cr(t, "exec", "--sync", ctrID, "sh", "-c", "echo exec-sync-ok"); !strings.Contains(out, "exec-sync-ok") {
			t.Fatalf("output %q", out)
		}
		r := runCmd(nil, nil, cli, crictlArgs("exec", "--sync", ctrID, "sh", "-c", "exit 5")...)
		// crictl itself exits 1 and names the status.
		if r.code == 0 || !strings.Contains(r.stderr, "exited with 5") {
			t.Fatalf("want the exit status 5 reported\n%s", r)
		}
	})

	check(t, "cri/exec-streaming", func(t *testing.T) {
		need(t, ctrOK, "cri/create-start")
		if out := cr(t, "exec", ctrID, "sh", "-c", "echo exec-stream-ok"); !strings.Contains(out, "exec-stream-ok") {
			t.Fatalf("output %q", out)
		}
	})

	check(t, "cri/exec-tty", func(t *testing.T) {
		need(t, ctrOK, "cri/create-start")
		p, err := startPty(nil, cli, crictlArgs("exec", "-it", ctrID, "sh")...)
		if err != nil {
			t.Fatal(err)
		}
		defer p.kill()
		if err := p.send("echo tty-$((6*7)); tty\n"); err != nil {
			t.Fatal(err)
		}
		if err := p.expect("tty-42"); err != nil {
			t.Fatal(err)
		}
		if err := p.send("exit\n"); err != nil {
			t.Fatal(err)
		}
		if code, err := p.wait(); err != nil || code != 0 || !strings.Contains(p.output(), "/dev/pts/") {
			t.Fatalf("exit %d (%v): %q", code, err, p.output())
		}
	})

	check(t, "cri/pod-ip-http", func(t *testing.T) {
		need(t, ctrOK, "cri/create-start")
		ip := strings.TrimSpace(cr(t, "inspectp", "--output", "go-template", "--template", "{{.status.network.ip}}", podID))
		if !strings.HasPrefix(ip, "10.215.77.") {
			t.Fatalf("pod IP %q not in %s", ip, criSubnet)
		}
		if err := httpGetEventually("http://"+ip+"/", "web-ok-cubo-pod"); err != nil {
			t.Fatal(err)
		}
	})

	check(t, "cri/hostport-http", func(t *testing.T) {
		need(t, ctrOK, "cri/create-start")
		if err := httpGetEventually("http://127.0.0.1:"+strconv.Itoa(hostPort)+"/", "web-ok-cubo-pod"); err != nil {
			t.Fatal(err)
		}
	})

	check(t, "cri/update-memory", func(t *testing.T) {
		need(t, ctrOK, "cri/create-start")
		var info struct {
			Info struct {
				RuntimeSpec struct {
					Linux struct {
						CgroupsPath string `json:"cgroupsPath"`
					} `json:"linux"`
				} `json:"runtimeSpec"`
			} `json:"info"`
		}
		if err := json.Unmarshal([]byte(cr(t, "inspect", ctrID)), &info); err != nil {
			t.Fatal(err)
		}
		limit := filepath.Join("/sys/fs/cgroup/memory", info.Info.RuntimeSpec.Linux.CgroupsPath, "memory.limit_in_bytes")
		read := func() string { b, _ := os.ReadFile(limit); return strings.TrimSpace(string(b)) }
		if got := read(); got != strconv.Itoa(64<<20) {
			t.Fatalf("%s = %q before update, want %d", limit, got, 64<<20)
		}
		cr(t, "update", "--memory", strconv.Itoa(128<<20), ctrID)
		if got := read(); got != strconv.Itoa(128<<20) {
			t.Fatalf("%s = %q after update, want %d", limit, got, 128<<20)
		}
	})

	check(t, "cri/stop-rm", func(t *testing.T) {
		need(t, ctrOK, "cri/create-start")
		cr(t, "stop", "--timeout", "60", ctrID)
		if code := strings.TrimSpace(cr(t, "inspect", "--output", "go-template", "--template", "{{.status.exitCode}}", ctrID)); code != "0" {
			t.Errorf("exit code %q, want 0 (SIGTERM trapped)", code)
		}
		cr(t, "rm", ctrID)
	})

	check(t, "cri/stopp-rmp", func(t *testing.T) {
		need(t, podOK, "cri/runp")
		cr(t, "stopp", podID)
		cr(t, "rmp", podID)
		if out := cr(t, "pods", "-q"); strings.TrimSpace(out) != "" {
			t.Fatalf("pods left: %q", out)
		}
		if _, err := os.Stat(filepath.Join(dir, "cubo-root", "k8s.io", podID)); err == nil {
			t.Errorf("runtime state for the sandbox left after rmp")
		}
	})

	teardown()
	leakCheck(t, "cri/no-leaks", before, dir, cgParent, criScope)
}
