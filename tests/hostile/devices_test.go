package hostile

import (
	"archive/tar"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// TestImageDeviceNodes documents and checks the policy for device nodes in an image.
// Unpacking as root keeps them as the layer says (as docker and containerd do: images such
// as distro bases ship /dev entries); unpacking without root refuses them. What protects
// the host is the runtime: the container's device cgroup allows only the default devices
// and linux.resources.devices, so /dev/mem or a disk planted by an image cannot be opened.
func TestImageDeviceNodes(t *testing.T) {
	r := newRT(t)
	reg := newFakeRegistry(t)
	probe, err := os.ReadFile(probePath)
	must(t, err)
	var entries []tarEntry
	for _, d := range []string{"proc/", "dev/", "sys/", "tmp/", "etc/"} {
		entries = append(entries, tarEntry{hdr: tar.Header{Name: d, Typeflag: tar.TypeDir, Mode: 0o755}})
	}
	entries = append(entries,
		tarEntry{hdr: tar.Header{Name: "probe", Typeflag: tar.TypeReg, Mode: 0o755}, data: probe},
		tarEntry{hdr: tar.Header{Name: "mem", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 1}},
		tarEntry{hdr: tar.Header{Name: "kmsg", Typeflag: tar.TypeChar, Mode: 0o666, Devmajor: 1, Devminor: 11}},
		tarEntry{hdr: tar.Header{Name: "loop0", Typeflag: tar.TypeBlock, Mode: 0o666, Devmajor: 7, Devminor: 0}},
		tarEntry{hdr: tar.Header{Name: "suid-mem", Typeflag: tar.TypeChar, Mode: 0o4777, Devmajor: 1, Devminor: 1}},
	)
	l := gzipLayer(t, tarBytes(t, entries...))
	reg.pushImage(t, "devs:1", []layer{l}, nil)
	s := newStore(t)
	ctx := context.Background()
	img, err := s.Pull(ctx, reg.addr()+"/devs:1")
	must(t, err)
	dirs, err := s.LayerDirs(ctx, img)
	must(t, err)
	var st unix.Stat_t
	must(t, unix.Lstat(filepath.Join(dirs[0], "mem"), &st))
	if st.Mode&unix.S_IFMT != unix.S_IFCHR || unix.Major(st.Rdev) != 1 || unix.Minor(st.Rdev) != 1 {
		t.Fatalf("mem in the layer: mode %o rdev %d:%d", st.Mode, unix.Major(st.Rdev), unix.Minor(st.Rdev))
	}

	work := t.TempDir()
	upper, wd, target := filepath.Join(work, "upper"), filepath.Join(work, "work"), filepath.Join(work, "rootfs")
	for _, d := range []string{upper, wd, target} {
		must(t, os.Mkdir(d, 0o755))
	}
	must(t, s.Mount(dirs, upper, wd, target))
	t.Cleanup(func() { s.Unmount(target) })

	args := []string{}
	for _, dev := range []string{"/mem", "/kmsg", "/loop0", "/suid-mem"} {
		args = append(args, "open", dev, "+", "open", dev, "w", "+")
	}
	args = append(args, "echo", "done")
	b := bundle(t, filepath.Join(work, "b"), "devs", args, func(sp *specs.Spec) { sp.Root.Path = target })
	r.cleanup(t, "devs")
	res := r.run("run", "--bundle", b, "devs")
	if res.err != nil {
		t.Fatalf("run: %v: %s", res.err, res.stderr)
	}
	t.Logf("container: %s", strings.TrimSpace(res.stdout))
	if !strings.Contains(res.stdout, "done") {
		t.Fatalf("probe did not finish: %q", res.stdout)
	}
	for _, line := range strings.Split(res.stdout, "\n") {
		if strings.HasPrefix(line, "open ") && strings.HasSuffix(line, " ok") {
			t.Errorf("an image's device node was usable in the container: %s", line)
		}
	}
}
