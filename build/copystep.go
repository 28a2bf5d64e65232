package build

import (
	"context"
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"

	"github.com/cubo-dev/cubo/build/cubofile"
	"github.com/cubo-dev/cubo/spec"
)

// copy executes COPY and ADD. Sources come from the context, or with --from from an
// earlier stage or an image; the cache key covers the content and metadata of what is
// copied, so changing one file rebuilds from this step on.
func (b *builder) copy(ctx context.Context, idx int, st *stageState, in cubofile.Instruction) error {
	dest, err := b.word(st, in, in.Dest)
	if err != nil {
		return err
	}
	destDir := strings.HasSuffix(dest, "/") || len(in.Sources) > 1
	if !path.IsAbs(dest) {
		dest = path.Join("/", st.img.Config.WorkingDir, dest)
	}
	dest = path.Clean(dest)
	chown, err := b.word(st, in, in.Chown)
	if err != nil {
		return err
	}
	var chmod *fs.FileMode
	if in.Chmod != "" {
		m, err := strconv.ParseUint(in.Chmod, 8, 32)
		if err != nil || m > 0o7777 {
			return fmt.Errorf("--chmod=%s: want an octal mode: %w", in.Chmod, errdefs.ErrInvalidArgument)
		}
		fm := fs.FileMode(m)
		chmod = &fm
	}
	var srcNames []string
	for _, s := range in.Sources {
		v, err := b.word(st, in, s)
		if err != nil {
			return err
		}
		if in.Kind == cubofile.Add && (strings.HasPrefix(v, "http://") || strings.HasPrefix(v, "https://") || strings.HasPrefix(v, "git@")) {
			return fmt.Errorf("remote source %s: %w", v, errdefs.ErrNotImplemented)
		}
		if hasWildcards(v) {
			destDir = true
		}
		srcNames = append(srcNames, v)
	}

	// Where the sources come from, and what identifies their content for the cache.
	var from *stageState
	var srcs []source
	var content string
	if in.From != "" {
		ref, err := b.word(st, in, in.From)
		if err != nil {
			return err
		}
		if j := b.plan.StageIndex(ref); j >= 0 && j < idx {
			from = b.stages[j]
		} else if j >= idx {
			return fmt.Errorf("--from=%s: a stage can only copy from an earlier one: %w", ref, errdefs.ErrInvalidArgument)
		} else {
			img, err := b.image(ctx, ref)
			if err != nil {
				return fmt.Errorf("--from=%s: %w", ref, err)
			}
			from = &stageState{layers: img.Manifest.Layers, diffIDs: img.Config.RootFS.DiffIDs, key: img.Descriptor.Digest.String()}
		}
		content = from.key
	} else {
		for _, n := range srcNames {
			r, err := b.bctx.resolve(n)
			if err != nil {
				return err
			}
			srcs = append(srcs, r...)
		}
		if content, err = b.bctx.hashSources(srcs); err != nil {
			return err
		}
	}
	key := hashKey(st.key, string(in.Kind), strings.Join(srcNames, "\x00"), dest, strconv.FormatBool(destDir), chown, in.Chmod, content)
	return b.step(ctx, st, in.Text, key, func(rootfs string) error {
		c := &copier{rootfs: rootfs, chmod: chmod, ignore: b.bctx.ignore}
		if chown != "" {
			uid, gid, err := resolveOwner(rootfs, chown)
			if err != nil {
				return err
			}
			c.owner = &[2]int{int(uid), int(gid)}
		}
		if from != nil {
			return b.copyFromStage(ctx, c, from, srcNames, dest, destDir)
		}
		if len(srcs) > 1 {
			destDir = true
		}
		for _, s := range srcs {
			if err := c.copySource(in.Kind == cubofile.Add, s.host, s.rel, path.Base("/"+s.rel), dest, destDir); err != nil {
				return err
			}
		}
		return nil
	}, nil)
}

// copySource copies one resolved source: a directory's contents into dest, an archive
// (ADD) extracted into dest, a file to dest or into it.
func (c *copier) copySource(add bool, host, rel, base, dest string, destDir bool) error {
	fi, err := os.Stat(host)
	if err != nil {
		return fmt.Errorf("read source %s: %w", rel, err)
	}
	if fi.IsDir() {
		if _, err := c.mkdirAll(dest); err != nil {
			return err
		}
		return c.copyTree(host, rel, dest)
	}
	if add && fi.Mode().IsRegular() {
		if tr, closeFn, ok := openArchive(host); ok {
			defer closeFn()
			return c.extract(tr, dest)
		}
	}
	target := dest
	if destDir || c.isDir(dest) {
		target = path.Join(dest, base)
	}
	if _, err := c.mkdirAll(path.Dir(target)); err != nil {
		return err
	}
	return c.copyEntry(host, target)
}

// copyFromStage copies from another stage's (or image's) filesystem, mounted read-only
// for the purpose; names resolve inside that filesystem, never outside it.
func (b *builder) copyFromStage(ctx context.Context, c *copier, from *stageState, names []string, dest string, destDir bool) error {
	m, err := b.mountState(ctx, from)
	if err != nil {
		return err
	}
	defer m.release()
	c.ignore = nil
	c.preserve = true
	var hosts, rels []string
	for _, n := range names {
		clean := path.Clean("/" + n)
		if hasWildcards(clean) {
			matches, _ := filepath.Glob(filepath.Join(m.rootfs, clean))
			if len(matches) == 0 {
				return fmt.Errorf("source %q: no match in the stage: %w", n, errdefs.ErrNotFound)
			}
			for _, mt := range matches {
				r, _ := filepath.Rel(m.rootfs, mt)
				rels = append(rels, "/"+filepath.ToSlash(r))
			}
			continue
		}
		rels = append(rels, clean)
	}
	for _, r := range rels {
		h, err := securejoin.SecureJoin(m.rootfs, r)
		if err != nil {
			return fmt.Errorf("resolve %s: %w", r, err)
		}
		hosts = append(hosts, h)
	}
	if len(hosts) > 1 {
		destDir = true
	}
	for i, h := range hosts {
		if _, err := os.Lstat(h); err != nil {
			return fmt.Errorf("source %s: not in the stage: %w", rels[i], errdefs.ErrNotFound)
		}
		if err := c.copySource(false, h, "", path.Base(rels[i]), dest, destDir); err != nil {
			return err
		}
	}
	return nil
}

// resolveOwner resolves --chown USER[:GROUP] through the rootfs's passwd and group
// files; a lone numeric user gets the same number as group, as Docker does.
func resolveOwner(rootfs, chown string) (uint32, uint32, error) {
	u, _, hasGroup := strings.Cut(chown, ":")
	if n, err := strconv.ParseUint(u, 10, 32); err == nil && !hasGroup {
		return uint32(n), uint32(n), nil
	}
	uid, gid, _, err := spec.ResolveUser(rootfs, chown)
	if err != nil {
		return 0, 0, fmt.Errorf("--chown=%s: %w", chown, err)
	}
	return uid, gid, nil
}
