package hostile

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"

	"github.com/cubo-dev/cubo/images"
)

// fakeRegistry is a minimal, deliberately lying OCI distribution server: it serves
// whatever bytes the test put under a tag or digest, with the media type the test chose,
// whether or not they match. Requests are counted per path.
type fakeRegistry struct {
	srv       *httptest.Server
	mu        sync.Mutex
	manifests map[string]served // "repo:ref" -> document
	blobs     map[string][]byte // digest -> bytes
	hits      map[string]int
	// noContentLength makes blob responses chunked, without a Content-Length.
	noContentLength bool
}

type served struct {
	mediaType string
	body      []byte
}

func newFakeRegistry(t *testing.T) *fakeRegistry {
	t.Helper()
	r := &fakeRegistry{manifests: map[string]served{}, blobs: map[string][]byte{}, hits: map[string]int{}}
	r.srv = httptest.NewServer(http.HandlerFunc(r.serve))
	t.Cleanup(r.srv.Close)
	return r
}

func (r *fakeRegistry) addr() string { return strings.TrimPrefix(r.srv.URL, "http://") }

func (r *fakeRegistry) serve(w http.ResponseWriter, req *http.Request) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.hits[req.URL.Path]++
	p := strings.TrimPrefix(req.URL.Path, "/v2/")
	if p == "" || p == "/" {
		w.WriteHeader(http.StatusOK)
		return
	}
	if i := strings.LastIndex(p, "/manifests/"); i >= 0 {
		repo, ref := p[:i], p[i+len("/manifests/"):]
		m, ok := r.manifests[repo+":"+ref]
		if !ok {
			m, ok = r.manifests["*:"+ref]
		}
		if !ok {
			m, ok = r.manifests[repo+":*"]
		}
		if !ok {
			http.Error(w, `{"errors":[{"code":"MANIFEST_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", m.mediaType)
		w.Header().Set("Docker-Content-Digest", digest.FromBytes(m.body).String())
		w.Header().Set("Content-Length", itoa(len(m.body)))
		if req.Method != http.MethodHead {
			w.Write(m.body)
		}
		return
	}
	if i := strings.LastIndex(p, "/blobs/"); i >= 0 {
		b, ok := r.blobs[p[i+len("/blobs/"):]]
		if !ok {
			http.Error(w, `{"errors":[{"code":"BLOB_UNKNOWN"}]}`, http.StatusNotFound)
			return
		}
		w.Header().Set("Content-Type", "application/octet-stream")
		if !r.noContentLength {
			w.Header().Set("Content-Length", itoa(len(b)))
		} else if f, ok := w.(http.Flusher); ok {
			w.WriteHeader(http.StatusOK)
			f.Flush()
		}
		if req.Method != http.MethodHead {
			w.Write(b)
		}
		return
	}
	http.NotFound(w, req)
}

func itoa(n int) string {
	b, _ := json.Marshal(n)
	return string(b)
}

func (r *fakeRegistry) blobHits(d digest.Digest) int {
	r.mu.Lock()
	defer r.mu.Unlock()
	n := 0
	for p, c := range r.hits {
		if strings.HasSuffix(p, "/blobs/"+d.String()) {
			n += c
		}
	}
	return n
}

func (r *fakeRegistry) putBlob(b []byte) ocispec.Descriptor {
	d := digest.FromBytes(b)
	r.mu.Lock()
	r.blobs[d.String()] = b
	r.mu.Unlock()
	return ocispec.Descriptor{Digest: d, Size: int64(len(b))}
}

func (r *fakeRegistry) putManifest(repoRef, mediaType string, body []byte) ocispec.Descriptor {
	r.mu.Lock()
	r.manifests[repoRef] = served{mediaType, body}
	r.mu.Unlock()
	return ocispec.Descriptor{MediaType: mediaType, Digest: digest.FromBytes(body), Size: int64(len(body))}
}

// layer is a layer blob with its descriptor and diff_id.
type layer struct {
	blob   []byte
	desc   ocispec.Descriptor
	diffID digest.Digest
}

type tarEntry struct {
	hdr  tar.Header
	data []byte
}

func tarBytes(t *testing.T, entries ...tarEntry) []byte {
	t.Helper()
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	for _, e := range entries {
		h := e.hdr
		if h.Mode == 0 {
			h.Mode = 0o644
		}
		h.ModTime = time.Unix(1700000000, 0)
		if h.Typeflag == tar.TypeReg && h.Size == 0 {
			h.Size = int64(len(e.data))
		}
		must(t, tw.WriteHeader(&h))
		if len(e.data) > 0 {
			_, err := tw.Write(e.data)
			must(t, err)
		}
	}
	must(t, tw.Close())
	return buf.Bytes()
}

func gzipLayer(t *testing.T, plain []byte) layer {
	t.Helper()
	var buf bytes.Buffer
	zw := gzip.NewWriter(&buf)
	_, err := zw.Write(plain)
	must(t, err)
	must(t, zw.Close())
	b := buf.Bytes()
	return layer{blob: b, diffID: digest.FromBytes(plain),
		desc: ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: digest.FromBytes(b), Size: int64(len(b))}}
}

// pushImage stores an image of layers under repo:tag; edit may change the manifest's
// layer descriptors before it is stored (to lie about sizes, digests, media types).
func (r *fakeRegistry) pushImage(t *testing.T, repoTag string, layers []layer, edit func(*ocispec.Manifest)) ocispec.Descriptor {
	t.Helper()
	created := time.Unix(1700000000, 0).UTC()
	cfg := ocispec.Image{Created: &created, Platform: ocispec.Platform{OS: "linux", Architecture: "amd64"},
		RootFS: ocispec.RootFS{Type: "layers"}, Config: ocispec.ImageConfig{Cmd: []string{"/probe"}}}
	man := ocispec.Manifest{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageManifest}
	for _, l := range layers {
		r.putBlob(l.blob)
		cfg.RootFS.DiffIDs = append(cfg.RootFS.DiffIDs, l.diffID)
		man.Layers = append(man.Layers, l.desc)
	}
	cb, _ := json.Marshal(cfg)
	cd := r.putBlob(cb)
	cd.MediaType = ocispec.MediaTypeImageConfig
	man.Config = cd
	if edit != nil {
		edit(&man)
	}
	mb, _ := json.Marshal(man)
	return r.putManifest(repoTag, ocispec.MediaTypeImageManifest, mb)
}

func newStore(t *testing.T) *images.Store {
	t.Helper()
	s, err := images.New(t.TempDir(), images.WithRetries(0), images.WithDockerConfig(filepath.Join(t.TempDir(), "docker.json")))
	must(t, err)
	return s
}

// assertNothingKept checks that a refused pull left no image, no layer dir, none of the
// given layer blobs (the small verified config blob may stay until garbage collection)
// and nothing in tmp but lock files.
func assertNothingKept(t *testing.T, s *images.Store, layerBlobs ...digest.Digest) {
	t.Helper()
	if imgs, _ := s.List(context.Background()); len(imgs) != 0 {
		t.Errorf("the refused image is listed: %v", imgs)
	}
	for _, d := range layerBlobs {
		if _, err := os.Stat(filepath.Join(s.LayoutDir(), "blobs", "sha256", d.Encoded())); err == nil {
			t.Errorf("layer blob kept after a refused pull: %s", d)
		}
	}
	layers, _ := os.ReadDir(filepath.Join(s.Root(), "layers"))
	for _, e := range layers {
		if e.Name() != "empty" {
			t.Errorf("layer dir kept after a refused pull: %s", e.Name())
		}
	}
	filepath.WalkDir(filepath.Join(s.Root(), "tmp"), func(p string, d os.DirEntry, err error) error {
		if err == nil && !d.IsDir() && !strings.HasSuffix(p, ".lock") {
			t.Errorf("leftover in tmp: %s", p)
		}
		return nil
	})
}

func pullErr(t *testing.T, s *images.Store, ref string) error {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	_, err := s.Pull(ctx, ref)
	if err == nil {
		t.Fatalf("pull %s succeeded", ref)
	}
	if strings.ContainsAny(err.Error(), "\n\r") {
		t.Errorf("error is not one line: %q", err)
	}
	t.Logf("refused: %v", err)
	return err
}

func okLayer(t *testing.T) layer {
	return gzipLayer(t, tarBytes(t, tarEntry{hdr: tar.Header{Name: "etc/", Typeflag: tar.TypeDir, Mode: 0o755}},
		tarEntry{hdr: tar.Header{Name: "etc/hostname", Typeflag: tar.TypeReg}, data: []byte("ok\n")}))
}

// TestManifestLies: a manifest whose layer descriptor has the wrong size (bigger or
// smaller than the blob) or the wrong digest, and a config descriptor with a wrong size.
// Each is DataLoss or InvalidArgument, and nothing of the image is kept.
func TestManifestLies(t *testing.T) {
	requireRoot(t)
	reg := newFakeRegistry(t)
	good := okLayer(t)
	other := okLayer(t)
	other.blob = append([]byte(nil), other.blob...)
	cases := map[string]func(*ocispec.Manifest){
		"size-bigger":   func(m *ocispec.Manifest) { m.Layers[0].Size += 1000 },
		"size-smaller":  func(m *ocispec.Manifest) { m.Layers[0].Size -= 10 },
		"size-huge":     func(m *ocispec.Manifest) { m.Layers[0].Size = 1 << 50 },
		"wrong-digest":  func(m *ocispec.Manifest) { m.Layers[0].Digest = digest.FromString("not the layer") },
		"config-size":   func(m *ocispec.Manifest) { m.Config.Size += 5 },
		"config-huge":   func(m *ocispec.Manifest) { m.Config.Size = 1 << 40 },
		"bad-digest":    func(m *ocispec.Manifest) { m.Layers[0].Digest = "sha256:../../../../etc/passwd" },
		"diffid-count":  func(m *ocispec.Manifest) { m.Layers = append(m.Layers, m.Layers[0]) },
		"schemaVersion": func(m *ocispec.Manifest) { m.SchemaVersion = 1 },
	}
	// The same lies from a registry that sends no Content-Length: the store's own size
	// and digest checks must catch them.
	for _, n := range []string{"size-bigger", "size-smaller", "size-huge", "config-size"} {
		cases[n+"-chunked"] = cases[n]
	}
	// The registry serves the wrong-digest blob under the digest the manifest names.
	reg.mu.Lock()
	reg.blobs[digest.FromString("not the layer").String()] = good.blob
	reg.mu.Unlock()
	chunked := newFakeRegistry(t)
	chunked.noContentLength = true
	chunked.blobs[digest.FromString("not the layer").String()] = good.blob
	for name, edit := range cases {
		t.Run(name, func(t *testing.T) {
			reg := reg
			if strings.HasSuffix(name, "-chunked") {
				reg = chunked
			}
			reg.pushImage(t, "lies:"+name, []layer{good}, edit)
			s := newStore(t)
			err := pullErr(t, s, reg.addr()+"/lies:"+name)
			assertNothingKept(t, s, good.desc.Digest, digest.FromString("not the layer"))
			if errdefs.IsUnavailable(err) && strings.Contains(err.Error(), "retry limit exceeded") {
				knownBug(t, "a layer or config whose declared size differs from the registry's Content-Length fails as %q: class Unavailable (retryable) and no word of the size; want DataLoss naming the size mismatch", err)
			}
			if !errdefs.IsDataLoss(err) && !errdefs.IsInvalidArgument(err) && !errdefs.IsNotImplemented(err) {
				t.Errorf("error class: %v", err)
			}
		})
	}
}

// TestUnsupportedMediaTypes: a layer, config or manifest of a media type Cubo does not
// unpack is NotImplemented, refused before any layer is downloaded.
func TestUnsupportedMediaTypes(t *testing.T) {
	requireRoot(t)
	reg := newFakeRegistry(t)
	good := okLayer(t)
	for name, edit := range map[string]func(*ocispec.Manifest){
		"layer-bzip2": func(m *ocispec.Manifest) { m.Layers[0].MediaType = "application/vnd.oci.image.layer.v1.tar+bzip2" },
		"layer-foreign": func(m *ocispec.Manifest) {
			m.Layers[0].MediaType = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
		},
		"layer-empty": func(m *ocispec.Manifest) { m.Layers[0].MediaType = "" },
		"config-helm": func(m *ocispec.Manifest) { m.Config.MediaType = "application/vnd.cncf.helm.config.v1+json" },
	} {
		t.Run(name, func(t *testing.T) {
			reg.pushImage(t, "mt:"+name, []layer{good}, edit)
			s := newStore(t)
			err := pullErr(t, s, reg.addr()+"/mt:"+name)
			if !errdefs.IsNotImplemented(err) {
				t.Errorf("error class: %v", err)
			}
			if n := reg.blobHits(good.desc.Digest); n != 0 {
				t.Errorf("the layer was downloaded %d times before the refusal", n)
			}
			assertNothingKept(t, s, good.desc.Digest)
		})
	}
	t.Run("manifest-media-type", func(t *testing.T) {
		d := reg.pushImage(t, "mt:tmp", []layer{good}, nil)
		_ = d
		reg.mu.Lock()
		m := reg.manifests["mt:tmp"]
		reg.mu.Unlock()
		reg.putManifest("mt:weird", "application/vnd.example.weird+json", m.body)
		s := newStore(t)
		err := pullErr(t, s, reg.addr()+"/mt:weird")
		assertNothingKept(t, s, good.desc.Digest)
		if errdefs.IsUnavailable(err) && strings.Contains(err.Error(), "unsupported media type") {
			knownBug(t, "a manifest of an unknown media type fails with class Unavailable (retryable): %v; want NotImplemented (images.registryErr does not map regclient's errs.ErrUnsupportedMediaType)", err)
		}
		if !errdefs.IsNotImplemented(err) && !errdefs.IsInvalidArgument(err) {
			t.Errorf("error class: %v", err)
		}
	})
}

// TestIndexLoops: an index cannot contain its own digest, but a lying registry can answer
// every digest with the same index, and an honest one can nest indexes deeply. The pull
// must end with a clear error, never loop, and fetch a bounded number of documents.
func TestIndexLoops(t *testing.T) {
	requireRoot(t)
	reg := newFakeRegistry(t)
	plat := &ocispec.Platform{OS: "linux", Architecture: "amd64"}
	t.Run("self", func(t *testing.T) {
		// The index lists a child index; the registry answers any digest with the index itself.
		idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex,
			Manifests: []ocispec.Descriptor{{MediaType: ocispec.MediaTypeImageIndex, Digest: digest.FromString("child"), Size: 100, Platform: plat}}}
		b, _ := json.Marshal(idx)
		reg.putManifest("self:*", ocispec.MediaTypeImageIndex, b)
		s := newStore(t)
		err := pullErr(t, s, reg.addr()+"/self:latest")
		if !errdefs.IsDataLoss(err) && !errdefs.IsNotImplemented(err) && !errdefs.IsInvalidArgument(err) {
			t.Errorf("error class: %v", err)
		}
		reg.mu.Lock()
		n := 0
		for p, c := range reg.hits {
			if strings.Contains(p, "/self/manifests/") {
				n += c
			}
		}
		reg.mu.Unlock()
		if n > 6 {
			t.Errorf("%d manifest requests for a self-referencing index", n)
		}
		assertNothingKept(t, s)
	})
	t.Run("nested", func(t *testing.T) {
		m := reg.pushImage(t, "nested:leaf", []layer{okLayer(t)}, nil)
		m.Platform = plat
		d := m
		for i := 0; i < 10; i++ {
			idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex, Manifests: []ocispec.Descriptor{d}}
			b, _ := json.Marshal(idx)
			d = reg.putManifest("nested:"+digest.FromBytes(b).String(), ocispec.MediaTypeImageIndex, b)
			d.Platform = plat
		}
		reg.mu.Lock()
		reg.manifests["nested:top"] = reg.manifests["nested:"+d.Digest.String()]
		reg.mu.Unlock()
		s := newStore(t)
		err := pullErr(t, s, reg.addr()+"/nested:top")
		if !errdefs.IsNotImplemented(err) && !errdefs.IsInvalidArgument(err) {
			t.Errorf("error class: %v", err)
		}
		assertNothingKept(t, s)
	})
}

// TestLayerHeaderSizeLies: a tar header declaring more data than the layer holds (a file
// of 1 GiB followed by 10 bytes and the end of the stream) is a clean error, whatever the
// digests say, and the half-written file is not kept.
func TestLayerHeaderSizeLies(t *testing.T) {
	requireRoot(t)
	reg := newFakeRegistry(t)
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	must(t, tw.WriteHeader(&tar.Header{Name: "big", Typeflag: tar.TypeReg, Mode: 0o644, Size: 1 << 30, ModTime: time.Unix(1700000000, 0)}))
	_, _ = tw.Write([]byte("0123456789"))
	plain := buf.Bytes() // no padding, no end-of-archive blocks: the stream just stops
	for name, plainLayer := range map[string][]byte{
		"truncated":          plain,
		"header-only":        plain[:512],
		"size-field-garbage": append(append([]byte(nil), plain[:124]...), append([]byte("99999999999\x00"), plain[136:]...)...),
	} {
		t.Run(name, func(t *testing.T) {
			l := gzipLayer(t, plainLayer)
			reg.pushImage(t, "hdr:"+name, []layer{l}, nil)
			s := newStore(t)
			err := pullErr(t, s, reg.addr()+"/hdr:"+name)
			if !errdefs.IsInvalidArgument(err) && !errdefs.IsDataLoss(err) {
				t.Errorf("error class: %v", err)
			}
			assertNothingKept(t, s, l.desc.Digest)
		})
	}
}

// TestLayerSymlinkLoops: symlink loops in a layer are stored as symlinks (harmless: the
// unpacker never follows one), and an entry written through a loop is refused.
func TestLayerSymlinkLoops(t *testing.T) {
	requireRoot(t)
	reg := newFakeRegistry(t)
	loops := []tarEntry{
		{hdr: tar.Header{Name: "a", Typeflag: tar.TypeSymlink, Linkname: "b"}},
		{hdr: tar.Header{Name: "b", Typeflag: tar.TypeSymlink, Linkname: "a"}},
		{hdr: tar.Header{Name: "self", Typeflag: tar.TypeSymlink, Linkname: "self"}},
		{hdr: tar.Header{Name: "up", Typeflag: tar.TypeSymlink, Linkname: "../up"}},
	}
	t.Run("stored", func(t *testing.T) {
		l := gzipLayer(t, tarBytes(t, loops...))
		reg.pushImage(t, "loops:stored", []layer{l}, nil)
		s := newStore(t)
		img, err := s.Pull(context.Background(), reg.addr()+"/loops:stored")
		must(t, err)
		dirs, err := s.LayerDirs(context.Background(), img)
		must(t, err)
		for _, n := range []string{"a", "b", "self", "up"} {
			fi, err := os.Lstat(filepath.Join(dirs[0], n))
			if err != nil || fi.Mode()&os.ModeSymlink == 0 {
				t.Errorf("%s: %v %v", n, fi, err)
			}
		}
	})
	for name, e := range map[string]tarEntry{
		"write-through-loop":   {hdr: tar.Header{Name: "a/x", Typeflag: tar.TypeReg}, data: []byte("x")},
		"dir-through-loop":     {hdr: tar.Header{Name: "self/d/", Typeflag: tar.TypeDir, Mode: 0o755}},
		"hardlink-to-loop":     {hdr: tar.Header{Name: "hl", Typeflag: tar.TypeLink, Linkname: "up/x"}},
		"whiteout-through-up":  {hdr: tar.Header{Name: "up/.wh.x", Typeflag: tar.TypeReg}},
		"opaque-through-loops": {hdr: tar.Header{Name: "b/.wh..wh..opq", Typeflag: tar.TypeReg}},
	} {
		t.Run(name, func(t *testing.T) {
			l := gzipLayer(t, tarBytes(t, append(append([]tarEntry(nil), loops...), e)...))
			reg.pushImage(t, "loops:"+name, []layer{l}, nil)
			s := newStore(t)
			err := pullErr(t, s, reg.addr()+"/loops:"+name)
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error class: %v", err)
			}
			assertNothingKept(t, s, l.desc.Digest)
		})
	}
}
