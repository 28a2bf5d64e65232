package images

import (
	"archive/tar"
	"context"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strconv"

	"github.com/containerd/errdefs"
	"github.com/klauspost/compress/gzip"
	"github.com/klauspost/compress/zstd"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// countingReader reports how many bytes went through it.
type countingReader struct {
	r        io.Reader
	n        int64
	progress func(int64)
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += int64(n)
	if c.progress != nil && n > 0 {
		c.progress(c.n)
	}
	return n, err
}

// unpackLayer makes ROOT/layers/<diffID>/diff from the stored blob of desc, unless it is
// already there. The layer is unpacked into ROOT/tmp/unpack and renamed into place only
// after the blob's digest and size and the uncompressed diff_id all match, so a visible
// layer dir is always complete and verified. Errors are of class InvalidArgument for a
// hostile or malformed layer (ErrUnsafeEntry for escapes) and DataLoss for a digest
// mismatch; nothing is left behind in either case.
func (s *Store) unpackLayer(ctx context.Context, desc ocispec.Descriptor, diffID digest.Digest, progress func(int64)) (err error) {
	if err := diffID.Validate(); err != nil || diffID.Algorithm() != digest.SHA256 {
		return fmt.Errorf("diff_id %q: %w", diffID, errdefs.ErrInvalidArgument)
	}
	comp, ok := layerCompression(desc.MediaType)
	if !ok {
		return fmt.Errorf("layer %s: media type %q: %w", desc.Digest, desc.MediaType, errdefs.ErrNotImplemented)
	}
	final := s.layerDir(diffID)
	if _, err := os.Stat(filepath.Join(final, "diff")); err == nil {
		return nil
	}
	unlock, err := s.lock(filepath.Join("tmp", "unpack", diffID.Encoded()+".lock"), unix.LOCK_EX)
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(filepath.Join(final, "diff")); err == nil {
		return nil
	}
	tmp := filepath.Join(s.tmpDir(), "unpack")
	// Holding the layer's lock, any staging dir for it was left by a dead process.
	if old, _ := filepath.Glob(filepath.Join(tmp, diffID.Encoded()+".staging-*")); len(old) > 0 {
		for _, o := range old {
			os.RemoveAll(o)
		}
	}
	staging, err := os.MkdirTemp(tmp, diffID.Encoded()+".staging-")
	if err != nil {
		return fmt.Errorf("create staging dir: %w", err)
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()
	diff := filepath.Join(staging, "diff")
	if err := os.Mkdir(diff, 0o755); err != nil {
		return fmt.Errorf("create staging dir: %w", err)
	}

	f, err := os.Open(s.blobPath(desc.Digest))
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("layer blob %s: %w", desc.Digest, errdefs.ErrNotFound)
		}
		return fmt.Errorf("open layer blob %s: %w", desc.Digest, err)
	}
	defer f.Close()
	blobHash := digest.SHA256.Digester()
	counted := &countingReader{r: io.TeeReader(f, blobHash.Hash()), progress: progress}
	var plain io.Reader
	switch comp {
	case "gzip":
		zr, err := gzip.NewReader(counted)
		if err != nil {
			return fmt.Errorf("layer %s: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
		}
		defer zr.Close()
		plain = zr
	case "zstd":
		zr, err := zstd.NewReader(counted, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return fmt.Errorf("layer %s: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
		}
		defer zr.Close()
		plain = zr
	default:
		plain = counted
	}
	diffHash := digest.SHA256.Digester()
	tee := io.TeeReader(plain, diffHash.Hash())
	a, err := newApplier(diff, true, s.maxUnpacked, s.log)
	if err != nil {
		return err
	}
	err = a.applyTar(ctx, tar.NewReader(tee))
	a.close()
	if err != nil {
		return fmt.Errorf("unpack layer %s: %w", desc.Digest, err)
	}
	// Both digests must cover every byte, including tar padding after the last entry.
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return fmt.Errorf("layer %s: %w: %w", desc.Digest, err, errdefs.ErrInvalidArgument)
	}
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return fmt.Errorf("read layer blob %s: %w", desc.Digest, err)
	}
	if counted.n != desc.Size || blobHash.Digest() != desc.Digest {
		return fmt.Errorf("layer blob %s: stored content does not match: %w", desc.Digest, errdefs.ErrDataLoss)
	}
	if got := diffHash.Digest(); got != diffID {
		return fmt.Errorf("layer %s: uncompressed digest %s, config says %s: %w", desc.Digest, got, diffID, errdefs.ErrDataLoss)
	}
	if err := os.WriteFile(filepath.Join(staging, "size"), []byte(strconv.FormatInt(a.written, 10)), 0o644); err != nil {
		return fmt.Errorf("record layer size: %w", err)
	}
	if err := os.Chmod(staging, 0o755); err != nil {
		return fmt.Errorf("chmod staging dir: %w", err)
	}
	if err := os.Rename(staging, final); err != nil {
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			os.RemoveAll(staging)
			return nil
		}
		return fmt.Errorf("publish layer %s: %w", diffID, err)
	}
	syncDir(filepath.Dir(final))
	return nil
}

// layerSize returns the recorded file-data size of an unpacked layer, 0 if unknown.
func (s *Store) layerSize(diffID digest.Digest) int64 {
	b, err := os.ReadFile(filepath.Join(s.layerDir(diffID), "size"))
	if err != nil {
		return 0
	}
	n, _ := strconv.ParseInt(string(b), 10, 64)
	return n
}
