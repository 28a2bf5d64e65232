package spec

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// ConfigName is the name of the config file inside a bundle.
const ConfigName = "config.json"

// ErrNotFound is returned by Load when the bundle has no config.json. Its text is runc's,
// which people and scripts know.
var ErrNotFound = errors.New("JSON specification file " + ConfigName + " not found")

// Load reads <bundle>/config.json and validates it with Validate.
//
// A missing file gives ErrNotFound (exactly "JSON specification file config.json not found").
// Malformed JSON gives one line naming the file and the position, e.g.
// "parse /b/config.json: line 3, column 12: invalid character '}' looking for beginning of
// value"; the *json.SyntaxError or *json.UnmarshalTypeError stays reachable with errors.As.
// Unknown fields are ignored (runc ignores them too: configs written for newer spec versions
// must still load), and so is anything after the first JSON value, as with runc's decoder.
// On a validation error Load returns the parsed spec along with the error, so callers can
// still report on it.
func Load(bundle string) (*specs.Spec, error) {
	s, _, err := LoadRaw(bundle)
	return s, err
}

// LoadRaw is Load that also returns the file's bytes, so a caller that
// forwards the config (the runtime, to its init) need not encode it again.
func LoadRaw(bundle string) (*specs.Spec, []byte, error) {
	path := filepath.Join(bundle, ConfigName)
	data, err := os.ReadFile(path)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil, nil, ErrNotFound
		}
		return nil, nil, fmt.Errorf("read %s: %w", path, err)
	}
	var s specs.Spec
	n, err := decodeFirst(data, &s)
	if err != nil {
		return nil, nil, parseError(path, data, err)
	}
	// Only the first JSON value: anything after it is ignored, as by runc,
	// and must not travel on as part of the config.
	raw := data[:n]
	if err := Validate(&s, bundle); err != nil {
		return &s, raw, err
	}
	return &s, raw, nil
}

// parseError turns a decoding error into one line with the file name and, where the decoder
// knows the byte offset, the line and column of the problem.
func parseError(path string, data []byte, err error) error {
	var (
		syntaxErr *json.SyntaxError
		typeErr   *json.UnmarshalTypeError
		offset    int64 = -1
	)
	switch {
	case errors.As(err, &syntaxErr):
		offset = syntaxErr.Offset
	case errors.As(err, &typeErr):
		offset = typeErr.Offset
	case errors.Is(err, io.EOF):
		return fmt.Errorf("parse %s: empty file: %w", path, err)
	case errors.Is(err, io.ErrUnexpectedEOF):
		offset = int64(len(data)) + 1
	}
	if offset < 0 {
		return fmt.Errorf("parse %s: %w", path, err)
	}
	line, col := position(data, offset)
	return fmt.Errorf("parse %s: line %d, column %d: %w", path, line, col, err)
}

// position converts a decoder offset into a 1-based line and column (in bytes). The decoder
// counts the bytes it has read, so the offending byte is the one before the offset; an
// offset past the end (unexpected EOF) points just after the last byte.
func position(data []byte, offset int64) (line, col int) {
	idx := int(min(max(offset-1, 0), int64(len(data))))
	before := data[:idx]
	line = bytes.Count(before, []byte("\n")) + 1
	col = idx - bytes.LastIndexByte(before, '\n')
	return line, col
}
