package interop

import (
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
	dockerBridge  = "cubodk0"
	dockerBridge4 = "10.214.77.1/24"
)

var dockerScope = scope{markers: []string{dockerBridge, "10.214.77.", "DOCKER"}}

func TestDocker(t *testing.T) {
	requireEngine(t, "docker", "dockerd", "docker", "containerd", "ctr", "skopeo", "iptables")
	cgParent := fmt.Sprintf("cuboit-dk-%d", os.Getpid())
	dir := mkTemp(t, "di.")
	before := takeSnapshot(dir, cgParent)
	sock := filepath.Join(dir, "d.sock")
	env := []string{"DOCKER_HOST=unix://" + sock, "DOCKER_CONFIG=" + filepath.Join(dir, "cli")}
	var c *containerd
	var d *daemon
	var once sync.Once
	teardown := func() {
		once.Do(func() {
			if d != nil {
				r := runCmd(env, nil, "docker", "ps", "-aq")
				for _, id := range strings.Fields(r.stdout) {
					runCmd(env, nil, "docker", "rm", "-f", id)
				}
				d.stop()
			}
			c.stop()
			removeEngineLeftovers(t, dir, cgParent, before, dockerScope, dockerBridge)
		})
	}
	defer teardown()

	started := check(t, "docker/daemon-start", func(t *testing.T) {
		var err error
		if err := os.MkdirAll(filepath.Join(dir, "ctd"), 0o755); err != nil {
			t.Fatal(err)
		}
		if c, err = startContainerd(filepath.Join(dir, "ctd"), false, ""); err != nil {
			t.Fatal(err)
		}
		// Our own bridge, so the host's docker0 (if any) is never touched.
		for _, args := range [][]string{
			{"link", "add", dockerBridge, "type", "bridge"},
			{"addr", "add", dockerBridge4, "dev", dockerBridge},
			{"link", "set", dockerBridge, "up"},
		} {
			if out, err := exec.Command("ip", args...).CombinedOutput(); err != nil {
				t.Fatalf("ip %v: %v %s", args, err, out)
			}
		}
		cfg := filepath.Join(dir, "daemon.json")
		if err := os.WriteFile(cfg, []byte("{}\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		d, err = startDaemon("dockerd", filepath.Join(dir, "dockerd.log"), nil, "dockerd",
			"--config-file", cfg,
			"--data-root", filepath.Join(dir, "data"),
			"--exec-root", filepath.Join(dir, "x"),
			"--pidfile", filepath.Join(dir, "docker.pid"),
			"-H", "unix://"+sock,
			"--containerd", c.sock,
			"--add-runtime", "cubo="+runtimeBin,
			"--cgroup-parent", "/"+cgParent,
			"--bridge", dockerBridge,
			"--storage-driver", "overlay2")
		if err != nil {
			t.Fatal(err)
		}
		if err := d.waitReady(func() error {
			if r := runCmd(env, nil, "docker", "version"); r.err != nil {
				return fmt.Errorf("%s", r)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		out := must(t, env, "docker", "info", "--format", "{{json .Runtimes}}")
		if !strings.Contains(out, runtimeBin) {
			t.Fatalf("runtime cubo not registered: %s", out)
		}
	})
	if !started {
		teardown()
		leakCheck(t, "docker/no-leaks", before, dir, cgParent, dockerScope)
		return
	}

	check(t, "docker/image-load", func(t *testing.T) {
		bb, _, err := imageArchives()
		if err != nil {
			t.Fatal(err)
		}
		must(t, env, "docker", "load", "-i", bb)
		if out := must(t, env, "docker", "images", "--format", "{{.Repository}}:{{.Tag}}"); !strings.Contains(out, busyboxRef) {
			t.Fatalf("image %s not listed:\n%s", busyboxRef, out)
		}
	})

	run := func(args ...string) []string {
		return append([]string{"run", "--runtime=cubo"}, args...)
	}

	check(t, "docker/run-rm-output", func(t *testing.T) {
		out := must(t, env, "docker", run("--rm", busyboxRef, "sh", "-c", "echo hello-from-docker; cat /proc/self/cgroup")...)
		if !strings.Contains(out, "hello-from-docker") {
			t.Fatalf("output %q", out)
		}
		if !strings.Contains(out, "/"+cgParent+"/") {
			t.Errorf("container not under the cgroup parent /%s:\n%s", cgParent, out)
		}
	})

	check(t, "docker/run-exit-code", func(t *testing.T) {
		r := runCmd(env, nil, "docker", run("--rm", busyboxRef, "sh", "-c", "exit 7")...)
		if r.code != 7 {
			t.Fatalf("want exit 7\n%s", r)
		}
	})

	check(t, "docker/run-missing-executable-127", func(t *testing.T) {
		r := runCmd(env, nil, "docker", run("--rm", busyboxRef, "/no/such/binary")...)
		if r.code != 127 {
			t.Fatalf("want exit 127 (as with runc)\n%s", r)
		}
	})

	inspect, waitState := engineState(env, "docker")

	detached := check(t, "docker/run-detached-logs", func(t *testing.T) {
		must(t, env, "docker", run("-d", "--name", "dd", busyboxRef,
			"sh", "-c", "echo started-ok; trap 'exit 0' TERM; while true; do sleep 1; done")...)
		waitState(t, "dd", "running")
		if err := waitFor("logs", 60*time.Second, func() error {
			r := runCmd(env, nil, "docker", "logs", "dd")
			if !strings.Contains(r.stdout, "started-ok") {
				return fmt.Errorf("%s", r)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	})

	check(t, "docker/exec", func(t *testing.T) {
		need(t, detached, "docker/run-detached-logs")
		out := must(t, env, "docker", "exec", "dd", "sh", "-c", "echo exec-ok")
		if !strings.Contains(out, "exec-ok") {
			t.Fatalf("exec output %q", out)
		}
		r := runCmd(env, nil, "docker", "exec", "dd", "sh", "-c", "exit 5")
		if r.code != 5 {
			t.Fatalf("want exit 5\n%s", r)
		}
	})

	check(t, "docker/pause-unpause", func(t *testing.T) {
		need(t, detached, "docker/run-detached-logs")
		must(t, env, "docker", "pause", "dd")
		waitState(t, "dd", "paused")
		must(t, env, "docker", "unpause", "dd")
		waitState(t, "dd", "running")
	})

	check(t, "docker/stop-rm", func(t *testing.T) {
		need(t, detached, "docker/run-detached-logs")
		must(t, env, "docker", "stop", "--time", "60", "dd")
		waitState(t, "dd", "exited")
		if code := inspect("dd", "{{.State.ExitCode}}"); code != "0" {
			t.Errorf("exit code %q, want 0 (SIGTERM trapped)", code)
		}
		must(t, env, "docker", "rm", "dd")
	})

	check(t, "docker/publish-port-http", func(t *testing.T) {
		port := freePort(t)
		must(t, env, "docker", run("-d", "--name", "web", "-p", fmt.Sprintf("127.0.0.1:%d:80", port), busyboxRef,
			"sh", "-c", "mkdir -p /www && echo web-ok-$(hostname) > /www/index.html && exec httpd -f -p 80 -h /www")...)
		defer runCmd(env, nil, "docker", "rm", "-f", "web")
		waitState(t, "web", "running")
		if err := httpGetEventually("http://127.0.0.1:"+strconv.Itoa(port)+"/", "web-ok-"); err != nil {
			t.Fatal(err)
		}
		must(t, env, "docker", "rm", "-f", "web")
	})

	teardown()
	leakCheck(t, "docker/no-leaks", before, dir, cgParent, dockerScope)
}
