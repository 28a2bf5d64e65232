package proto

import (
	"encoding/json"
	"io"
	"os"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

func TestRoundTrip(t *testing.T) {
	parent, child, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	sj, _ := json.Marshal(&specs.Spec{Version: "1.0.2", Hostname: "h"})
	cfg := &InitConfig{ID: "c1", SpecJSON: sj, PreserveFds: 2, MountFds: map[int]int{3: 7}}
	if err := Send(parent, Message{Type: MsgConfig, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	m, err := Recv(child)
	if err != nil {
		t.Fatal(err)
	}
	if err := m.Config.Decode(); err != nil {
		t.Fatal(err)
	}
	if m.Type != MsgConfig || m.Config.ID != "c1" || m.Config.Spec.Hostname != "h" || m.Config.MountFds[3] != 7 || m.Fd != -1 {
		t.Fatalf("got %+v", m)
	}
}

func TestFdPassing(t *testing.T) {
	parent, child, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	f, err := os.CreateTemp(t.TempDir(), "fd")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	if err := Send(child, Message{Type: MsgSeccomp, Fd: int(f.Fd())}); err != nil {
		t.Fatal(err)
	}
	m, err := Recv(parent)
	if err != nil {
		t.Fatal(err)
	}
	if m.Type != MsgSeccomp || m.Fd < 0 {
		t.Fatalf("got %+v", m)
	}
	defer unix.Close(m.Fd)
	var a, b unix.Stat_t
	if err := unix.Fstat(m.Fd, &a); err != nil {
		t.Fatal(err)
	}
	if err := unix.Fstat(int(f.Fd()), &b); err != nil {
		t.Fatal(err)
	}
	if a.Ino != b.Ino {
		t.Fatal("received fd is not the file sent")
	}
	// Passed fds must not leak into an exec'd container.
	flags, err := unix.FcntlInt(uintptr(m.Fd), unix.F_GETFD, 0)
	if err != nil || flags&unix.FD_CLOEXEC == 0 {
		t.Fatalf("received fd is not close-on-exec (flags %d, %v)", flags, err)
	}
}

func TestEOFWhenPeerCloses(t *testing.T) {
	parent, child, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	child.Close()
	if _, err := Recv(parent); err != io.EOF {
		t.Fatalf("want io.EOF, got %v", err)
	}
}

// A message without a config takes MarshalJSON's small path; it must still
// decode to the same message, with any text in Error intact.
func TestSmallMessageRoundTrip(t *testing.T) {
	parent, child, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	want := Message{Type: MsgError, Error: "mount \"/a\u2028b\" <x>: \xff bad", Pid: 42, Fd: -1}
	if err := Send(child, want); err != nil {
		t.Fatal(err)
	}
	got, err := Recv(parent)
	if err != nil {
		t.Fatal(err)
	}
	want.Error = "mount \"/a\u2028b\" <x>: \ufffd bad" // encoding/json's treatment of invalid UTF-8
	if got != want {
		t.Fatalf("got %+v, want %+v", got, want)
	}
	b, _ := json.Marshal(Message{Type: MsgReady})
	if string(b) != `{"type":"ready"}` {
		t.Fatalf("ready message encodes as %s", b)
	}
}

// TestConfigCarriesRawJSON: config.json and process.json travel after the
// message's JSON object, byte for byte, and a NUL inside them is refused.
func TestConfigCarriesRawJSON(t *testing.T) {
	parent, child, err := Socketpair()
	if err != nil {
		t.Fatal(err)
	}
	defer parent.Close()
	defer child.Close()
	sj := []byte("{\"ociVersion\": \"1.0.2\",\n \"hostname\": \"h\\u0000\"}")
	pj := []byte(`{"args":["sh"],"cwd":"/"}`)
	cfg := &InitConfig{ID: "c2", SpecJSON: sj, ProcessJSON: pj, Exec: true}
	if err := Send(parent, Message{Type: MsgConfig, Config: cfg}); err != nil {
		t.Fatal(err)
	}
	m, err := Recv(child)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Config.SpecJSON) != string(sj) || string(m.Config.ProcessJSON) != string(pj) || !m.Config.Exec {
		t.Fatalf("got spec %q process %q", m.Config.SpecJSON, m.Config.ProcessJSON)
	}
	if err := m.Config.Decode(); err != nil {
		t.Fatal(err)
	}
	if m.Config.Spec.Hostname != "h\x00" || m.Config.Process.Args[0] != "sh" {
		t.Fatalf("decoded %+v %+v", m.Config.Spec, m.Config.Process)
	}
	bad := &InitConfig{ID: "c3", SpecJSON: []byte("{}\x00{}")}
	if err := Send(parent, Message{Type: MsgConfig, Config: bad}); err == nil {
		t.Fatal("a NUL in the embedded config was sent")
	}
}
