package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/images"
)

// filled yields one byte value for ever: data that compresses to almost nothing and,
// unlike zeros, is written out (the unpacker seeks over zero blocks).
type filled byte

func (f filled) Read(p []byte) (int, error) {
	for i := range p {
		p[i] = byte(f)
	}
	return len(p), nil
}

// bombLayer is a tar of one file of n bytes of 'a', or of n empty files.
func bombLayer(t *testing.T, n int64, files bool) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	if files {
		for i := range n {
			must(t, tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("f%d", i), Typeflag: tar.TypeReg, Mode: 0o644}))
		}
	} else {
		must(t, tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: n}))
		_, err := io.CopyN(tw, filled('a'), n)
		must(t, err)
	}
	must(t, tw.Close())
	return buf.Bytes()
}

// TestLayerBombs loads small images whose one gzip layer expands to 128 MiB of data, or to
// 5000 empty files, into a store on a 64 MiB tmpfs with 4096 inodes. Loading the blobs
// fits; unpacking the layer must stop with ResourceExhausted before the filesystem is
// full, with no layer and nothing in tmp left, and the store must then load an honest
// image. Pulled layers go through the same unpacker.
func TestLayerBombs(t *testing.T) {
	requireRoot(t)
	fsDir := t.TempDir()
	if err := unix.Mount("tmpfs", fsDir, "tmpfs", 0, "size=64m,nr_inodes=4096,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs for the store: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(fsDir, unix.MNT_DETACH) })
	s, err := images.New(filepath.Join(fsDir, "root"), images.WithRetries(0))
	must(t, err)
	ctx := context.Background()
	for _, c := range []struct {
		name  string
		layer []byte
	}{
		{"data", bombLayer(t, 128<<20, false)},
		{"inodes", bombLayer(t, 5000, true)},
	} {
		t.Run(c.name, func(t *testing.T) {
			blob := gz(t, c.layer)
			t.Logf("layer blob of %d bytes, %d bytes unpacked", len(blob), len(c.layer))
			cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
				RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(c.layer)}}})
			man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
				Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
				Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(blob), Size: int64(len(blob))}}})
			idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{
				{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(man), Size: int64(len(man)),
					Annotations: map[string]string{images.AnnotationImageName: "bomb:" + c.name}}}})
			archive := makeTar(t, []entry{{name: "index.json", typ: tar.TypeReg, body: string(idx)},
				blobMember(man), blobMember(cfg), blobMember(blob)})

			var st unix.Statfs_t
			must(t, unix.Statfs(fsDir, &st))
			minBytes, minFiles := st.Bavail, st.Ffree
			stop, done := make(chan struct{}), make(chan struct{})
			go func() {
				defer close(done)
				for {
					select {
					case <-stop:
						return
					default:
					}
					var st unix.Statfs_t
					if unix.Statfs(fsDir, &st) == nil {
						minBytes, minFiles = min(minBytes, st.Bavail), min(minFiles, st.Ffree)
					}
				}
			}()
			_, err := s.Load(ctx, bytes.NewReader(archive))
			close(stop)
			<-done
			t.Logf("refused: %v; lowest free: %d KiB, %d inodes", err, minBytes*uint64(st.Bsize)>>10, minFiles)
			if !errdefs.IsResourceExhausted(err) {
				t.Fatalf("want ResourceExhausted, got %v", err)
			}
			if strings.ContainsAny(err.Error(), "\r\n") {
				t.Errorf("error is not one line: %q", err)
			}
			// The reserve is 5% of the 64 MiB and of the 4096 inodes; one write may pass it.
			if minBytes*uint64(st.Bsize) < 2<<20 || minFiles < 150 {
				t.Fatalf("the filesystem came down to %d bytes, %d inodes free", minBytes*uint64(st.Bsize), minFiles)
			}
			if names := layerNames(t, s); len(names) != 0 {
				t.Errorf("layer dirs left: %v", names)
			}
			assertNoTmpLeftovers(t, s)
		})
	}
	m := newMiniImage(t, "mini:1", "after layer bombs")
	imgs, err := s.Load(ctx, bytes.NewReader(gz(t, makeTar(t, m.oci()))))
	must(t, err)
	if len(imgs) != 1 || imgs[0].Name != m.name {
		t.Fatalf("loaded %+v", imgs)
	}
}
