package images_test

import (
	"archive/tar"
	"context"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cubo-dev/cubo/images"
	"github.com/opencontainers/go-digest"
)

// snapshot records every path below dir with its size, to prove nothing changed there.
func snapshot(t *testing.T, dir string) map[string]int64 {
	t.Helper()
	out := map[string]int64{}
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil {
			out[p] = fi.Size()
		}
		return nil
	})
	return out
}

func TestHostileLayers(t *testing.T) {
	reg := startRegistry(t, modePlain)
	outside := t.TempDir()
	victim := filepath.Join(outside, "victim")
	must(t, os.WriteFile(victim, []byte("precious\n"), 0o644))
	// Relative paths from a layer dir (ROOT/tmp/unpack/X/diff or ROOT/layers/X/diff) to
	// outside, with plenty of .. to reach /.
	up := "../../../../../../../../../../../../../.."
	cases := []struct {
		name    string
		entries []entry
	}{
		{"dotdot", []entry{{name: up + outside + "/pwned", typ: tar.TypeReg, body: "x"}}},
		{"dotdot-inner", []entry{{name: "a/../../pwned", typ: tar.TypeReg, body: "x"}}},
		{"absolute", []entry{{name: outside + "/pwned", typ: tar.TypeReg, body: "x"}}},
		{"symlink-then-write", []entry{
			{name: "link", typ: tar.TypeSymlink, link: outside},
			{name: "link/pwned", typ: tar.TypeReg, body: "x"},
		}},
		{"relative-symlink-then-write", []entry{
			{name: "link", typ: tar.TypeSymlink, link: up + outside},
			{name: "link/victim", typ: tar.TypeReg, body: "overwritten"},
		}},
		{"symlink-swapped-mid-archive", []entry{
			{name: "d", typ: tar.TypeDir},
			{name: "d/ok", typ: tar.TypeReg, body: "fine"},
			{name: "d", typ: tar.TypeSymlink, link: outside},
			{name: "d/pwned", typ: tar.TypeReg, body: "x"},
		}},
		{"hardlink-absolute", []entry{{name: "hl", typ: tar.TypeLink, link: victim}}},
		{"hardlink-dotdot", []entry{{name: "hl", typ: tar.TypeLink, link: up + victim}}},
		{"hardlink-through-symlink", []entry{
			{name: "link", typ: tar.TypeSymlink, link: outside},
			{name: "hl", typ: tar.TypeLink, link: "link/victim"},
		}},
		{"whiteout-dotdot", []entry{{name: up + outside + "/.wh.victim", typ: tar.TypeReg}}},
		{"whiteout-through-symlink", []entry{
			{name: "link", typ: tar.TypeSymlink, link: outside},
			{name: "link/.wh.victim", typ: tar.TypeReg},
		}},
		{"opaque-through-symlink", []entry{
			{name: "link", typ: tar.TypeSymlink, link: outside},
			{name: "link/.wh..wh..opq", typ: tar.TypeReg},
		}},
	}
	before := snapshot(t, outside)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			good := gzLayer(t, makeTar(t, []entry{{name: "etc/", typ: tar.TypeDir}, {name: "etc/hostname", typ: tar.TypeReg, body: "ok\n"}}))
			bad := gzLayer(t, makeTar(t, tc.entries))
			reg.push(t, "hostile:"+tc.name, "amd64", good, bad)
			s := newStore(t)
			_, err := s.Pull(context.Background(), reg.addr+"/hostile:"+tc.name)
			if err == nil {
				t.Fatal("hostile layer pulled without error")
			}
			if !errdefs.IsInvalidArgument(err) {
				t.Errorf("error class: %v", err)
			}
			if tc.name != "hardlink-absolute" && tc.name != "hardlink-dotdot" && !errors.Is(err, images.ErrUnsafeEntry) {
				t.Logf("not classified as unsafe entry: %v", err)
			}
			t.Logf("refused: %v", err)
			if got := snapshot(t, outside); len(got) != len(before) {
				t.Fatalf("something was written outside the store: %v", got)
			}
			if b, _ := os.ReadFile(victim); string(b) != "precious\n" {
				t.Fatalf("victim changed: %q", b)
			}
			if _, err := s.LayerDir(bad.diffID); err == nil {
				t.Fatal("the hostile layer is visible in the store")
			}
			if blobFiles(t, s)[digest.FromBytes(bad.blob).Encoded()] {
				t.Fatal("the hostile layer blob was kept")
			}
			imgs, _ := s.List(context.Background())
			if len(imgs) != 0 {
				t.Fatal("the hostile image is listed")
			}
			assertNoTmpLeftovers(t, s)
		})
	}
}

// A layer whose diff_id in the config does not match is refused like a hostile one.
func TestDiffIDMismatch(t *testing.T) {
	reg := startRegistry(t, modePlain)
	l := gzLayer(t, makeTar(t, []entry{{name: "f", typ: tar.TypeReg, body: "x"}}))
	l.diffID = digest.FromString("something else")
	reg.push(t, "liar:1", "amd64", l)
	s := newStore(t)
	_, err := s.Pull(context.Background(), reg.addr+"/liar:1")
	if !errdefs.IsDataLoss(err) {
		t.Fatalf("got %v, want DataLoss", err)
	}
	if blobFiles(t, s)[digest.FromBytes(l.blob).Encoded()] {
		t.Fatal("blob kept")
	}
	assertNoTmpLeftovers(t, s)
}

// A tiny layer holding a huge file of zeros stays tiny on disk.
func TestSparseBomb(t *testing.T) {
	reg := startRegistry(t, modePlain)
	const size = 256 << 20
	l := gzLayer(t, makeTar(t, []entry{{name: "zeros", typ: tar.TypeReg, size: size}}))
	reg.push(t, "bomb:1", "amd64", l)
	s := newStore(t)
	img, err := s.Pull(context.Background(), reg.addr+"/bomb:1")
	must(t, err)
	dirs, err := s.LayerDirs(context.Background(), img)
	must(t, err)
	fi, err := os.Stat(filepath.Join(dirs[0], "zeros"))
	must(t, err)
	if fi.Size() != size {
		t.Fatalf("size %d", fi.Size())
	}
	if blocks := fileBlocks(fi); blocks*512 > 1<<20 {
		t.Fatalf("%d bytes allocated for a file of zeros", blocks*512)
	}
	// With a cap on unpacked data, a layer of real data over the cap fails clearly.
	big := gzLayer(t, makeTar(t, []entry{{name: "data", typ: tar.TypeReg, body: string(randomish(2 << 20))}}))
	reg.push(t, "big:1", "amd64", big)
	capped := newStore(t, images.WithMaxUnpackedSize(1<<20))
	if _, err := capped.Pull(context.Background(), reg.addr+"/big:1"); !errdefs.IsResourceExhausted(err) {
		t.Fatalf("capped pull: %v", err)
	}
}
