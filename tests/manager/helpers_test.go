// Package manager_test runs the cubo container verbs end to end as root: the built cubo
// and cubo-runc binaries, real containers, with both cubo-runc and Debian's runc as the
// runtime.
package manager_test

import (
	"archive/tar"
	"bufio"
	"bytes"
	"compress/gzip"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

const busyboxTar = "/work/shared/images/busybox-1.38.0-musl-amd64-rootfs.tar.gz"

// TestMain is the shared harness's: it skips unless root, provides cubo and cubo-runc
// in hostenv.BinDir (the binaries `make test` built, else its own build) and removes the
// cgroup parents and the test bridge this package made.
func TestMain(m *testing.M) { hostenv.Main(m, "manager", testBridge) }

// runtimes are the runtimes every lifecycle test runs with.
func runtimes(t *testing.T) []string {
	rts := []string{"cubo-runc"}
	if _, err := os.Stat("/usr/sbin/runc"); err == nil {
		rts = append(rts, "/usr/sbin/runc")
	} else {
		t.Log("runc not installed: testing cubo-runc only")
	}
	return rts
}

// forRuntimes runs f as one subtest per runtime.
func forRuntimes(t *testing.T, f func(t *testing.T, e *env)) {
	for _, rt := range runtimes(t) {
		t.Run(filepath.Base(rt), func(t *testing.T) { f(t, newEnv(t, rt)) })
	}
}

// env is one cubo root dir with busybox imported, driven with one runtime.
type env struct {
	t       *testing.T
	root    string
	runtime string
	// net is the machine's network state of the test networks before the test.
	net netState
}

func newEnv(t *testing.T, runtime string) *env {
	t.Helper()
	if _, err := os.Stat(busyboxTar); err != nil {
		t.Skipf("image tarball %s absent: %v", busyboxTar, err)
	}
	e := &env{t: t, root: t.TempDir(), runtime: runtime, net: snapshotNet(t)}
	// Registered after TempDir, so it runs first: containers go before their dirs.
	t.Cleanup(e.cleanup)
	e.ok("import", busyboxTar, "busybox:latest")
	return e
}

func (e *env) cmd(args ...string) *exec.Cmd {
	cmd := exec.Command(filepath.Join(hostenv.BinDir, "cubo"), append([]string{"--root-dir", e.root, "--runtime", e.runtime}, args...)...)
	// The default network of these tests is their own, off the real cubo0.
	cmd.Env = append(os.Environ(), "CUBO_LOG=warn", "CUBO_DEFAULT_BRIDGE="+testBridge, "CUBO_DEFAULT_SUBNET="+testSubnet)
	return cmd
}

// run runs cubo and returns stdout, stderr and the exit code.
func (e *env) run(args ...string) (string, string, int) {
	e.t.Helper()
	return hostenv.Output(e.t, e.cmd(args...))
}

// ok runs cubo, fails the test unless it exits 0, and returns stdout.
func (e *env) ok(args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("cubo %s: exit %d\nstdout: %s\nstderr: %s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

// fails runs cubo, expects exit 1 with one "cubo: " line on stderr containing want.
func (e *env) fails(want string, args ...string) {
	e.t.Helper()
	out, errs, code := e.run(args...)
	if code != 1 || !strings.HasPrefix(errs, "cubo: ") || strings.Count(errs, "\n") != 1 || !strings.Contains(errs, want) {
		e.t.Fatalf("cubo %s: want exit 1 and one line with %q, got exit %d\nstdout: %s\nstderr: %q", strings.Join(args, " "), want, code, out, errs)
	}
}

// container is the JSON of ps/inspect.
type container struct {
	ID       string    `json:"id"`
	Name     string    `json:"name"`
	Image    string    `json:"image"`
	Command  []string  `json:"command"`
	Status   string    `json:"status"`
	ExitCode int       `json:"exit_code"`
	Error    string    `json:"error"`
	Pid      int       `json:"pid"`
	Monitor  int       `json:"monitor_pid"`
	Created  time.Time `json:"created"`
	Started  time.Time `json:"started"`
	Finished time.Time `json:"finished"`
	Ports    []struct {
		Host     int    `json:"host"`
		Cont     int    `json:"container"`
		Protocol string `json:"protocol"`
	} `json:"ports"`
	Bundle string `json:"bundle"`
}

func (e *env) ps() []container {
	e.t.Helper()
	var cs []container
	if err := json.Unmarshal([]byte(e.ok("ps", "--all", "--format", "json")), &cs); err != nil {
		e.t.Fatal(err)
	}
	return cs
}

func (e *env) inspect(ref string) container {
	e.t.Helper()
	var cs []container
	if err := json.Unmarshal([]byte(e.ok("inspect", ref)), &cs); err != nil || len(cs) != 1 {
		e.t.Fatalf("inspect %s: %v %v", ref, err, cs)
	}
	return cs[0]
}

// waitExit follows the logs until the container exits (logs -f returns then) and
// returns its record.
func (e *env) waitExit(ref string) container {
	e.t.Helper()
	e.ok("logs", "-f", ref)
	c := e.inspect(ref)
	if c.Status != "stopped" {
		e.t.Fatalf("logs -f returned while %s is %s", ref, c.Status)
	}
	return c
}

// waitLog follows the logs until a line equal to want appears: the container's own
// signal that it is ready (e.g. its signal traps are installed).
func (e *env) waitLog(ref, want string) {
	e.t.Helper()
	cmd := e.cmd("logs", "-f", ref)
	stdout, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		e.t.Fatal(err)
	}
	defer func() { _ = cmd.Process.Kill(); _ = cmd.Wait() }()
	r := bufio.NewReader(stdout)
	for {
		l, err := r.ReadString('\n')
		if strings.TrimSuffix(l, "\n") == want {
			return
		}
		if err != nil {
			e.t.Fatalf("logs of %s ended before %q", ref, want)
		}
	}
}

// cleanup removes every container and checks that nothing is left behind: no container
// dirs, names, mounts, runtime state or cgroups.
func (e *env) cleanup() {
	t := e.t
	out, _, _ := e.run("ps", "-aq")
	ids := strings.Fields(out)
	if len(ids) > 0 {
		if _, errs, code := e.run(append([]string{"rm", "-f"}, ids...)...); code != 0 {
			t.Errorf("cleanup rm -f: %s", errs)
		}
	}
	e.assertClean(ids)
	e.assertNetClean()
}

func (e *env) assertClean(ids []string) {
	t := e.t
	t.Helper()
	ents, _ := os.ReadDir(filepath.Join(e.root, "containers"))
	for _, d := range ents {
		if d.Name() != ".names" {
			t.Errorf("left behind: containers/%s", d.Name())
		}
	}
	names, _ := os.ReadDir(filepath.Join(e.root, "containers", ".names"))
	for _, n := range names {
		t.Errorf("left behind: name %s", n.Name())
	}
	mi, _ := os.ReadFile("/proc/self/mountinfo")
	if strings.Contains(string(mi), e.root+"/containers") {
		t.Errorf("left behind: mounts under %s", e.root)
	}
	rs, _ := os.ReadDir(filepath.Join(e.root, "runtime", filepath.Base(e.runtime)))
	for _, r := range rs {
		t.Errorf("left behind: runtime state %s", r.Name())
	}
	for _, id := range ids {
		for _, ctrl := range []string{"memory", "pids", "cpu", "freezer"} {
			if _, err := os.Stat(filepath.Join("/sys/fs/cgroup", ctrl, "cubo", id)); err == nil {
				t.Errorf("left behind: cgroup %s/cubo/%s", ctrl, id)
			}
		}
	}
}

// loadConfigImage makes an OCI archive of the busybox rootfs with an image config that
// sets Entrypoint, Cmd, Env, WorkingDir, User and StopSignal, and loads it as name.
func (e *env) loadConfigImage(name string, cfg map[string]any) {
	t := e.t
	t.Helper()
	layer, err := os.ReadFile(busyboxTar)
	if err != nil {
		t.Fatal(err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(layer))
	if err != nil {
		t.Fatal(err)
	}
	h := sha256.New()
	if _, err := io.Copy(h, zr); err != nil {
		t.Fatal(err)
	}
	diffID := "sha256:" + hex.EncodeToString(h.Sum(nil))
	blobs := map[string][]byte{}
	put := func(b []byte) (string, int) {
		d := sha256.Sum256(b)
		blobs[hex.EncodeToString(d[:])] = b
		return "sha256:" + hex.EncodeToString(d[:]), len(b)
	}
	ld, ls := put(layer)
	conf, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux", "config": cfg,
		"rootfs": map[string]any{"type": "layers", "diff_ids": []string{diffID}},
	})
	cd, cs := put(conf)
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": map[string]any{"mediaType": "application/vnd.oci.image.config.v1+json", "digest": cd, "size": cs},
		"layers": []any{map[string]any{"mediaType": "application/vnd.oci.image.layer.v1.tar+gzip", "digest": ld, "size": ls}},
	})
	md, ms := put(man)
	idx, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{
			"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": ms,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": name},
		}},
	})
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	add := func(n string, b []byte) {
		_ = tw.WriteHeader(&tar.Header{Name: n, Mode: 0o644, Size: int64(len(b)), Typeflag: tar.TypeReg})
		_, _ = tw.Write(b)
	}
	add("oci-layout", []byte(`{"imageLayoutVersion":"1.0.0"}`))
	add("index.json", idx)
	for d, b := range blobs {
		add("blobs/sha256/"+d, b)
	}
	_ = tw.Close()
	p := filepath.Join(t.TempDir(), "img.tar")
	if err := os.WriteFile(p, buf.Bytes(), 0o644); err != nil {
		t.Fatal(err)
	}
	e.ok("load", "-i", p)
}
