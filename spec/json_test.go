package spec

import (
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// sameAsV1 checks that Unmarshal and decodeFirst give what encoding/json
// gives for data: the same value, or an error (encoding/json's own) when it
// fails.
func sameAsV1(t *testing.T, data []byte) {
	t.Helper()
	var want, got, first specs.Spec
	wantErr := json.Unmarshal(data, &want)
	gotErr := Unmarshal(data, &got)
	if (wantErr == nil) != (gotErr == nil) {
		t.Fatalf("Unmarshal error %v, encoding/json %v", gotErr, wantErr)
	}
	if wantErr != nil {
		if gotErr.Error() != wantErr.Error() {
			t.Fatalf("Unmarshal error %q, encoding/json %q", gotErr, wantErr)
		}
		return
	}
	if !reflect.DeepEqual(got, want) {
		t.Fatalf("Unmarshal decoded\n%+v\nencoding/json\n%+v", got, want)
	}
	if _, err := decodeFirst(data, &first); err != nil {
		t.Fatalf("decodeFirst: %v", err)
	}
	if !reflect.DeepEqual(first, want) {
		t.Fatalf("decodeFirst decoded\n%+v\nencoding/json\n%+v", first, want)
	}
}

// TestUnmarshalMatchesV1 runs the configs runc, containerd, podman and Docker
// wrote on this kind of machine through both decoders.
func TestUnmarshalMatchesV1(t *testing.T) {
	paths, _ := filepath.Glob("testdata/*.json")
	callers, _ := filepath.Glob("../../shared/design/callers/specs/*.json")
	paths = append(paths, callers...)
	if len(callers) == 0 {
		t.Log("../../shared/design/callers/specs not present: testing the repository's own configs only")
	}
	for _, p := range paths {
		t.Run(filepath.Base(p), func(t *testing.T) {
			data, err := os.ReadFile(p)
			if err != nil {
				t.Fatal(err)
			}
			sameAsV1(t, data)
		})
	}
}

func TestDecodeFirstIgnoresTrailingData(t *testing.T) {
	data := []byte(`{"ociVersion":"1.0.2","hostname":"a"} {"x":`)
	var s specs.Spec
	n, err := decodeFirst(data, &s)
	if err != nil {
		t.Fatal(err)
	}
	if s.Hostname != "a" || string(data[:n]) != `{"ociVersion":"1.0.2","hostname":"a"}` {
		t.Fatalf("decoded %q, value %q", s.Hostname, data[:n])
	}
}

// FuzzUnmarshalMatchesV1: whatever the bytes, the fast path decodes exactly
// what encoding/json decodes and fails exactly when it fails, with its error.
func FuzzUnmarshalMatchesV1(f *testing.F) {
	for _, s := range []string{
		`{"ociVersion":"1.0.0","root":{"path":"rootfs"},"process":{"args":["sh"],"cwd":"/"}}`,
		`{"OCIVERSION":"1.0.0","Process":{"ARGS":["a"],"args":["b"]}}`,
		`{"process":{"user":{"uid":-1}}}`,
		`{"linux":{"resources":{"memory":{"limit":1.5}}}}`,
		`{"annotations":{"a":"\ud800"},"hostname":"\xff"}`,
		`{"mounts":null,"process":null}`,
		`{"linux":{"sysctl":{"a":"1","a":"2"}}}`,
		`{"root":{"path":"r","readonly":"true"}}`,
		"", "null", "[]", "{", `{"a":1}x`,
	} {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) { sameAsV1(t, data) })
}
