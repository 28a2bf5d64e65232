package images_test

import (
	"archive/tar"
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"runtime"
	"testing"

	"github.com/opencontainers/go-digest"
	specs "github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

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
	s, fsDir := smallStore(t)
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

			loadRefusedForSpace(t, s, fsDir, archive)
			if names := layerNames(t, s); len(names) != 0 {
				t.Errorf("layer dirs left: %v", names)
			}
			assertNoTmpLeftovers(t, s)
		})
	}
	loadMini(t, s, "after layer bombs")
}
