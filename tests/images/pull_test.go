package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"net/http"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cubo-dev/cubo/images"
	"github.com/opencontainers/go-digest"
)

func newStore(t *testing.T, opts ...images.Opt) *images.Store {
	t.Helper()
	opts = append([]images.Opt{images.WithRetries(0), images.WithDockerConfig(filepath.Join(t.TempDir(), "docker-config.json"))}, opts...)
	s, err := images.New(t.TempDir(), opts...)
	must(t, err)
	return s
}

// blobFiles lists blobs/sha256 of a store.
func blobFiles(t *testing.T, s *images.Store) map[string]bool {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.LayoutDir(), "blobs", "sha256"))
	must(t, err)
	out := map[string]bool{}
	for _, e := range ents {
		out[e.Name()] = true
	}
	return out
}

func TestPullByTagAndDigest(t *testing.T) {
	reg := startRegistry(t, modePlain)
	alpine := fileLayer(t, "alpine-minirootfs-3.20.3-x86_64.tar.gz")
	desc := reg.push(t, "alpine:3.20", "amd64", alpine)
	s := newStore(t)
	ctx := context.Background()

	var states sync.Map
	img, err := s.Pull(ctx, reg.addr+"/alpine:3.20", images.PullWithProgress(func(p images.Progress) { states.Store(p.State, true) }))
	must(t, err)
	if img.Name != reg.addr+"/alpine:3.20" || img.Descriptor.Digest != desc.Digest {
		t.Fatalf("got %q %s, want %s", img.Name, img.Descriptor.Digest, desc.Digest)
	}
	if _, ok := states.Load(images.StateDone); !ok {
		t.Error("no StateDone progress")
	}
	dirs, err := s.LayerDirs(ctx, img)
	must(t, err)
	rel, err := os.ReadFile(filepath.Join(dirs[0], "etc", "alpine-release"))
	must(t, err)
	if strings.TrimSpace(string(rel)) != "3.20.3" {
		t.Fatalf("alpine-release = %q", rel)
	}
	if l, err := os.Readlink(filepath.Join(dirs[0], "bin", "ls")); err != nil || l != "/bin/busybox" {
		t.Fatalf("bin/ls -> %q, %v", l, err)
	}

	// Again: everything is there already.
	var exists atomic.Bool
	_, err = s.Pull(ctx, reg.addr+"/alpine:3.20", images.PullWithProgress(func(p images.Progress) {
		if p.State == images.StateExists {
			exists.Store(true)
		}
	}))
	must(t, err)
	if !exists.Load() {
		t.Error("second pull did not report the layer as existing")
	}

	// By digest.
	byDigest := reg.addr + "/alpine@" + desc.Digest.String()
	img2, err := s.Pull(ctx, byDigest)
	must(t, err)
	if img2.ID != img.ID || img2.Tag() != "<none>" {
		t.Fatalf("by digest: ID %s tag %s", img2.ID, img2.Tag())
	}
	if _, err := s.Get(ctx, byDigest); err != nil {
		t.Fatal(err)
	}
	// A digest the registry does not have.
	_, err = s.Pull(ctx, reg.addr+"/alpine@"+digest.FromString("nope").String())
	if !errdefs.IsNotFound(err) {
		t.Fatalf("missing digest: %v", err)
	}

	// skopeo and umoci read the store as an OCI layout.
	if _, err := exec.LookPath("skopeo"); err == nil {
		out, err := exec.Command("skopeo", "inspect", "oci:"+s.LayoutDir()+":"+reg.addr+"/alpine:3.20").CombinedOutput()
		if err != nil || !strings.Contains(string(out), desc.Digest.String()) {
			t.Fatalf("skopeo inspect: %v\n%s", err, out)
		}
	}
	if _, err := exec.LookPath("umoci"); err == nil {
		out, err := exec.Command("umoci", "ls", "--layout", s.LayoutDir()).CombinedOutput()
		if err != nil || !strings.Contains(string(out), reg.addr+"/alpine:3.20") {
			t.Fatalf("umoci ls: %v\n%s", err, out)
		}
	}
}

func TestPullOCILayoutWithSkopeo(t *testing.T) {
	reg := startRegistry(t, modePlain)
	layout := filepath.Join(sharedImages, "busybox-1.38.0-musl-amd64.oci")
	if _, err := os.Stat(layout); err != nil {
		t.Skipf("shared busybox OCI layout not available: %v", err)
	}
	if _, err := exec.LookPath("skopeo"); err != nil {
		t.Skip("skopeo not installed")
	}
	out, err := exec.Command("skopeo", "copy", "--dest-tls-verify=false",
		"oci:"+layout+":busybox:1.38.0-musl", "docker://"+reg.addr+"/busybox:1.38").CombinedOutput()
	if err != nil {
		t.Fatalf("skopeo copy: %v\n%s", err, out)
	}
	s := newStore(t)
	img, err := s.Pull(context.Background(), reg.addr+"/busybox:1.38")
	must(t, err)
	const want = "sha256:a34ce92094b7b100a98fbd21411a92825f6827b1bc5f6918c253516c90556998"
	if img.Descriptor.Digest.String() != want {
		t.Fatalf("manifest digest %s, want %s", img.Descriptor.Digest, want)
	}
	dirs, err := s.LayerDirs(context.Background(), img)
	must(t, err)
	// Every applet is a hard link to bin/[ in this image.
	a, err := os.Stat(filepath.Join(dirs[0], "bin", "["))
	must(t, err)
	b, err := os.Stat(filepath.Join(dirs[0], "bin", "sh"))
	must(t, err)
	if !os.SameFile(a, b) {
		t.Error("bin/sh is not a hard link of bin/[")
	}
	if os.Geteuid() == 0 {
		fi, err := os.Stat(filepath.Join(dirs[0], "home"))
		must(t, err)
		if fileUID(fi) != 65534 {
			t.Errorf("home owner %d, want 65534", fileUID(fi))
		}
	}
}

func TestPullMultiArch(t *testing.T) {
	reg := startRegistry(t, modePlain)
	amd := gzLayer(t, makeTar(t, []entry{{name: "arch", typ: tar.TypeReg, body: "amd64\n"}}))
	arm := gzLayer(t, makeTar(t, []entry{{name: "arch", typ: tar.TypeReg, body: "arm64\n"}}))
	da := reg.push(t, "multi:amd64", "amd64", amd)
	dr := reg.push(t, "multi:arm64", "arm64", arm)
	reg.pushIndex(t, "multi:latest", da, dr)
	s := newStore(t)
	ctx := context.Background()
	check := func(img *images.Image, want string) {
		t.Helper()
		dirs, err := s.LayerDirs(ctx, img)
		must(t, err)
		b, err := os.ReadFile(filepath.Join(dirs[0], "arch"))
		must(t, err)
		if string(b) != want+"\n" {
			t.Fatalf("arch = %q, want %s", b, want)
		}
	}
	img, err := s.Pull(ctx, reg.addr+"/multi")
	must(t, err)
	check(img, "amd64")
	img, err = s.Pull(ctx, reg.addr+"/multi:latest", images.PullWithPlatform("linux/arm64"))
	must(t, err)
	check(img, "arm64")
	if _, err := s.Pull(ctx, reg.addr+"/multi:latest", images.PullWithPlatform("linux/s390x")); !errdefs.IsNotFound(err) {
		t.Fatalf("missing platform: %v", err)
	}
}

func TestPullAuth(t *testing.T) {
	reg := startRegistry(t, modeAuth)
	l := gzLayer(t, makeTar(t, []entry{{name: "hello", typ: tar.TypeReg, body: "hi\n"}}))
	reg.push(t, "private:1", "amd64", l)
	cfgPath := filepath.Join(t.TempDir(), "config.json")
	s := newStore(t, images.WithDockerConfig(cfgPath))
	ctx := context.Background()

	if _, err := s.Pull(ctx, reg.addr+"/private:1"); !errdefs.IsUnauthorized(err) {
		t.Fatalf("pull without credentials: %v", err)
	}
	if err := s.Login(ctx, reg.addr, reg.user, "wrong"); !errdefs.IsUnauthorized(err) {
		t.Fatalf("login with a wrong password: %v", err)
	}
	if _, err := os.Stat(cfgPath); err == nil {
		t.Fatal("a failed login wrote the docker config")
	}
	must(t, s.Login(ctx, reg.addr, reg.user, reg.pass))
	b, err := os.ReadFile(cfgPath)
	must(t, err)
	if !strings.Contains(string(b), reg.addr) {
		t.Fatalf("config.json lacks the registry:\n%s", b)
	}
	// A new store reads the credentials from the file.
	s2 := newStore(t, images.WithDockerConfig(cfgPath))
	if _, err := s2.Pull(ctx, reg.addr+"/private:1"); err != nil {
		t.Fatal(err)
	}
	must(t, s.Logout(ctx, reg.addr))
	s3 := newStore(t, images.WithDockerConfig(cfgPath))
	if _, err := s3.Pull(ctx, reg.addr+"/private:1"); !errdefs.IsUnauthorized(err) {
		t.Fatalf("pull after logout: %v", err)
	}
	if err := s.Logout(ctx, reg.addr); !errdefs.IsNotFound(err) {
		t.Fatalf("second logout: %v", err)
	}
}

func TestPullTLS(t *testing.T) {
	reg := startRegistry(t, modeTLS)
	l := gzLayer(t, makeTar(t, []entry{{name: "hello", typ: tar.TypeReg, body: "tls\n"}}))
	reg.push(t, "secure:1", "amd64", l)
	ctx := context.Background()
	// The CA is unknown: verification fails.
	if _, err := newStore(t).Pull(ctx, reg.addr+"/secure:1"); err == nil {
		t.Fatal("pull from an untrusted TLS registry succeeded")
	}
	// --tls-verify=false accepts the self-signed certificate.
	if _, err := newStore(t).Pull(ctx, reg.addr+"/secure:1", images.PullWithTLSVerify(false)); err != nil {
		t.Fatal(err)
	}
	// Trusting the CA through a certs.d-style dir verifies.
	if _, err := newStore(t, images.WithCertDirs(reg.certDir)).Pull(ctx, reg.addr+"/secure:1"); err != nil {
		t.Fatal(err)
	}
}

// proxy is an httptest reverse proxy in front of the registry whose blob responses a
// test can tamper with.
type proxy struct {
	srv  *httptest.Server
	addr string
	mu   sync.Mutex
	hits map[digest.Digest]int
	// tamper, when set, handles a blob GET instead of the registry; returning false
	// passes it through.
	tamper func(w http.ResponseWriter, r *http.Request, d digest.Digest, up *httputil.ReverseProxy) bool
}

func newProxy(t *testing.T, reg *registry) *proxy {
	u, _ := url.Parse("http://" + reg.addr)
	up := httputil.NewSingleHostReverseProxy(u)
	p := &proxy{hits: map[digest.Digest]int{}}
	p.srv = httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if i := strings.Index(r.URL.Path, "/blobs/sha256:"); i >= 0 && r.Method == http.MethodGet {
			d := digest.Digest(r.URL.Path[i+len("/blobs/"):])
			p.mu.Lock()
			p.hits[d]++
			tamper := p.tamper
			p.mu.Unlock()
			if tamper != nil && tamper(w, r, d, up) {
				return
			}
		}
		up.ServeHTTP(w, r)
	}))
	t.Cleanup(p.srv.Close)
	p.addr = strings.TrimPrefix(p.srv.URL, "http://")
	return p
}

func (p *proxy) count(d digest.Digest) int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.hits[d]
}

func TestPullCorruptedBlob(t *testing.T) {
	reg := startRegistry(t, modePlain)
	l := gzLayer(t, makeTar(t, []entry{{name: "data", typ: tar.TypeReg, body: strings.Repeat("cubo", 4096)}}))
	reg.push(t, "corrupt:1", "amd64", l)
	ld := digest.FromBytes(l.blob)
	p := newProxy(t, reg)
	p.tamper = func(w http.ResponseWriter, r *http.Request, d digest.Digest, _ *httputil.ReverseProxy) bool {
		if d != ld {
			return false
		}
		bad := bytes.Clone(l.blob)
		bad[len(bad)/2] ^= 0xff
		w.Header().Set("Content-Length", "")
		w.Header().Set("Docker-Content-Digest", ld.String())
		w.WriteHeader(http.StatusOK)
		w.Write(bad)
		return true
	}
	s := newStore(t)
	_, err := s.Pull(context.Background(), p.addr+"/corrupt:1")
	if !errdefs.IsDataLoss(err) {
		t.Fatalf("corrupted blob: got %v, want a DataLoss error", err)
	}
	if blobFiles(t, s)[ld.Encoded()] {
		t.Fatal("the corrupted blob was kept")
	}
	if _, err := s.LayerDir(l.diffID); err == nil {
		t.Fatal("a layer dir exists for the corrupted blob")
	}
	imgs, err := s.List(context.Background())
	must(t, err)
	if len(imgs) != 0 {
		t.Fatalf("%d images after a failed pull", len(imgs))
	}
	assertNoTmpLeftovers(t, s)
}

// assertNoTmpLeftovers checks that ROOT/tmp holds only lock files.
func assertNoTmpLeftovers(t *testing.T, s *images.Store) {
	t.Helper()
	filepath.WalkDir(filepath.Join(s.Root(), "tmp"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".lock") {
			t.Errorf("leftover in tmp: %s", p)
		}
		return nil
	})
}

func TestPullInterruptedResumes(t *testing.T) {
	reg := startRegistry(t, modePlain)
	small := gzLayer(t, makeTar(t, []entry{{name: "small", typ: tar.TypeReg, body: "small\n"}}))
	bigTar := makeTar(t, []entry{{name: "big", typ: tar.TypeReg, body: string(randomish(1 << 20))}})
	big := gzLayer(t, bigTar)
	reg.push(t, "resume:1", "amd64", small, big)
	sd, bd := digest.FromBytes(small.blob), digest.FromBytes(big.blob)
	p := newProxy(t, reg)
	var cut atomic.Bool
	cut.Store(true)
	p.tamper = func(w http.ResponseWriter, r *http.Request, d digest.Digest, _ *httputil.ReverseProxy) bool {
		if d != bd || !cut.Load() {
			return false
		}
		// Send half the blob, then drop the connection.
		w.Header().Set("Content-Length", strconv.Itoa(len(big.blob)))
		w.WriteHeader(http.StatusOK)
		w.Write(big.blob[:len(big.blob)/2])
		w.(http.Flusher).Flush()
		conn, _, err := w.(http.Hijacker).Hijack()
		if err == nil {
			conn.Close()
		}
		return true
	}
	// One layer at a time, small first, so the small one is complete when the big one fails.
	s := newStore(t, images.WithConcurrency(1))
	ctx := context.Background()
	if _, err := s.Pull(ctx, p.addr+"/resume:1"); err == nil {
		t.Fatal("interrupted pull succeeded")
	}
	blobs := blobFiles(t, s)
	if !blobs[sd.Encoded()] || blobs[bd.Encoded()] {
		t.Fatalf("after the interruption: small kept %v, partial big visible %v", blobs[sd.Encoded()], blobs[bd.Encoded()])
	}
	assertNoTmpLeftovers(t, s)
	smallHits := p.count(sd)
	cut.Store(false)
	if _, err := s.Pull(ctx, p.addr+"/resume:1"); err != nil {
		t.Fatal(err)
	}
	if p.count(sd) != smallHits {
		t.Errorf("the finished small blob was downloaded again")
	}
	if p.count(bd) < 2 {
		t.Errorf("the big blob was not fetched again")
	}
}

func randomish(n int) []byte {
	b := make([]byte, n)
	x := uint32(2463534242)
	for i := range b {
		x ^= x << 13
		x ^= x >> 17
		x ^= x << 5
		b[i] = byte(x)
	}
	return b
}

func TestConcurrentPulls(t *testing.T) {
	reg := startRegistry(t, modePlain)
	a := gzLayer(t, makeTar(t, []entry{{name: "a", typ: tar.TypeReg, body: strings.Repeat("a", 100000)}}))
	b := gzLayer(t, makeTar(t, []entry{{name: "b", typ: tar.TypeReg, body: strings.Repeat("b", 100000)}}))
	shared := gzLayer(t, makeTar(t, []entry{{name: "shared", typ: tar.TypeReg, body: "s"}}))
	reg.push(t, "one:1", "amd64", shared, a)
	reg.push(t, "two:1", "amd64", shared, b)
	s := newStore(t)
	var wg sync.WaitGroup
	errs := make(chan error, 8)
	for i := range 8 {
		name := []string{"one:1", "two:1"}[i%2]
		wg.Go(func() {
			// A separate Store value per goroutine behaves like a separate process.
			st, err := images.New(s.Root(), images.WithRetries(0))
			if err != nil {
				errs <- err
				return
			}
			_, err = st.Pull(context.Background(), reg.addr+"/"+name)
			errs <- err
		})
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		must(t, err)
	}
	imgs, err := s.List(context.Background())
	must(t, err)
	if len(imgs) != 2 {
		t.Fatalf("%d images, want 2", len(imgs))
	}
	assertNoTmpLeftovers(t, s)
}

func fileUID(fi os.FileInfo) int {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid)
	}
	return -1
}

func fileBlocks(fi os.FileInfo) int64 {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return st.Blocks
	}
	return 0
}
