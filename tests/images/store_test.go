package images_test

import (
	"archive/tar"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
	"github.com/cubo-dev/cubo/images"
	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"
)

func dirSize(t *testing.T, dir string) int64 {
	t.Helper()
	var n int64
	filepath.Walk(dir, func(p string, fi os.FileInfo, err error) error {
		if err == nil && fi.Mode().IsRegular() {
			n += fi.Size()
		}
		return nil
	})
	return n
}

func TestRemove(t *testing.T) {
	reg := startRegistry(t, modePlain)
	alpine := fileLayer(t, "alpine-minirootfs-3.20.3-x86_64.tar.gz")
	reg.push(t, "alpine:3.20", "amd64", alpine)
	other := gzLayer(t, makeTar(t, []entry{{name: "other", typ: tar.TypeReg, body: "o"}}))
	reg.push(t, "other:1", "amd64", other)
	used := map[string]bool{}
	s := newStore(t, images.WithInUse(func(_ context.Context, id string) (bool, error) { return used[id], nil }))
	ctx := context.Background()
	img, err := s.Pull(ctx, reg.addr+"/alpine:3.20")
	must(t, err)
	_, err = s.Pull(ctx, reg.addr+"/other:1")
	must(t, err)
	full := dirSize(t, s.Root())

	used[img.ID.String()] = true
	if _, err := s.Remove(ctx, []string{reg.addr + "/alpine:3.20"}, false); !errdefs.IsFailedPrecondition(err) {
		t.Fatalf("removing an image in use: %v", err)
	}
	// Forced: the name goes, the image stays as <none> for its container.
	_, err = s.Remove(ctx, []string{reg.addr + "/alpine:3.20"}, true)
	must(t, err)
	if _, err := s.Get(ctx, reg.addr+"/alpine:3.20"); !errdefs.IsNotFound(err) {
		t.Fatalf("name still resolves: %v", err)
	}
	if _, err := s.LayerDirs(ctx, img); err != nil {
		t.Fatalf("layers of a used image were deleted: %v", err)
	}
	// Once unused, removing it by ID frees the space.
	used[img.ID.String()] = false
	res, err := s.Remove(ctx, []string{img.ShortID()}, false)
	must(t, err)
	if len(res.Deleted) != 1 || res.Freed < 3<<20 {
		t.Fatalf("remove result %+v", res)
	}
	after := dirSize(t, s.Root())
	if full-after < 3<<20 {
		t.Fatalf("only %d bytes freed", full-after)
	}
	if _, err := s.LayerDir(alpine.diffID); err == nil {
		t.Fatal("alpine layer still unpacked")
	}
	if _, err := s.Get(ctx, reg.addr+"/other:1"); err != nil {
		t.Fatalf("the other image was hurt: %v", err)
	}
	if _, err := s.Remove(ctx, []string{"nope:1"}, false); !errdefs.IsNotFound(err) {
		t.Fatalf("removing a missing image: %v", err)
	}
}

func requireRoot(t *testing.T) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root (overlay mounts, device nodes); make test runs it as root")
	}
}

func isMountPoint(t *testing.T, p string) bool {
	t.Helper()
	ms, err := mountinfo.GetMounts(mountinfo.SingleEntryFilter(p))
	must(t, err)
	return len(ms) > 0
}

func TestMount(t *testing.T) {
	requireRoot(t)
	reg := startRegistry(t, modePlain)
	base := gzLayer(t, makeTar(t, []entry{
		{name: "etc/", typ: tar.TypeDir},
		{name: "etc/keep", typ: tar.TypeReg, body: "keep\n"},
		{name: "etc/gone", typ: tar.TypeReg, body: "gone\n"},
		{name: "opaque/", typ: tar.TypeDir},
		{name: "opaque/hidden", typ: tar.TypeReg, body: "hidden\n"},
		{name: "lib", typ: tar.TypeSymlink, link: "/usr/lib"},
	}))
	top := gzLayer(t, makeTar(t, []entry{
		{name: "etc/.wh.gone", typ: tar.TypeReg},
		{name: "opaque/", typ: tar.TypeDir},
		{name: "opaque/.wh..wh..opq", typ: tar.TypeReg},
		{name: "opaque/new", typ: tar.TypeReg, body: "new\n"},
		{name: "lib/", typ: tar.TypeDir},
		{name: "lib/libx.so", typ: tar.TypeReg, body: "x"},
	}))
	reg.push(t, "layered:1", "amd64", base, top)
	s := newStore(t)
	ctx := context.Background()
	img, err := s.Pull(ctx, reg.addr+"/layered:1")
	must(t, err)
	layers, err := s.LayerDirs(ctx, img)
	must(t, err)
	// The top layer holds overlay whiteouts: a 0/0 char device and an opaque xattr.
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(layers[1], "etc", "gone"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || st.Rdev != 0 {
		t.Fatalf("whiteout is mode %o rdev %d", st.Mode, st.Rdev)
	}
	buf := make([]byte, 8)
	n, err := unix.Lgetxattr(filepath.Join(layers[1], "opaque"), "trusted.overlay.opaque", buf)
	if err != nil || string(buf[:n]) != "y" {
		t.Fatalf("opaque xattr: %q %v", buf[:n], err)
	}

	for _, mode := range []string{"overlay", "copy"} {
		t.Run(mode, func(t *testing.T) {
			dir := t.TempDir()
			upper, work, target := filepath.Join(dir, "upper"), filepath.Join(dir, "work"), filepath.Join(dir, "rootfs")
			for _, d := range []string{upper, work, target} {
				must(t, os.Mkdir(d, 0o755))
			}
			var opts []images.MountOpt
			if mode == "copy" {
				opts = append(opts, images.MountWithCopy())
			}
			must(t, s.Mount(layers, upper, work, target, opts...))
			t.Cleanup(func() { s.Unmount(target) })
			if mode == "overlay" && !isMountPoint(t, target) {
				t.Fatal("target is not a mount point")
			}
			read := func(p string) string {
				b, err := os.ReadFile(filepath.Join(target, p))
				if err != nil {
					return "<" + err.Error() + ">"
				}
				return string(b)
			}
			if read("etc/keep") != "keep\n" || read("opaque/new") != "new\n" || read("lib/libx.so") != "x" {
				t.Fatalf("content: keep=%q new=%q libx=%q", read("etc/keep"), read("opaque/new"), read("lib/libx.so"))
			}
			for _, p := range []string{"etc/gone", "opaque/hidden"} {
				if _, err := os.Lstat(filepath.Join(target, p)); !os.IsNotExist(err) {
					t.Errorf("%s is visible through a whiteout: %v", p, err)
				}
			}
			// Writes land on the container side; the layers stay untouched.
			must(t, os.WriteFile(filepath.Join(target, "etc", "keep"), []byte("changed\n"), 0o644))
			must(t, os.WriteFile(filepath.Join(target, "written"), []byte("w"), 0o644))
			if b, _ := os.ReadFile(filepath.Join(layers[0], "etc", "keep")); string(b) != "keep\n" {
				t.Fatalf("lower layer modified: %q", b)
			}
			if mode == "overlay" {
				if b, _ := os.ReadFile(filepath.Join(upper, "written")); string(b) != "w" {
					t.Fatal("write did not reach the upper dir")
				}
			}
			must(t, s.Unmount(target))
			if isMountPoint(t, target) {
				t.Fatal("still mounted after Unmount")
			}
		})
	}
}

func TestImportSaveLoad(t *testing.T) {
	tarball := filepath.Join(sharedImages, "alpine-minirootfs-3.20.3-x86_64.tar.gz")
	f, err := os.Open(tarball)
	if err != nil {
		t.Skipf("shared alpine tarball not available: %v", err)
	}
	defer f.Close()
	ctx := context.Background()
	s := newStore(t)
	img, err := s.Import(ctx, f, "myalpine:1")
	must(t, err)
	if img.Name != "myalpine:1" || len(img.DiffIDs()) != 1 || img.DiffIDs()[0].Encoded() != "1bccf10afce5c1ffe31381419930ad565c1436eaeb1ca680494b0663e0028419" {
		t.Fatalf("imported %+v", img.DiffIDs())
	}
	var buf bytes.Buffer
	must(t, s.Save(ctx, &buf, "myalpine:1"))
	archive := filepath.Join(t.TempDir(), "alpine.tar")
	must(t, os.WriteFile(archive, buf.Bytes(), 0o644))
	if _, err := exec.LookPath("skopeo"); err == nil {
		out, err := exec.Command("skopeo", "inspect", "oci-archive:"+archive+":myalpine:1").CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo reads the saved archive: %v\n%s", err, out)
		}
		// A docker-archive made by skopeo loads too.
		darch := filepath.Join(t.TempDir(), "docker.tar")
		out, err = exec.Command("skopeo", "copy", "oci:"+s.LayoutDir()+":myalpine:1", "docker-archive:"+darch+":dockalpine:2").CombinedOutput()
		if err != nil {
			t.Fatalf("skopeo copy to docker-archive: %v\n%s", err, out)
		}
		df, err := os.Open(darch)
		must(t, err)
		defer df.Close()
		s3 := newStore(t)
		imgs, err := s3.Load(ctx, df)
		must(t, err)
		if len(imgs) != 1 || imgs[0].Name != "dockalpine:2" || imgs[0].ID == "" {
			t.Fatalf("docker-archive load: %+v", imgs)
		}
	}
	s2 := newStore(t)
	imgs, err := s2.Load(ctx, bytes.NewReader(buf.Bytes()))
	must(t, err)
	if len(imgs) != 1 || imgs[0].ID != img.ID || imgs[0].Name != "myalpine:1" {
		t.Fatalf("loaded %+v", imgs)
	}
	dirs, err := s2.LayerDirs(ctx, imgs[0])
	must(t, err)
	if b, _ := os.ReadFile(filepath.Join(dirs[0], "etc", "alpine-release")); strings.TrimSpace(string(b)) != "3.20.3" {
		t.Fatalf("alpine-release %q", b)
	}
}
