package manager

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sync"

	specs "github.com/opencontainers/runtime-spec/specs-go"

	"github.com/cubo-dev/cubo/manager/ociruntime"
	"github.com/cubo-dev/cubo/spec"
)

// RunOnceOpts describe a one-off container over a rootfs the caller prepared, such as
// a build step's overlay whose upper dir becomes a layer.
type RunOnceOpts struct {
	// Rootfs is the absolute path of the (mounted) root filesystem.
	Rootfs string
	Args   []string
	// Env is KEY=VALUE pairs on top of the default PATH.
	Env []string
	// Cwd is the working directory (default /).
	Cwd string
	// User is USER[:GROUP], resolved against the rootfs's /etc/passwd and /etc/group.
	User string
	// HostNetwork shares the host's network (a build's RUN apk add needs it while there
	// is no bridge); otherwise only loopback.
	HostNetwork bool
	// Mounts are added to the config (e.g. a read-only bind of the host's resolv.conf).
	Mounts []specs.Mount
	// Stdin, Stdout and Stderr are optional; the output is returned as well.
	Stdin          io.Reader
	Stdout, Stderr io.Writer
}

// maxRunOnceOutput bounds the output RunOnce keeps in memory (the tail is kept).
const maxRunOnceOutput = 1 << 20

// RunOnce runs a one-off container over o.Rootfs through the runtime, waits for it and
// returns its exit status and combined output (at most the last MiB). A status other
// than zero is not an error; err reports only failures to run at all. The temporary
// bundle and the runtime state are removed before it returns; the rootfs is left as the
// process left it.
func (m *Manager) RunOnce(ctx context.Context, o RunOnceOpts) (status int, output []byte, err error) {
	if !filepath.IsAbs(o.Rootfs) {
		return -1, nil, fmt.Errorf("run once: rootfs %q must be absolute", o.Rootfs)
	}
	rt, err := m.resolveRuntime()
	if err != nil {
		return -1, nil, err
	}
	uid, gid, groups, err := spec.ResolveUser(o.Rootfs, o.User)
	if err != nil {
		return -1, nil, err
	}
	opts := []spec.Opt{
		spec.WithRootfs(o.Rootfs),
		spec.WithProcessArgs(o.Args...),
		spec.WithEnv(o.Env...),
		spec.WithUser(uid, gid, groups),
		spec.WithHostname("cubo-build"),
	}
	if o.Cwd != "" {
		opts = append(opts, spec.WithCwd(o.Cwd))
	}
	if o.HostNetwork {
		opts = append(opts, spec.WithHostNetwork())
	}
	s, err := spec.Generate(opts...)
	if err != nil {
		return -1, nil, err
	}
	s.Mounts = append(s.Mounts, o.Mounts...)
	id := newID()
	s.Linux.CgroupsPath = "/cubo/" + id
	bundle := filepath.Join(m.root, "runonce", id)
	if err := os.MkdirAll(bundle, 0o700); err != nil {
		return -1, nil, fmt.Errorf("create bundle: %w", err)
	}
	defer os.RemoveAll(bundle)
	if err := writeConfig(bundle, s); err != nil {
		return -1, nil, err
	}
	r := &ociruntime.Runtime{Command: rt, Root: m.runtimeRoot(rt), Log: filepath.Join(bundle, "runtime.log")}
	if err := os.MkdirAll(r.Root, 0o700); err != nil {
		return -1, nil, err
	}
	out := &tailBuffer{max: maxRunOnceOutput}
	stdout, stderr := io.Writer(out), io.Writer(out)
	if o.Stdout != nil {
		stdout = io.MultiWriter(out, o.Stdout)
	}
	if o.Stderr != nil {
		stderr = io.MultiWriter(out, o.Stderr)
	}
	// exec.Cmd copies non-*os.File writers through pipes it closes after the wait.
	rio, closeIO, err := pipeIO(o.Stdin, stdout, stderr)
	if err != nil {
		return -1, nil, err
	}
	err = r.Run(ctx, id, bundle, rio)
	closeIO()
	_ = r.Delete(context.WithoutCancel(ctx), id, true)
	var ee *ociruntime.ExitError
	if errors.As(err, &ee) && err.Error() == ee.Error() {
		return ee.Status, out.bytes(), nil
	}
	if err != nil {
		return -1, out.bytes(), fmt.Errorf("run once: %w", err)
	}
	return 0, out.bytes(), nil
}

// pipeIO gives the runtime real files for arbitrary readers and writers; closeIO waits
// until everything the container wrote has been copied.
func pipeIO(in io.Reader, stdout, stderr io.Writer) (ociruntime.IO, func(), error) {
	var rio ociruntime.IO
	var wg sync.WaitGroup
	var toClose []*os.File
	for _, w := range []struct {
		dst io.Writer
		set **os.File
	}{{stdout, &rio.Stdout}, {stderr, &rio.Stderr}} {
		pr, pw, err := os.Pipe()
		if err != nil {
			return rio, nil, err
		}
		*w.set = pw
		toClose = append(toClose, pw)
		wg.Add(1)
		go func(dst io.Writer) {
			defer wg.Done()
			defer pr.Close()
			_, _ = io.Copy(dst, pr)
		}(w.dst)
	}
	if in != nil {
		pr, pw, err := os.Pipe()
		if err != nil {
			return rio, nil, err
		}
		rio.Stdin = pr
		toClose = append(toClose, pr)
		go func() { _, _ = io.Copy(pw, in); pw.Close() }()
	}
	return rio, func() {
		for _, f := range toClose {
			f.Close()
		}
		wg.Wait()
	}, nil
}

// tailBuffer keeps the last max bytes written to it; safe for two writers.
type tailBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
	max int
}

// Write keeps p, dropping the oldest bytes beyond max.
func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.buf.Write(p)
	if over := t.buf.Len() - t.max; over > 0 {
		t.buf.Next(over)
	}
	return len(p), nil
}

func (t *tailBuffer) bytes() []byte {
	t.mu.Lock()
	defer t.mu.Unlock()
	return bytes.Clone(t.buf.Bytes())
}
