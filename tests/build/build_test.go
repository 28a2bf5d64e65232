// Package build_test runs `cubo build` end to end as root: the built cubo and cubo-runc
// binaries, a busybox base imported from the shared rootfs tarball, real RUN containers
// on overlay mounts. It checks the images in the store (layers unpacked from their blobs,
// config), that they run, the cache, multi-stage builds and the context's confinement.
package build_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cubo-dev/cubo/images"
	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

// sharedImages holds the rootfs tarballs: $CUBO_TEST_IMAGES or /work/shared/images.
func busyboxTar() string {
	d := os.Getenv("CUBO_TEST_IMAGES")
	if d == "" {
		d = "/work/shared/images"
	}
	return filepath.Join(d, "busybox-1.38.0-musl-amd64-rootfs.tar.gz")
}

// The containers these tests run need no network, but cubo run's default is the bridge:
// the package gets one of its own (not the real cubo0), removed with its rules at the
// end by hostenv.Main.
const (
	testBridge = "cubobd0"
	testSubnet = "10.69.0.0/24"
)

func TestMain(m *testing.M) { hostenv.Main(m, "build", testBridge) }

// env is one root dir with busybox:latest imported and a build context dir.
type env struct {
	t    *testing.T
	root string
	ctx  string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	if _, err := os.Stat(busyboxTar()); err != nil {
		t.Skipf("image tarball absent (set CUBO_TEST_IMAGES): %v", err)
	}
	e := &env{t: t, root: t.TempDir(), ctx: t.TempDir()}
	t.Cleanup(func() {
		// Anything a failed test left running or mounted goes before the dirs do.
		exec.Command(filepath.Join(hostenv.BinDir, "cubo-runc"), "--root", filepath.Join(e.root, "build", "runtime"), "list").Run()
		out, _ := os.ReadFile("/proc/self/mounts")
		for _, l := range strings.Split(string(out), "\n") {
			if f := strings.Fields(l); len(f) > 1 && strings.HasPrefix(f[1], e.root) {
				exec.Command("umount", "-l", f[1]).Run()
			}
		}
	})
	e.ok("import", busyboxTar(), "busybox:latest")
	return e
}

func (e *env) write(name, content string) {
	e.t.Helper()
	p := filepath.Join(e.ctx, name)
	if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
		e.t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) run(args ...string) (string, string, int) {
	e.t.Helper()
	cmd := exec.Command(filepath.Join(hostenv.BinDir, "cubo"), append([]string{"--root-dir", e.root, "--runtime", filepath.Join(hostenv.BinDir, "cubo-runc")}, args...)...)
	cmd.Env = append(os.Environ(), "CUBO_LOG=warn", "CUBO_DEFAULT_BRIDGE="+testBridge, "CUBO_DEFAULT_SUBNET="+testSubnet)
	return hostenv.Output(e.t, cmd)
}

func (e *env) ok(args ...string) string {
	e.t.Helper()
	out, errs, code := e.run(args...)
	if code != 0 {
		e.t.Fatalf("cubo %s: exit %d\nstdout:\n%s\nstderr:\n%s", strings.Join(args, " "), code, out, errs)
	}
	return out
}

func (e *env) image(name string) *images.Image {
	e.t.Helper()
	st, err := images.New(e.root)
	if err != nil {
		e.t.Fatal(err)
	}
	img, err := st.Get(context.Background(), name)
	if err != nil {
		e.t.Fatal(err)
	}
	return img
}

// layerEntries lists the tar entries of each layer blob of the image (base first).
func (e *env) layerEntries(img *images.Image) [][]string {
	e.t.Helper()
	var out [][]string
	for _, l := range img.Manifest.Layers {
		f, err := os.Open(filepath.Join(e.root, "images", "blobs", "sha256", l.Digest.Encoded()))
		if err != nil {
			e.t.Fatal(err)
		}
		var r io.Reader = f
		if strings.HasSuffix(l.MediaType, "gzip") {
			if r, err = gzip.NewReader(f); err != nil {
				e.t.Fatal(err)
			}
		}
		tr := tar.NewReader(r)
		var names []string
		for {
			h, err := tr.Next()
			if err == io.EOF {
				break
			}
			if err != nil {
				e.t.Fatal(err)
			}
			names = append(names, strings.TrimSuffix(h.Name, "/"))
		}
		f.Close()
		out = append(out, names)
	}
	return out
}

func countLines(s, sub string) int { return strings.Count(s, sub) }

const cubofile = `# a busybox app
FROM busybox:latest
RUN mkdir /app && echo hi > /app/x
RUN rm /bin/vi
COPY hello.txt /app/
WORKDIR /app
ENV GREETING="hello world" \
    OTHER=1
RUN echo "$GREETING from $(pwd)" > greet
LABEL org.example=yes
EXPOSE 8080/tcp
USER 1000:1000
CMD ["cat", "/app/greet"]
`

const cubofileTOML = `[image]
base = "busybox:latest"

[config]
workdir = "/app"
expose = ["8080/tcp"]
user = "1000:1000"

[config.env]
GREETING = "hello world"
OTHER = "1"

[config.labels]
"org.example" = "yes"

[[config.run]]
command = "mkdir -p /app && echo hi > /app/x"

[[config.run]]
command = "rm /bin/vi"

[[config.copy]]
source = "hello.txt"
destination = "/app/"

[[config.run]]
command = "echo \"$GREETING from $(pwd)\" > greet"

[config.cmd]
command = ["cat", "/app/greet"]
`

// TestBuildBothSyntaxes builds equivalent Cubofile and Cubofile.toml and checks the
// images' layers and configs, that they run, and that skopeo reads them.
func TestBuildBothSyntaxes(t *testing.T) {
	e := newEnv(t)
	e.write("hello.txt", "hello\n")
	e.write("Cubofile", cubofile)
	e.ok("build", e.ctx, "--tag", "app:txt")
	e.write("Cubofile.toml", cubofileTOML) // auto-detected before Cubofile
	out := e.ok("build", e.ctx, "--tag", "app:toml")
	if !strings.Contains(out, "STEP 1/") || !strings.Contains(out, "WORKDIR /app") {
		t.Errorf("TOML build output:\n%s", out)
	}
	for _, tag := range []string{"app:txt", "app:toml"} {
		img := e.image(tag)
		c := img.Config.Config
		if !slices.Equal(c.Cmd, []string{"cat", "/app/greet"}) || c.WorkingDir != "/app" || c.User != "1000:1000" ||
			c.Labels["org.example"] != "yes" || !slices.Contains(c.Env, "GREETING=hello world") {
			t.Errorf("%s config = %+v", tag, c)
		}
		if _, ok := c.ExposedPorts["8080/tcp"]; !ok {
			t.Errorf("%s exposed ports = %v", tag, c.ExposedPorts)
		}
		layers := e.layerEntries(img)
		// base, mkdir, rm (whiteout), copy, echo
		if len(layers) != 5 {
			t.Fatalf("%s has %d layers, want 5: %v", tag, len(layers), layers[1:])
		}
		if !slices.Contains(layers[1], "app/x") || !slices.Contains(layers[2], "bin/.wh.vi") ||
			!slices.Contains(layers[3], "app/hello.txt") || !slices.Contains(layers[4], "app/greet") {
			t.Errorf("%s layers = %v", tag, layers[1:])
		}
		for _, l := range layers[1:] {
			for _, n := range l {
				if n == "proc" || n == "dev" || n == "sys" {
					t.Errorf("%s: mount stub %s in a layer", tag, n)
				}
			}
		}
		if got := e.ok("run", "--interactive", "--rm", tag); got != "hello world from /app\n" {
			t.Errorf("%s runs and prints %q", tag, got)
		}
		if _, _, code := e.run("run", "--interactive", "--rm", tag, "ls", "/bin/vi"); code == 0 {
			t.Errorf("%s: /bin/vi still there", tag)
		}
		if _, err := exec.LookPath("skopeo"); err == nil {
			out, err := exec.Command("skopeo", "inspect", "oci:"+filepath.Join(e.root, "images")+":"+tag).CombinedOutput()
			if err != nil || !strings.Contains(string(out), `"org.example": "yes"`) {
				t.Errorf("skopeo inspect %s: %v\n%s", tag, err, out)
			}
		}
	}
}

// TestBuildCache checks a no-change rebuild (fully cached, same image), that touching a
// file keeps the cache, and that changing a copied file rebuilds from that step on.
func TestBuildCache(t *testing.T) {
	e := newEnv(t)
	e.write("hello.txt", "hello\n")
	e.write("other.txt", "other\n")
	e.write("Cubofile", `FROM busybox:latest
RUN echo 1 > /one
COPY other.txt /
RUN echo 2 > /two
COPY hello.txt /
RUN cat /hello.txt > /three
ENV A=1
LABEL b=2
WORKDIR /w
CMD ["sh"]
`)
	first := e.ok("build", e.ctx, "-t", "c:1")
	if countLines(first, "---> cached") != 0 {
		t.Fatalf("first build used a cache:\n%s", first)
	}
	start := time.Now()
	second := e.ok("build", e.ctx, "-t", "c:1")
	t.Logf("no-change rebuild of 10 steps took %v", time.Since(start))
	if n := countLines(second, "---> cached"); n != 5 || strings.Contains(second, "done in") {
		t.Fatalf("second build: %d cached steps, want all 5:\n%s", n, second)
	}
	if lastLine(first) != lastLine(second) {
		t.Errorf("rebuild from cache gave another image: %s vs %s", lastLine(first), lastLine(second))
	}
	future := time.Now().Add(time.Hour)
	os.Chtimes(filepath.Join(e.ctx, "hello.txt"), future, future)
	if out := e.ok("build", e.ctx, "-t", "c:1"); countLines(out, "---> cached") != 5 {
		t.Errorf("touching a file broke the cache:\n%s", out)
	}
	e.write("hello.txt", "changed\n")
	third := e.ok("build", e.ctx, "-t", "c:1")
	if n := countLines(third, "---> cached"); n != 3 || countLines(third, "done in") != 2 {
		t.Errorf("after changing hello.txt: %d cached, want 3 (then 2 rebuilt):\n%s", n, third)
	}
	if got := e.ok("run", "-i", "--rm", "c:1", "cat", "/three"); got != "changed\n" {
		t.Errorf("/three = %q", got)
	}
	noCache := e.ok("build", e.ctx, "-t", "c:1", "--no-cache")
	if countLines(noCache, "---> cached") != 0 || countLines(noCache, "done in") != 5 {
		t.Errorf("--no-cache:\n%s", noCache)
	}
}

func lastLine(s string) string {
	l := strings.Split(strings.TrimSpace(s), "\n")
	return l[len(l)-1]
}

// TestBuildMultiStage checks COPY --from, that only the target stage's layers end in the
// image, --target, and stages the target does not need being skipped.
func TestBuildMultiStage(t *testing.T) {
	e := newEnv(t)
	e.write("Cubofile", `ARG BASE=busybox:latest
FROM ${BASE} AS builder
RUN mkdir /out && echo built > /out/artifact && echo junk > /junk
FROM busybox:latest AS unused
RUN echo never > /never
FROM scratch
COPY --from=builder /out/artifact /artifact
COPY --from=0 /bin/busybox /bin/
`)
	out := e.ok("build", e.ctx, "-t", "ms:1")
	if strings.Contains(out, "never") {
		t.Errorf("built an unneeded stage:\n%s", out)
	}
	layers := e.layerEntries(e.image("ms:1"))
	if len(layers) != 2 || !slices.Equal(layers[0], []string{"artifact"}) || !slices.Contains(layers[1], "bin/busybox") {
		t.Errorf("final image layers = %v", layers)
	}
	if got := e.ok("run", "-i", "--rm", "ms:1", "/bin/busybox", "cat", "/artifact"); got != "built\n" {
		t.Errorf("artifact = %q", got)
	}
	e.ok("build", e.ctx, "-t", "ms:builder", "--target", "builder")
	if n := len(e.image("ms:builder").Manifest.Layers); n != 2 {
		t.Errorf("--target builder has %d layers, want 2", n)
	}
}

// TestBuildContextConfinement checks that COPY never reads outside the context: ".."
// and symlinks leading out fail, ignored files are not copied.
func TestBuildContextConfinement(t *testing.T) {
	e := newEnv(t)
	outside := filepath.Join(t.TempDir(), "secret")
	os.WriteFile(outside, []byte("secret\n"), 0o600)
	if err := os.Symlink(outside, filepath.Join(e.ctx, "link")); err != nil {
		t.Fatal(err)
	}
	for src, want := range map[string]string{"../secret": "escapes the build context", "link": "leads out of the build context"} {
		e.write("Cubofile", "FROM busybox:latest\nCOPY "+src+" /x\n")
		_, errs, code := e.run("build", e.ctx, "-t", "bad:1")
		if code == 0 || !strings.Contains(errs, want) || !strings.Contains(errs, "Cubofile:2") {
			t.Errorf("COPY %s: exit %d, stderr %q; want %q", src, code, errs, want)
		}
	}
	os.Remove(filepath.Join(e.ctx, "link"))
	e.write("keep/a.txt", "a")
	e.write("keep/skip.log", "x")
	e.write(".cuboignore", "**/*.log\nlink\n")
	e.write("Cubofile", "FROM busybox:latest\nCOPY . /ctx/\n")
	e.ok("build", e.ctx, "-t", "ign:1")
	names := e.layerEntries(e.image("ign:1"))[1]
	if !slices.Contains(names, "ctx/keep/a.txt") || slices.Contains(names, "ctx/keep/skip.log") {
		t.Errorf("COPY . with .cuboignore = %v", names)
	}
	e.write("Cubofile", "FROM busybox:latest\nCOPY keep/skip.log /\n")
	if _, errs, code := e.run("build", e.ctx, "-t", "ign:2"); code == 0 || !strings.Contains(errs, "excluded") {
		t.Errorf("COPY of an ignored file: exit %d, %s", code, errs)
	}
}

// TestBuildAddAndOpaque checks ADD's tar extraction, COPY --chown, and that replacing a
// directory becomes an opaque-dir marker.
func TestBuildAddAndOpaque(t *testing.T) {
	e := newEnv(t)
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	tw := tar.NewWriter(zw)
	tw.WriteHeader(&tar.Header{Name: "pkg/", Typeflag: tar.TypeDir, Mode: 0o755})
	tw.WriteHeader(&tar.Header{Name: "pkg/data", Typeflag: tar.TypeReg, Mode: 0o640, Size: 5, Uid: 7})
	tw.Write([]byte("data\n"))
	tw.Close()
	zw.Close()
	e.write("a.tar.gz", buf.String())
	e.write("f.txt", "f\n")
	e.write("Cubofile", `FROM busybox:latest
ADD a.tar.gz /opt/
COPY --chown=1234:5678 f.txt /owned
RUN rm -rf /etc && mkdir /etc && echo new > /etc/only
`)
	e.ok("build", e.ctx, "-t", "add:1")
	layers := e.layerEntries(e.image("add:1"))
	if !slices.Contains(layers[1], "opt/pkg/data") {
		t.Errorf("ADD layer = %v", layers[1])
	}
	if !slices.Contains(layers[3], "etc/.wh..wh..opq") || !slices.Contains(layers[3], "etc/only") {
		t.Errorf("replaced /etc layer = %v", layers[3])
	}
	if got := e.ok("run", "-i", "--rm", "add:1", "stat", "-c", "%u:%g %a", "/owned", "/opt/pkg/data"); got != "1234:5678 644\n7:0 640\n" {
		t.Errorf("owners and modes = %q", got)
	}
	// The manager adds hostname, hosts and resolv.conf; passwd from below must be gone.
	if got := e.ok("run", "-i", "--rm", "add:1", "ls", "/etc"); !strings.Contains(got, "only\n") || strings.Contains(got, "passwd") {
		t.Errorf("/etc = %q", got)
	}
}

// TestBuildErrors checks that parse and RUN failures name the file and line.
func TestBuildErrors(t *testing.T) {
	e := newEnv(t)
	e.write("Cubofile", "FROM busybox:latest\nBOGUS x\n")
	if _, errs, code := e.run("build", e.ctx); code == 0 || !strings.Contains(errs, "Cubofile:2: unknown instruction BOGUS") {
		t.Errorf("unknown instruction: %d %s", code, errs)
	}
	e.write("Cubofile", "FROM busybox:latest\nRUN exit 3\n")
	if _, errs, code := e.run("build", e.ctx); code == 0 || !strings.Contains(errs, "Cubofile:2: RUN") || !strings.Contains(errs, "status 3") {
		t.Errorf("failing RUN: %d %s", code, errs)
	}
	if leftovers, _ := os.ReadDir(filepath.Join(e.root, "build", "tmp")); len(leftovers) != 0 {
		t.Errorf("failed build left %d entries in build/tmp", len(leftovers))
	}
}
