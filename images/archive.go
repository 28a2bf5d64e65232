package images

import (
	"archive/tar"
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	"github.com/opencontainers/image-spec/specs-go"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/regclient/regclient/types/platform"
	"golang.org/x/sys/unix"
)

// decompress sniffs gzip and zstd magic numbers; anything else passes through.
func decompress(r io.Reader) (io.ReadCloser, string, error) {
	br := bufio.NewReader(r)
	magic, _ := br.Peek(4)
	switch {
	case bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
		zr, err := gzip.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("read gzip: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		return zr, "gzip", nil
	case bytes.HasPrefix(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
		zr, err := zstd.NewReader(br)
		if err != nil {
			return nil, "", fmt.Errorf("read zstd: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		return zr.IOReadCloser(), "zstd", nil
	}
	return io.NopCloser(br), "", nil
}

// Import makes a one-layer image named name from a rootfs tarball (plain, gzip or zstd),
// like `docker import`. The layer is unpacked with the same checks as a pulled one.
func (s *Store) Import(ctx context.Context, r io.Reader, name string) (*Image, error) {
	if _, err := parseRef(name); err != nil {
		return nil, err
	}
	unlock, err := s.lock("images.lock", unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	plain, _, err := decompress(r)
	if err != nil {
		return nil, err
	}
	defer plain.Close()
	diffID, size, err := s.ingestUnknown(plain)
	if err != nil {
		return nil, fmt.Errorf("import: %w", err)
	}
	now := time.Now().UTC()
	cfg := ocispec.Image{
		Created:  &now,
		Platform: ocispec.Platform{OS: "linux", Architecture: runtime.GOARCH},
		RootFS:   ocispec.RootFS{Type: "layers", DiffIDs: []digest.Digest{diffID}},
		History:  []ocispec.History{{Created: &now, CreatedBy: "cubo import"}},
	}
	layer := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayer, Digest: diffID, Size: size}
	if err := s.unpackLayer(ctx, layer, diffID, nil); err != nil {
		s.removeBlob(diffID)
		return nil, fmt.Errorf("import: %w", err)
	}
	return s.commitImage(&cfg, []ocispec.Descriptor{layer}, []string{name})
}

// commitImage writes config and manifest blobs and names the image.
func (s *Store) commitImage(cfg *ocispec.Image, layers []ocispec.Descriptor, names []string) (*Image, error) {
	cb, err := json.Marshal(cfg)
	if err != nil {
		return nil, fmt.Errorf("encode config: %w", err)
	}
	cd, err := s.putBlob(cb)
	if err != nil {
		return nil, err
	}
	man := ocispec.Manifest{
		Versioned: specs.Versioned{SchemaVersion: 2},
		MediaType: ocispec.MediaTypeImageManifest,
		Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: int64(len(cb))},
		Layers:    layers,
	}
	mb, err := json.Marshal(man)
	if err != nil {
		return nil, fmt.Errorf("encode manifest: %w", err)
	}
	md, err := s.putBlob(mb)
	if err != nil {
		return nil, err
	}
	desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb)),
		Platform: &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}}
	return s.nameImage(desc, names)
}

// nameImage records desc under each name (dangling when names is empty).
func (s *Store) nameImage(desc ocispec.Descriptor, names []string) (*Image, error) {
	if len(names) == 0 {
		if err := s.tagImage(desc, "", ""); err != nil {
			return nil, err
		}
		return s.imageFromDesc(desc)
	}
	var img *Image
	for _, n := range names {
		r, err := parseRef(n)
		if err != nil {
			return nil, err
		}
		if err := s.tagImage(desc, familiarName(r), fullName(r)); err != nil {
			return nil, err
		}
		d := desc
		d.Annotations = map[string]string{AnnotationRefName: familiarName(r), AnnotationImageName: fullName(r)}
		if img == nil {
			if img, err = s.imageFromDesc(d); err != nil {
				return nil, err
			}
		}
	}
	return img, nil
}

// Save writes the images as an OCI archive (a tar of an OCI image layout, what skopeo
// calls oci-archive) that also holds docker's manifest.json, so `docker load` reads it.
func (s *Store) Save(ctx context.Context, w io.Writer, refs ...string) error {
	if len(refs) == 0 {
		return fmt.Errorf("save: no image given: %w", errdefs.ErrInvalidArgument)
	}
	idx := ocispec.Index{Versioned: specs.Versioned{SchemaVersion: 2}, MediaType: ocispec.MediaTypeImageIndex}
	type dockerEntry struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	var dm []dockerEntry
	var blobs []digest.Digest
	seen := map[digest.Digest]bool{}
	add := func(d digest.Digest) {
		if !seen[d] {
			seen[d] = true
			blobs = append(blobs, d)
		}
	}
	for _, a := range refs {
		img, err := s.Get(ctx, a)
		if err != nil {
			return err
		}
		d := img.Descriptor
		d.Annotations = nil
		if img.Name != "" {
			d.Annotations = map[string]string{AnnotationRefName: img.Name, AnnotationImageName: img.FullName}
		}
		idx.Manifests = append(idx.Manifests, d)
		add(img.Descriptor.Digest)
		add(img.ID)
		e := dockerEntry{Config: "blobs/sha256/" + img.ID.Encoded()}
		if img.Name != "" && img.Tag() != "<none>" {
			e.RepoTags = []string{img.Repository() + ":" + img.Tag()}
		}
		for _, l := range img.Manifest.Layers {
			add(l.Digest)
			e.Layers = append(e.Layers, "blobs/sha256/"+l.Digest.Encoded())
		}
		dm = append(dm, e)
	}
	tw := tar.NewWriter(w)
	now := time.Now()
	writeJSON := func(name string, v any) error {
		b, err := json.Marshal(v)
		if err != nil {
			return err
		}
		if err := tw.WriteHeader(&tar.Header{Name: name, Mode: 0o644, Size: int64(len(b)), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
			return err
		}
		_, err = tw.Write(b)
		return err
	}
	if err := writeJSON(ocispec.ImageLayoutFile, ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion}); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := writeJSON(ocispec.ImageIndexFile, idx); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	if err := writeJSON("manifest.json", dm); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	for _, d := range blobs {
		if err := s.writeBlobTar(tw, d, now); err != nil {
			return fmt.Errorf("save: %w", err)
		}
	}
	if err := tw.Close(); err != nil {
		return fmt.Errorf("save: %w", err)
	}
	return nil
}

func (s *Store) writeBlobTar(tw *tar.Writer, d digest.Digest, now time.Time) error {
	f, err := os.Open(s.blobPath(d))
	if err != nil {
		return fmt.Errorf("blob %s: %w", d, err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return err
	}
	if err := tw.WriteHeader(&tar.Header{Name: "blobs/sha256/" + d.Encoded(), Mode: 0o644, Size: fi.Size(), ModTime: now, Typeflag: tar.TypeReg}); err != nil {
		return err
	}
	_, err = io.Copy(tw, f)
	return err
}

// archiveDir is an archive extracted to a temp dir; symlinks and hardlinks are kept in a
// map, never created, so opening a member cannot leave the dir.
type archiveDir struct {
	dir       string
	links     map[string]string
	linkBytes int
	guard     *diskGuard
}

// Bounds of what an archive may make the load hold. Archives from docker, podman, skopeo
// and cubo hold a few links per layer, each well under a hundred bytes.
const (
	maxArchiveLinkBytes = 4 << 20
	maxArchiveLinkHops  = 16
)

// extractArchive extracts the archive into ROOT/tmp/unpack/load-*, the dir where gc and
// check look for what a killed process left: a load killed midway leaves its dir there.
// On error nothing is left.
func (s *Store) extractArchive(r io.Reader) (_ *archiveDir, err error) {
	parent := filepath.Join(s.tmpDir(), "unpack")
	if err := os.MkdirAll(parent, 0o700); err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	dir, err := os.MkdirTemp(parent, "load-")
	if err != nil {
		return nil, fmt.Errorf("create temp dir: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(dir)
		}
	}()
	ad := &archiveDir{dir: dir, links: map[string]string{}, guard: &diskGuard{dir: dir}}
	plain, _, err := decompress(r)
	if err != nil {
		return nil, err
	}
	defer plain.Close()
	tr := tar.NewReader(plain)
	for {
		hdr, err := tr.Next()
		if errors.Is(err, io.EOF) {
			return ad, nil
		}
		if err != nil {
			return nil, fmt.Errorf("read archive: %w: %w", err, errdefs.ErrInvalidArgument)
		}
		if err := ad.extract(hdr, tr); err != nil {
			return nil, fmt.Errorf("read archive: %w", err)
		}
	}
}

// extract stores one member: regular files in the dir, links in the map, nothing else.
// A member replaces an earlier one of the same name, as when tar extracts.
func (ad *archiveDir) extract(hdr *tar.Header, r io.Reader) error {
	p, err := cleanName(hdr.Name)
	if err != nil {
		return err
	}
	// A sparse member is a few bytes of archive that archive/tar expands to any size of
	// zeros: a bomb without compression. No image archive writer makes them (blobs are
	// written from dense files, and Go's tar.Writer cannot write sparse files at all).
	if sparseMember(hdr) {
		return fmt.Errorf("archive member %q: sparse files are not expected in an image archive: %w", hdr.Name, errdefs.ErrInvalidArgument)
	}
	switch hdr.Typeflag {
	//lint:ignore SA1019 old archives still use the NUL typeflag
	case tar.TypeReg, tar.TypeRegA:
		delete(ad.links, p)
		if err := ad.guard.use(0, int64(strings.Count(p, "/"))+1); err != nil {
			return memberErr(hdr.Name, err)
		}
		dst := filepath.Join(ad.dir, p)
		if err := os.MkdirAll(filepath.Dir(dst), 0o700); err != nil {
			return memberErr(hdr.Name, err)
		}
		f, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_NOFOLLOW, 0o600)
		if err != nil {
			return memberErr(hdr.Name, err)
		}
		_, err = io.Copy(f, ad.guard.reader(archiveReader{r}, 1))
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			return memberErr(hdr.Name, err)
		}
	case tar.TypeSymlink, tar.TypeLink:
		// A hardlink names a member from the archive's root; a symlink is relative to its
		// own dir, or absolute and then also from the archive's root, as docker load
		// resolves it (FollowSymlinkInScope).
		target := hdr.Linkname
		if hdr.Typeflag == tar.TypeSymlink {
			if strings.HasPrefix(target, "/") {
				target = "." + path.Clean(target)
			} else {
				target = path.Join(path.Dir(p), target)
			}
		}
		// PAX names may be a megabyte each: a compressed archive of such links would
		// fill memory, not disk.
		ad.linkBytes += len(p) + len(target)
		if ad.linkBytes > maxArchiveLinkBytes {
			return fmt.Errorf("archive links hold more than %d bytes of names: %w", maxArchiveLinkBytes, errdefs.ErrResourceExhausted)
		}
		ad.links[p] = target
	}
	return nil
}

// archiveReader classes read errors of the archive (truncated, corrupt compression) as
// InvalidArgument, as those of tar.Reader.Next are: the input is bad, not the disk.
type archiveReader struct{ r io.Reader }

func (a archiveReader) Read(p []byte) (int, error) {
	n, err := a.r.Read(p)
	if err != nil && !errors.Is(err, io.EOF) {
		err = fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
	}
	return n, err
}

// sparseMember reports whether archive/tar reads hdr's member as a sparse file: the old
// GNU format, or the PAX one (whose Typeflag is a plain TypeReg).
func sparseMember(hdr *tar.Header) bool {
	if hdr.Typeflag == tar.TypeGNUSparse {
		return true
	}
	for k := range hdr.PAXRecords {
		if strings.HasPrefix(k, "GNU.sparse.") {
			return true
		}
	}
	return false
}

// memberErr names the member instead of its path in the temp dir, quoted so that
// whatever bytes the name holds (newlines) the error stays one line.
func memberErr(name string, err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return fmt.Errorf("archive member %q: %s: %w", name, pe.Op, pe.Err)
	}
	return fmt.Errorf("archive member %q: %w", name, err)
}

// open opens a regular member, following recorded links inside the archive only. A link
// is followed when a member is looked up by the link's own name, never as a parent dir
// of the name: archives from docker, podman, skopeo and cubo link whole files only.
func (ad *archiveDir) open(name string) (*os.File, error) {
	p := name
	for range maxArchiveLinkHops {
		c, err := cleanName(p)
		if err != nil {
			return nil, fmt.Errorf("archive member %q: %w", name, err)
		}
		if t, ok := ad.links[c]; ok {
			p = t
			continue
		}
		f, err := os.OpenFile(filepath.Join(ad.dir, c), os.O_RDONLY|unix.O_NOFOLLOW, 0)
		if err != nil {
			return nil, memberErr(name, err)
		}
		fi, err := f.Stat()
		if err != nil {
			f.Close()
			return nil, memberErr(name, err)
		}
		if !fi.Mode().IsRegular() {
			f.Close()
			return nil, fmt.Errorf("archive member %q: not a regular file: %w", name, errdefs.ErrInvalidArgument)
		}
		return f, nil
	}
	return nil, fmt.Errorf("archive member %q: more than %d links: %w", name, maxArchiveLinkHops-1, errdefs.ErrInvalidArgument)
}

// Load reads an OCI archive (oci-archive, or `cubo save`/`docker save` output) or a
// legacy docker-archive, possibly compressed, and adds its images with their names.
// Multi-platform indexes are resolved to the host platform. Every blob is checked
// against its digest and every layer is unpacked with the pull's checks. Extracting the
// archive and copying its blobs fail with ResourceExhausted rather than take the last of
// the filesystem's space (see diskGuard).
func (s *Store) Load(ctx context.Context, r io.Reader) ([]*Image, error) {
	unlock, err := s.lock("images.lock", unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	ad, err := s.extractArchive(r)
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(ad.dir)
	for _, l := range []struct {
		name string
		load func(context.Context, *archiveDir) ([]*Image, error)
	}{{ocispec.ImageIndexFile, s.loadOCI}, {"manifest.json", s.loadDocker}} {
		f, err := ad.open(l.name)
		if err == nil {
			f.Close()
			return l.load(ctx, ad)
		}
		if !errors.Is(err, fs.ErrNotExist) {
			return nil, err
		}
	}
	return nil, fmt.Errorf("load: neither index.json nor manifest.json in the archive: %w", errdefs.ErrInvalidArgument)
}

func (ad *archiveDir) readJSON(name string, v any) error {
	f, err := ad.open(name)
	if err != nil {
		return err
	}
	defer f.Close()
	b, err := readAllLimit(f, maxJSONBlob)
	if err != nil {
		return memberErr(name, err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse archive member %q: %w: %w", name, err, errdefs.ErrInvalidArgument)
	}
	return nil
}

func blobName(d digest.Digest) string { return "blobs/" + d.Algorithm().String() + "/" + d.Encoded() }

// ingestMember copies an archive blob into the store, verifying digest and size.
func (s *Store) ingestMember(ad *archiveDir, d ocispec.Descriptor) error {
	if err := d.Digest.Validate(); err != nil {
		return fmt.Errorf("digest %q: %w", d.Digest, errdefs.ErrInvalidArgument)
	}
	_, err := s.ingest(d.Digest, d.Size, func() (io.ReadCloser, error) {
		f, err := ad.open(blobName(d.Digest))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("blob %s missing from archive: %w", d.Digest, errdefs.ErrNotFound)
		}
		if err != nil {
			return nil, err
		}
		return readCloser{ad.guard.reader(f, 1), f}, nil
	}, nil)
	return err
}

// checkJSONDesc refuses an index or manifest descriptor whose size could not be one: it
// would be ingested, then read whole into memory.
func checkJSONDesc(d ocispec.Descriptor) error {
	if d.Size <= 0 || d.Size > maxJSONBlob {
		return fmt.Errorf("load: %s declares %d bytes, not the size of a manifest or index: %w", d.Digest, d.Size, errdefs.ErrInvalidArgument)
	}
	return nil
}

type readCloser struct {
	io.Reader
	io.Closer
}

func (s *Store) loadOCI(ctx context.Context, ad *archiveDir) ([]*Image, error) {
	var idx ocispec.Index
	if err := ad.readJSON(ocispec.ImageIndexFile, &idx); err != nil {
		return nil, err
	}
	host, _ := platform.Parse(hostPlatform())
	var out []*Image
	for _, top := range idx.Manifests {
		d := top
		for depth := 0; isIndex(d.MediaType); depth++ {
			if depth > 4 {
				return nil, fmt.Errorf("load: nested indexes: %w", errdefs.ErrInvalidArgument)
			}
			var ix ocispec.Index
			if err := checkJSONDesc(d); err != nil {
				return nil, err
			}
			if err := s.ingestMember(ad, d); err != nil {
				return nil, err
			}
			if err := s.readJSONBlob(d.Digest, &ix); err != nil {
				return nil, err
			}
			found := false
			for _, m := range ix.Manifests {
				if m.Platform != nil && m.Platform.OS == host.OS && m.Platform.Architecture == host.Architecture {
					d, found = m, true
					break
				}
			}
			if !found {
				return nil, fmt.Errorf("load: no manifest for %s in index %s: %w", host, d.Digest, errdefs.ErrNotFound)
			}
		}
		if !isImageManifest(d.MediaType) {
			continue
		}
		img, err := s.loadManifest(ctx, ad, d, archiveNames(top.Annotations))
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}

// archiveNames picks the image name from index annotations: containerd's full name, or
// ref.name when it looks like a name rather than a bare tag.
func archiveNames(ann map[string]string) []string {
	if n := ann[AnnotationImageName]; n != "" {
		if _, err := parseRef(n); err == nil {
			return []string{n}
		}
	}
	if n := ann[AnnotationRefName]; n != "" && strings.ContainsAny(n, ":/@") {
		if _, err := parseRef(n); err == nil {
			return []string{n}
		}
	}
	return nil
}

func (s *Store) loadManifest(ctx context.Context, ad *archiveDir, d ocispec.Descriptor, names []string) (*Image, error) {
	if err := checkJSONDesc(d); err != nil {
		return nil, err
	}
	if err := s.ingestMember(ad, d); err != nil {
		return nil, err
	}
	var man ocispec.Manifest
	if err := s.readJSONBlob(d.Digest, &man); err != nil {
		return nil, err
	}
	if err := checkManifest(&man); err != nil {
		return nil, fmt.Errorf("load %s: %w", d.Digest, err)
	}
	if err := s.ingestMember(ad, man.Config); err != nil {
		return nil, err
	}
	var cfg ocispec.Image
	if err := s.readJSONBlob(man.Config.Digest, &cfg); err != nil {
		return nil, err
	}
	if err := checkConfig(&man, &cfg); err != nil {
		return nil, fmt.Errorf("load %s: %w", d.Digest, err)
	}
	for i, l := range man.Layers {
		if err := s.ingestMember(ad, l); err != nil {
			return nil, err
		}
		if err := s.unpackLayer(ctx, l, cfg.RootFS.DiffIDs[i], nil); err != nil {
			if errdefs.IsInvalidArgument(err) || errdefs.IsDataLoss(err) {
				s.removeBlob(l.Digest)
			}
			return nil, err
		}
	}
	desc := ocispec.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size,
		Platform: &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}}
	return s.nameImage(desc, names)
}

func (s *Store) loadDocker(ctx context.Context, ad *archiveDir) ([]*Image, error) {
	var entries []struct {
		Config   string
		RepoTags []string
		Layers   []string
	}
	if err := ad.readJSON("manifest.json", &entries); err != nil {
		return nil, err
	}
	var out []*Image
	for _, e := range entries {
		cf, err := ad.open(e.Config)
		if err != nil {
			return nil, fmt.Errorf("load: config: %w", err)
		}
		if fi, err := cf.Stat(); err == nil && fi.Size() > maxJSONBlob {
			cf.Close()
			return nil, fmt.Errorf("load: config %q: more than %d bytes: %w", e.Config, maxJSONBlob, errdefs.ErrResourceExhausted)
		}
		cd, csize, err := s.ingestUnknown(ad.guard.reader(cf, 2))
		cf.Close()
		if err != nil {
			return nil, err
		}
		var cfg ocispec.Image
		if err := s.readJSONBlob(cd, &cfg); err != nil {
			return nil, err
		}
		if len(cfg.RootFS.DiffIDs) != len(e.Layers) {
			return nil, fmt.Errorf("load: %d layers but %d diff_ids: %w", len(e.Layers), len(cfg.RootFS.DiffIDs), errdefs.ErrInvalidArgument)
		}
		man := ocispec.Manifest{
			Versioned: specs.Versioned{SchemaVersion: 2},
			MediaType: ocispec.MediaTypeImageManifest,
			Config:    ocispec.Descriptor{MediaType: ocispec.MediaTypeImageConfig, Digest: cd, Size: csize},
		}
		for i, lp := range e.Layers {
			lf, err := ad.open(lp)
			if err != nil {
				return nil, fmt.Errorf("load: layer: %w", err)
			}
			magic := make([]byte, 4)
			n, _ := io.ReadFull(lf, magic)
			mt := ocispec.MediaTypeImageLayer
			switch {
			case n >= 2 && bytes.HasPrefix(magic, []byte{0x1f, 0x8b}):
				mt = ocispec.MediaTypeImageLayerGzip
			case n == 4 && bytes.Equal(magic, []byte{0x28, 0xb5, 0x2f, 0xfd}):
				mt = ocispec.MediaTypeImageLayerZstd
			}
			if _, err := lf.Seek(0, io.SeekStart); err != nil {
				lf.Close()
				return nil, err
			}
			ld, lsize, err := s.ingestUnknown(ad.guard.reader(lf, 2))
			lf.Close()
			if err != nil {
				return nil, err
			}
			l := ocispec.Descriptor{MediaType: mt, Digest: ld, Size: lsize}
			if err := s.unpackLayer(ctx, l, cfg.RootFS.DiffIDs[i], nil); err != nil {
				if errdefs.IsInvalidArgument(err) || errdefs.IsDataLoss(err) {
					s.removeBlob(ld)
				}
				return nil, err
			}
			man.Layers = append(man.Layers, l)
		}
		mb, err := json.Marshal(man)
		if err != nil {
			return nil, err
		}
		md, err := s.putBlob(mb)
		if err != nil {
			return nil, err
		}
		desc := ocispec.Descriptor{MediaType: ocispec.MediaTypeImageManifest, Digest: md, Size: int64(len(mb)),
			Platform: &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant}}
		img, err := s.nameImage(desc, e.RepoTags)
		if err != nil {
			return nil, err
		}
		out = append(out, img)
	}
	return out, nil
}
