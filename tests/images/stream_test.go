package images_test

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"errors"
	"net/http"
	"net/http/httputil"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cubo-dev/cubo/images"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
)

// A pull unpacks each new layer while it downloads it (images.Store.fetchUnpackLayer).
// These tests check that nothing of a layer becomes visible unless both its blob digest
// and its diff_id match, whichever way the stream fails.

// layerNames lists ROOT/layers except the shared empty layer.
func layerNames(t *testing.T, s *images.Store) []string {
	t.Helper()
	ents, err := os.ReadDir(filepath.Join(s.Root(), "layers"))
	must(t, err)
	var out []string
	for _, e := range ents {
		if e.Name() != "empty" {
			out = append(out, e.Name())
		}
	}
	return out
}

// storedLayer gzips a tar without compression, so two tars of one length give blobs of
// one length.
func storedLayer(t *testing.T, tarBytes []byte) testLayer {
	t.Helper()
	var buf bytes.Buffer
	zw, err := gzip.NewWriterLevel(&buf, gzip.NoCompression)
	must(t, err)
	_, err = zw.Write(tarBytes)
	must(t, err)
	must(t, zw.Close())
	return testLayer{blob: buf.Bytes(), mt: ocispec.MediaTypeImageLayerGzip, diffID: digest.FromBytes(tarBytes)}
}

// The registry serves, for a layer, another well-formed layer of the same size: it
// unpacks completely, and only the digest check at the end of the stream can refuse it.
// Neither the blob nor the layer may be kept, nor anything in tmp.
func TestPullStreamWrongBlobUnpacksButIsRefused(t *testing.T) {
	reg := startRegistry(t, modePlain)
	data := randomish(512 << 10)
	good := storedLayer(t, makeTar(t, []entry{{name: "data", typ: tar.TypeReg, body: string(data)}}))
	data[len(data)/2] ^= 0xff
	evil := storedLayer(t, makeTar(t, []entry{{name: "data", typ: tar.TypeReg, body: string(data)}}))
	if len(evil.blob) != len(good.blob) {
		t.Fatalf("the swapped blob has %d bytes, want %d", len(evil.blob), len(good.blob))
	}
	reg.push(t, "swapped:1", "amd64", good)
	gd := digest.FromBytes(good.blob)
	p := newProxy(t, reg)
	p.tamper = func(w http.ResponseWriter, r *http.Request, d digest.Digest, _ *httputil.ReverseProxy) bool {
		if d != gd {
			return false
		}
		w.Header().Set("Content-Length", strconv.Itoa(len(evil.blob)))
		w.WriteHeader(http.StatusOK)
		w.Write(evil.blob)
		return true
	}
	s := newStore(t)
	_, err := s.Pull(context.Background(), p.addr+"/swapped:1")
	// The blob digest is what refuses it (regclient's reader checks it at the end of
	// the body); the diff_id, also wrong, is checked only after it.
	if !errdefs.IsDataLoss(err) || !strings.Contains(err.Error(), "digest mismatch") {
		t.Fatalf("swapped blob: got %v, want a DataLoss error for the blob digest", err)
	}
	t.Logf("refused: %v", err)
	if blobFiles(t, s)[gd.Encoded()] || blobFiles(t, s)[digest.FromBytes(evil.blob).Encoded()] {
		t.Fatal("a blob was kept")
	}
	if names := layerNames(t, s); len(names) != 0 {
		t.Fatalf("layer dirs after a refused blob: %v", names)
	}
	assertNoTmpLeftovers(t, s)

	// The registry mends its ways: the same store pulls the real layer.
	p.tamper = nil
	img, err := s.Pull(context.Background(), p.addr+"/swapped:1")
	must(t, err)
	dirs, err := s.LayerDirs(context.Background(), img)
	must(t, err)
	b, err := os.ReadFile(filepath.Join(dirs[0], "data"))
	must(t, err)
	data[len(data)/2] ^= 0xff
	if !bytes.Equal(b, data) {
		t.Fatal("the unpacked file differs from the layer's")
	}
}

// A layer whose diff_id lies is refused at the end of the stream: no blob, no layer.
func TestPullStreamDiffIDMismatchLeavesNothing(t *testing.T) {
	reg := startRegistry(t, modePlain)
	base := gzLayer(t, makeTar(t, []entry{{name: "base", typ: tar.TypeReg, body: "base\n"}}))
	l := gzLayer(t, makeTar(t, []entry{{name: "f", typ: tar.TypeReg, body: string(randomish(300 << 10))}}))
	realDiffID := l.diffID
	l.diffID = digest.FromString("not this layer")
	reg.push(t, "liar:2", "amd64", base, l)
	s := newStore(t, images.WithConcurrency(1))
	_, err := s.Pull(context.Background(), reg.addr+"/liar:2")
	if !errdefs.IsDataLoss(err) {
		t.Fatalf("got %v, want DataLoss", err)
	}
	if blobFiles(t, s)[digest.FromBytes(l.blob).Encoded()] {
		t.Fatal("blob kept")
	}
	// The honest base layer, pulled first, stays; the liar leaves no dir under either name.
	names := layerNames(t, s)
	if len(names) != 1 || names[0] != base.diffID.Encoded() {
		t.Fatalf("layer dirs %v, want only the base layer %s (not %s nor %s)", names, base.diffID.Encoded(), l.diffID.Encoded(), realDiffID.Encoded())
	}
	assertNoTmpLeftovers(t, s)
}

// Cancelling a pull in the middle of a layer's stream leaves no partial blob, no
// staging dir and no layer; the next pull fetches it whole.
func TestPullStreamCancelled(t *testing.T) {
	reg := startRegistry(t, modePlain)
	data := randomish(4 << 20)
	l := gzLayer(t, makeTar(t, []entry{{name: "big", typ: tar.TypeReg, body: string(data)}}))
	reg.push(t, "cancel:1", "amd64", l)
	ld := digest.FromBytes(l.blob)
	p := newProxy(t, reg)
	release := make(chan struct{})
	t.Cleanup(func() {
		select {
		case <-release:
		default:
			close(release)
		}
	})
	p.tamper = func(w http.ResponseWriter, r *http.Request, d digest.Digest, _ *httputil.ReverseProxy) bool {
		if d != ld {
			return false
		}
		// Half the blob, then hold the connection open until the client goes away.
		w.Header().Set("Content-Length", strconv.Itoa(len(l.blob)))
		w.WriteHeader(http.StatusOK)
		w.Write(l.blob[:len(l.blob)/2])
		w.(http.Flusher).Flush()
		select {
		case <-r.Context().Done():
		case <-release:
		}
		return true
	}
	s := newStore(t)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		_, err := s.Pull(ctx, p.addr+"/cancel:1")
		done <- err
	}()
	// Cancel once the stream is under way: the ingest file has data and the layer's
	// staging dir has the file being written.
	ingest := filepath.Join(s.Root(), "tmp", "ingest", ld.Encoded()+".partial-*")
	staged := filepath.Join(s.Root(), "tmp", "unpack", l.diffID.Encoded()+".staging-*", "diff", "big")
	for deadline := time.Now().Add(30 * time.Second); ; {
		parts, _ := filepath.Glob(ingest)
		files, _ := filepath.Glob(staged)
		if len(parts) == 1 && len(files) == 1 {
			if fi, err := os.Stat(parts[0]); err == nil && fi.Size() > 0 {
				break
			}
		}
		select {
		case err := <-done:
			t.Fatalf("the pull ended before it was cancelled: %v", err)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatal("the layer stream did not start")
		}
		time.Sleep(5 * time.Millisecond)
	}
	cancel()
	err := <-done
	if !errors.Is(err, context.Canceled) {
		t.Fatalf("cancelled pull: got %v, want context.Canceled", err)
	}
	if blobFiles(t, s)[ld.Encoded()] {
		t.Fatal("a partial blob is visible")
	}
	if names := layerNames(t, s); len(names) != 0 {
		t.Fatalf("layer dirs after cancellation: %v", names)
	}
	assertNoTmpLeftovers(t, s)

	p.tamper = nil
	close(release)
	if _, err := s.Pull(context.Background(), p.addr+"/cancel:1"); err != nil {
		t.Fatal(err)
	}
	if names := layerNames(t, s); len(names) != 1 {
		t.Fatalf("layer dirs after the second pull: %v", names)
	}
}

// A stored blob whose layer dir is gone (removed, or never unpacked after a load) is
// unpacked from the store, not downloaded again.
func TestPullUnpacksStoredBlob(t *testing.T) {
	reg := startRegistry(t, modePlain)
	l := gzLayer(t, makeTar(t, []entry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/motd", typ: tar.TypeReg, body: "hello\n"}}))
	reg.push(t, "relayer:1", "amd64", l)
	ld := digest.FromBytes(l.blob)
	p := newProxy(t, reg)
	s := newStore(t)
	_, err := s.Pull(context.Background(), p.addr+"/relayer:1")
	must(t, err)
	if p.count(ld) != 1 {
		t.Fatalf("layer blob fetched %d times", p.count(ld))
	}
	dir, err := s.LayerDir(l.diffID)
	must(t, err)
	must(t, os.RemoveAll(filepath.Dir(dir)))
	_, err = s.Pull(context.Background(), p.addr+"/relayer:1")
	must(t, err)
	if p.count(ld) != 1 {
		t.Fatalf("the stored blob was downloaded again (%d fetches)", p.count(ld))
	}
	dir, err = s.LayerDir(l.diffID)
	must(t, err)
	if b, err := os.ReadFile(filepath.Join(dir, "etc", "motd")); err != nil || string(b) != "hello\n" {
		t.Fatalf("etc/motd: %q, %v", b, err)
	}
	assertNoTmpLeftovers(t, s)
}
