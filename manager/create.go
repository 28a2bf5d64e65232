package manager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/images"
	"github.com/cubo-dev/cubo/network"
	"github.com/cubo-dev/cubo/spec"
)

// CreateOpts describe a container to create; the zero value of a field means the image's
// setting or the default.
type CreateOpts struct {
	Image      string
	Name       string
	Command    []string
	Entrypoint *string
	Workdir    string
	Env        []string
	User       string
	Hostname   string
	Volumes    []string
	// Publish is --publish values, [IP:]HOST:CONT[/tcp|udp] (bridge networks only).
	Publish []string
	Tmpfs   []string
	// Network is --network: "bridge" (the default network; also ""), "none", "host",
	// "container:NAME" (NAME's network namespace) or a network's name.
	Network    string
	Memory     string
	CPUs       float64
	PidsLimit  int64
	ReadOnly   bool
	AutoRemove bool
	// Interactive attaches the caller's stdio; Tty gives the process a pseudo-terminal
	// (only with Interactive).
	Interactive bool
	Tty         bool
	// LogMaxSize caps container.log: at this size it is rotated to container.log.1,
	// so the logs take at most about twice that. "" means DefaultLogMaxSize, "0" no cap.
	LogMaxSize string
}

// DefaultLogMaxSize is the log size cap of a container whose CreateOpts leave it unset.
const DefaultLogMaxSize = 10 << 20

// minLogMaxSize keeps a rotation from happening at every line.
const minLogMaxSize = 64 << 10

// parsed is CreateOpts checked and turned into what the bundle needs.
type parsed struct {
	volumes []Volume
	mode    network.Mode
	ports   []network.PortMapping
	// target and targetNetNS are the container and the namespace that
	// --network container:NAME shares; targetNetNS is empty when NAME uses the host's.
	target      string
	targetNetNS string
	tmpfs       [][2]string
	memory      int64
	logMax      int64
}

// ParseVolume parses HOST:CONT[:ro|rw]; HOST must be an existing absolute path.
func ParseVolume(v string) (Volume, error) {
	parts := strings.Split(v, ":")
	var vol Volume
	switch len(parts) {
	case 2:
	case 3:
		switch parts[2] {
		case "ro":
			vol.ReadOnly = true
		case "rw":
		default:
			return vol, fmt.Errorf("volume %q: mode must be ro or rw: %w", v, errdefs.ErrInvalidArgument)
		}
	default:
		return vol, fmt.Errorf("volume %q: want HOST:CONTAINER[:ro]: %w", v, errdefs.ErrInvalidArgument)
	}
	vol.Host, vol.Cont = parts[0], parts[1]
	if !filepath.IsAbs(vol.Host) || !path.IsAbs(vol.Cont) {
		return vol, fmt.Errorf("volume %q: both paths must be absolute: %w", v, errdefs.ErrInvalidArgument)
	}
	if path.Clean(vol.Cont) == "/" {
		return vol, fmt.Errorf("volume %q: cannot mount over the container's root: %w", v, errdefs.ErrInvalidArgument)
	}
	if _, err := os.Stat(vol.Host); err != nil {
		return vol, fmt.Errorf("volume %q: host path %s does not exist: %w", v, vol.Host, errdefs.ErrNotFound)
	}
	vol.Host = filepath.Clean(vol.Host)
	vol.Cont = path.Clean(vol.Cont)
	return vol, nil
}

// parseTmpfs parses DEST[:OPTIONS] as docker's --tmpfs.
func parseTmpfs(t string) ([2]string, error) {
	dst, opts, _ := strings.Cut(t, ":")
	if !path.IsAbs(dst) || path.Clean(dst) == "/" {
		return [2]string{}, fmt.Errorf("tmpfs %q: destination must be an absolute path other than /: %w", t, errdefs.ErrInvalidArgument)
	}
	return [2]string{path.Clean(dst), opts}, nil
}

func (o *CreateOpts) check() (*parsed, error) {
	var p parsed
	if o.Name != "" && !nameRe().MatchString(o.Name) {
		return nil, fmt.Errorf("name %q: must match [a-zA-Z0-9][a-zA-Z0-9_.-]*: %w", o.Name, errdefs.ErrInvalidArgument)
	}
	if idRe().MatchString(o.Name) {
		return nil, fmt.Errorf("name %q: looks like a container ID: %w", o.Name, errdefs.ErrInvalidArgument)
	}
	for _, v := range o.Volumes {
		vol, err := ParseVolume(v)
		if err != nil {
			return nil, err
		}
		p.volumes = append(p.volumes, vol)
	}
	var err error
	if p.mode, err = network.ParseMode(o.Network); err != nil {
		return nil, err
	}
	if p.ports, err = network.ParsePublishes(o.Publish); err != nil {
		return nil, fmt.Errorf("%w%.0w", err, errdefs.ErrInvalidArgument)
	}
	if len(p.ports) > 0 && p.mode.Kind != network.ModeBridge {
		return nil, fmt.Errorf("publish: ports are published on a bridge network, not with --network %s: %w", p.mode, errdefs.ErrInvalidArgument)
	}
	for _, e := range o.Env {
		if k, _, ok := strings.Cut(e, "="); !ok || k == "" || strings.ContainsAny(k, " \t\n\x00") {
			return nil, fmt.Errorf("env %q: want KEY=VALUE: %w", e, errdefs.ErrInvalidArgument)
		}
	}
	for _, t := range o.Tmpfs {
		tp, err := parseTmpfs(t)
		if err != nil {
			return nil, err
		}
		p.tmpfs = append(p.tmpfs, tp)
	}
	if o.Memory != "" {
		n, err := spec.ParseBytes(o.Memory)
		if err != nil {
			return nil, fmt.Errorf("memory: %w", err)
		}
		p.memory = n
	}
	p.logMax = DefaultLogMaxSize
	if o.LogMaxSize != "" {
		n, err := spec.ParseBytes(o.LogMaxSize)
		if o.LogMaxSize == "0" {
			n, err = 0, nil
		}
		if err != nil {
			return nil, fmt.Errorf("log max size: %w", err)
		}
		if n != 0 && n < minLogMaxSize {
			return nil, fmt.Errorf("log max size %s: at least %d bytes, or 0 for no cap: %w", o.LogMaxSize, minLogMaxSize, errdefs.ErrInvalidArgument)
		}
		p.logMax = n
	}
	if o.CPUs < 0 || o.PidsLimit < 0 {
		return nil, fmt.Errorf("cpus and pids-limit must not be negative: %w", errdefs.ErrInvalidArgument)
	}
	if o.Workdir != "" && !path.IsAbs(o.Workdir) {
		return nil, fmt.Errorf("workdir %q: must be an absolute path: %w", o.Workdir, errdefs.ErrInvalidArgument)
	}
	if o.Tty && !o.Interactive {
		return nil, fmt.Errorf("a terminal needs --interactive: %w", errdefs.ErrInvalidArgument)
	}
	return &p, nil
}

// Create makes a container from opts: a complete bundle with its record in state
// "created". Everything the user gave is checked before anything is written, and a
// failure removes whatever was made, so no half-created container remains. On success
// the caller holds the container's lock (pass the Created to Start, or Release it).
func (m *Manager) Create(ctx context.Context, o CreateOpts) (*Created, error) {
	if m.store == nil {
		return nil, errors.New("create container: no image store")
	}
	p, err := o.check()
	if err != nil {
		return nil, err
	}
	if p.mode.Kind == network.ModeContainer {
		if err := m.resolveNetworkTarget(ctx, p); err != nil {
			return nil, err
		}
	}
	img, err := m.store.Get(ctx, o.Image)
	if err != nil {
		return nil, err
	}
	rt, err := m.resolveRuntime()
	if err != nil {
		return nil, err
	}
	// A taken name is refused before anything is made; the O_EXCL reservation below
	// settles races between concurrent runs. (Get would also match ID prefixes.)
	if o.Name != "" {
		if b, err := os.ReadFile(m.nameFile(o.Name)); err == nil {
			owner := strings.TrimSpace(string(b))
			if idRe().MatchString(owner) {
				// Reconciling the owner first frees the name of an abandoned --rm container.
				_, _ = m.load(ctx, owner)
			}
			if m.exists(owner) {
				return nil, fmt.Errorf("name %q is already in use: %w", o.Name, errdefs.ErrAlreadyExists)
			}
		}
	}

	id := newID()
	staging := filepath.Join(m.dir, ".new-"+id)
	// Made under a temporary name and renamed once locked: a .new-<id> whose
	// lock is free is then always a creation whose cubo died, and its name
	// is free at once (exists), with no grace period for the mkdir-to-lock gap.
	tmp := filepath.Join(m.dir, ".tmp-"+id)
	if err := os.Mkdir(tmp, 0o711); err != nil {
		return nil, fmt.Errorf("create container dir: %w", err)
	}
	lock, _, err := tryLock(tmp)
	if err != nil {
		os.RemoveAll(tmp)
		return nil, err
	}
	if err := os.Rename(tmp, staging); err != nil {
		lock.release()
		os.RemoveAll(tmp)
		return nil, fmt.Errorf("create container dir: %w", err)
	}
	c := &Container{
		ID: id, Name: o.Name, Image: o.Image, ImageID: img.ID.String(),
		Ports: recordPorts(p.ports), Volumes: p.volumes, Network: p.mode.String(),
		AutoRemove: o.AutoRemove, Interactive: o.Interactive, Tty: o.Tty, LogMaxSize: p.logMax,
		Runtime: rt, RuntimeRoot: m.runtimeRoot(rt),
		Status: StatusCreated, Created: time.Now().UTC(),
		StopSignal: img.Config.Config.StopSignal,
		dir:        staging,
	}
	if img.Name != "" {
		c.Image = img.Name
	}
	ok := false
	defer func() {
		if !ok {
			m.destroyFiles(c)
			lock.release()
		}
	}()
	if c.Name == "" {
		c.Name, err = m.reserveRandomName(id)
	} else {
		err = m.reserveName(c.Name, id)
	}
	if err != nil {
		c.Name = "" // not ours to release
		return nil, err
	}
	if err := m.bundle(ctx, c, img, &o, p); err != nil {
		return nil, err
	}
	if err := os.WriteFile(c.LogPath(), nil, 0o600); err != nil {
		return nil, fmt.Errorf("create log: %w", err)
	}
	if err := c.save(); err != nil {
		return nil, err
	}
	final := m.containerDir(id)
	if err := os.Rename(staging, final); err != nil {
		return nil, fmt.Errorf("commit container %s: %w", id, err)
	}
	c.dir = final
	// The network comes last, in the committed dir: Setup records the final path of
	// the /etc files it keeps current, and a failure (a taken host port) undoes it all
	// through the deferred destroyFiles, so no container is left.
	nc, err := m.network()
	if err != nil {
		return nil, err
	}
	if _, err := nc.Setup(ctx, network.SetupOptions{
		ID: c.ID, Name: c.Name, Hostname: c.Hostname, Mode: p.mode, Target: p.target,
		Ports: p.ports, FilesDir: c.dir,
	}); err != nil {
		return nil, err
	}
	ok = true
	m.log.Debug().Str("id", id).Str("name", c.Name).Str("image", c.Image).Str("runtime", rt).Msg("container created")
	return &Created{Container: c, lock: lock, m: m}, nil
}

// Created is a container just created, whose lock the caller holds.
type Created struct {
	*Container
	lock *lockFile
	m    *Manager
}

// Release gives up the lock without starting the container; the next command sees an
// unowned "created" record and reconciles it.
func (c *Created) Release() { c.lock.release() }

// bundle writes config.json, the /etc files and mounts the rootfs.
func (m *Manager) bundle(ctx context.Context, c *Container, img *images.Image, o *CreateOpts, p *parsed) error {
	rootfs := filepath.Join(c.dir, "rootfs")
	for _, d := range []string{rootfs, filepath.Join(c.dir, "upper"), filepath.Join(c.dir, "work")} {
		if err := os.Mkdir(d, 0o755); err != nil {
			return fmt.Errorf("create bundle: %w", err)
		}
	}
	if err := m.store.MountImage(ctx, img, filepath.Join(c.dir, "upper"), filepath.Join(c.dir, "work"), rootfs); err != nil {
		return fmt.Errorf("mount rootfs: %w", err)
	}

	icfg := img.Config.Config
	if o.Entrypoint != nil {
		icfg.Entrypoint = nil
		if *o.Entrypoint != "" {
			icfg.Entrypoint = []string{*o.Entrypoint}
		}
		if len(o.Command) == 0 {
			icfg.Cmd = nil
		}
	}
	if len(o.Command) > 0 {
		icfg.Cmd = o.Command
	}
	args := append(slices.Clone(icfg.Entrypoint), icfg.Cmd...)
	if len(args) == 0 {
		return fmt.Errorf("image %s has no command and none was given: %w", o.Image, errdefs.ErrInvalidArgument)
	}
	c.Command = args

	user := o.User
	if user == "" {
		user = icfg.User
	}
	uid, gid, groups, err := spec.ResolveUser(rootfs, user)
	if err != nil {
		return err
	}
	c.Hostname = o.Hostname
	if c.Hostname == "" {
		c.Hostname = c.ID[:12]
		if p.mode.Kind == network.ModeHost {
			c.Hostname, _ = os.Hostname()
		}
	}
	if err := writeEtc(c); err != nil {
		return err
	}

	opts := []spec.Opt{
		spec.WithImageConfig(spec.ImageConfig{Env: icfg.Env, Entrypoint: icfg.Entrypoint, Cmd: icfg.Cmd, WorkingDir: icfg.WorkingDir, Labels: icfg.Labels}),
		spec.WithProcessArgs(args...),
		spec.WithEnv(o.Env...),
		spec.WithUser(uid, gid, groups),
		spec.WithHostname(c.Hostname),
		spec.WithReadonlyRootfs(o.ReadOnly),
		spec.WithTerminal(o.Tty),
		spec.WithCgroupsPath("/cubo/" + c.ID),
		spec.WithMemoryLimit(p.memory),
		spec.WithCPUs(o.CPUs),
		spec.WithPidsLimit(o.PidsLimit),
		spec.WithEnv("HOSTNAME=" + c.Hostname),
		spec.WithAnnotations(map[string]string{
			"io.cubo.container.name": c.Name,
			"io.cubo.image.name":     c.Image,
		}),
	}
	if o.Workdir != "" {
		opts = append(opts, spec.WithCwd(o.Workdir))
	}
	// The namespace path is known before Setup makes it (NetnsPath is fixed per ID), so
	// the bundle is complete here and Setup runs once the container is committed.
	switch p.mode.Kind {
	case network.ModeBridge, network.ModeNone:
		nc, err := m.network()
		if err != nil {
			return err
		}
		opts = append(opts, spec.WithNetNSPath(nc.NetnsPath(c.ID)))
	case network.ModeContainer:
		if p.targetNetNS != "" {
			opts = append(opts, spec.WithNetNSPath(p.targetNetNS))
		} else {
			opts = append(opts, spec.WithHostNetwork())
		}
	default:
		opts = append(opts, spec.WithHostNetwork())
	}
	for _, f := range []string{"hostname", "hosts", "resolv.conf"} {
		opts = append(opts, spec.WithBind(filepath.Join(c.dir, f), "/etc/"+f, false))
	}
	for _, t := range p.tmpfs {
		var extra []string
		if t[1] != "" {
			extra = strings.Split(t[1], ",")
		}
		opts = append(opts, spec.WithTmpfs(t[0], extra...))
	}
	for _, v := range p.volumes {
		opts = append(opts, spec.WithBind(v.Host, v.Cont, v.ReadOnly))
	}
	s, err := spec.Generate(opts...)
	if err != nil {
		return fmt.Errorf("generate config: %w%.0w", err, errdefs.ErrInvalidArgument)
	}
	// Bundle paths in the record are final paths: the staging dir is renamed before the
	// runtime ever reads them.
	final := m.containerDir(c.ID)
	for i := range s.Mounts {
		if strings.HasPrefix(s.Mounts[i].Source, c.dir+"/") {
			s.Mounts[i].Source = final + s.Mounts[i].Source[len(c.dir):]
		}
	}
	return writeConfig(c.dir, s)
}

func writeConfig(dir string, s *specs.Spec) error {
	b, err := jsonIndent(s)
	if err != nil {
		return fmt.Errorf("encode config: %w", err)
	}
	return writeFileAtomic(filepath.Join(dir, spec.ConfigName), b, 0o600)
}

// writeEtc writes placeholder /etc/hostname, /etc/hosts and /etc/resolv.conf, which the
// bundle's bind mounts name; the network controller's Setup rewrites them for the
// container's network.
func writeEtc(c *Container) error {
	hosts := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t" + c.Hostname + "\n"
	for name, data := range map[string]string{
		"hostname":    c.Hostname + "\n",
		"hosts":       hosts,
		"resolv.conf": "",
	} {
		if err := os.WriteFile(filepath.Join(c.dir, name), []byte(data), 0o644); err != nil {
			return fmt.Errorf("write %s: %w", name, err)
		}
	}
	return nil
}

// recordPorts converts published ports to the record's form.
func recordPorts(ms []network.PortMapping) []Port {
	var out []Port
	for _, pm := range ms {
		pt := Port{Host: pm.HostPort, Cont: pm.ContainerPort, Protocol: pm.Protocol}
		if pm.HostIP.IsValid() {
			pt.HostIP = pm.HostIP.String()
		}
		out = append(out, pt)
	}
	return out
}

// resolveNetworkTarget resolves --network container:NAME to the ID and namespace of
// NAME, which must be running; a target on the host network leaves targetNetNS empty.
func (m *Manager) resolveNetworkTarget(ctx context.Context, p *parsed) error {
	t, err := m.Get(ctx, p.mode.Container)
	if err != nil {
		return fmt.Errorf("network container:%s: %w", p.mode.Container, err)
	}
	if t.Status != StatusRunning {
		return fmt.Errorf("network container:%s: container %s is %s, not running: %w", p.mode.Container, t.Name, t.Status, errdefs.ErrFailedPrecondition)
	}
	a, err := m.NetworkAttachment(t.ID)
	if err != nil {
		return fmt.Errorf("network container:%s: %w", p.mode.Container, err)
	}
	p.target = t.ID
	p.mode.Container = t.ID
	if a.Mode.Kind != network.ModeHost {
		p.targetNetNS = a.NetNS
	}
	return nil
}

// reserveName claims name for id. A name file whose container no longer exists (its
// creator died before committing) is taken over.
//
// The claim is written to a file of its own and hard-linked into place: link fails if
// the name exists, as an O_EXCL create would, but the name file never exists empty. An
// O_EXCL create followed by a write, killed in between, left an empty name file that
// named no container and so could never be taken over.
func (m *Manager) reserveName(name, id string) error {
	claim := filepath.Join(m.dir, ".names", claimPrefix+id)
	if err := os.WriteFile(claim, []byte(id), 0o600); err != nil {
		return fmt.Errorf("reserve name %s: %w", name, err)
	}
	defer os.Remove(claim)
	for range 3 {
		err := os.Link(claim, m.nameFile(name))
		if err == nil {
			return nil
		}
		if !errors.Is(err, fs.ErrExist) {
			return fmt.Errorf("reserve name %s: %w", name, err)
		}
		// Taking over a stale name is read-check-remove: without the lock, two takers
		// could both read the dead owner and the second would remove the first's fresh
		// claim, leaving two containers with one name.
		unlock, err := m.lockNames()
		if err != nil {
			return err
		}
		b, rerr := os.ReadFile(m.nameFile(name))
		if rerr == nil && m.exists(strings.TrimSpace(string(b))) {
			unlock()
			return fmt.Errorf("name %q is already in use: %w", name, errdefs.ErrAlreadyExists)
		}
		if rerr == nil {
			os.Remove(m.nameFile(name))
		}
		unlock()
	}
	return fmt.Errorf("name %q is already in use: %w", name, errdefs.ErrAlreadyExists)
}

// claimPrefix names the files reserveName links name files from; one left behind by a
// killed cubo is garbage for `cubo system check`.
const claimPrefix = ".claim-"

// lockNames takes the flock on the names dir that removals of name files hold; claims
// (O_EXCL creates) need none.
func (m *Manager) lockNames() (func(), error) {
	f, err := os.Open(filepath.Join(m.dir, ".names"))
	if err != nil {
		return nil, fmt.Errorf("lock names: %w", err)
	}
	if err := flock(f, unix.LOCK_EX); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock names: %w", err)
	}
	return func() { f.Close() }, nil
}

// exists tells whether a container (committed or being created) with the ID exists.
func (m *Manager) exists(id string) bool {
	if !idRe().MatchString(id) {
		return false // not an ID (a torn or foreign name file): names nothing
	}
	if _, err := os.Lstat(m.containerDir(id)); err == nil {
		return true
	}
	staging := filepath.Join(m.dir, ".new-"+id)
	if _, err := os.Lstat(staging); err != nil {
		return false
	}
	// Its creator holds the lock from before the dir had this name; a free
	// lock means cubo died mid-creation and the name is not taken.
	l, ok, err := tryLock(staging)
	if err != nil || !ok {
		return true
	}
	l.release()
	return false
}

func (m *Manager) releaseName(c *Container) {
	if c.Name == "" {
		return
	}
	unlock, err := m.lockNames()
	if err != nil {
		m.log.Warn().Err(err).Str("name", c.Name).Msg("release name")
		return
	}
	defer unlock()
	b, err := os.ReadFile(m.nameFile(c.Name))
	if err == nil && strings.TrimSpace(string(b)) == c.ID {
		os.Remove(m.nameFile(c.Name))
	}
}

// destroyFiles unmounts the rootfs and removes the directory and the name of c. It
// refuses to delete a directory whose rootfs is still mounted: that would write
// whiteouts through a live overlay.
func (m *Manager) destroyFiles(c *Container) error {
	rootfs := filepath.Join(c.dir, "rootfs")
	if m.store != nil {
		if err := m.store.Unmount(rootfs); err != nil {
			return err
		}
	} else {
		_ = unix.Unmount(rootfs, 0)
	}
	if isMountPoint(rootfs) {
		return fmt.Errorf("remove %s: rootfs is still mounted", c.dir)
	}
	if err := m.teardownNetwork(context.Background(), c.ID); err != nil {
		return err
	}
	// Renamed out of the way first: a removal killed half-way leaves a ".rm-" dir that
	// the next listing finishes, never a container dir that lost its record.
	tomb := filepath.Join(m.dir, ".rm-"+c.ID)
	if err := os.Rename(c.dir, tomb); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove %s: %w", c.dir, err)
	}
	// The name goes with the record (the rename above), before the files:
	// once the tombstone is gone, nothing of the container is left.
	m.releaseName(c)
	if err := os.RemoveAll(tomb); err != nil {
		return fmt.Errorf("remove %s: %w", c.dir, err)
	}
	return nil
}

var lookPath = exec.LookPath
