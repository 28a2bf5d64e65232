package images

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/internal/tartest"
)

// fuzzImage is a one-layer image whose pieces the archive fuzzer puts in members, so that
// mangled archives still get past the JSON to the blobs and layers.
type fuzzImage struct {
	bodies [][]byte // index, manifest, config, layer, docker manifest.json, layer.tar, junk
	hexes  []string // manifest, config and layer digests, for member names
}

func newFuzzImage() *fuzzImage {
	var tb bytes.Buffer
	tw := tar.NewWriter(&tb)
	_ = tw.WriteHeader(&tar.Header{Name: "hello", Typeflag: tar.TypeReg, Mode: 0o644, Size: 3, ModTime: time.Unix(1700000000, 0)})
	_, _ = tw.Write([]byte("hi\n"))
	_ = tw.Close()
	layerTar := tb.Bytes()
	var gb bytes.Buffer
	zw := gzip.NewWriter(&gb)
	_, _ = zw.Write(layerTar)
	_ = zw.Close()
	layer := gb.Bytes()
	config, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{digest.FromBytes(layerTar)}}})
	manifest, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(config), Size: int64(len(config))},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(layer), Size: int64(len(layer))}}})
	index, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{{
		MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(manifest), Size: int64(len(manifest)),
		Annotations: map[string]string{AnnotationImageName: "fuzz:1"}}}})
	docker, _ := json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{"fuzz:2"}, "Layers": []string{"layer.tar"}}})
	return &fuzzImage{
		bodies: [][]byte{index, manifest, config, layer, docker, layerTar, []byte("junk\n"), nil},
		hexes:  []string{digest.FromBytes(manifest).Encoded(), digest.FromBytes(config).Encoded(), digest.FromBytes(layer).Encoded()},
	}
}

// fuzzArchiveTypes are the member types the structured fuzzer picks from.
var fuzzArchiveTypes = []byte{tar.TypeReg, tar.TypeSymlink, tar.TypeLink, tar.TypeDir, tar.TypeReg, tar.TypeFifo, tar.TypeSymlink, tar.TypeChar}

// fuzzArchiveName builds a member name or link target from the names a load looks up, the
// dirs above them, and escapes aimed at the sentinel dir outside.
func (fi *fuzzImage) fuzzArchiveName(b []byte, outside string) string {
	return fuzzPath(b, outside, []string{"index.json", "manifest.json", "blobs", "sha256", fi.hexes[0], fi.hexes[1], fi.hexes[2],
		"..", ".", "a", "l", "", "../../../..", "config.json", "layer.tar", "oci-layout", "sentinel", "\n"})
}

// buildFuzzArchive turns the fuzzer's bytes into an archive: the first byte picks plain,
// gzip or zstd; then each member takes a type byte, a name length and name bytes, a link
// length and link bytes, and a body byte (one of fi's pieces). Headers tar.Writer refuses
// are skipped.
func (fi *fuzzImage) buildFuzzArchive(spec []byte, outside string) []byte {
	in := fuzzBytes(spec)
	compression := in.next() % 3
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for n := 0; len(in) > 0 && n < 32; n++ {
		typ := fuzzArchiveTypes[int(in.next())%len(fuzzArchiveTypes)]
		name := fi.fuzzArchiveName(in.take(int(in.next()%6)+1), outside)
		link := fi.fuzzArchiveName(in.take(int(in.next()%6)), outside)
		body := fi.bodies[int(in.next())%len(fi.bodies)]
		h := &tar.Header{Name: name, Typeflag: typ, Mode: 0o644, ModTime: time.Unix(1700000000, 0)}
		switch typ {
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = link
		case tar.TypeReg:
			h.Size = int64(len(body))
		}
		if tw.WriteHeader(h) != nil {
			continue
		}
		if typ == tar.TypeReg {
			_, _ = tw.Write(body)
		}
	}
	_ = tw.Close()
	switch compression {
	case 1:
		var gb bytes.Buffer
		zw := gzip.NewWriter(&gb)
		_, _ = zw.Write(buf.Bytes())
		_ = zw.Close()
		return gb.Bytes()
	case 2:
		zw, _ := zstd.NewWriter(nil)
		defer zw.Close()
		return zw.EncodeAll(buf.Bytes(), nil)
	}
	return buf.Bytes()
}

// fuzzMember is one member of a seed archive.
type fuzzMember struct {
	name, link string
	typ        byte
	body       []byte
}

func fuzzTar(ms ...fuzzMember) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, m := range ms {
		h := &tar.Header{Name: m.name, Linkname: m.link, Typeflag: m.typ, Mode: 0o644, ModTime: time.Unix(1700000000, 0)}
		if m.typ == tar.TypeReg {
			h.Size = int64(len(m.body))
		}
		if tw.WriteHeader(h) != nil {
			panic("seed header " + m.name)
		}
		_, _ = tw.Write(m.body)
	}
	_ = tw.Close()
	return buf.Bytes()
}

// pathsBelow lists the paths below dir (not their content: dir mtimes change as temp
// dirs come and go).
func pathsBelow(t *testing.T, dir string) map[string]bool {
	t.Helper()
	out := map[string]bool{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		out[p] = true
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

// FuzzExtractArchive feeds archives to extractArchive and then to Load, in a store on a
// small tmpfs with a sentinel dir beside it that the escaping names aim at. structured
// selects whether raw is the archive itself or the recipe buildFuzzArchive turns into one.
// It checks that nothing panics, errors are one line, nothing outside the temp dir is
// created or changed (the sentinel keeps its content, the store root gains no path from
// a failed extraction), the temp dir is gone after an error, every member open returns a
// regular file inside the temp dir, and a Load leaves nothing in ROOT/tmp but lock files.
// Runs as root (the tmpfs bounds what a bomb found by the fuzzer could write), else skips.
func FuzzExtractArchive(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("FuzzExtractArchive needs root (it mounts a tmpfs for the stores)")
	}
	base := f.TempDir()
	if err := unix.Mount("tmpfs", base, "tmpfs", 0, "size=256m,mode=0700"); err != nil {
		f.Skipf("mount a tmpfs: %v", err)
	}
	f.Cleanup(func() { _ = unix.Unmount(base, unix.MNT_DETACH) })
	// One work dir per process, remade for each input: the seeds name the sentinel dir by
	// its absolute path.
	work := filepath.Join(base, "w")
	outside := filepath.Join(work, "outside")
	fi := newFuzzImage()
	index, manifest, config, layer, docker, layerTar := fi.bodies[0], fi.bodies[1], fi.bodies[2], fi.bodies[3], fi.bodies[4], fi.bodies[5]
	blob := func(b []byte) fuzzMember {
		return fuzzMember{name: "blobs/sha256/" + digest.FromBytes(b).Encoded(), typ: tar.TypeReg, body: b}
	}
	idx := fuzzMember{name: "index.json", typ: tar.TypeReg, body: index}
	honest := []fuzzMember{{name: "oci-layout", typ: tar.TypeReg, body: []byte(`{"imageLayoutVersion":"1.0.0"}`)}, idx, blob(manifest), blob(config), blob(layer)}
	blobs := honest[2:]
	up := "../../../../outside"
	seeds := [][]fuzzMember{
		honest,
		{{name: "manifest.json", typ: tar.TypeReg, body: docker}, {name: "config.json", typ: tar.TypeReg, body: config}, {name: "layer.tar", typ: tar.TypeReg, body: layerTar}},
		append(honest, fuzzMember{name: up + "/pwned", typ: tar.TypeReg, body: []byte("x")}),
		append(honest, fuzzMember{name: outside + "/pwned", typ: tar.TypeReg, body: []byte("x")}),
		append(blobs, fuzzMember{name: "index.json", typ: tar.TypeSymlink, link: up + "/index.json"}),
		append(blobs, fuzzMember{name: "index.json", typ: tar.TypeSymlink, link: "/etc/passwd"}),
		append(blobs, fuzzMember{name: "index.json", typ: tar.TypeLink, link: outside + "/index.json"}),
		append(append([]fuzzMember{idx}, blobs[:2]...), fuzzMember{name: blob(layer).name, typ: tar.TypeSymlink, link: "../../" + up + "/layer"}),
		append([]fuzzMember{idx, {name: "blobs", typ: tar.TypeSymlink, link: outside}}, blobs...),
		{idx, {name: "blobs", typ: tar.TypeSymlink, link: up}},
		append(blobs, fuzzMember{name: "index.json", typ: tar.TypeSymlink, link: "a"}, fuzzMember{name: "a", typ: tar.TypeSymlink, link: "index.json"}),
		append(blobs, fuzzMember{name: "index.json", typ: tar.TypeLink, link: "a"}, fuzzMember{name: "a", typ: tar.TypeSymlink, link: "b"},
			fuzzMember{name: "b", typ: tar.TypeLink, link: "blobs/../index.json"}),
		append([]fuzzMember{{name: "blobs", typ: tar.TypeReg, body: []byte("x")}}, honest...),
		append(honest, fuzzMember{name: "blobs/sha256", typ: tar.TypeReg, body: []byte("x")}),
		append([]fuzzMember{{name: "index.json", typ: tar.TypeSymlink, link: up + "/index.json"}}, honest...),
		append(honest, fuzzMember{name: "index.json", typ: tar.TypeReg, body: []byte("{")}),
		append(blobs, fuzzMember{name: "index.json", typ: tar.TypeReg, body: manifest}),
		append(append([]fuzzMember{idx}, blobs[:2]...), fuzzMember{name: blob(layer).name, typ: tar.TypeReg, body: config}),
		{{name: "manifest.json", typ: tar.TypeReg, body: []byte(`[{"Config":"../../../../outside/config.json","Layers":["` + outside + `/layer.tar"]}]`)}},
		append(honest, fuzzMember{name: "a\nb", typ: tar.TypeReg}, fuzzMember{name: "a\nb/c", typ: tar.TypeReg}),
	}
	for _, s := range seeds {
		f.Add(fuzzTar(s...), false)
	}
	var gz bytes.Buffer
	zw := gzip.NewWriter(&gz)
	_, _ = zw.Write(fuzzTar(honest...))
	_ = zw.Close()
	f.Add(gz.Bytes(), false)
	f.Add(gz.Bytes()[:gz.Len()/2], false)
	f.Add(tartest.SparseBomb("index.json", 1<<40), false)
	f.Add([]byte("not an archive"), false)
	f.Add([]byte{}, false)
	for _, s := range [][]byte{
		{0, 0, 0, 0, 0}, // index.json, empty
		{1, 1, 0, 0, 0, 0, 1, 1, 0, 2, 3, 4, 0, 1}, // gzip: index.json; blobs/sha256/<manifest>
		{0, 1, 0, 0, 2, 12, 0, 0},                  // index.json -> ../../../../index.json
		{0, 1, 0, 2, 1, 250, 0},                    // blobs -> outside
		{0, 1, 0, 0, 1, 9, 0, 1, 0, 9, 1, 0, 0},    // index.json -> a, a -> index.json
		{2, 4, 0, 4, 1, 0, 0, 0, 0},                // zstd: docker manifest.json
	} {
		f.Add(s, true)
	}
	f.Fuzz(func(t *testing.T, raw []byte, structured bool) {
		if err := os.RemoveAll(work); err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(work)
		if err := os.MkdirAll(outside, 0o755); err != nil {
			t.Fatal(err)
		}
		for _, name := range []string{"index.json", "manifest.json", "config.json", "layer.tar", "pwned"} {
			if err := os.WriteFile(filepath.Join(outside, name), index, 0o644); err != nil {
				t.Fatal(err)
			}
		}
		stream := raw
		if structured {
			stream = fi.buildFuzzArchive(raw, outside)
		}
		s, err := New(filepath.Join(work, "root"))
		if err != nil {
			t.Fatal(err)
		}
		beforeOutside := treeState(t, outside)
		unchanged := func(when string, err error) {
			t.Helper()
			if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("%s: error is not one line: %q", when, err)
			}
			after := treeState(t, outside)
			if len(after) != len(beforeOutside) {
				t.Fatalf("%s: the sentinel dir changed (err %v):\nbefore %v\nafter  %v", when, err, beforeOutside, after)
			}
			for p, v := range beforeOutside {
				if after[p] != v && p != outside {
					t.Fatalf("%s: %s changed (err %v): %q -> %q", when, p, err, v, after[p])
				}
			}
			if ents, _ := os.ReadDir(work); len(ents) != 2 {
				t.Fatalf("%s: something was created beside the store (err %v): %v", when, err, ents)
			}
		}

		if err := os.MkdirAll(filepath.Join(s.tmpDir(), "unpack"), 0o700); err != nil {
			t.Fatal(err)
		}
		beforeRoot := pathsBelow(t, s.root)
		ad, err := s.extractArchive(bytes.NewReader(stream))
		unchanged("extract", err)
		if err != nil {
			if got := pathsBelow(t, s.root); len(got) != len(beforeRoot) {
				t.Fatalf("a failed extraction left paths in the store (err %v): %v", err, got)
			}
		} else {
			names := []string{"index.json", "manifest.json", "config.json", "layer.tar"}
			for _, h := range fi.hexes {
				names = append(names, "blobs/sha256/"+h)
			}
			for l := range ad.links {
				names = append(names, l)
			}
			for _, n := range names {
				f, err := ad.open(n)
				if err != nil {
					if strings.ContainsAny(err.Error(), "\n\r") {
						t.Fatalf("open %q: error is not one line: %q", n, err)
					}
					continue
				}
				p, lerr := os.Readlink(fmt.Sprintf("/proc/self/fd/%d", f.Fd()))
				st, serr := f.Stat()
				f.Close()
				if lerr != nil || serr != nil || !strings.HasPrefix(p, ad.dir+"/") || !st.Mode().IsRegular() {
					t.Fatalf("open %q gave %s (%v, %v), not a regular file in %s", n, p, lerr, serr, ad.dir)
				}
			}
			os.RemoveAll(ad.dir)
		}

		_, err = s.Load(context.Background(), bytes.NewReader(stream))
		t.Logf("load: %v", err)
		unchanged("load", err)
		err = filepath.WalkDir(s.tmpDir(), func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			rel, _ := filepath.Rel(s.tmpDir(), p)
			if d.IsDir() && (rel == "." || rel == "ingest" || rel == "unpack") || !d.IsDir() && strings.HasSuffix(rel, ".lock") {
				return nil
			}
			return fmt.Errorf("leftover in tmp: %q", rel)
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}
