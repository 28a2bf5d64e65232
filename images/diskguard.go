package images

import (
	"fmt"
	"io"
	"math"

	"github.com/containerd/errdefs"
	"golang.org/x/sys/unix"
)

// diskGuard keeps a load or a layer's unpacking from taking the last of the store's
// filesystem's free space or inodes.
//
// For `cubo load`, the archive must be extracted whole before anything in it can be
// checked: index.json or manifest.json may come last (docker save writes manifest.json
// last), and the blobs are verified against the digests those give. Compressed, a few
// megabytes of archive expand to terabytes, and no size is known beforehand to cap that
// by: a real archive may be as big as the disk allows, and WithMaxUnpackedSize bounds one
// layer, not an archive of many. So the bound is the disk itself: every byte copied out
// of the archive (extracted, then copied again by the ingest into the store) is first
// checked against statfs, at least every guardRecheck bytes, and the load fails with
// ResourceExhausted rather than eat into a reserve of 5% of the filesystem (at most 512
// MiB) and of its inodes (at most 64Ki): ext4 keeps 5% for root, but Cubo runs as root
// and would take that too. The extracted dir is then removed. docker load and podman
// load extract without any bound and stop at ENOSPC, with the disk full for every other
// writer.
//
// A layer's unpacking (pulled or loaded) is guarded the same way (applier.writeData and
// entry): a small gzip layer of one repeated byte, or of a million empty files, expands
// without bound too. WithMaxUnpackedSize still caps one layer's data when set.
type diskGuard struct {
	dir                  string
	bytesLeft, filesLeft int64 // allowed before the next statfs
}

const (
	guardRecheck      = 64 << 20
	guardRecheckFiles = 4096
)

// use accounts for bytes and files about to be written, asking statfs again once what the
// last check allowed is spent.
func (g *diskGuard) use(bytes, files int64) error {
	g.bytesLeft -= bytes
	g.filesLeft -= files
	if g.bytesLeft >= 0 && g.filesLeft >= 0 {
		return nil
	}
	var st unix.Statfs_t
	if err := unix.Statfs(g.dir, &st); err != nil {
		return fmt.Errorf("check free space: %w", err)
	}
	bsize := int64(st.Frsize)
	if bsize <= 0 {
		bsize = max(int64(st.Bsize), 1)
	}
	// What earlier calls allowed is written and so counted by statfs; this call's is not.
	reserve := min(blockBytes(st.Blocks, bsize)/20, 512<<20)
	g.bytesLeft = blockBytes(st.Bavail, bsize) - reserve - bytes
	if g.bytesLeft < 0 {
		return fmt.Errorf("this would leave less than %d bytes free on the store's filesystem: %w", reserve, errdefs.ErrResourceExhausted)
	}
	g.filesLeft = math.MaxInt64
	if st.Files > 0 { // btrfs has no inode count, and says 0
		reserve := min(int64(st.Files)/20, 64<<10)
		g.filesLeft = int64(st.Ffree) - reserve - files
		if g.filesLeft < 0 {
			return fmt.Errorf("this would leave less than %d inodes free on the store's filesystem: %w", reserve, errdefs.ErrResourceExhausted)
		}
	}
	g.bytesLeft = min(g.bytesLeft, guardRecheck)
	g.filesLeft = min(g.filesLeft, guardRecheckFiles)
	return nil
}

func blockBytes(blocks uint64, bsize int64) int64 {
	if blocks > uint64(math.MaxInt64/bsize) {
		return math.MaxInt64
	}
	return int64(blocks) * bsize
}

// reader counts what r yields against the guard, copies times: the writes reading it
// leads to.
func (g *diskGuard) reader(r io.Reader, copies int64) io.Reader {
	return &guardedReader{r: r, g: g, copies: copies}
}

type guardedReader struct {
	r      io.Reader
	g      *diskGuard
	copies int64
}

func (gr *guardedReader) Read(p []byte) (int, error) {
	n, err := gr.r.Read(p)
	if n > 0 {
		if gerr := gr.g.use(int64(n)*gr.copies, 0); gerr != nil {
			return 0, gerr
		}
	}
	return n, err
}
