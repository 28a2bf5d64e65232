package spec

import (
	"encoding/json"
	"os"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// readGolden loads a config that `runc spec` printed (with ociVersion set to 1.3.0).
func readGolden(t *testing.T, name string) *specs.Spec {
	t.Helper()
	data, err := os.ReadFile("testdata/" + name)
	if err != nil {
		t.Fatal(err)
	}
	var s specs.Spec
	if err := json.Unmarshal(data, &s); err != nil {
		t.Fatal(err)
	}
	return &s
}

// roundTrip returns s as it comes back from its own JSON, which is how the runtime sees it.
func roundTrip(t *testing.T, s *specs.Spec) *specs.Spec {
	t.Helper()
	data, err := json.MarshalIndent(s, "", "\t")
	if err != nil {
		t.Fatal(err)
	}
	var back specs.Spec
	if err := json.Unmarshal(data, &back); err != nil {
		t.Fatal(err)
	}
	return &back
}

func TestDefaultMatchesRuncSpec(t *testing.T) {
	got := roundTrip(t, Default())
	want := readGolden(t, "runc-spec.json")
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("Default() differs from runc spec:\ngot  %s\nwant %s", g, w)
	}
	if got.Version != specs.Version {
		t.Errorf("ociVersion = %q, want %q", got.Version, specs.Version)
	}
}

func TestDefaultRootlessMatchesRuncSpec(t *testing.T) {
	got := roundTrip(t, DefaultRootless())
	want := readGolden(t, "runc-spec-rootless.json")
	// The golden file was made as root; the mappings follow whoever runs the test.
	want.Linux.UIDMappings[0].HostID = uint32(os.Geteuid())
	want.Linux.GIDMappings[0].HostID = uint32(os.Getegid())
	if !reflect.DeepEqual(got, want) {
		g, _ := json.MarshalIndent(got, "", " ")
		w, _ := json.MarshalIndent(want, "", " ")
		t.Fatalf("DefaultRootless() differs from runc spec --rootless:\ngot  %s\nwant %s", g, w)
	}
}

func TestDefaultIsValid(t *testing.T) {
	for name, s := range map[string]*specs.Spec{"Default": Default(), "DefaultRootless": DefaultRootless()} {
		if err := Validate(s, ""); err != nil {
			t.Errorf("Validate(%s()) = %v", name, err)
		}
	}
}

// TestDefaultFresh guards against shared slices: a caller editing one Default must not edit
// the next.
func TestDefaultFresh(t *testing.T) {
	a := Default()
	a.Process.Capabilities.Bounding[0] = "CAP_SYS_ADMIN"
	a.Mounts[1].Options[0] = "suid"
	a.Linux.MaskedPaths[0] = "/x"
	b := Default()
	if b.Process.Capabilities.Bounding[0] != "CAP_AUDIT_WRITE" || b.Mounts[1].Options[0] != "nosuid" ||
		b.Linux.MaskedPaths[0] != "/proc/acpi" {
		t.Fatal("Default() shares state between calls")
	}
	if a.Process.Capabilities.Effective[0] != "CAP_AUDIT_WRITE" {
		t.Fatal("capability sets share a backing array")
	}
	r := DefaultRootless()
	for _, m := range Default().Mounts {
		if m.Destination == "/dev/pts" && len(m.Options) != 6 {
			t.Fatalf("DefaultRootless() changed Default()'s mounts: %v", m.Options)
		}
	}
	_ = r
}
