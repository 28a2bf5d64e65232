package images

import (
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

// FuzzNormalizeName checks image reference parsing: no panic; errors are one-line
// InvalidArgument; an accepted name normalizes to a fixed point (normalizing the familiar
// name again gives it back, and names the same full reference), and splitName takes the
// familiar name apart into the tag and digest the parser found.
func FuzzNormalizeName(f *testing.F) {
	for _, s := range []string{
		"alpine", "alpine:3.20", "docker.io/library/alpine:latest", "library/alpine",
		"127.0.0.1:5000/a/b:c", "localhost/x", "localhost:5000/x@sha256:" + strings.Repeat("a", 64),
		"quay.io/org/img:tag@sha256:" + strings.Repeat("0", 64), "ALPINE", "a:b:c", "a@b", ":tag", "@sha256:x",
		"http://reg/x", "../../etc/passwd", "a/../b", "a//b", "a:" + strings.Repeat("t", 200), "[::1]:5000/x",
		"reg:99999/x", "x:-", "\x00", "a b",
		// Found by fuzzing: the short form of these names another registry.
		"docker.io/0.0/0", "docker.io/localhost/x", "docker.io/a:5/b",
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, name string) {
		n, err := NormalizeName(name)
		if err != nil {
			if !errdefs.IsInvalidArgument(err) {
				t.Fatalf("%q: error class: %v", name, err)
			}
			if strings.ContainsAny(err.Error(), "\n\r") {
				t.Fatalf("%q: error is not one line: %q", name, err)
			}
			return
		}
		r, err := parseRef(name)
		if err != nil {
			t.Fatalf("%q: parseRef fails after NormalizeName succeeded: %v", name, err)
		}
		n2, err := NormalizeName(n)
		if err != nil {
			t.Fatalf("%q normalizes to %q, which is refused: %v", name, n, err)
		}
		if n2 != n {
			t.Fatalf("%q normalizes to %q, then to %q", name, n, n2)
		}
		r2, _ := parseRef(n)
		if fullName(r) != fullName(r2) {
			t.Fatalf("%q: full name %q, but its familiar name %q gives %q", name, fullName(r), n, fullName(r2))
		}
		_, tag, dgst := splitName(n)
		if tag != r.Tag || dgst != r.Digest {
			t.Fatalf("%q: splitName(%q) = tag %q digest %q, parser says %q %q", name, n, tag, dgst, r.Tag, r.Digest)
		}
		for _, c := range strings.Split(r.Repository, "/") {
			if c == "" || c == "." || c == ".." {
				t.Fatalf("%q: repository %q has a %q path component", name, r.Repository, c)
			}
		}
	})
}
