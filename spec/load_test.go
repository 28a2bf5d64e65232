package spec

import (
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// writeBundle makes a bundle with an empty rootfs and the given config.json text.
func writeBundle(t *testing.T, config string) string {
	t.Helper()
	dir := t.TempDir()
	if err := os.Mkdir(filepath.Join(dir, "rootfs"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, ConfigName), []byte(config), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// minimal is a valid config with one placeholder for the version.
const minimal = `{
	"ociVersion": %q,
	"root": {"path": "rootfs"},
	"process": {"args": ["sh"], "cwd": "/"}
}`

func TestLoadMissing(t *testing.T) {
	_, err := Load(t.TempDir())
	if err == nil || err.Error() != "JSON specification file config.json not found" {
		t.Fatalf("err = %v", err)
	}
	if !errors.Is(err, ErrNotFound) {
		t.Fatalf("err does not wrap ErrNotFound")
	}
}

func TestLoadMalformed(t *testing.T) {
	tests := []struct {
		name, config, want string
	}{
		{
			"syntax",
			"{\n\t\"ociVersion\": \"1.0.0\",\n\t\"root\": {\"path\": }\n}",
			"line 3, column 19: invalid character '}' looking for beginning of value",
		},
		{
			"type",
			"{\n  \"ociVersion\": \"1.0.0\",\n  \"process\": {\"args\": \"sh\"}\n}",
			"line 3, column 26: json: cannot unmarshal string into Go struct field Process.process.args of type []string",
		},
		{"truncated", "{\n  \"ociVersion\": \"1.0", "line 2, column 21: unexpected EOF"},
		{"empty", "", "empty file: EOF"},
		{"trailing comma", `{"ociVersion": "1.0.0",}`, "line 1, column 24: invalid character '}' looking for beginning of object key string"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := writeBundle(t, tt.config)
			_, err := Load(dir)
			want := "parse " + filepath.Join(dir, ConfigName) + ": " + tt.want
			if err == nil || err.Error() != want {
				t.Fatalf("err = %v\nwant  %s", err, want)
			}
			if strings.Contains(err.Error(), "\n") {
				t.Fatal("error spans lines")
			}
			if errors.Is(err, ErrInvalid) {
				t.Fatal("a parse error is not a validation error")
			}
		})
	}
}

func TestLoadSyntaxErrorReachable(t *testing.T) {
	_, err := Load(writeBundle(t, "{]"))
	var se *json.SyntaxError
	if !errors.As(err, &se) {
		t.Fatalf("err = %v: no *json.SyntaxError inside", err)
	}
}

func TestLoadVersions(t *testing.T) {
	for _, v := range []string{"1.0.0", "1.0.1", "1.0.2-dev", "1.1.0", "1.2.0", "1.2.1", "1.3.0", "1.4.0-rc.1+build.5"} {
		t.Run(v, func(t *testing.T) {
			s, err := Load(writeBundle(t, strings.Replace(minimal, "%q", `"`+v+`"`, 1)))
			if err != nil {
				t.Fatal(err)
			}
			if s.Version != v {
				t.Fatalf("version = %q", s.Version)
			}
		})
	}
	for v, want := range map[string]string{
		"0.5.0":  `ociVersion "0.5.0" is not supported: want 1.x.y (up to 1.3.0)`,
		"2.0.0":  `ociVersion "2.0.0" is not supported: want 1.x.y (up to 1.3.0)`,
		"1.0":    `ociVersion "1.0" is not a semantic version`,
		"v1.0.0": `ociVersion "v1.0.0" is not a semantic version`,
		"":       `ociVersion must not be empty`,
	} {
		t.Run("refuse "+v, func(t *testing.T) {
			_, err := Load(writeBundle(t, strings.Replace(minimal, "%q", `"`+v+`"`, 1)))
			if err == nil || err.Error() != want {
				t.Fatalf("err = %v, want %s", err, want)
			}
		})
	}
}

func TestLoadUnknownFields(t *testing.T) {
	config := `{
	"ociVersion": "1.3.0",
	"root": {"path": "rootfs", "futureRootField": 1},
	"process": {"args": ["sh"], "cwd": "/", "futureProcessField": [1, 2]},
	"futureTopLevel": {"a": "b"}
}`
	if _, err := Load(writeBundle(t, config)); err != nil {
		t.Fatal(err)
	}
}

func TestLoadValidates(t *testing.T) {
	dir := writeBundle(t, `{"ociVersion": "1.0.0", "root": {"path": "rootfs"}, "process": {"args": [], "cwd": "/"}}`)
	s, err := Load(dir)
	if err == nil || err.Error() != "args must not be empty" {
		t.Fatalf("err = %v", err)
	}
	if s == nil {
		t.Fatal("Load returned no spec with the validation error")
	}
	if err := os.Remove(filepath.Join(dir, "rootfs")); err != nil {
		t.Fatal(err)
	}
	_, err = Load(dir)
	if err == nil || !strings.HasPrefix(err.Error(), "invalid rootfs: stat ") {
		t.Fatalf("err = %v", err)
	}
}

func TestPosition(t *testing.T) {
	data := []byte("ab\ncd\n\nef")
	for _, tt := range []struct {
		off       int64
		line, col int
	}{{0, 1, 1}, {1, 1, 1}, {2, 1, 2}, {3, 1, 3}, {4, 2, 1}, {7, 3, 1}, {9, 4, 2}, {10, 4, 3}, {99, 4, 3}} {
		if l, c := position(data, tt.off); l != tt.line || c != tt.col {
			t.Errorf("position(%d) = %d:%d, want %d:%d", tt.off, l, c, tt.line, tt.col)
		}
	}
}
