package images_test

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// buildCubo builds cmd/cubo once per test into a temp dir.
func buildCubo(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "cubo")
	out, err := exec.Command("go", "build", "-o", bin, "../../cmd/cubo").CombinedOutput()
	if err != nil {
		t.Fatalf("go build ./cmd/cubo: %v\n%s", err, out)
	}
	return bin
}

// TestCLIAcceptance is the issue's acceptance: `cubo pull 127.0.0.1:PORT/alpine:3.20 &&
// cubo blueprint` against the local registry, skopeo reads the store, rmb frees the space.
func TestCLIAcceptance(t *testing.T) {
	reg := startRegistry(t, modePlain)
	alpine := fileLayer(t, "alpine-minirootfs-3.20.3-x86_64.tar.gz")
	reg.push(t, "alpine:3.20", "amd64", alpine)
	bin := buildCubo(t)
	root := t.TempDir()
	home := t.TempDir()
	run := func(args ...string) (string, error) {
		cmd := exec.Command(bin, append([]string{"--root-dir", root}, args...)...)
		cmd.Env = append(os.Environ(), "HOME="+home, "DOCKER_CONFIG="+filepath.Join(home, ".docker"))
		out, err := cmd.CombinedOutput()
		return string(out), err
	}
	name := reg.addr + "/alpine:3.20"
	out, err := run("pull", name)
	if err != nil || !strings.Contains(out, "Pull complete") {
		t.Fatalf("pull: %v\n%s", err, out)
	}
	out, err = run("blueprint")
	if err != nil {
		t.Fatalf("blueprint: %v\n%s", err, out)
	}
	lines := strings.Split(strings.TrimSpace(out), "\n")
	if len(lines) != 2 || !strings.HasPrefix(lines[0], "REPOSITORY") || !strings.Contains(lines[1], reg.addr+"/alpine") || !strings.Contains(lines[1], "3.20") {
		t.Fatalf("blueprint output:\n%s", out)
	}
	out, err = run("blueprint", "--format", "json")
	if err != nil || !strings.Contains(out, `"tag": "3.20"`) {
		t.Fatalf("blueprint json: %v\n%s", err, out)
	}
	if _, err := exec.LookPath("skopeo"); err == nil {
		if out, err := exec.Command("skopeo", "inspect", "oci:"+filepath.Join(root, "images")+":"+name).CombinedOutput(); err != nil {
			t.Fatalf("skopeo inspect: %v\n%s", err, out)
		}
	}
	before := dirSize(t, root)
	out, err = run("rmb", "alpine") // docker.io/library/alpine: not here
	if err == nil || !strings.HasPrefix(out, "cubo: ") || strings.Count(out, "\n") != 1 {
		t.Fatalf("rmb of a missing image: %v\n%q", err, out)
	}
	out, err = run("rmb", name)
	if err != nil || !strings.Contains(out, "Deleted: sha256:") {
		t.Fatalf("rmb: %v\n%s", err, out)
	}
	if freed := before - dirSize(t, root); freed < 3<<20 {
		t.Fatalf("rmb freed only %d bytes", freed)
	}
	out, err = run("blueprint")
	if err != nil || strings.TrimSpace(out) != "REPOSITORY   TAG   IMAGE ID   CREATED   SIZE" {
		t.Fatalf("blueprint after rmb: %v\n%q", err, out)
	}
}
