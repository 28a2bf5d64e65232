package images

import (
	"archive/tar"
	"bufio"
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
	"github.com/regclient/regclient/types/blob"
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
	// Holding the layer's lock, any staging dir for it was left by a dead process.
	removeLeftovers(filepath.Join(s.tmpDir(), "unpack", diffID.Encoded()+".staging-*"))
	staging, diff, err := s.newStaging(diffID)
	if err != nil {
		return err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()

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
	written, got, err := s.applyLayer(ctx, desc.Digest, comp, counted, diff)
	if err != nil {
		return err
	}
	if _, err := io.Copy(io.Discard, counted); err != nil {
		return fmt.Errorf("read layer blob %s: %w", desc.Digest, err)
	}
	if counted.n != desc.Size || blobHash.Digest() != desc.Digest {
		return fmt.Errorf("layer blob %s: stored content does not match: %w", desc.Digest, errdefs.ErrDataLoss)
	}
	if got != diffID {
		return fmt.Errorf("layer %s: uncompressed digest %s, config says %s: %w", desc.Digest, got, diffID, errdefs.ErrDataLoss)
	}
	// A layer under its name must be whole after a crash (see fetchUnpackLayer).
	if err := sealStaging(staging, written, diffID); err != nil {
		return err
	}
	return publishStaging(staging, final, diffID)
}

// newStaging makes ROOT/tmp/unpack/<diffID>.staging-* and its diff dir, where a layer
// is unpacked before it is published.
func (s *Store) newStaging(diffID digest.Digest) (staging, diff string, err error) {
	staging, err = os.MkdirTemp(filepath.Join(s.tmpDir(), "unpack"), diffID.Encoded()+".staging-")
	if err != nil {
		return "", "", fmt.Errorf("create staging dir: %w", err)
	}
	diff = filepath.Join(staging, "diff")
	if err := os.Mkdir(diff, 0o755); err != nil {
		os.RemoveAll(staging)
		return "", "", fmt.Errorf("create staging dir: %w", err)
	}
	return staging, diff, nil
}

// applyLayer unpacks the layer blob read from r (compressed as comp) into diff and
// returns the bytes of file data written and the digest of the uncompressed stream,
// read to its end: the diff_id covers every byte, tar padding included.
func (s *Store) applyLayer(ctx context.Context, d digest.Digest, comp string, r io.Reader, diff string) (int64, digest.Digest, error) {
	plain, closeZ, err := layerReader(comp, r)
	if err != nil {
		return 0, "", fmt.Errorf("layer %s: %w", d, err)
	}
	defer closeZ()
	diffHash := digest.SHA256.Digester()
	tee := io.TeeReader(plain, diffHash.Hash())
	a, err := newApplier(diff, true, s.maxUnpacked, s.log)
	if err != nil {
		return 0, "", err
	}
	a.writeback = true
	err = a.applyTar(ctx, tar.NewReader(tee))
	a.close()
	if err != nil {
		return 0, "", fmt.Errorf("unpack layer %s: %w", d, err)
	}
	if _, err := io.Copy(io.Discard, tee); err != nil {
		return 0, "", fmt.Errorf("layer %s: %w: %w", d, err, errdefs.ErrInvalidArgument)
	}
	return a.written, diffHash.Digest(), nil
}

// sealStaging records the layer's size, opens the staging dir to readers and writes
// all of it to disk (see the crash-safety note in fetchUnpackLayer).
func sealStaging(staging string, written int64, diffID digest.Digest) error {
	if err := os.WriteFile(filepath.Join(staging, "size"), []byte(strconv.FormatInt(written, 10)), 0o644); err != nil {
		return fmt.Errorf("record layer size: %w", err)
	}
	if err := os.Chmod(staging, 0o755); err != nil {
		return fmt.Errorf("chmod staging dir: %w", err)
	}
	if err := syncFS(staging); err != nil {
		return fmt.Errorf("sync layer %s: %w", diffID, err)
	}
	return nil
}

// publishStaging renames a sealed staging dir to final and makes the rename durable.
// A layer another pull published meanwhile is kept and ours dropped; on any failure
// the staging dir is removed.
func publishStaging(staging, final string, diffID digest.Digest) error {
	if err := os.Rename(staging, final); err != nil {
		os.RemoveAll(staging)
		if errors.Is(err, unix.EEXIST) || errors.Is(err, unix.ENOTEMPTY) {
			return nil
		}
		return fmt.Errorf("publish layer %s: %w", diffID, err)
	}
	syncDir(filepath.Dir(final))
	return nil
}

// layerReader returns the uncompressed stream of a layer blob read from r, and a
// function releasing the decompressor.
func layerReader(comp string, r io.Reader) (io.Reader, func(), error) {
	switch comp {
	case "gzip":
		zr, err := gzip.NewReader(r)
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		return zr, func() { zr.Close() }, nil
	case "zstd":
		zr, err := zstd.NewReader(r, zstd.WithDecoderConcurrency(1))
		if err != nil {
			return nil, nil, fmt.Errorf("%w: %w", err, errdefs.ErrInvalidArgument)
		}
		return zr, zr.Close, nil
	}
	return r, func() {}, nil
}

// syncFS writes out and flushes everything dirty on the filesystem of dir (syncfs(2)).
func syncFS(dir string) error {
	fd, err := unix.Open(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		return err
	}
	defer unix.Close(fd)
	return unix.Syncfs(fd)
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

// teeFetch reads a blob from the registry and, on the way, writes every byte to the
// blob's ingest file (and, for a reader that does not verify, a hash). It keeps the first error of either side apart, so a
// dropped connection is reported as such and not as the tar error it causes downstream.
type teeFetch struct {
	r        io.Reader
	w        io.Writer
	n        int64
	srcErr   error
	writeErr error
	progress func(int64)
	// syncFd, when >= 0, is the ingest file: every writebackChunk bytes, writeback
	// of the new data is started (see Read).
	syncFd int
	synced int64
}

// writebackChunk is how much of a blob is written before its writeback is started.
const writebackChunk = 8 << 20

func (t *teeFetch) Read(p []byte) (int, error) {
	n, err := t.r.Read(p)
	if n > 0 {
		if _, werr := t.w.Write(p[:n]); werr != nil {
			t.writeErr = werr
			return 0, werr
		}
		t.n += int64(n)
		if t.syncFd >= 0 && t.n-t.synced >= writebackChunk {
			// Start writeback of what was just written, without waiting for it: the
			// sync before the blob is renamed then finds most of it on disk already
			// instead of writing the whole blob while the pull waits.
			_ = unix.SyncFileRange(t.syncFd, t.synced, t.n-t.synced, unix.SYNC_FILE_RANGE_WRITE)
			t.synced = t.n
		}
		if t.progress != nil {
			t.progress(t.n)
		}
	}
	// Only a bare io.EOF is a clean end: regclient reports a digest or size mismatch
	// found at the end of a blob as an error that wraps io.EOF.
	if err != nil && err != io.EOF && t.srcErr == nil {
		t.srcErr = err
	}
	return n, err
}

// fetchUnpackLayer downloads the blob of desc and unpacks it in the same pass: each
// byte read from the registry (hashed by regclient's reader) goes to the ingest file and
// on into the decompressor, the diff_id hash and the applier, so the blob is neither
// read back nor hashed a second time. Both stay in ROOT/tmp until the blob digest and size and the
// diff_id all match; only then are the blob and the layer dir renamed into place. On any
// failure (wrong digest or size, hostile or malformed tar, dropped connection,
// cancellation) the ingest file and the staging dir are removed: nothing partial is ever
// visible, and a download cut short is started over next time, as ingest does.
//
// It takes the blob's ingest lock, then the layer's unpack lock (never the other way
// round anywhere, so two pulls cannot deadlock). When another pull finished the blob or
// the layer while we waited, it falls back to ingest and unpackLayer, which skip what
// is there. It reports whether both were already present.
func (s *Store) fetchUnpackLayer(ctx context.Context, desc ocispec.Descriptor, diffID digest.Digest, open func(context.Context) (io.ReadCloser, error), progress func(int64)) (existed bool, err error) {
	d, size := desc.Digest, desc.Size
	if err := d.Validate(); err != nil || d.Algorithm() != digest.SHA256 {
		return false, fmt.Errorf("blob digest %q: %w", d, errdefs.ErrInvalidArgument)
	}
	if err := diffID.Validate(); err != nil || diffID.Algorithm() != digest.SHA256 {
		return false, fmt.Errorf("diff_id %q: %w", diffID, errdefs.ErrInvalidArgument)
	}
	comp, ok := layerCompression(desc.MediaType)
	if !ok {
		return false, fmt.Errorf("layer %s: media type %q: %w", d, desc.MediaType, errdefs.ErrNotImplemented)
	}
	unlockBlob, err := s.lock(filepath.Join("tmp", "ingest", d.Encoded()+".lock"), unix.LOCK_EX)
	if err != nil {
		return false, err
	}
	unlockLayer, err := s.lock(filepath.Join("tmp", "unpack", diffID.Encoded()+".lock"), unix.LOCK_EX)
	if err != nil {
		unlockBlob()
		return false, err
	}
	final := s.layerDir(diffID)
	_, layerErr := os.Stat(filepath.Join(final, "diff"))
	if blob := s.hasBlob(d, size); blob || layerErr == nil {
		unlockLayer()
		unlockBlob()
		existed, err := s.ingest(d, size, func() (io.ReadCloser, error) { return open(ctx) }, progress)
		if err != nil {
			return false, err
		}
		if err := s.unpackLayer(ctx, desc, diffID, nil); err != nil {
			// A stored blob that is hostile or lies about its diff_id is dropped, as
			// pullLayer does.
			if errdefs.IsInvalidArgument(err) || errdefs.IsDataLoss(err) {
				s.removeBlob(d)
			}
			return false, err
		}
		return existed && layerErr == nil, nil
	}
	defer unlockBlob()
	defer unlockLayer()

	ingestDir := filepath.Join(s.tmpDir(), "ingest")
	// Holding both locks, leftovers for this blob or layer belong to a dead process.
	removeLeftovers(filepath.Join(ingestDir, d.Encoded()+".partial-*"))
	removeLeftovers(filepath.Join(s.tmpDir(), "unpack", diffID.Encoded()+".staging-*"))
	// The request has a context of its own, so that an early return can end the
	// fetching goroutine's read (closing the body under it would race with it).
	fetchCtx, cancelFetch := context.WithCancel(ctx)
	defer cancelFetch()
	rc, err := open(fetchCtx)
	if err != nil {
		return false, err
	}
	defer rc.Close()
	f, discard, err := createPartial(ingestDir, d)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			discard()
		}
	}()
	tmp := f.Name()
	staging, diff, err := s.newStaging(diffID)
	if err != nil {
		return false, err
	}
	defer func() {
		if err != nil {
			os.RemoveAll(staging)
		}
	}()

	// A registry blob comes through regclient's blob.BReader, which hashes what it
	// returns and, at the end of the body, fails the read (errs.ErrDigestMismatch,
	// ErrShortRead, ErrSizeLimitExceeded) unless digest and size match the descriptor
	// we asked with. A stream that ends in a bare io.EOF has therefore been verified,
	// and hashing it again here would only add a third sha256 pass over the blob
	// (with the diff_id's and regclient's), the largest CPU cost of a pull. Any other
	// reader is hashed here. tests/images TestPullCorruptedBlob and
	// TestPullStreamWrongBlobUnpacksButIsRefused fail if regclient stops checking.
	var blobHash digest.Digester
	w := io.Writer(f)
	if _, verifies := rc.(*blob.BReader); !verifies {
		blobHash = digest.SHA256.Digester()
		w = io.MultiWriter(f, blobHash.Hash())
	}
	// Read one byte past the declared size so an oversized blob is caught.
	src := &teeFetch{r: io.LimitReader(rc, size+1), w: w, progress: progress, syncFd: int(f.Fd())}
	// Two stages, so that one layer can use two cores (the last layers of a pull run
	// alone): a goroutine reads (and regclient hashes) the blob and writes the ingest
	// file; this one decompresses, hashes the diff_id and writes the files. The pipe
	// hands each chunk over; the goroutine's own fields (src) are read only after it
	// has ended.
	pr, pw := io.Pipe()
	fetched := make(chan struct{})
	go func() {
		defer close(fetched)
		_, err := io.CopyBuffer(pw, src, make([]byte, 256<<10))
		pw.CloseWithError(err)
	}()
	// stop ends the fetching goroutine early and waits for it, so nothing writes to
	// the ingest file once it is removed; cancelling the request unblocks a read from
	// a registry that has stalled.
	stopped := false
	stop := func() {
		if !stopped {
			stopped = true
			pr.CloseWithError(errdefs.ErrAborted)
			cancelFetch()
			<-fetched
		}
	}
	defer stop()
	// verifyBlob reads what is left of the blob and checks it; it decides whether a
	// failure was the transfer's (DataLoss, or the registry's error) or the layer's.
	verifyBlob := func(rest io.Reader) error {
		_, _ = io.Copy(io.Discard, rest)
		<-fetched
		if src.writeErr != nil {
			return fmt.Errorf("write blob %s: %w", d, src.writeErr)
		}
		if src.srcErr != nil {
			return fmt.Errorf("fetch blob %s: %w", d, registryErr(src.srcErr))
		}
		if src.n != size {
			return fmt.Errorf("blob %s: size %d, manifest declares %d: %w", d, src.n, size, errdefs.ErrDataLoss)
		}
		if blobHash == nil {
			return nil // regclient checked the digest at the end of the body
		}
		if got := blobHash.Digest(); got != d {
			return fmt.Errorf("blob %s: content has digest %s: %w", d, got, errdefs.ErrDataLoss)
		}
		return nil
	}
	// fail returns the error of a failed unpack: cancellation as it is; otherwise the
	// rest of the blob is read to tell a corrupted or cut download (DataLoss, or the
	// registry's error) from a hostile or malformed layer (the unpack error).
	fail := func(uerr error) error {
		if ctx.Err() != nil {
			stop()
			return ctx.Err()
		}
		if verr := verifyBlob(pr); verr != nil {
			return verr
		}
		return uerr
	}

	// The decompressor reads through a large buffer (a gzip reader alone would pull
	// 4 KiB at a time).
	buffered := bufio.NewReaderSize(pr, 256<<10)
	written, got, err := s.applyLayer(ctx, d, comp, buffered, diff)
	if err != nil {
		return false, fail(err)
	}
	// The blob digest must cover every byte too, anything after the compressed
	// stream included.
	if err := verifyBlob(buffered); err != nil {
		return false, err
	}
	if got != diffID {
		return false, fmt.Errorf("layer %s: uncompressed digest %s, config says %s: %w", d, got, diffID, errdefs.ErrDataLoss)
	}
	// Crash safety: a blob or a layer under its name must be whole and verified
	// after a crash (hasBlob trusts a blob's name and size; a layer dir is used as
	// it is). So nothing is renamed into place before its content is on disk: one
	// syncfs writes out the ingest file and every file, directory and xattr of the
	// staging dir (all under ROOT/tmp, on the filesystem of blobs/ and layers/, or
	// the renames below could not work). An fsync per layer file would cost a call
	// per file and syncs nothing more. The renames themselves are made durable by
	// fsyncing the two parent dirs. A crash before that loses a rename, never the
	// content behind one, and the next pull redoes it; tmp/ leftovers are removed
	// under the locks. The sync_file_range calls while writing (sync_file_range
	// flushes neither metadata nor the disk's cache, so it cannot replace this)
	// only leave syncfs little to write.
	if err = sealStaging(staging, written, diffID); err != nil {
		return false, err
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
	// From here the blob is stored: a failure to publish the layer leaves it (verified)
	// for the next pull, which unpacks it from the store.
	return false, publishStaging(staging, final, diffID)
}
