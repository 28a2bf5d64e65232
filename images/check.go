package images

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"strings"

	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"golang.org/x/sys/unix"
)

// Finding is one thing an integrity check found.
type Finding struct {
	// Object names what is concerned: "blob sha256:…", "image alpine:latest",
	// "layer sha256:…", "container <id>", "mount <path>".
	Object string
	// Problem says what is wrong with it.
	Problem string
	// Garbage marks a leftover that breaks nothing (an unreferenced blob or layer, the
	// temp files of an interrupted pull): garbage collection reclaims it. Anything else
	// is damage.
	Garbage bool
	// Repaired says the check's repair mode removed it.
	Repaired bool
}

// String returns the finding as the one line `cubo system check` prints.
func (f Finding) String() string {
	s := f.Object + ": " + f.Problem
	if f.Garbage {
		s = "garbage: " + s
	}
	if f.Repaired {
		s += " (repaired)"
	}
	return s
}

// TryExclusive takes the store's lock exclusively without waiting; ok is false while a
// pull, a build (Hold) or a removal runs. Holding it, everything under ROOT/tmp and every
// build's temp state belongs to a dead process.
func (s *Store) TryExclusive() (release func(), ok bool, err error) {
	release, err = s.lock("images.lock", unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		return nil, false, nil
	}
	if err != nil {
		return nil, false, err
	}
	return release, true, nil
}

// Check verifies the store: every blob's content against its digest, every index
// entry's manifest, config and layer blobs present and readable, every unpacked layer dir
// complete and used by an image. Unreferenced blobs and layers, and the temp files of
// interrupted pulls when no pull runs, are garbage, not damage. With repair it removes
// corrupt blobs and incomplete layer dirs (a pull fetches them again) and collects the
// garbage; it waits for running pulls then. The error reports only failures to check.
func (s *Store) Check(ctx context.Context, repair bool) ([]Finding, error) {
	quiescent := true
	var unlock func()
	var err error
	if repair {
		unlock, err = s.lock("images.lock", unix.LOCK_EX)
	} else {
		var ok bool
		unlock, ok, err = s.TryExclusive()
		if err == nil && !ok {
			// Pulls run: what they have not named yet looks unreferenced, and their
			// temp files are live.
			quiescent = false
			unlock, err = s.lock("images.lock", unix.LOCK_SH)
		}
	}
	if err != nil {
		return nil, err
	}
	defer unlock()

	var out []Finding
	add := func(f Finding) { out = append(out, f) }

	// Blobs: the name is the digest of the content.
	blobDir := filepath.Join(s.LayoutDir(), "blobs", "sha256")
	ents, err := os.ReadDir(blobDir)
	if err != nil {
		return nil, fmt.Errorf("check blobs: %w", err)
	}
	bad := map[string]bool{}
	for _, e := range ents {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		obj := "blob sha256:" + e.Name()
		want, err := digest.Parse("sha256:" + e.Name())
		if err != nil {
			add(Finding{Object: obj, Problem: "not a sha256 digest"})
			continue
		}
		p := filepath.Join(blobDir, e.Name())
		got, err := fileDigest(p)
		if err != nil {
			add(Finding{Object: obj, Problem: err.Error()})
			bad[e.Name()] = true
			continue
		}
		if got != want {
			f := Finding{Object: obj, Problem: "content has digest " + got.String()}
			if repair && os.Remove(p) == nil {
				f.Repaired = true
			}
			bad[e.Name()] = true
			add(f)
		}
	}

	// Index entries and what they reference.
	idx, err := s.readIndex()
	if err != nil {
		add(Finding{Object: "index.json", Problem: err.Error()})
		return out, nil
	}
	blobs := map[string]bool{}
	layers := map[string]bool{}
	complete := true
	need := func(img string, what string, d digest.Digest) bool {
		blobs[d.Encoded()] = true
		if err := d.Validate(); err != nil {
			add(Finding{Object: "image " + img, Problem: fmt.Sprintf("%s digest %q is invalid", what, d)})
			complete = false
			return false
		}
		if bad[d.Encoded()] {
			add(Finding{Object: "image " + img, Problem: what + " blob " + d.String() + " is corrupt"})
			complete = false
			return false
		}
		if _, err := os.Stat(s.blobPath(d)); err != nil {
			add(Finding{Object: "image " + img, Problem: what + " blob " + d.String() + " is missing"})
			complete = false
			return false
		}
		return true
	}
	var walk func(img string, d ocispec.Descriptor)
	walk = func(img string, d ocispec.Descriptor) {
		switch {
		case isIndex(d.MediaType):
			var ix ocispec.Index
			if !need(img, "index", d.Digest) {
				return
			}
			if err := s.readJSONBlob(d.Digest, &ix); err != nil {
				add(Finding{Object: "image " + img, Problem: err.Error()})
				complete = false
				return
			}
			for _, m := range ix.Manifests {
				walk(img, m)
			}
		case isImageManifest(d.MediaType):
			if !need(img, "manifest", d.Digest) {
				return
			}
			var m ocispec.Manifest
			if err := s.readJSONBlob(d.Digest, &m); err != nil {
				add(Finding{Object: "image " + img, Problem: err.Error()})
				complete = false
				return
			}
			for _, l := range m.Layers {
				need(img, "layer", l.Digest)
			}
			if !need(img, "config", m.Config.Digest) {
				return
			}
			var cfg ocispec.Image
			if err := s.readJSONBlob(m.Config.Digest, &cfg); err != nil {
				add(Finding{Object: "image " + img, Problem: err.Error()})
				complete = false
				return
			}
			if len(cfg.RootFS.DiffIDs) != len(m.Layers) {
				add(Finding{Object: "image " + img, Problem: fmt.Sprintf("manifest has %d layers but config has %d diff_ids", len(m.Layers), len(cfg.RootFS.DiffIDs))})
			}
			for _, dd := range cfg.RootFS.DiffIDs {
				layers[dd.Encoded()] = true
			}
		default:
			blobs[d.Digest.Encoded()] = true
		}
	}
	for _, d := range idx.Manifests {
		name := d.Annotations[AnnotationRefName]
		if name == "" {
			name = "<none>@" + d.Digest.String()
		}
		walk(name, d)
	}

	// Unreferenced blobs are what an interrupted pull keeps for the next try.
	for _, e := range ents {
		if !blobs[e.Name()] && !bad[e.Name()] {
			add(Finding{Object: "blob sha256:" + e.Name(), Problem: "no image references it", Garbage: true})
		}
	}

	// Unpacked layers: complete (diff/ is a directory) and used.
	layerRoot := filepath.Join(s.root, "layers")
	lents, err := os.ReadDir(layerRoot)
	if err != nil {
		return nil, fmt.Errorf("check layers: %w", err)
	}
	for _, e := range lents {
		if e.Name() == "empty" {
			continue
		}
		obj := "layer " + e.Name()
		if _, err := digest.Parse("sha256:" + e.Name()); err != nil {
			add(Finding{Object: obj, Problem: "not a layer directory (name is no diff_id)"})
			continue
		}
		obj = "layer sha256:" + e.Name()
		if fi, err := os.Stat(filepath.Join(layerRoot, e.Name(), "diff")); err != nil || !fi.IsDir() {
			f := Finding{Object: obj, Problem: "unpacked layer has no diff directory"}
			if repair && os.RemoveAll(filepath.Join(layerRoot, e.Name())) == nil {
				f.Repaired = true
			}
			add(f)
			continue
		}
		if !layers[e.Name()] {
			add(Finding{Object: obj, Problem: "no image uses it", Garbage: true})
		}
	}

	// Temp files belong to a dead process only when no pull runs.
	if quiescent {
		for _, sub := range []string{"ingest", "unpack"} {
			ents, _ := os.ReadDir(filepath.Join(s.tmpDir(), sub))
			for _, e := range ents {
				if !strings.HasSuffix(e.Name(), ".lock") {
					add(Finding{Object: "tmp/" + sub + "/" + e.Name(), Problem: "left by an interrupted pull or load", Garbage: true})
				}
			}
		}
	}

	if repair && complete {
		if _, err := s.gcLocked(ctx); err != nil {
			return out, err
		}
		for i := range out {
			if out[i].Garbage {
				out[i].Repaired = true
			}
		}
	}
	return out, nil
}

// fileDigest hashes the file at p.
func fileDigest(p string) (digest.Digest, error) {
	f, err := os.Open(p)
	if err != nil {
		return "", err
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return "", err
	}
	if !fi.Mode().IsRegular() {
		return "", errors.New("not a regular file")
	}
	h := digest.SHA256.Digester()
	if _, err := io.Copy(h.Hash(), f); err != nil {
		return "", fmt.Errorf("read: %w", err)
	}
	return h.Digest(), nil
}
