package build

import (
	"archive/tar"
	"compress/gzip"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

func TestIgnoreMatcher(t *testing.T) {
	m, err := parseIgnore(strings.NewReader("# comment\n*.log\n/build\n**/tmp\n!build/keep\ndocs/?.md\n"))
	if err != nil {
		t.Fatal(err)
	}
	for rel, want := range map[string]bool{
		"a.log": true, "sub/a.log": false, "build": true, "build/x": true, "build/keep": false,
		"tmp": true, "a/b/tmp/c": true, "docs/a.md": true, "docs/ab.md": false, "src/main.go": false,
	} {
		if got := m.match(rel); got != want {
			t.Errorf("match(%q) = %v, want %v", rel, got, want)
		}
	}
}

func TestCleanSource(t *testing.T) {
	for src, want := range map[string]string{"a/b": "a/b", "/a/../b": "b", ".": "", "./x/": "x", "/": "", "a/../b": "b"} {
		if got, err := cleanSource(src); err != nil || got != want {
			t.Errorf("cleanSource(%q) = %q, %v; want %q", src, got, err, want)
		}
	}
	for _, src := range []string{"..", "../x", "a/../../x"} {
		if _, err := cleanSource(src); err == nil || !strings.Contains(err.Error(), "escapes the build context") {
			t.Errorf("cleanSource(%q) = %v, want an escape error", src, err)
		}
	}
}

func TestResolveSymlinkOut(t *testing.T) {
	ctx := t.TempDir()
	out := t.TempDir()
	os.WriteFile(filepath.Join(out, "f"), []byte("x"), 0o644)
	os.Symlink(out, filepath.Join(ctx, "dir"))
	os.Symlink("inside", filepath.Join(ctx, "ok"))
	os.WriteFile(filepath.Join(ctx, "inside"), []byte("y"), 0o644)
	c, err := openContext(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := c.resolve("dir/f"); err == nil || !strings.Contains(err.Error(), "leads out") {
		t.Errorf("resolve through an outward symlink: %v", err)
	}
	if s, err := c.resolve("ok"); err != nil || len(s) != 1 || filepath.Base(s[0].host) != "inside" {
		t.Errorf("resolve an inward symlink: %v %v", s, err)
	}
	if s, err := c.resolve("*side"); err != nil || len(s) != 1 {
		t.Errorf("wildcard: %v %v", s, err)
	}
}

// TestWriteLayerWhiteouts builds an upper dir as overlayfs leaves it and checks the OCI
// names in the layer. Whiteouts are device nodes and opaque markers trusted xattrs, so
// this needs root.
func TestWriteLayerWhiteouts(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root for mknod and trusted.* xattrs")
	}
	upper := t.TempDir()
	os.MkdirAll(filepath.Join(upper, "etc"), 0o755)
	os.MkdirAll(filepath.Join(upper, "opaque"), 0o755)
	os.WriteFile(filepath.Join(upper, "etc", "new"), []byte("n"), 0o600)
	os.Link(filepath.Join(upper, "etc", "new"), filepath.Join(upper, "etc", "hard"))
	os.Symlink("new", filepath.Join(upper, "etc", "sym"))
	if err := unix.Mknod(filepath.Join(upper, "etc", "gone"), unix.S_IFCHR, 0); err != nil {
		t.Fatal(err)
	}
	if err := unix.Setxattr(filepath.Join(upper, "opaque"), "trusted.overlay.opaque", []byte("y"), 0); err != nil {
		t.Skipf("trusted xattrs unsupported here: %v", err)
	}
	blob := filepath.Join(t.TempDir(), "l.tgz")
	desc, diffID, ok, err := writeLayer(upper, blob)
	if err != nil || !ok || desc.Size == 0 || diffID == "" {
		t.Fatalf("writeLayer = %v %v %v %v", desc, diffID, ok, err)
	}
	f, _ := os.Open(blob)
	defer f.Close()
	zr, err := gzip.NewReader(f)
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var names []string
	types := map[string]byte{}
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		names = append(names, h.Name)
		types[h.Name] = h.Typeflag
		if _, ok := h.PAXRecords["SCHILY.xattr.trusted.overlay.opaque"]; ok {
			t.Errorf("%s carries overlay's own xattr", h.Name)
		}
	}
	want := []string{"etc/", "etc/.wh.gone", "etc/hard", "etc/new", "etc/sym", "opaque/", "opaque/.wh..wh..opq"}
	if !slices.Equal(names, want) {
		t.Errorf("entries = %q, want %q", names, want)
	}
	if types["etc/new"] != tar.TypeLink || types["etc/sym"] != tar.TypeSymlink {
		t.Errorf("types = %v", types)
	}
	empty := t.TempDir()
	if _, _, ok, err := writeLayer(empty, blob); ok || err != nil {
		t.Errorf("empty upper: ok=%v err=%v", ok, err)
	}
}
