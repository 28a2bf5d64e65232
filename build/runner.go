package build

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/cubo-dev/cubo/spec"
	specs "github.com/opencontainers/runtime-spec/specs-go"
)

// Runner runs the command of a RUN step. The manager implements it with its own
// container machinery; BundleRunner is the stand-alone default.
type Runner interface {
	// Run runs spec.Args in a container whose root is spec.Rootfs, waits for it, and
	// returns an error when it could not run or exited with a non-zero status.
	Run(ctx context.Context, spec RunSpec) error
}

// RunSpec is one RUN step.
type RunSpec struct {
	// ID names the container (unique per step).
	ID string
	// Rootfs is the already mounted overlay the command runs in; its changes become the
	// step's layer. The runner must not mount anything into it that should not land in
	// the layer: mount points it needs (/proc, /dev, /sys) are removed afterwards when
	// they were not in the image.
	Rootfs string
	// Args is the command (the shell form is already wrapped in the SHELL).
	Args []string
	// Env holds KEY=VALUE pairs: the image's environment plus build args.
	Env []string
	// Cwd is the absolute working directory; it exists in Rootfs.
	Cwd string
	// User is the USER instruction as written (empty for root); UID, GID and
	// AdditionalGIDs are what it resolved to through the rootfs's /etc/passwd and
	// /etc/group.
	User           string
	UID, GID       uint32
	AdditionalGIDs []uint32
	// Stdout and Stderr receive the command's output.
	Stdout, Stderr io.Writer
}

// BundleRunner runs RUN steps with an OCI runtime binary (cubo-runc, runc, crun): it
// writes a bundle whose config comes from spec.Generate, with the host's network so
// that package managers can download, and runs `RUNTIME --root ROOT run --bundle DIR ID`.
// Going through the runtime's CLI keeps build free of runtime imports.
type BundleRunner struct {
	// Runtime is a path or a name, looked up next to the running executable, then on PATH
	// (default cubo-runc).
	Runtime string
	// StateRoot is the runtime's --root; it must be private to these builds.
	StateRoot string
	// BundleDir is where bundles are written (one temp dir per step).
	BundleDir string
}

// ResolveRuntime turns a runtime name into an absolute path: a name with a slash is
// taken as a path; a bare name is looked up next to the running executable, then on
// PATH. It returns an error of class NotFound when there is no such binary.
func ResolveRuntime(r string) (string, error) {
	if r == "" {
		r = "cubo-runc"
	}
	if strings.Contains(r, "/") {
		abs, err := filepath.Abs(r)
		if err != nil {
			return "", fmt.Errorf("runtime %s: %w", r, err)
		}
		if _, err := os.Stat(abs); err != nil {
			return "", fmt.Errorf("runtime %s: %w", r, errdefs.ErrNotFound)
		}
		return abs, nil
	}
	if exe, err := os.Executable(); err == nil {
		p := filepath.Join(filepath.Dir(exe), r)
		if fi, err := os.Stat(p); err == nil && !fi.IsDir() && fi.Mode()&0o111 != 0 {
			return p, nil
		}
	}
	p, err := exec.LookPath(r)
	if err != nil {
		return "", fmt.Errorf("runtime %s not found next to cubo or on PATH: %w", r, errdefs.ErrNotFound)
	}
	return p, nil
}

// Run implements Runner.
func (b *BundleRunner) Run(ctx context.Context, rs RunSpec) error {
	bin, err := ResolveRuntime(b.Runtime)
	if err != nil {
		return err
	}
	if err := os.MkdirAll(b.BundleDir, 0o700); err != nil {
		return fmt.Errorf("create bundle dir: %w", err)
	}
	bundle, err := os.MkdirTemp(b.BundleDir, "run-")
	if err != nil {
		return fmt.Errorf("create bundle: %w", err)
	}
	defer os.RemoveAll(bundle)
	cfg, err := runConfig(rs)
	if err != nil {
		return err
	}
	data, err := json.Marshal(cfg)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	if err := os.WriteFile(filepath.Join(bundle, "config.json"), data, 0o600); err != nil {
		return fmt.Errorf("write bundle config: %w", err)
	}
	id := rs.ID
	if id == "" {
		id = randomID()
	}
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, "--root", b.StateRoot, "run", "--bundle", bundle, id)
	cmd.Stdin = nil
	cmd.Stdout = rs.Stdout
	cmd.Stderr = io.MultiWriter(rs.Stderr, &tail{buf: &stderr, max: 4096})
	err = cmd.Run()
	// A runtime killed mid-run (context cancelled) leaves its state behind.
	defer exec.Command(bin, "--root", b.StateRoot, "delete", "--force", id).Run() //nolint:errcheck
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		return fmt.Errorf("command %q exited with status %d", strings.Join(rs.Args, " "), ee.ExitCode())
	}
	if err != nil {
		return fmt.Errorf("run %s: %w", bin, err)
	}
	return nil
}

// runConfig is the runtime config of a RUN step: a manager container's defaults, the
// host network (no network namespace) and the host's resolv.conf when the image has one.
func runConfig(rs RunSpec) (*specs.Spec, error) {
	opts := []spec.Opt{
		spec.WithRootfs(rs.Rootfs),
		spec.WithProcessArgs(rs.Args...),
		spec.WithEnv(rs.Env...),
		spec.WithCwd(rs.Cwd),
		spec.WithUser(rs.UID, rs.GID, rs.AdditionalGIDs),
		spec.WithHostNetwork(),
		spec.WithHostname("cubo-build"),
	}
	if fi, err := os.Lstat(filepath.Join(rs.Rootfs, "etc", "resolv.conf")); err == nil && fi.Mode().IsRegular() {
		// Bind over an existing file only: creating the mount point would add it to the
		// layer.
		opts = append(opts, spec.WithBind("/etc/resolv.conf", "/etc/resolv.conf", true))
	}
	s, err := spec.Generate(opts...)
	if err != nil {
		return nil, fmt.Errorf("generate run config: %w", err)
	}
	return s, nil
}

// tail keeps the last max bytes written to it, for error messages.
type tail struct {
	buf *bytes.Buffer
	max int
}

func (t *tail) Write(p []byte) (int, error) {
	t.buf.Write(p)
	if t.buf.Len() > t.max {
		b := t.buf.Bytes()[t.buf.Len()-t.max:]
		nb := append([]byte(nil), b...)
		t.buf.Reset()
		t.buf.Write(nb)
	}
	return len(p), nil
}

func randomID() string {
	b := make([]byte, 12)
	_, _ = rand.Read(b)
	return hex.EncodeToString(b)
}
