package tests

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync/atomic"
)

// errSkip marks a bundle that cannot be built on this machine (a missing
// fixture); callers turn it into a skip.
var errSkip = errors.New("skip")

var bundleSeq atomic.Int64

// rootfsDirs are the empty directories of a probe rootfs.
var rootfsDirs = []string{"proc", "sys", "dev", "tmp", "etc", "root", "run", "mnt", "var", "home", "bin"}

// makeBundle creates dir/rootfs and dir/config.json.
//
// kind selects the rootfs: "probe" (the probe at /probe plus empty
// directories), "busybox" (the probe rootfs plus /bin/busybox and its applet
// links) or "alpine" (the Alpine minirootfs plus /probe). The config comes from
// `<runtime> spec` and is then adjusted for tests: terminal off, a unique
// absolute cgroupsPath under /cubo-tests, and process.args set to args (for
// "probe", args are the probe's arguments and "/probe" is prepended; for
// "busybox" the default is /bin/sh).
func makeBundle(dir, kind string, args []string) error {
	rootfs := filepath.Join(dir, "rootfs")
	if err := os.MkdirAll(rootfs, 0o755); err != nil {
		return err
	}
	switch kind {
	case "probe", "busybox":
		for _, d := range rootfsDirs {
			if err := os.MkdirAll(filepath.Join(rootfs, d), 0o755); err != nil {
				return err
			}
		}
		if kind == "busybox" {
			if err := addBusybox(rootfs); err != nil {
				return err
			}
		}
	case "alpine":
		if _, err := os.Stat(alpineTar); err != nil {
			return fmt.Errorf("%w: Alpine rootfs tarball %s not present", errSkip, alpineTar)
		}
		if out, err := exec.Command("tar", "-xzf", alpineTar, "-C", rootfs).CombinedOutput(); err != nil {
			return fmt.Errorf("unpack %s: %v\n%s", alpineTar, err, out)
		}
	default:
		return fmt.Errorf("unknown rootfs kind %q (want probe, busybox or alpine)", kind)
	}
	if err := copyFile(probePath, filepath.Join(rootfs, "probe"), 0o755); err != nil {
		return err
	}

	// The runtime's own spec is the starting point: `spec` is part of the
	// CLI under test.
	cmd := exec.Command(runtimePath, "spec", "--bundle", dir)
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("%s spec --bundle %s: %v\n%s", runtimePath, dir, err, out)
	}
	cfgPath := filepath.Join(dir, "config.json")
	cfg, err := readJSON(cfgPath)
	if err != nil {
		return err
	}
	if kind == "probe" && len(args) > 0 {
		args = append([]string{"/probe"}, args...)
	}
	if kind == "busybox" && len(args) == 0 {
		args = []string{"/bin/sh"}
	}
	edits := []struct {
		path string
		val  any
	}{
		{"process.terminal", false},
		{"linux.cgroupsPath", fmt.Sprintf("/%s/%s-%d-%d", cgroupParent, sanitize(filepath.Base(dir)), os.Getpid(), bundleSeq.Add(1))},
	}
	if len(args) > 0 {
		edits = append(edits, struct {
			path string
			val  any
		}{"process.args", stringsToAny(args)})
	}
	for _, e := range edits {
		if cfg, err = jsonSet(cfg, e.path, e.val); err != nil {
			return err
		}
	}
	return writeJSON(cfgPath, cfg)
}

func addBusybox(rootfs string) error {
	if len(busyboxApplets) == 0 {
		return fmt.Errorf("%w: %s (busybox-static) not installed", errSkip, busyboxPath)
	}
	bin := filepath.Join(rootfs, "bin")
	if err := copyFile(busyboxPath, filepath.Join(bin, "busybox"), 0o755); err != nil {
		return err
	}
	for _, a := range busyboxApplets {
		if err := os.Symlink("busybox", filepath.Join(bin, a)); err != nil && !errors.Is(err, os.ErrExist) {
			return err
		}
	}
	return nil
}

func sanitize(s string) string {
	return strings.Map(func(r rune) rune {
		switch {
		case r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r >= '0' && r <= '9', r == '-', r == '_':
			return r
		}
		return '_'
	}, s)
}

func stringsToAny(ss []string) []any {
	out := make([]any, len(ss))
	for i, s := range ss {
		out[i] = s
	}
	return out
}

func copyFile(src, dst string, mode os.FileMode) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, mode)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}

func readJSON(path string) (any, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	var v any
	if err := json.Unmarshal(b, &v); err != nil {
		return nil, fmt.Errorf("parse %s: %w", path, err)
	}
	return v, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(b, '\n'), 0o644)
}

// parseValue reads a command-line value as JSON, or as a plain string when
// it is not valid JSON (so `hostname box` works; write '"1"' for the string
// "1").
func parseValue(s string) any {
	var v any
	if err := json.Unmarshal([]byte(s), &v); err == nil {
		return v
	}
	return s
}

// jsonSet sets the element at path in v and returns the new v. A path is a
// dot-separated list of segments:
//   - a key of an object (created when missing);
//   - a decimal index into an array;
//   - "-", which appends to an array (created when missing);
//   - "field=value", which selects the first array element (an object)
//     whose field has that string value, e.g. linux.namespaces.type=network.
func jsonSet(v any, path string, val any) (any, error) {
	return walk(v, splitPath(path), path, func(any) (any, bool) { return val, true })
}

// jsonDel removes the element at path from v and returns the new v; a
// missing element is not an error.
func jsonDel(v any, path string) (any, error) {
	return walk(v, splitPath(path), path, func(any) (any, bool) { return nil, false })
}

func splitPath(p string) []string {
	if p == "" || p == "." {
		return nil
	}
	return strings.Split(p, ".")
}

// walk applies f at the end of segs; f returns the new value and whether it
// should be kept (false deletes it).
func walk(v any, segs []string, full string, f func(any) (any, bool)) (any, error) {
	if len(segs) == 0 {
		nv, _ := f(v)
		return nv, nil
	}
	seg, rest := segs[0], segs[1:]
	switch c := v.(type) {
	case nil:
		if _, err := strconv.Atoi(seg); err == nil || seg == "-" {
			return walk([]any{}, segs, full, f)
		}
		return walk(map[string]any{}, segs, full, f)
	case map[string]any:
		old, ok := c[seg]
		if !ok && len(rest) == 0 {
			if nv, keep := f(nil); keep {
				c[seg] = nv
			}
			return c, nil
		}
		if !ok && isDelete(f) {
			return c, nil
		}
		if len(rest) == 0 {
			nv, keep := f(old)
			if keep {
				c[seg] = nv
			} else {
				delete(c, seg)
			}
			return c, nil
		}
		nv, err := walk(old, rest, full, f)
		if err != nil {
			return nil, err
		}
		c[seg] = nv
		return c, nil
	case []any:
		i := -1
		switch {
		case seg == "-":
			i = len(c)
		case strings.Contains(seg, "="):
			k, want, _ := strings.Cut(seg, "=")
			for j, e := range c {
				if m, ok := e.(map[string]any); ok && fmt.Sprint(m[k]) == want {
					i = j
					break
				}
			}
			if i < 0 {
				if isDelete(f) {
					return c, nil
				}
				return nil, fmt.Errorf("json path %s: no element with %s", full, seg)
			}
		default:
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n > len(c) {
				return nil, fmt.Errorf("json path %s: bad index %q", full, seg)
			}
			i = n
		}
		if i == len(c) {
			if isDelete(f) {
				return c, nil
			}
			c = append(c, nil)
		}
		if len(rest) == 0 {
			nv, keep := f(c[i])
			if !keep {
				return append(c[:i], c[i+1:]...), nil
			}
			c[i] = nv
			return c, nil
		}
		nv, err := walk(c[i], rest, full, f)
		if err != nil {
			return nil, err
		}
		c[i] = nv
		return c, nil
	default:
		return nil, fmt.Errorf("json path %s: %q is not inside an object or array", full, seg)
	}
}

func isDelete(f func(any) (any, bool)) bool {
	_, keep := f(nil)
	return !keep
}

// jsonGet returns the element at path, or nil.
func jsonGet(v any, path string) any {
	for _, seg := range splitPath(path) {
		switch c := v.(type) {
		case map[string]any:
			v = c[seg]
		case []any:
			n, err := strconv.Atoi(seg)
			if err != nil || n < 0 || n >= len(c) {
				return nil
			}
			v = c[n]
		default:
			return nil
		}
	}
	return v
}
