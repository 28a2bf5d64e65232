// Package images_test runs the image store against Debian's docker-registry (the
// distribution registry) started by the tests on 127.0.0.1: plain HTTP, htpasswd basic
// auth and TLS with a CA made here. Each registry process is stopped by PID at cleanup.
package images_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	regopt "github.com/regclient/regclient/scheme/reg"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/ref"
	"golang.org/x/crypto/bcrypt"
)

// sharedImages is shared/images beside the checkout, or $CUBO_TEST_IMAGES.
var sharedImages = func() string {
	if d := os.Getenv("CUBO_TEST_IMAGES"); d != "" {
		return d
	}
	return "../../../shared/images"
}()

type regMode int

const (
	modePlain regMode = iota
	modeAuth
	modeTLS
)

// registry is a running docker-registry.
type registry struct {
	addr    string // 127.0.0.1:PORT
	user    string
	pass    string
	certDir string // DIR/127.0.0.1:PORT/ca.crt for TLS mode
	rc      *regclient.RegClient
}

func startRegistry(t *testing.T, mode regMode) *registry {
	t.Helper()
	bin, err := exec.LookPath("docker-registry")
	if err != nil {
		t.Skip("docker-registry not installed (Debian package docker-registry); skipping registry tests")
	}
	dir := t.TempDir()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	reg := &registry{addr: addr}
	cfg := fmt.Sprintf(`version: 0.1
log:
  level: error
  accesslog:
    disabled: true
storage:
  filesystem:
    rootdirectory: %s
  delete:
    enabled: true
http:
  addr: %s
`, filepath.Join(dir, "data"), addr)
	host := config.Host{Name: addr, TLS: config.TLSDisabled}
	switch mode {
	case modeAuth:
		reg.user, reg.pass = "cubo", "s3cret-pass"
		hash, err := bcrypt.GenerateFromPassword([]byte(reg.pass), bcrypt.MinCost)
		if err != nil {
			t.Fatal(err)
		}
		hp := filepath.Join(dir, "htpasswd")
		if err := os.WriteFile(hp, []byte(reg.user+":"+string(hash)+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		cfg += fmt.Sprintf("auth:\n  htpasswd:\n    realm: cubo-test\n    path: %s\n", hp)
		host.User, host.Pass = reg.user, reg.pass
	case modeTLS:
		caPEM, certPEM, keyPEM := makeCerts(t)
		cp, kp := filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
		must(t, os.WriteFile(cp, certPEM, 0o600))
		must(t, os.WriteFile(kp, keyPEM, 0o600))
		cfg = cfg[:len(cfg)-1] + fmt.Sprintf("\n  tls:\n    certificate: %s\n    key: %s\n", cp, kp)
		reg.certDir = filepath.Join(dir, "certs.d")
		must(t, os.MkdirAll(filepath.Join(reg.certDir, addr), 0o755))
		must(t, os.WriteFile(filepath.Join(reg.certDir, addr, "ca.crt"), caPEM, 0o644))
		host.TLS = config.TLSEnabled
		host.RegCert = string(caPEM)
	}
	cfgPath := filepath.Join(dir, "config.yml")
	must(t, os.WriteFile(cfgPath, []byte(cfg), 0o600))
	logf, err := os.Create(filepath.Join(dir, "registry.log"))
	must(t, err)
	cmd := exec.Command(bin, "serve", cfgPath)
	cmd.Stdout, cmd.Stderr = logf, logf
	must(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_, _ = cmd.Process.Wait()
		logf.Close()
	})
	// Wait until it answers /v2/ (any HTTP status); the deadline only bounds a broken start.
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}, Timeout: 2 * time.Second}
	scheme := "http"
	if mode == modeTLS {
		scheme = "https"
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		resp, err := client.Get(scheme + "://" + addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			break
		}
		if time.Now().After(deadline) {
			b, _ := os.ReadFile(logf.Name())
			t.Fatalf("registry did not start: %v\n%s", err, b)
		}
		time.Sleep(50 * time.Millisecond)
	}
	reg.rc = regclient.New(regclient.WithConfigHost(host), regclient.WithRegOpts(regopt.WithRetryLimit(1)))
	return reg
}

func must(t *testing.T, err error) {
	t.Helper()
	if err != nil {
		t.Fatal(err)
	}
}

// makeCerts returns a self-signed CA and a server certificate for 127.0.0.1 signed by it.
func makeCerts(t *testing.T) (caPEM, certPEM, keyPEM []byte) {
	t.Helper()
	caKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	ca := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "cubo test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign,
	}
	caDER, err := x509.CreateCertificate(rand.Reader, ca, ca, &caKey.PublicKey, caKey)
	must(t, err)
	caCert, err := x509.ParseCertificate(caDER)
	must(t, err)
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	must(t, err)
	srv := &x509.Certificate{
		SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IPAddresses: []net.IP{net.ParseIP("127.0.0.1")}, DNSNames: []string{"localhost"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature,
	}
	der, err := x509.CreateCertificate(rand.Reader, srv, caCert, &key.PublicKey, caKey)
	must(t, err)
	kb, err := x509.MarshalECPrivateKey(key)
	must(t, err)
	return pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: caDER}),
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kb})
}

// testLayer is a layer blob with its media type and diff_id.
type testLayer struct {
	blob   []byte
	mt     string
	diffID digest.Digest
}

// entry is one tar entry of a crafted layer.
type entry struct {
	name, link string
	typ        byte
	body       string
	mode       int64
	size       int64 // for sparse-looking zero files; body is ignored when set
}

func makeTar(t *testing.T, entries []entry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := &tar.Header{Name: e.name, Linkname: e.link, Typeflag: e.typ, Mode: e.mode, ModTime: time.Unix(1700000000, 0)}
		if h.Mode == 0 {
			h.Mode = 0o644
			if e.typ == tar.TypeDir {
				h.Mode = 0o755
			}
		}
		if e.typ == tar.TypeReg {
			h.Size = int64(len(e.body))
			if e.size > 0 {
				h.Size = e.size
			}
		}
		must(t, tw.WriteHeader(h))
		if e.typ == tar.TypeReg {
			if e.size > 0 {
				_, err := io.CopyN(tw, zeroReader{}, e.size)
				must(t, err)
			} else {
				_, err := tw.Write([]byte(e.body))
				must(t, err)
			}
		}
	}
	must(t, tw.Close())
	return buf.Bytes()
}

type zeroReader struct{}

func (zeroReader) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}

// gzLayer gzips a tar into a layer.
func gzLayer(t *testing.T, tarBytes []byte) testLayer {
	t.Helper()
	return testLayer{blob: gz(t, tarBytes), mt: ocispec.MediaTypeImageLayerGzip, diffID: digest.FromBytes(tarBytes)}
}

// fileLayer reads a gzip rootfs tarball from shared/images as a layer, skipping the
// test when it is absent.
func fileLayer(t *testing.T, name string) testLayer {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(sharedImages, name))
	if err != nil {
		t.Skipf("shared image %s not available (%v); skipping", name, err)
	}
	zr, err := gzip.NewReader(bytes.NewReader(b))
	must(t, err)
	h := digest.SHA256.Digester()
	_, err = io.Copy(h.Hash(), zr)
	must(t, err)
	return testLayer{blob: b, mt: ocispec.MediaTypeImageLayerGzip, diffID: h.Digest()}
}

// push uploads an image made of layers under name (repo:tag on the registry) and returns
// its manifest descriptor.
func (r *registry) push(t *testing.T, name, arch string, layers ...testLayer) ocispec.Descriptor {
	t.Helper()
	ctx := context.Background()
	rf, err := ref.New(r.addr + "/" + name)
	must(t, err)
	created := time.Unix(1700000000, 0).UTC()
	cfg := ocispec.Image{Created: &created, Platform: ocispec.Platform{OS: "linux", Architecture: arch},
		RootFS: ocispec.RootFS{Type: "layers"}, Config: ocispec.ImageConfig{Cmd: []string{"/bin/sh"}}}
	man := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, l := range layers {
		d := descriptor.Descriptor{MediaType: l.mt, Digest: digest.FromBytes(l.blob), Size: int64(len(l.blob))}
		_, err := r.rc.BlobPut(ctx, rf, d, bytes.NewReader(l.blob))
		must(t, err)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		man.Layers = append(man.Layers, ocispec.Descriptor{MediaType: l.mt, Digest: d.Digest, Size: d.Size})
	}
	cb, _ := json.Marshal(cfg)
	cd := descriptor.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cb), Size: int64(len(cb))}
	_, err = r.rc.BlobPut(ctx, rf, cd, bytes.NewReader(cb))
	must(t, err)
	man.Config = ocispec.Descriptor{MediaType: cd.MediaType, Digest: cd.Digest, Size: cd.Size}
	mb, _ := json.Marshal(man)
	m, err := manifest.New(manifest.WithRaw(mb))
	must(t, err)
	must(t, r.rc.ManifestPut(ctx, rf, m))
	return ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(mb), Size: int64(len(mb)),
		Platform: &ocispec.Platform{OS: "linux", Architecture: arch}}
}

// pushIndex puts a multi-arch index of already-pushed manifests under name.
func (r *registry) pushIndex(t *testing.T, name string, ms ...ocispec.Descriptor) digest.Digest {
	t.Helper()
	rf, err := ref.New(r.addr + "/" + name)
	must(t, err)
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: ms}
	b, _ := json.Marshal(idx)
	m, err := manifest.New(manifest.WithRaw(b))
	must(t, err)
	must(t, r.rc.ManifestPut(context.Background(), rf, m))
	return digest.FromBytes(b)
}
