package manager

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/containerd/errdefs"

	"github.com/cubo-dev/cubo/spec"
)

func TestParseVolume(t *testing.T) {
	dir := t.TempDir()
	v, err := ParseVolume(dir + "/:/data/:ro")
	if err != nil || v.Host != dir || v.Cont != "/data" || !v.ReadOnly {
		t.Fatalf("%+v %v", v, err)
	}
	if v, err := ParseVolume(dir + ":/d:rw"); err != nil || v.ReadOnly {
		t.Fatalf("rw: %+v %v", v, err)
	}
	for in, class := range map[string]error{
		dir:                  errdefs.ErrInvalidArgument,
		dir + ":/d:rx":       errdefs.ErrInvalidArgument,
		"rel:/d":             errdefs.ErrInvalidArgument,
		dir + ":rel":         errdefs.ErrInvalidArgument,
		dir + ":/":           errdefs.ErrInvalidArgument,
		dir + "/missing:/d":  errdefs.ErrNotFound,
		dir + ":/a:ro:extra": errdefs.ErrInvalidArgument,
	} {
		if _, err := ParseVolume(in); !errors.Is(err, class) {
			t.Errorf("%q: %v, want %v", in, err, class)
		}
	}
}

// TestCheckNetwork checks --network and --publish as Create sees them: the record's
// ports, the mode, and one-line invalid-argument errors before anything is made.
func TestCheckNetwork(t *testing.T) {
	for _, c := range []struct {
		network string
		publish []string
		mode    string
		ports   []Port
	}{
		{"", []string{"8080:80", "53:53/udp"}, "bridge", []Port{{Host: 8080, Cont: 80, Protocol: "tcp"}, {Host: 53, Cont: 53, Protocol: "udp"}}},
		{"bridge", []string{"127.0.0.1:8080:80"}, "bridge", []Port{{HostIP: "127.0.0.1", Host: 8080, Cont: 80, Protocol: "tcp"}}},
		{"none", nil, "none", nil},
		{"host", nil, "host", nil},
		{"n1", []string{"1:2"}, "n1", []Port{{Host: 1, Cont: 2, Protocol: "tcp"}}},
		{"container:web", nil, "container:web", nil},
	} {
		p, err := (&CreateOpts{Network: c.network, Publish: c.publish}).check()
		if err != nil {
			t.Errorf("%q %q: %v", c.network, c.publish, err)
			continue
		}
		if got := recordPorts(p.ports); p.mode.String() != c.mode || !slices.Equal(got, c.ports) {
			t.Errorf("%q %q: mode %s ports %+v, want %s %+v", c.network, c.publish, p.mode, got, c.mode, c.ports)
		}
	}
	for _, c := range []struct{ network, publish string }{
		{"", "80"}, {"", "a:80"}, {"", "80:b"}, {"", "0:80"}, {"", "80:70000"}, {"", "80:80/sctp"},
		{"", "x.y:80:80"}, {"", ""}, {"host", "80:80"}, {"none", "80:80"}, {"container:x", "80:80"},
		{"container:", ""}, {"bad name", ""},
	} {
		o := &CreateOpts{Network: c.network}
		if c.publish != "" || c.network == "" {
			o.Publish = []string{c.publish}
		}
		_, err := o.check()
		if !errors.Is(err, errdefs.ErrInvalidArgument) || strings.Contains(err.Error(), "\n") {
			t.Errorf("network %q publish %q: %v, want one line, invalid argument", c.network, c.publish, err)
		}
	}
	if _, err := (&CreateOpts{Publish: []string{"8080:80", "8080:81"}}).check(); err == nil {
		t.Error("a host port published twice was accepted")
	}
}

func TestParseSignal(t *testing.T) {
	for in, want := range map[string]syscall.Signal{"": syscall.SIGTERM, "SIGUSR1": syscall.SIGUSR1, "kill": syscall.SIGKILL, "15": syscall.SIGTERM, "SIGRTMIN+3": 37} {
		if got, err := ParseSignal(in); err != nil || got != want {
			t.Errorf("%q: %v %v", in, got, err)
		}
	}
	if _, err := ParseSignal("NOPE"); err == nil {
		t.Error("NOPE accepted")
	}
}

func TestResolveUser(t *testing.T) {
	root := t.TempDir()
	os.MkdirAll(filepath.Join(root, "etc"), 0o755)
	os.WriteFile(filepath.Join(root, "etc", "passwd"), []byte("root:x:0:0::/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n"), 0o644)
	os.WriteFile(filepath.Join(root, "etc", "group"), []byte("root:x:0:\napp:x:1001:\nwheel:x:10:app,other\n"), 0o644)
	for in, want := range map[string][3]any{
		"":          {uint32(0), uint32(0), []uint32(nil)},
		"app":       {uint32(1000), uint32(1001), []uint32{10}},
		"1000":      {uint32(1000), uint32(1001), []uint32{10}},
		"app:wheel": {uint32(1000), uint32(10), []uint32(nil)},
		"42:7":      {uint32(42), uint32(7), []uint32(nil)},
	} {
		uid, gid, groups, err := spec.ResolveUser(root, in)
		if err != nil || uid != want[0] || gid != want[1] || !slices.Equal(groups, want[2].([]uint32)) {
			t.Errorf("%q: %d %d %v %v", in, uid, gid, groups, err)
		}
	}
	for _, bad := range []string{"nobody", "app:nogroup"} {
		if _, _, _, err := spec.ResolveUser(root, bad); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("%q: %v", bad, err)
		}
	}
	// A passwd symlinked out of the rootfs resolves inside it (and is absent there).
	evil := t.TempDir()
	os.MkdirAll(filepath.Join(evil, "etc"), 0o755)
	os.Symlink("/etc/passwd", filepath.Join(evil, "etc", "passwd"))
	if _, _, _, err := spec.ResolveUser(evil, "root"); err == nil {
		t.Error("passwd resolved through a symlink out of the rootfs")
	}
}

func TestMetaRoundTripAndNames(t *testing.T) {
	m, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	id := newID()
	if !idRe().MatchString(id) {
		t.Fatalf("id %q", id)
	}
	dir := m.containerDir(id)
	os.Mkdir(dir, 0o700)
	c := &Container{ID: id, Name: "n1", Status: StatusStopped, ExitCode: 3, dir: dir}
	if err := c.save(); err != nil {
		t.Fatal(err)
	}
	got, err := loadMeta(dir)
	if err != nil || got.ExitCode != 3 || got.Name != "n1" {
		t.Fatalf("%+v %v", got, err)
	}
	if err := m.reserveName("n1", id); err != nil {
		t.Fatal(err)
	}
	if err := m.reserveName("n1", newID()); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Fatalf("second reservation: %v", err)
	}
	// A name whose owner never got committed is taken over.
	if err := m.reserveName("stale", newID()); err != nil {
		t.Fatal(err)
	}
	if err := m.reserveName("stale", id); err != nil {
		t.Fatalf("stale name: %v", err)
	}
	for range 100 {
		n, err := m.reserveRandomName(id)
		if err != nil || !nameRe().MatchString(n) {
			t.Fatalf("random name %q %v", n, err)
		}
	}
}

// A cubo killed while claiming a name must not hold the name for ever: the claim file
// is linked into place whole, and a torn (empty or garbled) name file from an older
// cubo names no container, so the next claim takes it over. Found by tests/crash
// TestKillRun: an empty name file made "name is already in use" permanent.
func TestTornNameFileIsTakenOver(t *testing.T) {
	m, err := New(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	for _, torn := range []string{"", "0123", "../../x"} {
		if err := os.WriteFile(m.nameFile("web"), []byte(torn), 0o600); err != nil {
			t.Fatal(err)
		}
		id := newID()
		if err := m.reserveName("web", id); err != nil {
			t.Fatalf("name file %q: %v", torn, err)
		}
		if b, _ := os.ReadFile(m.nameFile("web")); string(b) != id {
			t.Fatalf("name file holds %q, want %q", b, id)
		}
		os.Remove(m.nameFile("web"))
	}
	ents, _ := os.ReadDir(filepath.Join(m.dir, ".names"))
	if len(ents) != 0 {
		t.Fatalf("claim files left in .names: %v", ents)
	}
	// A claim left by a killed cubo is garbage that check repairs once it is old.
	claim := filepath.Join(m.dir, ".names", claimPrefix+newID())
	os.WriteFile(claim, nil, 0o600)
	old := time.Now().Add(-time.Minute)
	os.Chtimes(claim, old, old)
	fs, err := m.Check(context.Background(), true)
	if err != nil {
		t.Fatal(err)
	}
	if len(fs) != 1 || !fs[0].Repaired {
		t.Fatalf("findings %+v", fs)
	}
	if _, err := os.Stat(claim); !os.IsNotExist(err) {
		t.Fatalf("claim not removed: %v", err)
	}
}
