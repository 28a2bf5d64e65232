package images

import (
	"archive/tar"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// fuzzEntryTypes are the tar types the structured fuzzer picks from.
var fuzzEntryTypes = []byte{tar.TypeReg, tar.TypeDir, tar.TypeSymlink, tar.TypeLink, tar.TypeChar,
	tar.TypeBlock, tar.TypeFifo, tar.TypeReg, tar.TypeSymlink, tar.TypeXGlobalHeader, tar.TypeGNUSparse, 'Z'}

// fuzzName builds a path from the fuzzer's bytes out of components that matter for
// confinement: "..", ".", absolute prefixes pointing at the sentinel dir, whiteouts,
// names reused by earlier entries (so symlinks get walked through).
func fuzzName(b []byte, outside string) string {
	return fuzzPath(b, outside, layerComps)
}

var layerComps = []string{"a", "b", "..", ".", "l", "d", ".wh.a", ".wh..wh..opq", ".wh..wh.plnk", ".wh..", "", "../..", "sentinel", "//", "a/b", ".wh.l"}

// fuzzPath joins the components the fuzzer's bytes pick from comps; a first byte of 250
// or more starts at the sentinel dir outside, 249 at "/".
func fuzzPath(b []byte, outside string, comps []string) string {
	var parts []string
	for i, c := range b {
		switch {
		case i == 0 && c >= 250:
			parts = append(parts, outside)
		case i == 0 && c == 249:
			parts = append(parts, "/")
		default:
			parts = append(parts, comps[int(c)%len(comps)])
		}
	}
	return strings.Join(parts, "/")
}

// fuzzLinkTarget is a symlink or hardlink target: inside, relative escapes, absolute ones.
func fuzzLinkTarget(b []byte, outside string) string {
	if len(b) == 0 {
		return ""
	}
	switch b[0] % 6 {
	case 3:
		return outside
	case 4:
		return filepath.Join(outside, "sentinel")
	case 5:
		return strings.Repeat("../", 1+int(b[0])%12) + strings.TrimPrefix(outside, "/")
	}
	return fuzzName(b[1:], outside)
}

// buildFuzzTar turns the fuzzer's bytes into a tar stream: each entry takes a type byte,
// a name length and name bytes, a link length and link bytes, a mode byte and a body
// length. Headers tar.Writer refuses are skipped.
func buildFuzzTar(spec []byte, outside string) []byte {
	var buf bytes.Buffer
	tw := tar.NewWriter(&buf)
	in := fuzzBytes(spec)
	for n := 0; len(in) > 0 && n < 32; n++ {
		typ := fuzzEntryTypes[int(in.next())%len(fuzzEntryTypes)]
		name := fuzzName(in.take(int(in.next()%6)+1), outside)
		link := fuzzLinkTarget(in.take(int(in.next()%6)), outside)
		modeByte := in.next()
		size := int64(in.next() % 64)
		h := &tar.Header{Name: name, Typeflag: typ, Mode: int64(modeByte)<<4 | 0o600, ModTime: time.Unix(1700000000, 0),
			Uid: int(modeByte % 3), Gid: int(modeByte % 5)}
		switch typ {
		case tar.TypeSymlink, tar.TypeLink:
			h.Linkname = link
		case tar.TypeChar, tar.TypeBlock:
			// Only harmless device numbers: the null device and an unused major.
			h.Devmajor, h.Devminor = int64(modeByte%2), 3
		case tar.TypeReg, tar.TypeGNUSparse:
			h.Size = size
			h.Typeflag = tar.TypeReg
		}
		if modeByte%11 == 0 {
			h.PAXRecords = map[string]string{"SCHILY.xattr.user.fuzz": "v", "SCHILY.xattr.trusted.overlay.opaque": "y"}
		}
		if tw.WriteHeader(h) != nil {
			continue
		}
		if h.Typeflag == tar.TypeReg && h.Size > 0 {
			_, _ = tw.Write(bytes.Repeat([]byte{modeByte | 1}, int(h.Size)))
		}
	}
	_ = tw.Close()
	return buf.Bytes()
}

// treeState lists every path below dir with what identifies its content, to show that
// nothing changed there. It never follows symlinks.
func treeState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		var st unix.Stat_t
		if err := unix.Lstat(p, &st); err != nil {
			return err
		}
		v := fmt.Sprintf("mode %o size %d nlink %d owner %d:%d mtime %d", st.Mode, st.Size, st.Nlink, st.Uid, st.Gid, st.Mtim.Nano())
		if st.Mode&unix.S_IFMT == unix.S_IFREG {
			b, _ := os.ReadFile(p)
			v += fmt.Sprintf(" data %q", b)
		}
		out[p] = v
		return nil
	})
	if err != nil {
		t.Fatalf("walk %s: %v", dir, err)
	}
	return out
}

func openFds(t *testing.T) int {
	t.Helper()
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Fatal(err)
	}
	return len(ents)
}

// FuzzApplyTar applies tar streams to a layer dir and checks confinement: whatever the
// entries (.., absolute names, symlinks and hardlinks out, whiteouts through symlinks,
// devices), nothing outside the target dir changes: a sentinel dir next to it (which the
// absolute and ../ names aim at) and the parent dir are compared before and after, the
// sentinel file keeps its content and link count, and no fd is leaked. structured
// selects whether raw is a tar stream itself or the recipe buildFuzzTar turns into one.
// Errors must be one line. Runs as root (devices, chown, trusted xattrs), else skips.
func FuzzApplyTar(f *testing.F) {
	if os.Geteuid() != 0 {
		f.Skip("FuzzApplyTar needs root (mknod, chown, trusted.* xattrs)")
	}
	// Recipes (see buildFuzzTar): type index, name length-1, name components, link
	// length, link bytes, mode, size; per entry.
	for _, s := range [][]byte{
		{0, 0, 0, 0, 0, 5},                                                                // file a
		{2, 0, 4, 1, 3, 0, 0, 0, 1, 4, 0, 0, 0, 3},                                        // symlink l -> outside, file l/a
		{3, 0, 0, 1, 4, 0, 0},                                                             // hardlink a -> outside/sentinel
		{2, 0, 4, 1, 5, 0, 0, 0, 1, 4, 12, 0, 0, 3},                                       // symlink l -> ../../outside, file l/sentinel
		{2, 0, 4, 2, 0, 4, 0, 0, 0, 1, 4, 0, 0, 0, 3},                                     // symlink loop l -> l, file l/a
		{0, 1, 2, 0, 0, 0, 3},                                                             // ../a
		{0, 1, 250, 0, 0, 0, 3},                                                           // absolute outside/a
		{0, 0, 0, 0, 0, 1, 0, 0, 6, 0, 0, 0, 0, 0, 7, 0, 0, 0},                            // file a, whiteout .wh.a, opaque
		{4, 0, 0, 0, 1, 0, 5, 0, 1, 0, 0, 0, 6, 0, 5, 0, 0, 0},                            // char device, block device, fifo
		{1, 0, 5, 0, 0, 0, 0, 1, 5, 0, 0, 0, 3, 2, 0, 5, 1, 3, 0, 0, 0, 1, 5, 1, 0, 0, 3}, // dir d, d/a, d -> outside, d/b
		{2, 0, 4, 1, 3, 0, 0, 0, 1, 4, 6, 0, 0, 0, 0, 1, 4, 7, 0, 0, 0},                   // whiteout and opaque through a symlink
		{2, 0, 4, 1, 3, 0, 0, 3, 0, 0, 2, 0, 4, 12, 0, 0},                                 // hardlink a -> l/sentinel
	} {
		f.Add(s, true, true)
		f.Add(s, true, false)
	}
	f.Add([]byte("not a tar stream"), false, true)
	truncated := buildFuzzTar([]byte{0, 1, 0, 0, 0, 60}, "/nonexistent")
	f.Add(truncated[:600], false, true)
	base := f.TempDir()
	f.Fuzz(func(t *testing.T, raw []byte, structured, overlay bool) {
		work, err := os.MkdirTemp(base, "w")
		if err != nil {
			t.Fatal(err)
		}
		defer os.RemoveAll(work)
		outside := filepath.Join(work, "outside")
		parent := filepath.Join(work, "parent")
		target := filepath.Join(parent, "diff")
		for _, d := range []string{outside, target} {
			if err := os.MkdirAll(d, 0o755); err != nil {
				t.Fatal(err)
			}
		}
		if err := os.WriteFile(filepath.Join(outside, "sentinel"), []byte("precious\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		stream := raw
		if structured {
			stream = buildFuzzTar(raw, outside)
		}
		beforeOutside := treeState(t, outside)
		beforeParent, _ := os.ReadDir(parent)
		fds := openFds(t)

		a, err := newApplier(target, overlay, 1<<20, zerolog.Nop())
		if err != nil {
			t.Fatal(err)
		}
		err = a.applyTar(context.Background(), tar.NewReader(bytes.NewReader(stream)))
		a.close()
		t.Logf("applied: %v", err)
		if err != nil && strings.ContainsAny(err.Error(), "\n\r") {
			t.Fatalf("error is not one line: %q", err)
		}
		if got := openFds(t); got != fds {
			t.Fatalf("fd leak: %d open before, %d after (err %v)", fds, got, err)
		}
		after := treeState(t, outside)
		if len(after) != len(beforeOutside) {
			t.Fatalf("the sentinel dir changed (err %v):\nbefore %v\nafter  %v", err, beforeOutside, after)
		}
		for p, v := range beforeOutside {
			if after[p] != v && p != outside {
				t.Fatalf("%s changed (err %v): %q -> %q", p, err, v, after[p])
			}
		}
		afterParent, _ := os.ReadDir(parent)
		if len(afterParent) != len(beforeParent) || afterParent[0].Name() != "diff" {
			t.Fatalf("the target's parent changed (err %v): %v", err, afterParent)
		}
		var st unix.Stat_t
		if err := unix.Lstat(target, &st); err != nil || st.Mode&unix.S_IFMT != unix.S_IFDIR {
			t.Fatalf("target is no longer a directory: %v mode %o", err, st.Mode)
		}
		// Everything below the target is really below it: no entry is a mount, and
		// every hardlinked regular file shares its inode only with files in the target.
		err = filepath.WalkDir(target, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if !strings.HasPrefix(p, target) {
				return errors.New("walked out of the target: " + p)
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	})
}

// fuzzBytes hands out the fuzzer's bytes, one or a few at a time; zeros once spent.
type fuzzBytes []byte

func (b *fuzzBytes) next() byte {
	if len(*b) == 0 {
		return 0
	}
	c := (*b)[0]
	*b = (*b)[1:]
	return c
}

func (b *fuzzBytes) take(n int) []byte {
	n = min(n, len(*b))
	out := (*b)[:n]
	*b = (*b)[n:]
	return out
}
