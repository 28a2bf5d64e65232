package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/cubo-dev/cubo/images"
	"github.com/cubo-dev/cubo/internal/tartest"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// miniImage is a one-layer image laid out as archive members, to be mangled.
type miniImage struct {
	name, hello              string
	index, dockerManifest    []byte
	layer, config, manifest  []byte
	layerD, configD, manifD  digest.Digest
	layerTar                 []byte // the uncompressed layer, for docker archives
	layerTarD                digest.Digest
	manifestDesc, configDesc ocispec.Descriptor
}

// newMiniImage makes an image whose blobs differ for each salt: a blob already in the
// store is never read from an archive, so each case needs blobs of its own.
func newMiniImage(t *testing.T, name, salt string) *miniImage {
	t.Helper()
	m := &miniImage{name: name, hello: "hello from " + salt + "\n"}
	m.layerTar = makeTar(t, []entry{{name: "hello", typ: tar.TypeReg, body: m.hello}})
	l := gzLayer(t, m.layerTar)
	m.layer, m.layerTarD = l.blob, l.diffID
	m.layerD = digest.FromBytes(m.layer)
	cfg := ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{l.diffID}}}
	m.config, _ = json.Marshal(cfg)
	m.configD = digest.FromBytes(m.config)
	m.configDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: m.configD, Size: int64(len(m.config))}
	man := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: m.configDesc,
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: m.layerD, Size: int64(len(m.layer))}}}
	m.manifest, _ = json.Marshal(man)
	m.manifD = digest.FromBytes(m.manifest)
	m.manifestDesc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: m.manifD, Size: int64(len(m.manifest)),
		Annotations: map[string]string{images.AnnotationImageName: name}}
	m.index = m.indexOf(m.manifestDesc)
	m.dockerManifest, _ = json.Marshal([]map[string]any{{"Config": "config.json", "RepoTags": []string{name}, "Layers": []string{"layer.tar"}}})
	return m
}

func (m *miniImage) indexOf(ds ...ocispec.Descriptor) []byte {
	b, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: ds})
	return b
}

func blobMember(b []byte) entry {
	return entry{name: "blobs/sha256/" + digest.FromBytes(b).Encoded(), typ: tar.TypeReg, body: string(b)}
}

// blobs are the members of the image's three blobs.
func (m *miniImage) blobs() []entry {
	return []entry{blobMember(m.manifest), blobMember(m.config), blobMember(m.layer)}
}

// oci is the honest OCI archive's members: layout, index and blobs.
func (m *miniImage) oci() []entry {
	return append([]entry{{name: "oci-layout", typ: tar.TypeReg, body: `{"imageLayoutVersion":"1.0.0"}`},
		{name: "index.json", typ: tar.TypeReg, body: string(m.index)}}, m.blobs()...)
}

// docker is the honest docker-archive's members.
func (m *miniImage) docker() []entry {
	return []entry{{name: "manifest.json", typ: tar.TypeReg, body: string(m.dockerManifest)},
		{name: "config.json", typ: tar.TypeReg, body: string(m.config)},
		{name: "layer.tar", typ: tar.TypeReg, body: string(m.layerTar)}}
}

func without(es []entry, name string) []entry {
	var out []entry
	for _, e := range es {
		if e.name != name {
			out = append(out, e)
		}
	}
	return out
}

func gz(t *testing.T, b []byte) []byte {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(b)
	must(t, err)
	must(t, zw.Close())
	return buf.Bytes()
}

// tarDir archives a directory (the shared busybox OCI layout) as `tar -C dir .` would.
func tarDir(t *testing.T, dir string) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || p == dir {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		h, err := tar.FileInfoHeader(fi, "")
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(dir, p)
		h.Name = "./" + filepath.ToSlash(rel)
		if d.IsDir() {
			h.Name += "/"
		}
		if err := tw.WriteHeader(h); err != nil {
			return err
		}
		if d.Type().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			_, err = tw.Write(b)
			return err
		}
		return nil
	})
	must(t, err)
	must(t, tw.Close())
	return buf.Bytes()
}

// loadWorld is one store used by every hostile load, with a sentinel dir beside the
// store root that the members' escapes aim at.
type loadWorld struct {
	s        *images.Store
	work     string
	sentinel string
	before   map[string]string
}

func newLoadWorld(t *testing.T) *loadWorld {
	t.Helper()
	w := &loadWorld{work: t.TempDir()}
	w.sentinel = filepath.Join(w.work, "sentinel")
	must(t, os.MkdirAll(filepath.Join(w.sentinel, "sha256"), 0o755))
	s, err := images.New(filepath.Join(w.work, "root"), images.WithRetries(0))
	must(t, err)
	w.s = s
	w.before = treeDigest(t, w.sentinel)
	return w
}

// plant puts in the sentinel what a hostile archive would want read in place of its own
// members, m's index and blobs under their names: an escape that is followed makes the
// load succeed instead of failing.
func (w *loadWorld) plant(t *testing.T, m *miniImage) {
	t.Helper()
	for name, b := range map[string][]byte{
		"index.json": m.index, "manifest.json": m.dockerManifest, "config.json": m.config, "layer.tar": m.layerTar,
		"passwd": []byte("root:x:0:0::/root:/bin/sh\n"),
	} {
		must(t, os.WriteFile(filepath.Join(w.sentinel, name), b, 0o644))
	}
	for _, b := range [][]byte{m.manifest, m.config, m.layer} {
		must(t, os.WriteFile(filepath.Join(w.sentinel, "sha256", digest.FromBytes(b).Encoded()), b, 0o644))
	}
	w.before = treeDigest(t, w.sentinel)
}

// treeDigest maps every path below dir to its type, size, mode and content.
func treeDigest(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	must(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		v := fmt.Sprintf("%v %d %v", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, _ := os.ReadFile(p)
			v += " " + digest.FromBytes(b).String()
		}
		out[p] = v
		return nil
	}))
	return out
}

// check asserts what must hold after every load, failed or not: the sentinel and the
// work dir around the store are untouched, ROOT/tmp holds nothing but lock files and
// its two subdirs, every stored blob is what its name says.
func (w *loadWorld) check(t *testing.T) {
	t.Helper()
	after := treeDigest(t, w.sentinel)
	if len(after) != len(w.before) {
		t.Fatalf("the sentinel dir changed:\nbefore %v\nafter  %v", w.before, after)
	}
	for p, v := range w.before {
		if after[p] != v {
			t.Fatalf("%s changed: %s -> %s", p, v, after[p])
		}
	}
	ents, err := os.ReadDir(w.work)
	must(t, err)
	if len(ents) != 2 {
		t.Fatalf("something was created beside the store: %v", ents)
	}
	tmp := filepath.Join(w.s.Root(), "tmp")
	must(t, filepath.WalkDir(tmp, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(tmp, p)
		if d.IsDir() && (rel == "." || rel == "ingest" || rel == "unpack") || !d.IsDir() && strings.HasSuffix(p, ".lock") {
			return nil
		}
		t.Errorf("leftover in tmp: %s", rel)
		if d.IsDir() {
			return filepath.SkipDir
		}
		return nil
	}))
	findings, err := w.s.Check(context.Background(), false)
	must(t, err)
	for _, f := range findings {
		if !f.Garbage {
			t.Errorf("store check: %v", f)
		}
	}
}

// load runs a Load of the archive, checks the world around it, and returns the error.
func (w *loadWorld) load(t *testing.T, archive []byte) ([]*images.Image, error) {
	t.Helper()
	imgs, err := w.s.Load(context.Background(), bytes.NewReader(archive))
	if err != nil && strings.ContainsAny(err.Error(), "\r\n") {
		t.Errorf("error is not one line: %q", err)
	}
	w.check(t)
	return imgs, err
}

func (w *loadWorld) imageCount(t *testing.T) int {
	t.Helper()
	imgs, err := w.s.List(context.Background())
	must(t, err)
	return len(imgs)
}

// TestLoadHostileArchives feeds Load archives whose members escape with .. or absolute
// names, whose links point out of the archive (as index.json, as a blob, as a parent
// directory of later members), loop or chain too far, collide as file and directory,
// repeat, lie about their digest, or hold huge or broken JSON. Each load must fail with
// a one-line error (or, where noted, load the archive's own content), write nothing out
// of its temp dir, leave ROOT/tmp empty and the store consistent; one store takes every
// case and then still loads honest archives.
func TestLoadHostileArchives(t *testing.T) {
	w := newLoadWorld(t)
	sentinel := w.sentinel
	// From ROOT/tmp/unpack/load-X (or ROOT/tmp/load-X) up to the work dir, and to /.
	up4 := "../../../../sentinel"
	upAll := strings.Repeat("../", 40) + strings.TrimPrefix(sentinel, "/")
	hugeJSON := `{"schemaVersion":2,"manifests":[],"x":"` + strings.Repeat(" ", 9<<20) + `"}`
	hugeList := "[" + strings.Repeat(" ", 9<<20) + "]"
	sparse := tartest.SparseBomb("index.json", 1<<40)
	gzSparse := gz(t, sparse)
	chain := func(n int, last string) []entry {
		var es []entry
		for i := range n {
			es = append(es, entry{name: fmt.Sprintf("l%d", i), typ: tar.TypeSymlink, link: fmt.Sprintf("l%d", i+1)})
		}
		return append(es, entry{name: fmt.Sprintf("l%d", n), typ: tar.TypeSymlink, link: last})
	}

	type tc struct {
		name    string
		entries []entry
		raw     []byte // the archive itself, when entries cannot express it
		want    func(error) bool
		loads   bool // the archive's own content loads: the hostile part is not followed
	}
	cases := func(m *miniImage) []tc {
		oci := m.oci()
		noIndex := without(oci, "index.json")
		blobsOnly := m.blobs()
		layerName := blobMember(m.layer).name
		configName := blobMember(m.config).name
		return []tc{
			{name: "member-dotdot", entries: append(oci, entry{name: up4 + "/pwned", typ: tar.TypeReg, body: "x"})},
			{name: "member-dotdot-to-root", entries: append(oci, entry{name: upAll + "/pwned", typ: tar.TypeReg, body: "x"})},
			{name: "member-dotdot-inner", entries: append(oci, entry{name: "blobs/../../../../../sentinel/pwned", typ: tar.TypeReg, body: "x"})},
			{name: "member-absolute", entries: append(oci, entry{name: sentinel + "/pwned", typ: tar.TypeReg, body: "x"})},
			{name: "member-absolute-overwrite", entries: append(oci, entry{name: sentinel + "/index.json", typ: tar.TypeReg, body: "{}"})},

			{name: "index-symlink-dotdot", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeSymlink, link: up4 + "/index.json"})},
			{name: "index-symlink-etc-passwd-dotdot", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeSymlink, link: "../../etc/passwd"})},
			// An absolute target is resolved from the archive's root, as docker load does.
			{name: "index-symlink-etc-passwd", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeSymlink, link: "/etc/passwd"})},
			{name: "index-symlink-absolute-inside", loads: true, entries: append(noIndex,
				entry{name: "index.json", typ: tar.TypeSymlink, link: "/../real-index.json"},
				entry{name: "real-index.json", typ: tar.TypeReg, body: string(m.index)})},
			{name: "index-symlink-absolute-sentinel", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeSymlink, link: sentinel + "/index.json"})},
			{name: "index-hardlink-absolute", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeLink, link: sentinel + "/index.json"})},
			{name: "index-hardlink-dotdot", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeLink, link: up4 + "/index.json"})},
			{name: "docker-manifest-symlink-out", entries: []entry{{name: "manifest.json", typ: tar.TypeSymlink, link: up4 + "/manifest.json"}}},

			{name: "blob-symlink-dotdot", entries: append(without(oci, configName), entry{name: configName, typ: tar.TypeSymlink, link: "../../" + up4 + "/sha256/" + m.configD.Encoded()})},
			{name: "blob-symlink-absolute", entries: append(without(oci, layerName), entry{name: layerName, typ: tar.TypeSymlink, link: sentinel + "/sha256/" + m.layerD.Encoded()})},
			{name: "blob-hardlink-absolute", entries: append(without(oci, layerName), entry{name: layerName, typ: tar.TypeLink, link: sentinel + "/sha256/" + m.layerD.Encoded()})},
			{name: "blob-hardlink-dotdot", entries: append(without(oci, configName), entry{name: configName, typ: tar.TypeLink, link: up4 + "/sha256/" + m.configD.Encoded()})},
			{name: "docker-config-symlink-out", entries: append(without(m.docker(), "config.json"), entry{name: "config.json", typ: tar.TypeSymlink, link: up4 + "/config.json"})},
			{name: "docker-layer-hardlink-out", entries: append(without(m.docker(), "layer.tar"), entry{name: "layer.tar", typ: tar.TypeLink, link: sentinel + "/layer.tar"})},

			// A link is followed only when a member is looked up by the link's own name, never
			// as a parent directory, so the blobs are not looked for in the sentinel...
			{name: "dir-symlink-absolute-no-blobs", entries: []entry{
				{name: "index.json", typ: tar.TypeReg, body: string(m.index)},
				{name: "blobs", typ: tar.TypeSymlink, link: sentinel}}},
			{name: "dir-symlink-dotdot-no-blobs", entries: []entry{
				{name: "index.json", typ: tar.TypeReg, body: string(m.index)},
				{name: "blobs", typ: tar.TypeSymlink, link: up4}}},
			// ...and later members under the link's name are written in the archive's own dir,
			// from where they load.
			{name: "dir-symlink-then-members", loads: true, entries: append([]entry{
				{name: "blobs", typ: tar.TypeSymlink, link: "/tmp/x"},
				{name: "index.json", typ: tar.TypeReg, body: string(m.index)}}, blobsOnly...)},
			{name: "dir-symlink-dotdot-then-members", loads: true, entries: append([]entry{
				{name: "blobs", typ: tar.TypeSymlink, link: up4},
				{name: "blobs/sha256", typ: tar.TypeSymlink, link: upAll},
				{name: "index.json", typ: tar.TypeReg, body: string(m.index)}}, blobsOnly...)},

			{name: "link-loop", entries: append(noIndex,
				entry{name: "index.json", typ: tar.TypeSymlink, link: "a"},
				entry{name: "a", typ: tar.TypeSymlink, link: "b"},
				entry{name: "b", typ: tar.TypeSymlink, link: "a"})},
			{name: "link-self", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeSymlink, link: "index.json"})},
			{name: "hardlink-loop", entries: append(noIndex,
				entry{name: "index.json", typ: tar.TypeLink, link: "a"},
				entry{name: "a", typ: tar.TypeLink, link: "index.json"})},
			{name: "link-chain-17", entries: append(append(noIndex, entry{name: "index.json", typ: tar.TypeSymlink, link: "l0"},
				entry{name: "real-index.json", typ: tar.TypeReg, body: string(m.index)}), chain(16, "real-index.json")...)},
			{name: "link-chain-short", loads: true, entries: append(append(noIndex, entry{name: "index.json", typ: tar.TypeSymlink, link: "l0"},
				entry{name: "real-index.json", typ: tar.TypeReg, body: string(m.index)}), chain(3, "real-index.json")...)},

			{name: "file-then-dir", entries: append([]entry{{name: "blobs", typ: tar.TypeReg, body: "x"}}, oci...)},
			{name: "file-then-dir-deep", entries: append([]entry{{name: "blobs/sha256", typ: tar.TypeReg, body: "x"}}, oci...)},
			{name: "dir-then-file", entries: append(oci, entry{name: "blobs/sha256", typ: tar.TypeReg, body: "x"})},
			{name: "index-is-a-dir", entries: append(noIndex, entry{name: "index.json/x", typ: tar.TypeReg, body: "x"})},
			{name: "index-is-a-fifo", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeFifo})},

			{name: "duplicate-last-wins", loads: true, entries: append([]entry{{name: "index.json", typ: tar.TypeReg, body: "garbage"}}, oci...)},
			{name: "duplicate-last-is-garbage", entries: append(oci, entry{name: "index.json", typ: tar.TypeReg, body: "garbage"})},
			{name: "duplicate-file-after-symlink", loads: true, entries: append([]entry{{name: "index.json", typ: tar.TypeSymlink, link: up4 + "/index.json"}}, oci...)},
			{name: "duplicate-symlink-after-file", entries: append(oci, entry{name: "index.json", typ: tar.TypeSymlink, link: up4 + "/index.json"})},
			{name: "duplicate-blob-second-corrupt", entries: append(oci, entry{name: layerName, typ: tar.TypeReg, body: "corrupt"}),
				want: errdefs.IsDataLoss},

			{name: "blob-digest-mismatch", entries: append(without(oci, configName), entry{name: configName, typ: tar.TypeReg, body: strings.Replace(string(m.config), "layers", "LAYERS", 1)}),
				want: errdefs.IsDataLoss},
			{name: "blob-size-mismatch", entries: append(without(oci, layerName), entry{name: layerName, typ: tar.TypeReg, body: string(m.layer) + "x"}),
				want: errdefs.IsDataLoss},
			{name: "blob-missing", entries: without(oci, layerName), want: errdefs.IsNotFound},
			{name: "index-huge", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeReg, body: hugeJSON}),
				want: errdefs.IsResourceExhausted},
			{name: "index-not-json", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeReg, body: "\x00\x01 not json\n{"}),
				want: errdefs.IsInvalidArgument},
			{name: "index-wrong-json", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeReg, body: `{"manifests":{"a":1}}`}),
				want: errdefs.IsInvalidArgument},
			{name: "index-huge-manifest-size", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeReg,
				body: string(m.indexOf(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: m.manifD, Size: 1 << 40}))}),
				want: errdefs.IsInvalidArgument},
			{name: "index-negative-manifest-size", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeReg,
				body: string(m.indexOf(ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: m.manifD, Size: -1}))}),
				want: errdefs.IsInvalidArgument},
			{name: "index-bad-digest", entries: append(noIndex, entry{name: "index.json", typ: tar.TypeReg,
				body: `{"manifests":[{"mediaType":"application/vnd.oci.image.manifest.v1+json","digest":"sha256:../../../../sentinel/index.json","size":10}]}`}),
				want: errdefs.IsInvalidArgument},
			{name: "docker-manifest-huge", entries: append(without(m.docker(), "manifest.json"), entry{name: "manifest.json", typ: tar.TypeReg, body: hugeList}),
				want: errdefs.IsResourceExhausted},
			{name: "docker-manifest-not-json", entries: append(without(m.docker(), "manifest.json"), entry{name: "manifest.json", typ: tar.TypeReg, body: "nope"}),
				want: errdefs.IsInvalidArgument},
			{name: "docker-config-huge", entries: append(without(m.docker(), "config.json"), entry{name: "config.json", typ: tar.TypeReg, body: hugeJSON}),
				want: errdefs.IsResourceExhausted},
			{name: "docker-paths-escape", entries: []entry{{name: "manifest.json", typ: tar.TypeReg,
				body: `[{"Config":"` + up4 + `/config.json","Layers":["` + sentinel + `/layer.tar"]}]`}}},
			{name: "docker-paths-newline", entries: []entry{{name: "manifest.json", typ: tar.TypeReg,
				body: `[{"Config":"con\nfig.json","Layers":["layer.tar"]}]`}}},

			{name: "member-name-newline", entries: append(oci,
				entry{name: "a\nb", typ: tar.TypeReg, body: "x"}, entry{name: "a\nb/c", typ: tar.TypeReg, body: "x"})},
			{name: "sparse-bomb", raw: sparse},
			{name: "sparse-bomb-gzip", raw: gzSparse},
			{name: "link-names-huge", entries: func() []entry {
				var es []entry
				for i := range 8 {
					es = append(es, entry{name: fmt.Sprintf("%d%s", i, strings.Repeat("n", 500<<10)), typ: tar.TypeSymlink, link: strings.Repeat("t", 500<<10)})
				}
				return es
			}(), want: errdefs.IsResourceExhausted},
			{name: "empty", raw: []byte{}},
			{name: "not-an-archive", raw: []byte("this is not a tar stream, not even close, but long enough to be read as a header block...")},
			{name: "truncated", raw: makeTar(t, oci)[:1500], want: errdefs.IsInvalidArgument},
			{name: "truncated-in-member", raw: makeTar(t, []entry{{name: "index.json", typ: tar.TypeReg, body: strings.Repeat("x", 2000)}})[:1024],
				want: errdefs.IsInvalidArgument},
			{name: "truncated-gzip", raw: gz(t, makeTar(t, oci))[:300], want: errdefs.IsInvalidArgument},
			{name: "gzip-garbage", raw: append([]byte{0x1f, 0x8b, 8, 0}, bytes.Repeat([]byte{0xff}, 100)...)},
			{name: "zstd-garbage", raw: append([]byte{0x28, 0xb5, 0x2f, 0xfd}, bytes.Repeat([]byte{0xff}, 100)...)},
		}
	}
	for i, c := range cases(newMiniImage(t, "mini:1", "")) {
		t.Run(c.name, func(t *testing.T) {
			m := newMiniImage(t, "mini:1", c.name)
			c := cases(m)[i]
			w.plant(t, m)
			archive := c.raw
			if archive == nil {
				archive = makeTar(t, c.entries)
			}
			n := w.imageCount(t)
			imgs, err := w.load(t, archive)
			if c.loads {
				if err != nil {
					t.Fatalf("the archive's own content did not load: %v", err)
				}
				if len(imgs) != 1 || imgs[0].Name != m.name {
					t.Fatalf("loaded %+v", imgs)
				}
				dirs, err := w.s.LayerDirs(context.Background(), imgs[0])
				must(t, err)
				if b, _ := os.ReadFile(filepath.Join(dirs[0], "hello")); string(b) != m.hello {
					t.Fatalf("hello is %q", b)
				}
				_, err = w.s.Remove(context.Background(), []string{m.name}, false)
				must(t, err)
				w.check(t)
				return
			}
			if err == nil {
				t.Fatalf("hostile archive loaded: %+v", imgs)
			}
			t.Logf("refused: %v", err)
			if c.want != nil && !c.want(err) {
				t.Errorf("wrong error class: %v", err)
			}
			if got := w.imageCount(t); got != n {
				t.Fatalf("%d images after a failed load, %d before", got, n)
			}
		})
	}

	t.Run("honest-after", func(t *testing.T) {
		ctx := context.Background()
		m := newMiniImage(t, "mini:1", "honest")
		oci := m.oci()
		for _, a := range [][]byte{makeTar(t, oci), gz(t, makeTar(t, m.docker()))} {
			imgs, err := w.load(t, a)
			must(t, err)
			if len(imgs) != 1 || imgs[0].Name != m.name {
				t.Fatalf("loaded %+v", imgs)
			}
		}
		img := loadBusybox(t, func(a []byte) ([]*images.Image, error) { return w.load(t, gz(t, a)) })
		dirs, err := w.s.LayerDirs(ctx, img)
		must(t, err)
		if _, err := os.Stat(filepath.Join(dirs[0], "bin", "busybox")); err != nil {
			t.Fatalf("busybox layer: %v", err)
		}
		w.check(t)
	})
}

// TestLoadHostileCLI checks what a user sees: `cubo load` of a hostile archive exits
// non-zero with one line on stderr.
func TestLoadHostileCLI(t *testing.T) {
	m := newMiniImage(t, "mini:1", "cli")
	w := newLoadWorld(t)
	w.plant(t, m)
	bin := buildCubo(t)
	for name, es := range map[string][]entry{
		"dotdot":       append(m.oci(), entry{name: "../../../../sentinel/pwned", typ: tar.TypeReg, body: "x"}),
		"index-escape": append(without(m.oci(), "index.json"), entry{name: "index.json", typ: tar.TypeSymlink, link: "../../../../sentinel/index.json"}),
		"newline":      append(m.oci(), entry{name: "a\nb", typ: tar.TypeReg, body: "x"}, entry{name: "a\nb/c", typ: tar.TypeReg, body: "x"}),
	} {
		t.Run(name, func(t *testing.T) {
			a := filepath.Join(t.TempDir(), "a.tar")
			must(t, os.WriteFile(a, makeTar(t, es), 0o644))
			cmd := exec.Command(bin, "--root-dir", w.s.Root(), "load", "-i", a)
			var stdout, stderr bytes.Buffer
			cmd.Stdout, cmd.Stderr = &stdout, &stderr
			err := cmd.Run()
			if err == nil {
				t.Fatalf("cubo load succeeded:\n%s", stdout.String())
			}
			out := stderr.String()
			if !strings.HasPrefix(out, "cubo: load: ") || strings.Count(out, "\n") != 1 || stdout.Len() != 0 {
				t.Fatalf("want one error line, got stdout %q stderr %q", stdout.String(), out)
			}
			t.Logf("%v: %s", err, out)
			w.check(t)
		})
	}
}

// zeroTar is an archive of pre, a member of n zero bytes, and post.
func zeroTar(t *testing.T, pre []entry, name string, n int64, post []entry) []byte {
	t.Helper()
	return makeTar(t, append(append(pre, entry{name: name, typ: tar.TypeReg, size: n}), post...))
}

func zstdBytes(t *testing.T, b []byte) []byte {
	t.Helper()
	zw, err := zstd.NewWriter(nil)
	must(t, err)
	defer zw.Close()
	return zw.EncodeAll(b, nil)
}

// TestLoadBombs loads archives that expand far beyond their size into a store on a 64 MiB
// tmpfs with 4096 inodes: a gzip and a zstd member of 256 MiB of zeros, an honest-looking
// 40 MiB layer that fits once but not twice (extraction, then the ingest copy), and 5000
// empty members. Each must fail with ResourceExhausted before the filesystem is full (a
// sampler watches free space and inodes throughout), leave nothing behind, and the store
// must then load honest archives.
func TestLoadBombs(t *testing.T) {
	s, fsDir := smallStore(t)
	ctx := context.Background()

	const zeros = 256 << 20
	bombTar := zeroTar(t, nil, "blobs/sha256/"+strings.Repeat("0", 64), zeros, nil)
	// A 40 MiB layer of zeros, referenced by a manifest that tells its true digest.
	layerSize := int64(40 << 20)
	h := digest.SHA256.Digester()
	_, err := io.CopyN(h.Hash(), zeroReader{}, layerSize)
	must(t, err)
	bigLayer := h.Digest()
	cfg, _ := json.Marshal(ocispec.Image{Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS: ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{bigLayer}}})
	man, _ := json.Marshal(ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest,
		Config: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: digest.FromBytes(cfg), Size: int64(len(cfg))},
		Layers: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageLayer, Digest: bigLayer, Size: layerSize}}})
	idx, _ := json.Marshal(ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, Manifests: []ocispec.Descriptor{
		{MediaType: ocispec.MediaTypeImageManifest, Digest: digest.FromBytes(man), Size: int64(len(man))}}})
	dockerMan, _ := json.Marshal([]map[string]any{{"Config": "config.json", "Layers": []string{"layer.tar"}}})
	var manyFiles []entry
	for i := range 5000 {
		manyFiles = append(manyFiles, entry{name: fmt.Sprintf("f/%d", i), typ: tar.TypeReg})
	}

	for _, c := range []struct {
		name    string
		archive []byte
	}{
		{"gzip", gz(t, bombTar)},
		{"zstd", zstdBytes(t, bombTar)},
		{"ingest-copy", gz(t, zeroTar(t, []entry{{name: "index.json", typ: tar.TypeReg, body: string(idx)},
			blobMember(man), blobMember(cfg)}, "blobs/sha256/"+bigLayer.Encoded(), layerSize, nil))},
		{"docker-ingest-copy", gz(t, zeroTar(t, []entry{{name: "manifest.json", typ: tar.TypeReg, body: string(dockerMan)},
			{name: "config.json", typ: tar.TypeReg, body: string(cfg)}}, "layer.tar", layerSize, nil))},
		{"inodes", gz(t, makeTar(t, manyFiles))},
	} {
		t.Run(c.name, func(t *testing.T) {
			t.Logf("archive of %d bytes", len(c.archive))
			var st unix.Statfs_t
			must(t, unix.Statfs(fsDir, &st))
			baseBytes, baseFiles := st.Bavail, st.Ffree
			loadRefusedForSpace(t, s, fsDir, c.archive)
			assertNoTmpLeftovers(t, s)
			ents, _ := os.ReadDir(filepath.Join(s.Root(), "tmp", "unpack"))
			for _, e := range ents {
				if !strings.HasSuffix(e.Name(), ".lock") {
					t.Errorf("leftover in tmp/unpack: %s", e.Name())
				}
			}
			// What stays is verified manifest and config blobs and lock files.
			must(t, unix.Statfs(fsDir, &st))
			if st.Bavail+256 < baseBytes || st.Ffree+16 < baseFiles {
				t.Errorf("space not given back: %d/%d blocks, %d/%d inodes", st.Bavail, baseBytes, st.Ffree, baseFiles)
			}
		})
	}

	loadMini(t, s, "after bombs")
	loadBusybox(t, func(a []byte) ([]*images.Image, error) { return s.Load(ctx, bytes.NewReader(a)) })
}

// TestLoadKilledLeavesCollectableDir kills `cubo load` while it extracts: the half
// extracted archive stays in ROOT/tmp/unpack, where check reports it as garbage and gc
// removes it.
func TestLoadKilledLeavesCollectableDir(t *testing.T) {
	bin := buildCubo(t)
	root := t.TempDir()
	cmd := exec.Command(bin, "--root-dir", root, "load")
	stdin, err := cmd.StdinPipe()
	must(t, err)
	must(t, cmd.Start())
	defer cmd.Process.Kill()
	// A member announcing 64 MiB, of which only the first MiB is sent.
	var hdr bytes.Buffer
	tw := tar.NewWriter(&hdr)
	must(t, tw.WriteHeader(&tar.Header{Name: "blobs/sha256/big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 64 << 20}))
	_, err = stdin.Write(append(hdr.Bytes(), make([]byte, 1<<20)...))
	must(t, err)
	unpack := filepath.Join(root, "tmp", "unpack")
	var leftover string
	// A deadline, not a count: on a loaded machine cubo may take seconds to start.
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); {
		if ms, _ := filepath.Glob(filepath.Join(unpack, "load-*", "blobs", "sha256", "big")); len(ms) == 1 {
			if fi, err := os.Stat(ms[0]); err == nil && fi.Size() == 1<<20 {
				leftover = filepath.Dir(filepath.Dir(filepath.Dir(ms[0])))
				break
			}
		}
		time.Sleep(10 * time.Millisecond)
	}
	if leftover == "" {
		t.Fatal("the load never extracted the first MiB")
	}
	must(t, cmd.Process.Kill())
	_ = cmd.Wait()
	s, err := images.New(root)
	must(t, err)
	findings, err := s.Check(context.Background(), false)
	must(t, err)
	found := false
	for _, f := range findings {
		found = found || f.Garbage && f.Object == "tmp/unpack/"+filepath.Base(leftover)
	}
	if !found {
		t.Errorf("check does not report %s: %v", leftover, findings)
	}
	_, err = s.GC(context.Background())
	must(t, err)
	if _, err := os.Stat(leftover); err == nil {
		t.Fatalf("gc left %s", leftover)
	}
}

// smallStore is a store on a 64 MiB tmpfs with 4096 inodes, for bombs to fill; it
// returns the store and the tmpfs's mount point.
func smallStore(t *testing.T) (*images.Store, string) {
	t.Helper()
	requireRoot(t)
	fsDir := t.TempDir()
	if err := unix.Mount("tmpfs", fsDir, "tmpfs", 0, "size=64m,nr_inodes=4096,mode=0700"); err != nil {
		t.Skipf("cannot mount a tmpfs for the store: %v", err)
	}
	t.Cleanup(func() { unix.Unmount(fsDir, unix.MNT_DETACH) })
	s, err := images.New(filepath.Join(fsDir, "root"), images.WithRetries(0))
	must(t, err)
	return s, fsDir
}

// loadRefusedForSpace loads archive into s, a smallStore, while a sampler watches the
// filesystem at fsDir: the load must fail with a one-line ResourceExhausted before the
// filesystem comes down to 2 MiB or 150 inodes free.
func loadRefusedForSpace(t *testing.T, s *images.Store, fsDir string, archive []byte) {
	t.Helper()
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
	_, err := s.Load(context.Background(), bytes.NewReader(archive))
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
}

// loadMini loads a fresh mini image into s, as an honest archive after hostile ones.
func loadMini(t *testing.T, s *images.Store, salt string) {
	t.Helper()
	m := newMiniImage(t, "mini:1", salt)
	imgs, err := s.Load(context.Background(), bytes.NewReader(gz(t, makeTar(t, m.oci()))))
	must(t, err)
	if len(imgs) != 1 || imgs[0].Name != m.name {
		t.Fatalf("loaded %+v", imgs)
	}
}

// loadBusybox archives the shared busybox OCI layout, loads it with load and returns
// the image; it skips the test when the layout is absent.
func loadBusybox(t *testing.T, load func(archive []byte) ([]*images.Image, error)) *images.Image {
	t.Helper()
	layout := filepath.Join(sharedImages, "busybox-1.38.0-musl-amd64.oci")
	if _, err := os.Stat(layout); err != nil {
		t.Skipf("busybox OCI layout not available (%v): the honest load of a real image is not checked", err)
	}
	imgs, err := load(tarDir(t, layout))
	must(t, err)
	if len(imgs) != 1 || imgs[0].Name != "busybox:1.38.0-musl" {
		t.Fatalf("loaded %+v", imgs)
	}
	return imgs[0]
}
