package images

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Annotation keys written on index.json entries.
const (
	// AnnotationRefName is the OCI name skopeo and umoci look images up by; Cubo stores
	// the familiar name there ("alpine:latest").
	AnnotationRefName = ocispec.AnnotationRefName
	// AnnotationImageName is the fully qualified name ("docker.io/library/alpine:latest"),
	// the key containerd uses in OCI archives.
	AnnotationImageName = "io.containerd.image.name"
)

// InUseFunc reports whether a container uses the image whose ID (config digest,
// "sha256:<hex>") is given. The manager provides it; the store only asks.
type InUseFunc func(ctx context.Context, imageID string) (bool, error)

// Store is an image store rooted at a Cubo root dir. It is safe for concurrent use by
// several goroutines and several processes: cross-process exclusion is done with flock.
type Store struct {
	root         string
	log          zerolog.Logger
	inUse        InUseFunc
	dockerConfig string
	certDirs     []string
	maxUnpacked  int64
	retries      int
	concurrency  int
}

// Opt configures a Store.
type Opt func(*Store)

// WithLogger sets the logger; the store logs nothing by default.
func WithLogger(l zerolog.Logger) Opt { return func(s *Store) { s.log = l } }

// WithInUse sets the hook that tells whether a container uses an image; without it no
// image is in use.
func WithInUse(f InUseFunc) Opt { return func(s *Store) { s.inUse = f } }

// WithDockerConfig reads and writes registry credentials in the given docker config.json
// instead of $DOCKER_CONFIG/config.json or ~/.docker/config.json.
func WithDockerConfig(path string) Opt { return func(s *Store) { s.dockerConfig = path } }

// WithCertDirs adds directories laid out like /etc/docker/certs.d (DIR/HOST:PORT/*.crt)
// whose CA certificates are trusted for those registries.
func WithCertDirs(dirs ...string) Opt {
	return func(s *Store) { s.certDirs = append(s.certDirs, dirs...) }
}

// WithMaxUnpackedSize caps the file data one layer may write when unpacked (holes in
// sparse files do not count). Zero, the default, means no cap.
func WithMaxUnpackedSize(n int64) Opt { return func(s *Store) { s.maxUnpacked = n } }

// WithRetries sets how often a failed registry request is retried (regclient's default
// when unset).
func WithRetries(n int) Opt { return func(s *Store) { s.retries = n } }

// WithConcurrency sets how many layers are downloaded at once (default 3, like docker).
func WithConcurrency(n int) Opt { return func(s *Store) { s.concurrency = n } }

// New opens (creating when needed) the image store under root, the Cubo root dir.
// It returns an error when the directories cannot be created.
func New(root string, opts ...Opt) (*Store, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolve root dir %s: %w", root, err)
	}
	s := &Store{root: abs, log: zerolog.Nop(), retries: -1, concurrency: 3}
	for _, o := range opts {
		o(s)
	}
	if s.concurrency < 1 {
		s.concurrency = 1
	}
	for _, d := range []string{
		filepath.Join(s.LayoutDir(), "blobs", "sha256"),
		filepath.Join(s.root, "layers"),
		s.tmpDir(),
	} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create store dir: %w", err)
		}
	}
	// Other users must be able to traverse into the layers for rootless readers of a
	// mounted rootfs; the data itself keeps the modes from the image.
	for _, d := range []string{s.root, s.LayoutDir(), filepath.Join(s.root, "layers")} {
		_ = os.Chmod(d, 0o711)
	}
	if err := os.MkdirAll(s.emptyLayer(), 0o755); err != nil {
		return nil, fmt.Errorf("create store dir: %w", err)
	}
	layout := filepath.Join(s.LayoutDir(), ocispec.ImageLayoutFile)
	if _, err := os.Stat(layout); errors.Is(err, fs.ErrNotExist) {
		b, _ := json.Marshal(ocispec.ImageLayout{Version: ocispec.ImageLayoutVersion})
		if err := writeFileAtomic(layout, b, 0o644); err != nil {
			return nil, err
		}
	}
	if _, err := os.Stat(s.indexPath()); errors.Is(err, fs.ErrNotExist) {
		unlock, err := s.lock("index.lock", unix.LOCK_EX)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if _, err := os.Stat(s.indexPath()); errors.Is(err, fs.ErrNotExist) {
			if err := s.writeIndexLocked(&ocispec.Index{}); err != nil {
				return nil, err
			}
		}
	}
	return s, nil
}

// Root returns the Cubo root dir the store lives in.
func (s *Store) Root() string { return s.root }

// LayoutDir returns the OCI image layout directory, ROOT/images.
func (s *Store) LayoutDir() string { return filepath.Join(s.root, "images") }

func (s *Store) tmpDir() string     { return filepath.Join(s.root, "tmp") }
func (s *Store) indexPath() string  { return filepath.Join(s.LayoutDir(), ocispec.ImageIndexFile) }
func (s *Store) emptyLayer() string { return filepath.Join(s.root, "layers", "empty") }

// blobPath returns where a verified blob lives.
func (s *Store) blobPath(d digest.Digest) string {
	return filepath.Join(s.LayoutDir(), "blobs", d.Algorithm().String(), d.Encoded())
}

// layerDir returns the unpacked layer directory (holding diff/) for a diff_id.
func (s *Store) layerDir(diffID digest.Digest) string {
	return filepath.Join(s.root, "layers", diffID.Encoded())
}

// LayerDir returns the overlay lower dir of the layer with the given diff_id. It returns
// an error of class NotFound when that layer is not unpacked.
func (s *Store) LayerDir(diffID digest.Digest) (string, error) {
	if err := diffID.Validate(); err != nil {
		return "", fmt.Errorf("layer %q: %w", diffID, errdefs.ErrInvalidArgument)
	}
	d := filepath.Join(s.layerDir(diffID), "diff")
	if _, err := os.Stat(d); err != nil {
		return "", fmt.Errorf("layer %s: %w", diffID, errdefs.ErrNotFound)
	}
	return d, nil
}

// lock takes a flock on ROOT/name; how is unix.LOCK_SH or unix.LOCK_EX. flock locks
// belong to the open file description, so two goroutines of one process exclude each
// other too.
func (s *Store) lock(name string, how int) (func(), error) {
	p := filepath.Join(s.root, name)
	if strings.Contains(name, "/") {
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return nil, fmt.Errorf("lock %s: %w", name, err)
		}
	}
	f, err := os.OpenFile(p, os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	for {
		err = unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", name, err)
	}
	return func() { f.Close() }, nil
}

func (s *Store) readIndex() (*ocispec.Index, error) {
	b, err := os.ReadFile(s.indexPath())
	if err != nil {
		return nil, fmt.Errorf("read index: %w", err)
	}
	var idx ocispec.Index
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("parse %s: %w", s.indexPath(), err)
	}
	return &idx, nil
}

func (s *Store) writeIndexLocked(idx *ocispec.Index) error {
	idx.SchemaVersion = 2
	idx.MediaType = ocispec.MediaTypeImageIndex
	if idx.Manifests == nil {
		idx.Manifests = []ocispec.Descriptor{}
	}
	b, err := json.Marshal(idx)
	if err != nil {
		return fmt.Errorf("encode index: %w", err)
	}
	return writeFileAtomic(s.indexPath(), b, 0o644)
}

// updateIndex runs fn on index.json under the index lock and replaces the file atomically.
func (s *Store) updateIndex(fn func(*ocispec.Index) error) error {
	unlock, err := s.lock("index.lock", unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	idx, err := s.readIndex()
	if err != nil {
		return err
	}
	if err := fn(idx); err != nil {
		return err
	}
	return s.writeIndexLocked(idx)
}

// tagImage points name (familiar) at the manifest desc. An image losing its last name
// stays as a dangling entry, like docker's <none>, so containers created from it keep
// their layers until it is removed.
func (s *Store) tagImage(desc ocispec.Descriptor, name, fullName string) error {
	return s.updateIndex(func(idx *ocispec.Index) error {
		for i := range idx.Manifests {
			m := &idx.Manifests[i]
			if m.Annotations[AnnotationRefName] == name && name != "" {
				delete(m.Annotations, AnnotationRefName)
				delete(m.Annotations, AnnotationImageName)
			}
		}
		// Drop dangling entries for the same manifest: the new name covers them.
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(m ocispec.Descriptor) bool {
			return m.Digest == desc.Digest && m.Annotations[AnnotationRefName] == ""
		})
		// Dangling entries of other manifests collapse to one per manifest.
		seen := map[digest.Digest]bool{}
		idx.Manifests = slices.DeleteFunc(idx.Manifests, func(m ocispec.Descriptor) bool {
			if m.Annotations[AnnotationRefName] != "" {
				return false
			}
			dup := seen[m.Digest]
			seen[m.Digest] = true
			return dup
		})
		d := desc
		d.Annotations = map[string]string{}
		if name != "" {
			d.Annotations[AnnotationRefName] = name
			d.Annotations[AnnotationImageName] = fullName
		}
		idx.Manifests = append(idx.Manifests, d)
		return nil
	})
}

// Image is one image of the store: an index.json entry and what it points at.
type Image struct {
	// Name is the familiar name ("alpine:latest"), empty for a dangling image.
	Name string
	// FullName is the fully qualified name ("docker.io/library/alpine:latest").
	FullName string
	// ID is the config digest, as docker prints it.
	ID digest.Digest
	// Descriptor is the manifest descriptor recorded in index.json.
	Descriptor ocispec.Descriptor
	// Manifest is the image manifest (OCI or Docker schema 2, read as OCI).
	Manifest ocispec.Manifest
	// Config is the image configuration (Env, Cmd, Entrypoint, WorkingDir, User...).
	Config ocispec.Image
	// Size is the sum of the config and layer blob sizes as stored.
	Size int64
}

// ShortID returns the first 12 hex digits of the ID, as listings print it.
func (i *Image) ShortID() string {
	e := i.ID.Encoded()
	if len(e) > 12 {
		return e[:12]
	}
	return e
}

// Repository returns the name without tag or digest, "<none>" when dangling.
func (i *Image) Repository() string {
	if i.Name == "" {
		return "<none>"
	}
	repo, _, _ := splitName(i.Name)
	return repo
}

// Tag returns the tag, "<none>" when dangling or pulled by digest only.
func (i *Image) Tag() string {
	if i.Name == "" {
		return "<none>"
	}
	_, tag, _ := splitName(i.Name)
	if tag == "" {
		return "<none>"
	}
	return tag
}

// Created returns the creation time from the config, zero when absent.
func (i *Image) Created() time.Time {
	if i.Config.Created == nil {
		return time.Time{}
	}
	return *i.Config.Created
}

// DiffIDs returns the layers' uncompressed digests, base layer first.
func (i *Image) DiffIDs() []digest.Digest { return i.Config.RootFS.DiffIDs }

func (s *Store) readJSONBlob(d digest.Digest, v any) error {
	if err := d.Validate(); err != nil {
		return fmt.Errorf("blob %q: %w", d, errdefs.ErrInvalidArgument)
	}
	b, err := os.ReadFile(s.blobPath(d))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("blob %s: %w", d, errdefs.ErrNotFound)
		}
		return fmt.Errorf("read blob %s: %w", d, err)
	}
	if digest.FromBytes(b) != d {
		return fmt.Errorf("blob %s: content does not match its digest: %w", d, errdefs.ErrDataLoss)
	}
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("parse blob %s: %w", d, err)
	}
	return nil
}

func (s *Store) imageFromDesc(desc ocispec.Descriptor) (*Image, error) {
	img := &Image{Descriptor: desc, Name: desc.Annotations[AnnotationRefName], FullName: desc.Annotations[AnnotationImageName]}
	if err := s.readJSONBlob(desc.Digest, &img.Manifest); err != nil {
		return nil, err
	}
	img.ID = img.Manifest.Config.Digest
	if err := s.readJSONBlob(img.ID, &img.Config); err != nil {
		return nil, err
	}
	img.Size = img.Manifest.Config.Size
	for _, l := range img.Manifest.Layers {
		img.Size += l.Size
	}
	return img, nil
}

// List returns the images of the store, dangling ones included, newest first.
func (s *Store) List(ctx context.Context) ([]*Image, error) {
	idx, err := s.readIndex()
	if err != nil {
		return nil, err
	}
	var out []*Image
	for _, d := range idx.Manifests {
		if !isImageManifest(d.MediaType) {
			continue
		}
		img, err := s.imageFromDesc(d)
		if err != nil {
			s.log.Warn().Err(err).Str("digest", d.Digest.String()).Msg("skip unreadable image")
			continue
		}
		out = append(out, img)
	}
	slices.SortStableFunc(out, func(a, b *Image) int { return b.Created().Compare(a.Created()) })
	return out, nil
}

// Get finds an image by name ("alpine", "alpine:3.20", "docker.io/library/alpine:3.20",
// "alpine@sha256:..."), by ID or a unique ID prefix, or by manifest digest. It returns an
// error of class NotFound when nothing matches and InvalidArgument when a prefix is
// ambiguous.
func (s *Store) Get(ctx context.Context, nameOrID string) (*Image, error) {
	imgs, err := s.List(ctx)
	if err != nil {
		return nil, err
	}
	if m := matchImages(imgs, nameOrID); len(m) > 0 {
		if len(m) > 1 {
			return nil, fmt.Errorf("image %q matches %d images: %w", nameOrID, len(m), errdefs.ErrInvalidArgument)
		}
		return m[0], nil
	}
	return nil, fmt.Errorf("image %q: %w", nameOrID, errdefs.ErrNotFound)
}

// matchImages returns the images nameOrID designates: by name first, then by ID prefix.
func matchImages(imgs []*Image, nameOrID string) []*Image {
	var out []*Image
	if r, err := parseRef(nameOrID); err == nil {
		fam := familiarName(r)
		for _, img := range imgs {
			if img.Name != "" && img.Name == fam {
				return []*Image{img}
			}
		}
		if r.Digest != "" {
			for _, img := range imgs {
				repo, _, _ := splitName(img.Name)
				famRepo, _, _ := splitName(fam)
				if img.Descriptor.Digest.String() == r.Digest && (img.Name == "" || repo == famRepo) {
					out = append(out, img)
				}
			}
			if len(out) > 0 {
				return dedupe(out)
			}
		}
	}
	id := strings.TrimPrefix(strings.ToLower(nameOrID), "sha256:")
	if id == "" || strings.Trim(id, "0123456789abcdef") != "" {
		return nil
	}
	for _, img := range imgs {
		if strings.HasPrefix(img.ID.Encoded(), id) || img.Descriptor.Digest.Encoded() == id {
			out = append(out, img)
		}
	}
	return dedupe(out)
}

// dedupe keeps one image per ID: several names of one image are still one image.
func dedupe(imgs []*Image) []*Image {
	seen := map[digest.Digest]bool{}
	return slices.DeleteFunc(imgs, func(i *Image) bool {
		d := seen[i.ID]
		seen[i.ID] = true
		return d
	})
}

// LayerDirs returns the overlay lower dirs of an image, base layer first, unpacking any
// layer that is missing (after a load or a crash). It returns an error when a layer blob
// is missing or fails verification.
func (s *Store) LayerDirs(ctx context.Context, img *Image) ([]string, error) {
	if len(img.Manifest.Layers) != len(img.Config.RootFS.DiffIDs) {
		return nil, fmt.Errorf("image %s: %d layers but %d diff_ids: %w", img.ShortID(), len(img.Manifest.Layers), len(img.Config.RootFS.DiffIDs), errdefs.ErrDataLoss)
	}
	// Keep GC from deleting a staging dir or a layer while it is being unpacked.
	unlock, err := s.lock("images.lock", unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()
	dirs := make([]string, 0, len(img.Manifest.Layers))
	for i, l := range img.Manifest.Layers {
		if err := s.unpackLayer(ctx, l, img.Config.RootFS.DiffIDs[i], nil); err != nil {
			return nil, err
		}
		dirs = append(dirs, filepath.Join(s.layerDir(img.Config.RootFS.DiffIDs[i]), "diff"))
	}
	return dirs, nil
}

// writeFileAtomic writes data to a temp file beside path, syncs it and renames it over
// path, so readers see the old or the new content, never a mix.
func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	defer os.Remove(tmp)
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Chmod(mode); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	syncDir(filepath.Dir(path))
	return nil
}

func syncDir(dir string) {
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
}

// hostPlatform is the platform images are resolved to by default.
func hostPlatform() string { return "linux/" + runtime.GOARCH }

// readAllLimit reads at most n bytes, failing when there is more: manifests and configs
// are small, and a registry must not make us buffer gigabytes.
func readAllLimit(r io.Reader, n int64) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, n+1))
	if err != nil {
		return nil, err
	}
	if int64(len(b)) > n {
		return nil, fmt.Errorf("more than %d bytes: %w", n, errdefs.ErrResourceExhausted)
	}
	return b, nil
}

// UnpackedSize returns the file data size of the image's unpacked layers, falling back
// to the compressed size for layers not unpacked yet.
func (s *Store) UnpackedSize(img *Image) int64 {
	var n int64
	for i, d := range img.Config.RootFS.DiffIDs {
		if sz := s.layerSize(d); sz > 0 {
			n += sz
		} else if i < len(img.Manifest.Layers) {
			n += img.Manifest.Layers[i].Size
		}
	}
	return n
}
