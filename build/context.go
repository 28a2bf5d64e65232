package build

import (
	"bufio"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"regexp"
	"sort"
	"strings"

	"github.com/containerd/errdefs"
)

// buildContext is the directory COPY and ADD read from. Nothing outside it is ever
// read: source names with ".." that leave it are refused, and so are sources whose
// symlinks resolve outside it.
type buildContext struct {
	dir    string // absolute, symlinks resolved
	ignore *ignoreMatcher
}

func openContext(dir string) (*buildContext, error) {
	abs, err := filepath.Abs(dir)
	if err != nil {
		return nil, fmt.Errorf("build context %s: %w", dir, err)
	}
	real, err := filepath.EvalSymlinks(abs)
	if err != nil {
		return nil, fmt.Errorf("build context %s: %w", dir, err)
	}
	if fi, err := os.Stat(real); err != nil || !fi.IsDir() {
		return nil, fmt.Errorf("build context %s: not a directory: %w", dir, errdefs.ErrInvalidArgument)
	}
	c := &buildContext{dir: real, ignore: &ignoreMatcher{}}
	for _, name := range []string{".cuboignore", ".dockerignore"} {
		f, err := os.Open(filepath.Join(real, name))
		if errors.Is(err, fs.ErrNotExist) {
			continue
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		c.ignore, err = parseIgnore(f)
		f.Close()
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", name, err)
		}
		break
	}
	return c, nil
}

// source is one resolved COPY/ADD source in the context.
type source struct {
	rel  string // slash-separated, relative to the context ("" is the context itself)
	host string // path on the host, symlinks resolved, inside the context
}

// cleanSource turns a source name into a context-relative path, refusing names that
// climb out of the context. A leading "/" means the context root, as in Docker.
func cleanSource(src string) (string, error) {
	var rel string
	if strings.HasPrefix(src, "/") {
		rel = strings.TrimPrefix(path.Clean(src), "/")
	} else {
		rel = path.Clean(src)
		if rel == ".." || strings.HasPrefix(rel, "../") {
			return "", fmt.Errorf("source %q escapes the build context: %w", src, errdefs.ErrInvalidArgument)
		}
	}
	if rel == "." {
		rel = ""
	}
	return rel, nil
}

func hasWildcards(s string) bool { return strings.ContainsAny(s, "*?[") }

// resolve expands one source name (wildcards allowed) into existing, non-ignored
// context entries.
func (c *buildContext) resolve(src string) ([]source, error) {
	rel, err := cleanSource(src)
	if err != nil {
		return nil, err
	}
	names := []string{rel}
	if hasWildcards(rel) {
		matches, err := filepath.Glob(filepath.Join(c.dir, filepath.FromSlash(rel)))
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", src, errdefs.ErrInvalidArgument)
		}
		names = names[:0]
		for _, m := range matches {
			r, _ := filepath.Rel(c.dir, m)
			if r = filepath.ToSlash(r); !c.ignore.match(r) {
				names = append(names, r)
			}
		}
		if len(names) == 0 {
			return nil, fmt.Errorf("source %q: no matching file in the build context: %w", src, errdefs.ErrNotFound)
		}
	}
	var out []source
	for _, n := range names {
		if n != "" && c.ignore.match(n) {
			return nil, fmt.Errorf("source %q: excluded by the ignore file: %w", src, errdefs.ErrNotFound)
		}
		real, err := filepath.EvalSymlinks(filepath.Join(c.dir, filepath.FromSlash(n)))
		if errors.Is(err, fs.ErrNotExist) {
			return nil, fmt.Errorf("source %q: no such file in the build context: %w", src, errdefs.ErrNotFound)
		}
		if err != nil {
			return nil, fmt.Errorf("source %q: %w", src, err)
		}
		if real != c.dir && !strings.HasPrefix(real, c.dir+string(filepath.Separator)) {
			return nil, fmt.Errorf("source %q: symlink leads out of the build context (to %s): %w", src, real, errdefs.ErrInvalidArgument)
		}
		out = append(out, source{rel: n, host: real})
	}
	return out, nil
}

// hashSources digests what a COPY/ADD would copy: names, types, modes, link targets and
// file contents, skipping ignored entries. Owners and times are left out, as Docker does:
// COPY sets its own owner, and touching a file must not invalidate the cache.
func (c *buildContext) hashSources(srcs []source) (string, error) {
	h := sha256.New()
	for _, s := range srcs {
		err := filepath.WalkDir(s.host, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			r, _ := filepath.Rel(s.host, p)
			rel := path.Join(s.rel, filepath.ToSlash(r))
			if p != s.host && c.ignore.match(rel) {
				return c.ignore.skip(d)
			}
			fi, err := d.Info()
			if err != nil {
				return err
			}
			fmt.Fprintf(h, "%s\x00%o\x00", filepath.ToSlash(r), fi.Mode())
			switch {
			case fi.Mode()&fs.ModeSymlink != 0:
				t, err := os.Readlink(p)
				if err != nil {
					return err
				}
				fmt.Fprintf(h, "%s\x00", t)
			case fi.Mode().IsRegular():
				f, err := os.Open(p)
				if err != nil {
					return err
				}
				fmt.Fprintf(h, "%d\x00", fi.Size())
				_, err = io.Copy(h, f)
				f.Close()
				if err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return "", fmt.Errorf("read source %s: %w", s.rel, err)
		}
		fmt.Fprintf(h, "\x01")
	}
	return hex.EncodeToString(h.Sum(nil)), nil
}

// ignoreMatcher implements .dockerignore semantics: one pattern per line, # comments,
// "!" re-includes, "**" matches any number of directories, and a match of a directory
// excludes everything below it. The last matching pattern wins.
type ignoreMatcher struct {
	patterns []ignorePattern
}

type ignorePattern struct {
	re      *regexp.Regexp
	exclude bool // a "!" pattern
}

func parseIgnore(r io.Reader) (*ignoreMatcher, error) {
	m := &ignoreMatcher{}
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		neg := strings.HasPrefix(line, "!")
		if neg {
			line = strings.TrimSpace(line[1:])
		}
		line = strings.TrimPrefix(path.Clean(filepath.ToSlash(line)), "/")
		if line == "" || line == "." {
			continue
		}
		re, err := regexp.Compile(globRegexp(line))
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", line, err)
		}
		m.patterns = append(m.patterns, ignorePattern{re: re, exclude: neg})
	}
	return m, sc.Err()
}

// globRegexp translates a pattern: * and ? never cross "/", ** does.
func globRegexp(p string) string {
	var b strings.Builder
	b.WriteString("^")
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '*' && i+1 < len(p) && p[i+1] == '*':
			i++
			if i+1 < len(p) && p[i+1] == '/' {
				i++
				b.WriteString("(.*/)?")
			} else {
				b.WriteString(".*")
			}
		case c == '*':
			b.WriteString("[^/]*")
		case c == '?':
			b.WriteString("[^/]")
		case c == '[':
			j := strings.IndexByte(p[i:], ']')
			if j < 0 {
				b.WriteString(`\[`)
				continue
			}
			class := p[i+1 : i+j]
			if strings.HasPrefix(class, "!") {
				class = "^" + class[1:]
			}
			b.WriteString("[" + class + "]")
			i += j
		case c == '\\' && i+1 < len(p):
			i++
			b.WriteString(regexp.QuoteMeta(string(p[i])))
		default:
			b.WriteString(regexp.QuoteMeta(string(c)))
		}
	}
	b.WriteString("$")
	return b.String()
}

// skip is what a walk returns for an excluded entry: the whole dir when no "!" pattern
// could re-include something below it.
func (m *ignoreMatcher) skip(d fs.DirEntry) error {
	if d.IsDir() {
		for _, p := range m.patterns {
			if p.exclude {
				return nil
			}
		}
		return filepath.SkipDir
	}
	return nil
}

// match reports whether rel (slash-separated, relative to the context) is excluded.
func (m *ignoreMatcher) match(rel string) bool {
	if m == nil || len(m.patterns) == 0 || rel == "" {
		return false
	}
	// rel and each of its parent dirs are candidates.
	var cands []string
	for p := rel; p != "." && p != ""; p = path.Dir(p) {
		cands = append(cands, p)
	}
	sort.Strings(cands)
	excluded := false
	for _, pat := range m.patterns {
		for _, cnd := range cands {
			if pat.re.MatchString(cnd) {
				excluded = !pat.exclude
				break
			}
		}
	}
	return excluded
}
