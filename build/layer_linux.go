package build

import (
	"archive/tar"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/klauspost/compress/gzip"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// OCI whiteout names (image-spec layer.md).
const (
	whiteoutPrefix = ".wh."
	whiteoutOpaque = ".wh..wh..opq"
)

// writeLayer tars the overlay upper dir into a gzip blob at blobPath, converting
// overlay whiteouts (0/0 character devices) into ".wh.NAME" files and opaque dirs
// (trusted.overlay.opaque=y) into ".wh..wh..opq" entries. It returns the blob's
// descriptor and diff_id, and ok=false when the upper dir holds no change at all.
func writeLayer(upper, blobPath string) (desc ocispec.Descriptor, diffID digest.Digest, ok bool, err error) {
	f, err := os.OpenFile(blobPath, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return desc, "", false, fmt.Errorf("create layer blob: %w", err)
	}
	defer f.Close()
	blobHash := digest.SHA256.Digester()
	cw := &countWriter{w: io.MultiWriter(f, blobHash.Hash())}
	zw, err := gzip.NewWriterLevel(cw, gzip.BestSpeed)
	if err != nil {
		return desc, "", false, err
	}
	diffHash := digest.SHA256.Digester()
	tw := tar.NewWriter(io.MultiWriter(zw, diffHash.Hash()))
	n, err := tarDiff(upper, tw)
	if err != nil {
		return desc, "", false, fmt.Errorf("write layer from %s: %w", upper, err)
	}
	if n == 0 {
		return desc, "", false, nil
	}
	if err := tw.Close(); err != nil {
		return desc, "", false, fmt.Errorf("write layer: %w", err)
	}
	if err := zw.Close(); err != nil {
		return desc, "", false, fmt.Errorf("write layer: %w", err)
	}
	if err := f.Close(); err != nil {
		return desc, "", false, fmt.Errorf("write layer: %w", err)
	}
	desc = ocispec.Descriptor{MediaType: ocispec.MediaTypeImageLayerGzip, Digest: blobHash.Digest(), Size: cw.n}
	return desc, diffHash.Digest(), true, nil
}

type countWriter struct {
	w io.Writer
	n int64
}

func (c *countWriter) Write(p []byte) (int, error) {
	n, err := c.w.Write(p)
	c.n += int64(n)
	return n, err
}

// tarDiff writes the entries of upper in lexical order and returns how many it wrote.
func tarDiff(upper string, tw *tar.Writer) (int, error) {
	links := map[uint64]string{} // inode -> first name, for hard links within the layer
	count := 0
	err := filepath.WalkDir(upper, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, err := filepath.Rel(upper, p)
		if err != nil || rel == "." {
			return err
		}
		name := filepath.ToSlash(rel)
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return fmt.Errorf("stat %s: %w", name, err)
		}
		mode := st.Mode & unix.S_IFMT
		if mode == unix.S_IFCHR && st.Rdev == 0 {
			dir, base := filepath.Split(name)
			count++
			return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: dir + whiteoutPrefix + base, Mode: 0o644, Format: tar.FormatPAX})
		}
		for _, bad := range []string{"trusted.overlay.redirect", "trusted.overlay.metacopy"} {
			if _, err := unix.Lgetxattr(p, bad, nil); err == nil {
				// Only appears with redirect_dir/metacopy, which change what the upper
				// dir means; build mounts never enable them.
				return fmt.Errorf("%s carries %s: overlay redirect_dir/metacopy is not supported", name, bad)
			}
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		link := ""
		if fi.Mode()&fs.ModeSymlink != 0 {
			if link, err = os.Readlink(p); err != nil {
				return err
			}
		}
		if fi.Mode()&fs.ModeSocket != 0 {
			return nil // sockets cannot be archived; Docker drops them too
		}
		hdr, err := tar.FileInfoHeader(fi, link)
		if err != nil {
			return fmt.Errorf("archive %s: %w", name, err)
		}
		hdr.Name = name
		if fi.IsDir() {
			hdr.Name += "/"
		}
		hdr.Uid, hdr.Gid = int(st.Uid), int(st.Gid)
		hdr.Uname, hdr.Gname = "", ""
		hdr.AccessTime, hdr.ChangeTime = time.Time{}, time.Time{}
		hdr.Format = tar.FormatPAX
		if mode == unix.S_IFCHR || mode == unix.S_IFBLK {
			hdr.Devmajor, hdr.Devminor = int64(unix.Major(st.Rdev)), int64(unix.Minor(st.Rdev))
		}
		if xa, err := xattrs(p); err != nil {
			return fmt.Errorf("read xattrs of %s: %w", name, err)
		} else if len(xa) > 0 {
			hdr.PAXRecords = map[string]string{}
			for k, v := range xa {
				hdr.PAXRecords["SCHILY.xattr."+k] = v
			}
		}
		if mode == unix.S_IFREG && st.Nlink > 1 {
			if first, ok := links[st.Ino]; ok {
				hdr.Typeflag, hdr.Linkname, hdr.Size = tar.TypeLink, first, 0
			} else {
				links[st.Ino] = name
			}
		}
		if err := tw.WriteHeader(hdr); err != nil {
			return fmt.Errorf("archive %s: %w", name, err)
		}
		count++
		if hdr.Typeflag == tar.TypeReg && hdr.Size > 0 {
			src, err := os.Open(p)
			if err != nil {
				return err
			}
			_, err = io.Copy(tw, src)
			src.Close()
			if err != nil {
				return fmt.Errorf("archive %s: %w", name, err)
			}
		}
		if fi.IsDir() {
			if v, err := getXattr(p, "trusted.overlay.opaque"); err == nil && v == "y" {
				count++
				return tw.WriteHeader(&tar.Header{Typeflag: tar.TypeReg, Name: name + "/" + whiteoutOpaque, Mode: 0o644, Format: tar.FormatPAX})
			}
		}
		return nil
	})
	return count, err
}

// xattrs returns the extended attributes of p worth keeping in a layer: everything but
// overlayfs's own bookkeeping (trusted.overlay.*).
func xattrs(p string) (map[string]string, error) {
	sz, err := unix.Llistxattr(p, nil)
	if err != nil || sz == 0 {
		if errors.Is(err, unix.ENOTSUP) {
			return nil, nil
		}
		return nil, err
	}
	buf := make([]byte, sz)
	sz, err = unix.Llistxattr(p, buf)
	if err != nil {
		return nil, err
	}
	out := map[string]string{}
	for _, k := range strings.Split(strings.TrimRight(string(buf[:sz]), "\x00"), "\x00") {
		if k == "" || strings.HasPrefix(k, "trusted.overlay.") {
			continue
		}
		v, err := getXattr(p, k)
		if err != nil {
			continue
		}
		out[k] = v
	}
	return out, nil
}

func getXattr(p, name string) (string, error) {
	buf := make([]byte, 256)
	for {
		n, err := unix.Lgetxattr(p, name, buf)
		if errors.Is(err, unix.ERANGE) {
			buf = make([]byte, len(buf)*4)
			continue
		}
		if err != nil {
			return "", err
		}
		return string(buf[:n]), nil
	}
}
