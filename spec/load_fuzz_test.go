package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// FuzzLoad feeds arbitrary bytes to Load as a bundle's config.json. Load must never
// panic; every error is one line and, apart from a missing file, names the file or a
// field; a config Load accepts survives a JSON round trip (Save and Load again) and
// passes Validate on its own.
func FuzzLoad(f *testing.F) {
	for _, s := range []string{
		`{"ociVersion":"1.0.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"}}`,
		`{"ociVersion":"1.2.0","root":{"path":"../../"},"process":{"args":["sh"],"cwd":"/"}}`,
		`{"ociVersion":"1.0.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","user":{"uid":4294967295,"gid":-1}}}`,
		`{"ociVersion":"1.0.0","root":{"path":"rootfs"},"mounts":[{"destination":"/proc/sysrq-trigger","source":"/proc/self/exe","type":"bind","options":["rbind"]}]}`,
		`{"ociVersion":"1.0.0","root":{"path":"rootfs"},"linux":{"namespaces":[{"type":"user"}],"uidMappings":[{"containerID":0,"hostID":0,"size":4294967295}]}}`,
		`{"ociVersion":"1.0.0","root":{"path":"rootfs"},"linux":{"sysctl":{"net.ipv4.ip_forward":"1","../../x":"1"}}}`,
		`{"ociVersion":"1.0.0","root":{"path":"rootfs"},"linux":{"cgroupsPath":"../../../sys/fs/cgroup"}}`,
		`{"ociVersion":"1.0.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/","rlimits":[{"type":"RLIMIT_NOFILE","soft":2,"hard":1}]}}`,
		`{"ociVersion":"1.0.0","root":{"path":"rootfs"},"linux":{"seccomp":{"defaultAction":"SCMP_ACT_ERRNO","syscalls":[{"names":["x"],"action":"SCMP_ACT_NOPE"}]}}}`,
		`{"ociVersion":"1.0.0","root":{"path":"rootfs"},"hooks":{"prestart":[{"path":"rel","timeout":-1}]}}`,
		`{"ociVersion":"2.0.0"}`,
		"{\"ociVersion\":\"1.0.0\",\n\"root\":{\"path\":\"rootfs\"},\"process\":{\"args\":[\"a\"],\"cwd\":\"/\",\"env\":[\"A=\\u0000\"]}}",
		"{\n", "", "null", "[]", `{"ociVersion":1}`, "\xff\xfe",
	} {
		f.Add([]byte(s))
	}
	// One bundle per fuzzing process: each input overwrites its config.json.
	bundle := f.TempDir()
	if err := os.Mkdir(filepath.Join(bundle, "rootfs"), 0o755); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		path := filepath.Join(bundle, ConfigName)
		if err := os.WriteFile(path, data, 0o644); err != nil {
			t.Fatal(err)
		}
		s, err := Load(bundle)
		if err != nil {
			msg := err.Error()
			if strings.ContainsAny(msg, "\n\r") {
				t.Fatalf("error is not one line: %q", msg)
			}
			if msg == "" {
				t.Fatal("empty error message")
			}
			if !errors.Is(err, ErrInvalid) && !strings.Contains(msg, path) {
				t.Fatalf("parse error does not name %s: %q", path, msg)
			}
			if errors.Is(err, ErrInvalid) && s == nil {
				t.Fatalf("validation error without the parsed spec: %v", err)
			}
			return
		}
		if s == nil {
			t.Fatal("nil spec without error")
		}
		if err := Validate(s, bundle); err != nil {
			t.Fatalf("Load accepted a config Validate refuses: %v", err)
		}
		// Round trip: what Load accepted, written back, loads again to the same thing.
		b, err := json.Marshal(s)
		if err != nil {
			t.Fatalf("marshal accepted spec: %v", err)
		}
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		s2, err := Load(bundle)
		if err != nil {
			t.Fatalf("round trip of an accepted config fails: %v\n%s", err, b)
		}
		b2, _ := json.Marshal(s2)
		if string(b) != string(b2) {
			t.Fatalf("round trip changed the config:\n%s\n%s", b, b2)
		}
	})
}
