package images

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/types/descriptor"
	"github.com/regclient/regclient/types/manifest"
	"github.com/regclient/regclient/types/platform"
	"github.com/regclient/regclient/types/ref"
	"golang.org/x/sys/unix"
)

// ProgressState is where one blob of a pull is.
type ProgressState int

// Progress states, in the order a layer goes through them.
const (
	// StateWaiting means queued behind other downloads.
	StateWaiting ProgressState = iota
	// StateDownloading carries Current/Total bytes downloaded.
	StateDownloading
	// StateExists means the blob and its unpacked layer were already in the store.
	StateExists
	// StateExtracting carries Current/Total compressed bytes unpacked, for a layer
	// unpacked from a blob already in the store; a layer downloaded now is unpacked
	// while it downloads and reports StateDownloading only.
	StateExtracting
	// StateDone means the layer is downloaded, verified and unpacked.
	StateDone
)

// String returns the words docker prints for the state.
func (s ProgressState) String() string {
	return [...]string{"Waiting", "Downloading", "Already exists", "Extracting", "Pull complete"}[s]
}

// Progress is one progress report of a pull, for one layer.
type Progress struct {
	// Digest is the layer blob digest.
	Digest digest.Digest
	// State is what is happening to it.
	State ProgressState
	// Current and Total are byte counts for StateDownloading and StateExtracting.
	Current, Total int64
}

// ShortID is the 12-hex-digit prefix docker shows for a layer.
func (p Progress) ShortID() string { return p.Digest.Encoded()[:12] }

type pullOpts struct {
	platform  string
	tlsVerify bool
	progress  func(Progress)
}

// PullOpt configures Pull.
type PullOpt func(*pullOpts)

// PullWithPlatform selects the platform ("linux/arm64/v8") of a multi-arch image; the
// default is the host's.
func PullWithPlatform(p string) PullOpt { return func(o *pullOpts) { o.platform = p } }

// PullWithTLSVerify sets whether the registry certificate must verify (default true);
// false also allows plain HTTP, like podman's --tls-verify=false. Loopback registries
// may use plain HTTP either way.
func PullWithTLSVerify(v bool) PullOpt { return func(o *pullOpts) { o.tlsVerify = v } }

// PullWithProgress sets a callback for per-layer progress. It is called from several
// goroutines at once and must not block.
func PullWithProgress(f func(Progress)) PullOpt { return func(o *pullOpts) { o.progress = f } }

// maxJSONBlob bounds manifests and configs, which are a few kilobytes in practice.
const maxJSONBlob = 8 << 20

// Pull fetches name from its registry into the store: the manifest for the platform, the
// config and every layer (in parallel, each verified and unpacked while it streams,
// already-present ones skipped) and then names the image in index.json. An
// interrupted pull keeps the blobs it finished, so running it again fetches only the rest.
// Errors carry containerd classes: NotFound, Unauthenticated, DataLoss (a blob that does
// not match its digest, never kept), InvalidArgument (a malformed or hostile image, of
// which nothing is kept), NotImplemented (unsupported media types), Unavailable.
func (s *Store) Pull(ctx context.Context, name string, opts ...PullOpt) (*Image, error) {
	o := pullOpts{platform: hostPlatform(), tlsVerify: true}
	for _, opt := range opts {
		opt(&o)
	}
	r, err := parseRef(name)
	if err != nil {
		return nil, err
	}
	plat, err := platform.Parse(o.platform)
	if err != nil {
		return nil, fmt.Errorf("platform %q: %w", o.platform, errdefs.ErrInvalidArgument)
	}
	// A shared lock keeps rmb's garbage collection from deleting blobs this pull has
	// written but not yet named.
	unlock, err := s.lock("images.lock", unix.LOCK_SH)
	if err != nil {
		return nil, err
	}
	defer unlock()

	rc := s.client(ctx, r, registryOpts{tlsVerify: o.tlsVerify})
	mdesc, raw, err := s.resolveManifest(ctx, rc, r, plat)
	if err != nil {
		return nil, err
	}
	var man ocispec.Manifest
	if err := json.Unmarshal(raw, &man); err != nil {
		return nil, fmt.Errorf("parse manifest of %s: %w: %w", name, err, errdefs.ErrInvalidArgument)
	}
	if err := checkManifest(&man); err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	cfg, err := s.pullConfig(ctx, rc, r, man.Config)
	if err != nil {
		return nil, err
	}
	if err := checkConfig(&man, cfg); err != nil {
		return nil, fmt.Errorf("image %s: %w", name, err)
	}
	if cfg.OS != plat.OS || cfg.Architecture != plat.Architecture {
		s.log.Warn().Str("image", name).Str("platform", cfg.OS+"/"+cfg.Architecture).
			Str("want", plat.String()).Msg("image platform differs from the requested one")
	}
	mdesc.Platform = &ocispec.Platform{OS: cfg.OS, Architecture: cfg.Architecture, Variant: cfg.Variant, OSVersion: cfg.OSVersion}

	if err := s.pullLayers(ctx, rc, r, man.Layers, cfg.RootFS.DiffIDs, o.progress); err != nil {
		return nil, err
	}
	if _, err := s.putBlob(raw); err != nil {
		return nil, err
	}
	if err := s.tagImage(mdesc, familiarName(r), fullName(r)); err != nil {
		return nil, err
	}
	mdesc.Annotations = map[string]string{AnnotationRefName: familiarName(r), AnnotationImageName: fullName(r)}
	return s.imageFromDesc(mdesc)
}

// resolveManifest fetches the image manifest of r, going through an index to the
// manifest of plat, and checks each document against the digest it was asked by.
func (s *Store) resolveManifest(ctx context.Context, rc *regclient.RegClient, r ref.Ref, plat platform.Platform) (ocispec.Descriptor, []byte, error) {
	m, err := rc.ManifestGet(ctx, r)
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("fetch manifest %s: %w", r.CommonName(), registryErr(err))
	}
	raw, err := m.RawBody()
	if err != nil {
		return ocispec.Descriptor{}, nil, fmt.Errorf("read manifest %s: %w", r.CommonName(), err)
	}
	if r.Digest != "" && digest.FromBytes(raw).String() != r.Digest {
		return ocispec.Descriptor{}, nil, fmt.Errorf("manifest %s: content does not match the digest: %w", r.CommonName(), errdefs.ErrDataLoss)
	}
	mt := m.GetDescriptor().MediaType
	if isIndex(mt) {
		d, err := manifest.GetPlatformDesc(m, &plat)
		if err != nil {
			return ocispec.Descriptor{}, nil, fmt.Errorf("image %s has no manifest for %s: %w", r.CommonName(), plat, errdefs.ErrNotFound)
		}
		m, err = rc.ManifestGet(ctx, r.SetDigest(d.Digest.String()), regclient.WithManifestDesc(*d))
		if err != nil {
			return ocispec.Descriptor{}, nil, fmt.Errorf("fetch manifest %s: %w", d.Digest, registryErr(err))
		}
		if raw, err = m.RawBody(); err != nil {
			return ocispec.Descriptor{}, nil, fmt.Errorf("read manifest %s: %w", d.Digest, err)
		}
		if digest.FromBytes(raw) != d.Digest || int64(len(raw)) != d.Size {
			return ocispec.Descriptor{}, nil, fmt.Errorf("manifest %s: content does not match the index: %w", d.Digest, errdefs.ErrDataLoss)
		}
		mt = m.GetDescriptor().MediaType
		if mt == "" {
			mt = d.MediaType
		}
	}
	if !isImageManifest(mt) {
		return ocispec.Descriptor{}, nil, fmt.Errorf("manifest %s: media type %q: %w", r.CommonName(), mt, errdefs.ErrNotImplemented)
	}
	return ocispec.Descriptor{MediaType: mt, Digest: digest.FromBytes(raw), Size: int64(len(raw))}, raw, nil
}

// checkManifest refuses what Cubo cannot unpack before anything is downloaded.
func checkManifest(m *ocispec.Manifest) error {
	if m.SchemaVersion != 2 {
		return fmt.Errorf("manifest schema version %d: %w", m.SchemaVersion, errdefs.ErrNotImplemented)
	}
	if !isConfig(m.Config.MediaType) {
		return fmt.Errorf("config media type %q: %w", m.Config.MediaType, errdefs.ErrNotImplemented)
	}
	if m.Config.Size <= 0 || m.Config.Size > maxJSONBlob {
		return fmt.Errorf("config size %d: %w", m.Config.Size, errdefs.ErrInvalidArgument)
	}
	for _, l := range m.Layers {
		// The digest first: the messages below print it, and a manifest's string
		// could hold anything, newlines included.
		if err := l.Digest.Validate(); err != nil {
			return fmt.Errorf("layer digest %q: %w", l.Digest, errdefs.ErrInvalidArgument)
		}
		if _, ok := layerCompression(l.MediaType); !ok {
			return fmt.Errorf("layer %s: media type %q: %w", l.Digest, l.MediaType, errdefs.ErrNotImplemented)
		}
		if l.Size < 0 {
			return fmt.Errorf("layer %s: size %d: %w", l.Digest, l.Size, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

// checkConfig ties the config to the manifest: one diff_id per layer.
func checkConfig(m *ocispec.Manifest, cfg *ocispec.Image) error {
	if cfg.RootFS.Type != "layers" {
		return fmt.Errorf("config rootfs type %q: %w", cfg.RootFS.Type, errdefs.ErrInvalidArgument)
	}
	if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
		return fmt.Errorf("manifest has %d layers but config has %d diff_ids: %w", len(m.Layers), len(cfg.RootFS.DiffIDs), errdefs.ErrInvalidArgument)
	}
	for _, d := range cfg.RootFS.DiffIDs {
		if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
			return fmt.Errorf("diff_id %q: %w", d, errdefs.ErrInvalidArgument)
		}
	}
	return nil
}

func (s *Store) pullConfig(ctx context.Context, rc *regclient.RegClient, r ref.Ref, d ocispec.Descriptor) (*ocispec.Image, error) {
	if _, err := s.ingest(d.Digest, d.Size, s.blobOpener(ctx, rc, r, d), nil); err != nil {
		return nil, fmt.Errorf("fetch config: %w", err)
	}
	var cfg ocispec.Image
	if err := s.readJSONBlob(d.Digest, &cfg); err != nil {
		return nil, err
	}
	return &cfg, nil
}

func (s *Store) blobOpener(ctx context.Context, rc *regclient.RegClient, r ref.Ref, d ocispec.Descriptor) func() (io.ReadCloser, error) {
	return func() (io.ReadCloser, error) {
		rd, err := rc.BlobGet(ctx, r, descriptor.Descriptor{MediaType: d.MediaType, Digest: d.Digest, Size: d.Size})
		if err != nil {
			// regclient reports a size that differs from the manifest's only as
			// "retry limit exceeded": ask the registry the size, to say so.
			if h, herr := rc.BlobHead(ctx, r, descriptor.Descriptor{Digest: d.Digest}); herr == nil {
				size := h.GetDescriptor().Size
				h.Close()
				if size > 0 && size != d.Size {
					return nil, fmt.Errorf("fetch blob %s: the manifest declares %d bytes, the registry serves %d: %w", d.Digest, d.Size, size, errdefs.ErrDataLoss)
				}
			}
			return nil, fmt.Errorf("fetch blob %s: %w", d.Digest, registryErr(err))
		}
		return rd, nil
	}
}

// pullLayers downloads and unpacks the layers, s.concurrency at a time; the first
// error cancels the others.
func (s *Store) pullLayers(ctx context.Context, rc *regclient.RegClient, r ref.Ref, layers []ocispec.Descriptor, diffIDs []digest.Digest, progress func(Progress)) error {
	report := func(p Progress) {
		if progress != nil {
			progress(p)
		}
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var (
		wg       sync.WaitGroup
		once     sync.Once
		firstErr error
	)
	sem := make(chan struct{}, s.concurrency)
	for _, l := range layers {
		report(Progress{Digest: l.Digest, State: StateWaiting, Total: l.Size})
	}
	for i, l := range layers {
		// Taking the slot here, not in the goroutine, starts downloads in layer order.
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
		}
		if ctx.Err() != nil {
			break
		}
		wg.Go(func() {
			defer func() { <-sem }()
			if err := s.pullLayer(ctx, rc, r, l, diffIDs[i], report); err != nil {
				once.Do(func() { firstErr = err; cancel() })
			}
		})
	}
	wg.Wait()
	if firstErr != nil {
		return firstErr
	}
	return ctx.Err()
}

func (s *Store) pullLayer(ctx context.Context, rc *regclient.RegClient, r ref.Ref, l ocispec.Descriptor, diffID digest.Digest, report func(Progress)) error {
	_, dirErr := s.LayerDir(diffID)
	download := func(n int64) {
		report(Progress{Digest: l.Digest, State: StateDownloading, Current: n, Total: l.Size})
	}
	if dirErr != nil && !s.hasBlob(l.Digest, l.Size) {
		// Neither is here: unpack while downloading (see fetchUnpackLayer), so the
		// blob is not read back from disk and hashed again.
		open := func(ctx context.Context) (io.ReadCloser, error) { return s.blobOpener(ctx, rc, r, l)() }
		existed, err := s.fetchUnpackLayer(ctx, l, diffID, open, download)
		if err != nil {
			return fmt.Errorf("fetch layer: %w", err)
		}
		state := StateDone
		if existed {
			state = StateExists
		}
		report(Progress{Digest: l.Digest, State: state, Current: l.Size, Total: l.Size})
		return nil
	}
	existed, err := s.ingest(l.Digest, l.Size, s.blobOpener(ctx, rc, r, l), download)
	if err != nil {
		return fmt.Errorf("fetch layer: %w", err)
	}
	if existed && dirErr == nil {
		report(Progress{Digest: l.Digest, State: StateExists, Current: l.Size, Total: l.Size})
		return nil
	}
	err = s.unpackLayer(ctx, l, diffID, func(n int64) {
		report(Progress{Digest: l.Digest, State: StateExtracting, Current: n, Total: l.Size})
	})
	if err != nil {
		// A layer that is hostile or lies about its diff_id is dropped entirely; a blob
		// merely cut short by cancellation is kept for the next try.
		if errdefs.IsInvalidArgument(err) || errdefs.IsDataLoss(err) {
			s.removeBlob(l.Digest)
		}
		return err
	}
	report(Progress{Digest: l.Digest, State: StateDone, Current: l.Size, Total: l.Size})
	return nil
}
