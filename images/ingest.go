package images

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	"golang.org/x/sys/unix"
)

// hasBlob reports whether a verified blob of that digest and size is in the store.
func (s *Store) hasBlob(d digest.Digest, size int64) bool {
	fi, err := os.Stat(s.blobPath(d))
	return err == nil && fi.Mode().IsRegular() && (size < 0 || fi.Size() == size)
}

// ingest stores a blob of known digest and size, calling open only when it is missing.
// The content goes to ROOT/tmp/ingest, is hashed while it streams, and is renamed into
// blobs/sha256 only when digest and size match; otherwise nothing is kept. A per-digest
// flock makes concurrent pulls of the same blob wait for one download instead of racing,
// and lets the holder delete leftovers of a killed process. It reports whether the blob
// was already present. progress, when set, is called with the running byte count.
func (s *Store) ingest(d digest.Digest, size int64, open func() (io.ReadCloser, error), progress func(int64)) (existed bool, err error) {
	if err := d.Validate(); err != nil {
		return false, fmt.Errorf("blob digest %q: %w", d, errdefs.ErrInvalidArgument)
	}
	if d.Algorithm() != digest.SHA256 {
		return false, fmt.Errorf("blob %s: only sha256 is supported: %w", d, errdefs.ErrNotImplemented)
	}
	if s.hasBlob(d, size) {
		return true, nil
	}
	unlock, err := s.lock(filepath.Join("tmp", "ingest", d.Encoded()+".lock"), unix.LOCK_EX)
	if err != nil {
		return false, err
	}
	defer unlock()
	if s.hasBlob(d, size) {
		return true, nil
	}
	dir := filepath.Join(s.tmpDir(), "ingest")
	// We hold the digest's lock, so any partial file of it belongs to a dead process.
	removeLeftovers(filepath.Join(dir, d.Encoded()+".partial-*"))
	rc, err := open()
	if err != nil {
		return false, err
	}
	defer rc.Close()
	f, discard, err := createPartial(dir, d)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			discard()
		}
	}()
	tmp := f.Name()
	h := digest.SHA256.Digester()
	var n int64
	// Read one byte past the declared size so an oversized blob is caught.
	src := io.Reader(rc)
	if size >= 0 {
		src = io.LimitReader(rc, size+1)
	}
	w := io.MultiWriter(f, h.Hash())
	buf := make([]byte, 256<<10)
	for {
		m, rerr := src.Read(buf)
		if m > 0 {
			if _, werr := w.Write(buf[:m]); werr != nil {
				return false, fmt.Errorf("write blob %s: %w", d, werr)
			}
			n += int64(m)
			if progress != nil {
				progress(n)
			}
		}
		if errors.Is(rerr, io.EOF) {
			break
		}
		if rerr != nil {
			return false, fmt.Errorf("fetch blob %s: %w", d, registryErr(rerr))
		}
	}
	if size >= 0 && n != size {
		return false, fmt.Errorf("blob %s: size %d, manifest declares %d: %w", d, n, size, errdefs.ErrDataLoss)
	}
	if got := h.Digest(); got != d {
		return false, fmt.Errorf("blob %s: content has digest %s: %w", d, got, errdefs.ErrDataLoss)
	}
	if err = f.Sync(); err != nil {
		return false, fmt.Errorf("write blob %s: %w", d, err)
	}
	if err = f.Chmod(0o644); err != nil {
		return false, fmt.Errorf("write blob %s: %w", d, err)
	}
	if err = f.Close(); err != nil {
		return false, fmt.Errorf("write blob %s: %w", d, err)
	}
	if err = os.Rename(tmp, s.blobPath(d)); err != nil {
		return false, fmt.Errorf("store blob %s: %w", d, err)
	}
	syncDir(filepath.Dir(s.blobPath(d)))
	return false, nil
}

// createPartial creates the ingest file of blob d in dir; discard closes and removes
// it, for a download that failed.
func createPartial(dir string, d digest.Digest) (f *os.File, discard func(), err error) {
	f, err = os.CreateTemp(dir, d.Encoded()+".partial-")
	if err != nil {
		return nil, nil, fmt.Errorf("create ingest file: %w", err)
	}
	return f, func() { f.Close(); os.Remove(f.Name()) }, nil
}

// removeLeftovers removes what matches the glob pattern: the partial files and
// staging dirs of a dead process, found while holding their lock.
func removeLeftovers(pattern string) {
	old, _ := filepath.Glob(pattern)
	for _, o := range old {
		os.RemoveAll(o)
	}
}

// ingestUnknown stores content whose digest is not known beforehand (import, load of a
// docker archive) and returns its digest and size.
func (s *Store) ingestUnknown(r io.Reader) (digest.Digest, int64, error) {
	dir := filepath.Join(s.tmpDir(), "ingest")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", 0, fmt.Errorf("create ingest dir: %w", err)
	}
	f, err := os.CreateTemp(dir, "unknown.partial-")
	if err != nil {
		return "", 0, fmt.Errorf("create ingest file: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()
	h := digest.SHA256.Digester()
	n, err := io.Copy(io.MultiWriter(f, h.Hash()), r)
	if err != nil {
		return "", 0, fmt.Errorf("read content: %w", err)
	}
	d := h.Digest()
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		return "", 0, fmt.Errorf("read content: %w", err)
	}
	// Going through ingest re-verifies the temp copy and keeps the locking rules in one place.
	if _, err := s.ingest(d, n, func() (io.ReadCloser, error) { return io.NopCloser(f), nil }, nil); err != nil {
		return "", 0, err
	}
	return d, n, nil
}

// putBlob stores a small in-memory blob.
func (s *Store) putBlob(b []byte) (digest.Digest, error) {
	d := digest.FromBytes(b)
	_, err := s.ingest(d, int64(len(b)), func() (io.ReadCloser, error) {
		return io.NopCloser(bytes.NewReader(b)), nil
	}, nil)
	return d, err
}

func (s *Store) removeBlob(d digest.Digest) {
	if err := os.Remove(s.blobPath(d)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn().Err(err).Str("digest", d.String()).Msg("remove blob")
	}
}
