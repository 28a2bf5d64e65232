// Package manager runs Cubo's containers: records under the root dir, OCI bundles made
// of an overlay rootfs from the image store and a generated config, a monitor process per
// container (the cubo binary in a hidden mode, like conmon) that drives the runtime and
// keeps the logs, and reconciliation of what the records say with what is alive.
//
// On-disk layout under the root dir:
//
//	ROOT/containers/<id>/          an OCI bundle: `runc run -b DIR` runs it as it is
//	    config.json                the runtime config
//	    rootfs/                    overlay of the image layers (upper/ and work/ beside it)
//	    meta.json                  the manager's record (Container), replaced atomically
//	    lock                       flock held by whoever owns the container's lifecycle:
//	                               `cubo run` while creating, then its monitor
//	    container.log              stdout/stderr, one JSON object per line
//	    hostname, hosts, resolv.conf  bind-mounted over the rootfs's /etc files; written
//	                               by the network controller, which keeps hosts current
//	ROOT/containers/.names/<name>  the ID owning a name, created with O_EXCL
//	ROOT/containers/.new-<id>/     a container being created; renamed to <id> when complete
//	ROOT/runtime/<runtime>/        the runtime's --root, one per runtime binary name
//	ROOT/network/                  package network's state: networks, namespaces,
//	                               address leases, one attachment record per container
//
// Whoever holds a container's lock is alive by definition (flock dies with its owner), so
// a record saying "running" without a lock holder is checked against the runtime and
// repaired; nothing depends on a stored pid alone.
package manager

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/containerd/errdefs"
	"github.com/moby/sys/mountinfo"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/images"
	"github.com/cubo-dev/cubo/manager/ociruntime"
	"github.com/cubo-dev/cubo/network"
)

// Status values of a container record.
const (
	StatusCreated = "created"
	StatusRunning = "running"
	StatusStopped = "stopped"
)

// MonitorArg is argv[1] of the hidden monitor mode; the cubo binary checks it before
// parsing its command line and calls MonitorMain.
const MonitorArg = "__cubo_monitor"

// Port is one --publish mapping.
type Port struct {
	HostIP   string `json:"host_ip,omitempty"`
	Host     uint16 `json:"host"`
	Cont     uint16 `json:"container"`
	Protocol string `json:"protocol"`
}

// Volume is one --volume bind mount.
type Volume struct {
	Host     string `json:"host"`
	Cont     string `json:"container"`
	ReadOnly bool   `json:"ro,omitempty"`
}

// Container is the manager's record of a container (meta.json).
type Container struct {
	ID      string   `json:"id"`
	Name    string   `json:"name"`
	Image   string   `json:"image"`
	ImageID string   `json:"image_id"`
	Command []string `json:"command"`
	Ports   []Port   `json:"ports,omitempty"`
	Volumes []Volume `json:"volumes,omitempty"`
	// Network is the --network mode as network.ParseMode reads it: "bridge", "none",
	// "host", "container:<ID>" or a network's name.
	Network     string    `json:"network"`
	Hostname    string    `json:"hostname"`
	StopSignal  string    `json:"stop_signal,omitempty"`
	AutoRemove  bool      `json:"auto_remove,omitempty"`
	Interactive bool      `json:"interactive,omitempty"`
	Tty         bool      `json:"tty,omitempty"`
	Runtime     string    `json:"runtime"`
	RuntimeRoot string    `json:"runtime_root"`
	Status      string    `json:"status"`
	Created     time.Time `json:"created"`
	Started     time.Time `json:"started,omitzero"`
	Finished    time.Time `json:"finished,omitzero"`
	ExitCode    int       `json:"exit_code"`
	Pid         int       `json:"pid,omitempty"`
	MonitorPid  int       `json:"monitor_pid,omitempty"`
	// OOMKilled says the kernel's OOM killer killed a process of the container (its
	// memory cgroup counted an oom_kill), as docker's State.OOMKilled.
	OOMKilled bool `json:"OOMKilled"`
	// LogMaxSize is the size at which container.log is rotated to container.log.1
	// (the previous .1 is dropped); 0 means no cap.
	LogMaxSize int64 `json:"log_max_size,omitempty"`
	// Error says why the container stopped abnormally or why its state is uncertain
	// (start failure, monitor died, creation interrupted).
	Error string `json:"error,omitempty"`

	dir string
}

// Dir returns the container's directory (its bundle).
func (c *Container) Dir() string { return c.dir }

// LogPath returns the container's log file.
func (c *Container) LogPath() string { return filepath.Join(c.dir, logName) }

// ShortID returns the first 12 hex digits of the ID, as listings print it.
func (c *Container) ShortID() string { return c.ID[:12] }

func (c *Container) runtime() *ociruntime.Runtime {
	return &ociruntime.Runtime{Command: c.Runtime, Root: c.RuntimeRoot, Log: filepath.Join(c.dir, "runtime.log")}
}

const (
	metaName = "meta.json"
	logName  = "container.log"
	// rotatedLogName is the one rotated log file kept beside logName.
	rotatedLogName = logName + ".1"
	lockName       = "lock"
)

// Manager manages the containers under one root dir.
type Manager struct {
	root    string
	dir     string
	log     zerolog.Logger
	store   *images.Store
	runtime string
	self    string
	netOpts []network.Opt

	netOnce sync.Once
	nc      *network.Controller
	ncErr   error
}

// WithNetworkOpts passes options to the network controller (root_dir/network), such as
// network.WithDefaultNetwork.
func WithNetworkOpts(opts ...network.Opt) Opt {
	return func(m *Manager) { m.netOpts = append(m.netOpts, opts...) }
}

// Opt configures a Manager.
type Opt func(*Manager)

// WithLogger sets the logger; the manager logs nothing by default.
func WithLogger(l zerolog.Logger) Opt { return func(m *Manager) { m.log = l } }

// WithRuntime sets the runtime binary, a path or a name: "cubo-runc" (the default) is
// looked up next to the running executable first, any name then on PATH.
func WithRuntime(r string) Opt { return func(m *Manager) { m.runtime = r } }

// WithStore sets the image store (required to create containers).
func WithStore(s *images.Store) Opt { return func(m *Manager) { m.store = s } }

// WithMonitorBinary sets the binary started in monitor mode (default: the running
// executable, which must call MonitorMain when argv[1] is MonitorArg).
func WithMonitorBinary(p string) Opt { return func(m *Manager) { m.self = p } }

// New opens the containers under root, creating the directories when needed.
func New(root string, opts ...Opt) (*Manager, error) {
	abs, err := filepath.Abs(root)
	if err != nil {
		return nil, fmt.Errorf("resolve root dir %s: %w", root, err)
	}
	m := &Manager{root: abs, dir: filepath.Join(abs, "containers"), log: zerolog.Nop(), runtime: "cubo-runc"}
	for _, o := range opts {
		o(m)
	}
	if err := os.MkdirAll(filepath.Join(m.dir, ".names"), 0o700); err != nil {
		return nil, fmt.Errorf("create containers dir: %w", err)
	}
	return m, nil
}

// network opens the network controller under root_dir/network on first use.
func (m *Manager) network() (*network.Controller, error) {
	m.netOnce.Do(func() {
		opts := append([]network.Opt{network.WithLogger(m.log)}, m.netOpts...)
		m.nc, m.ncErr = network.New(filepath.Join(m.root, "network"), opts...)
		if m.ncErr != nil {
			m.ncErr = fmt.Errorf("open networks: %w", m.ncErr)
		}
	})
	return m.nc, m.ncErr
}

// teardownNetwork releases container id's network (namespace, address, iptables rules,
// its name in its peers' hosts files). Tearing down twice is harmless.
func (m *Manager) teardownNetwork(ctx context.Context, id string) error {
	nc, err := m.network()
	if err != nil {
		return err
	}
	if err := nc.Teardown(context.WithoutCancel(ctx), id); err != nil {
		return fmt.Errorf("tear down network of %s: %w", id, err)
	}
	return nil
}

// NetworkAttachment returns what the network controller set up for container id
// (address, MAC, gateway, ports); errdefs.ErrNotFound when the container has no
// network now (it is stopped).
func (m *Manager) NetworkAttachment(id string) (*network.Attachment, error) {
	nc, err := m.network()
	if err != nil {
		return nil, err
	}
	return nc.Attachment(id)
}

// reconcileNetwork releases the networks of containers that no longer need one: removed
// while cubo was killed, or stopped without their monitor's teardown (a crashed
// monitor). A container needs its network while it exists and is not stopped.
func (m *Manager) reconcileNetwork(ctx context.Context) error {
	if _, err := os.Stat(filepath.Join(m.root, "network")); err != nil {
		return nil // never used: nothing to release
	}
	nc, err := m.network()
	if err != nil {
		return err
	}
	return nc.ReconcileFunc(ctx, func(id string) bool {
		if !idRe().MatchString(id) {
			return false
		}
		if _, err := os.Lstat(filepath.Join(m.dir, ".new-"+id)); err == nil {
			return true
		}
		c, err := loadMeta(m.containerDir(id))
		if errors.Is(err, fs.ErrNotExist) {
			return false
		}
		// An unreadable record is kept: releasing a live container's network is worse
		// than keeping a dead one's until the record is repaired.
		return err != nil || c.Status != StatusStopped
	})
}

// resolveRuntime turns the --runtime value into an absolute binary path.
func (m *Manager) resolveRuntime() (string, error) {
	r := m.runtime
	if r == "" {
		r = "cubo-runc"
	}
	if strings.Contains(r, "/") {
		abs, err := filepath.Abs(r)
		if err != nil {
			return "", err
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
	p, err := lookPath(r)
	if err != nil {
		return "", fmt.Errorf("runtime %s not found next to cubo or on PATH: %w", r, errdefs.ErrNotFound)
	}
	return p, nil
}

func (m *Manager) runtimeRoot(bin string) string {
	return filepath.Join(m.root, "runtime", filepath.Base(bin))
}

func (m *Manager) containerDir(id string) string { return filepath.Join(m.dir, id) }
func (m *Manager) nameFile(name string) string   { return filepath.Join(m.dir, ".names", name) }

// newID returns a random 128-bit ID in hex, UUID-sized like the seed's.
func newID() string {
	var b [16]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}

// Compiled on first use: package-level compiles run in every cubo process (the
// monitor included), and a bounded repetition such as {0,127} compiles into a
// large program (the two cost 130 KB and 0.13 ms at each start).
var (
	idRe   = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[0-9a-f]{32}$`) })
	nameRe = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`) })
)

// loadMeta reads dir/meta.json.
func loadMeta(dir string) (*Container, error) {
	b, err := os.ReadFile(filepath.Join(dir, metaName))
	if err != nil {
		return nil, err
	}
	var c Container
	if err := json.Unmarshal(b, &c); err != nil {
		return nil, fmt.Errorf("parse %s: %w", filepath.Join(dir, metaName), err)
	}
	c.dir = dir
	return &c, nil
}

// save writes meta.json atomically and durably: a reader sees the old or the new record,
// and a crash never leaves a torn one.
func (c *Container) save() error {
	b, err := json.MarshalIndent(c, "", "  ")
	if err != nil {
		return fmt.Errorf("encode record of %s: %w", c.ID, err)
	}
	return writeFileAtomic(filepath.Join(c.dir, metaName), b, 0o600)
}

func writeFileAtomic(path string, data []byte, mode os.FileMode) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := f.Name()
	_, err = f.Write(data)
	if err == nil {
		err = f.Chmod(mode)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(dir); err == nil {
		_ = d.Sync()
		d.Close()
	}
	return nil
}

// lockFile is an open container lock.
type lockFile struct{ f *os.File }

// tryLock takes the container's lock without waiting; ok is false when someone holds it.
func tryLock(dir string) (l *lockFile, ok bool, err error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, false, err
	}
	err = flock(f, unix.LOCK_EX|unix.LOCK_NB)
	if errors.Is(err, unix.EWOULDBLOCK) {
		f.Close()
		return nil, false, nil
	}
	if err != nil {
		f.Close()
		return nil, false, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &lockFile{f}, true, nil
}

// waitLock blocks until the container's lock is free, then holds it.
func waitLock(dir string) (*lockFile, error) {
	f, err := os.OpenFile(filepath.Join(dir, lockName), os.O_RDWR|os.O_CREATE|unix.O_CLOEXEC, 0o600)
	if err != nil {
		return nil, err
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock %s: %w", dir, err)
	}
	return &lockFile{f}, nil
}

// flock applies how to f, retrying when a signal interrupts the wait.
func flock(f *os.File, how int) error {
	for {
		err := unix.Flock(int(f.Fd()), how)
		if !errors.Is(err, unix.EINTR) {
			return err
		}
	}
}

func (l *lockFile) release() {
	if l != nil && l.f != nil {
		l.f.Close()
	}
}

// List returns every container, newest first, after reconciling each record with what is
// alive.
func (m *Manager) List(ctx context.Context) ([]*Container, error) {
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("list containers: %w", err)
	}
	var out []*Container
	for _, e := range ents {
		name := e.Name()
		if strings.HasPrefix(name, ".new-") {
			m.collectStaging(name)
			continue
		}
		if strings.HasPrefix(name, ".rm-") {
			// A removal's tombstone: its rootfs was unmounted before the rename, so
			// finishing what a killed rm started is safe.
			if !isMountPoint(filepath.Join(m.dir, name, "rootfs")) {
				os.RemoveAll(filepath.Join(m.dir, name))
			}
			continue
		}
		if !e.IsDir() || !idRe().MatchString(name) {
			continue
		}
		c, err := m.load(ctx, name)
		if err != nil {
			if errors.Is(err, errdefs.ErrNotFound) {
				continue
			}
			m.log.Warn().Err(err).Str("id", name).Msg("skip container")
			continue
		}
		out = append(out, c)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Created.After(out[j].Created) })
	if err := m.reconcileNetwork(ctx); err != nil {
		m.log.Warn().Err(err).Msg("reconcile networks")
	}
	return out, nil
}

// collectStaging removes a creation dir whose creator died: its lock is free and it is
// older than any creation can take.
func (m *Manager) collectStaging(name string) {
	dir := filepath.Join(m.dir, name)
	fi, err := os.Stat(dir)
	if err != nil || time.Since(fi.ModTime()) < 10*time.Minute {
		return
	}
	l, ok, err := tryLock(dir)
	if err != nil || !ok {
		return
	}
	defer l.release()
	if c, err := loadMeta(dir); err == nil {
		m.destroyFiles(c)
		return
	}
	if m.store != nil {
		_ = m.store.Unmount(filepath.Join(dir, "rootfs"))
	}
	if !isMountPoint(filepath.Join(dir, "rootfs")) {
		os.RemoveAll(dir)
	}
}

// load reads and reconciles one container by full ID; an unknown ID is ErrNotFound.
func (m *Manager) load(ctx context.Context, id string) (*Container, error) {
	c, err := loadMeta(m.containerDir(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("container %s: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, err
	}
	return m.reconcile(ctx, c)
}

// Get finds a container by full ID, name or unique ID prefix, reconciled.
func (m *Manager) Get(ctx context.Context, ref string) (*Container, error) {
	if ref == "" {
		return nil, fmt.Errorf("container reference: %w", errdefs.ErrInvalidArgument)
	}
	if idRe().MatchString(ref) {
		if c, err := m.load(ctx, ref); err == nil || !errors.Is(err, errdefs.ErrNotFound) {
			return c, err
		}
	}
	if nameRe().MatchString(ref) {
		if b, err := os.ReadFile(m.nameFile(ref)); err == nil {
			c, err := m.load(ctx, strings.TrimSpace(string(b)))
			if err == nil || !errors.Is(err, errdefs.ErrNotFound) {
				return c, err
			}
		}
	}
	if isHex(ref) {
		ents, err := os.ReadDir(m.dir)
		if err != nil {
			return nil, fmt.Errorf("list containers: %w", err)
		}
		var match []string
		for _, e := range ents {
			if idRe().MatchString(e.Name()) && strings.HasPrefix(e.Name(), ref) {
				match = append(match, e.Name())
			}
		}
		if len(match) > 1 {
			return nil, fmt.Errorf("container %q: prefix matches %d containers: %w", ref, len(match), errdefs.ErrInvalidArgument)
		}
		if len(match) == 1 {
			return m.load(ctx, match[0])
		}
	}
	return nil, fmt.Errorf("no such container: %s%.0w", ref, errdefs.ErrNotFound)
}

func isHex(s string) bool {
	for _, r := range s {
		if !(r >= '0' && r <= '9' || r >= 'a' && r <= 'f') {
			return false
		}
	}
	return s != ""
}

// ImageInUse reports whether a container uses the image ID; it is the images.InUseFunc
// the image store asks before removing an image.
func (m *Manager) ImageInUse(ctx context.Context, imageID string) (bool, error) {
	cs, err := m.List(ctx)
	if err != nil {
		return false, err
	}
	for _, c := range cs {
		if c.ImageID == imageID {
			return true, nil
		}
	}
	return false, nil
}

// isMountPoint tells whether p is a mount point (an overlay or bind on the same
// device included); an error (p missing) counts as no.
func isMountPoint(p string) bool {
	ok, err := mountinfo.Mounted(p)
	return err == nil && ok
}
