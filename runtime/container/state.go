package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/runtime/cgroups"
	"github.com/cubo-dev/cubo/runtime/internal/linux"
	"github.com/cubo-dev/cubo/spec"
)

const (
	stateFile = "state.json"
	fifoName  = "exec.fifo"
)

// Status is a container's lifecycle status as the OCI runtime spec names it.
type Status string

// The statuses `state` reports. "creating" is never reported: create holds
// the container's lock until it is created or gone.
const (
	Created Status = "created"
	Running Status = "running"
	Paused  Status = "paused"
	Stopped Status = "stopped"
)

// State is what cubo-runc persists about a container in state.json. It is
// private to this package's versions; other programs use `cubo-runc state`.
type State struct {
	ID            string            `json:"id"`
	Bundle        string            `json:"bundle"`
	Rootfs        string            `json:"rootfs"`
	InitPid       int               `json:"initPid"`
	InitStartTime uint64            `json:"initStartTime"`
	Created       time.Time         `json:"created"`
	CgroupPaths   map[string]string `json:"cgroupPaths,omitempty"`
	SystemdCgroup bool              `json:"systemdCgroup,omitempty"`
	Rootless      bool              `json:"rootless,omitempty"`
	// OwnPidNS is true when the container has a private pid namespace, so
	// killing its init kills everything in it.
	OwnPidNS bool `json:"ownPidNS"`
	// Config is the container's config.json, decoded from ConfigJSON.
	Config *specs.Spec `json:"-"`
	// ConfigJSON is the config as stored: written as read from the bundle
	// (encoding the runtime-spec type tree is a large part of a create's
	// CPU), re-encoded only after Update changed it.
	ConfigJSON json.RawMessage `json:"config,omitempty"`
}

// Container is a handle to one container's state directory.
type Container struct {
	State
	root string
	dir  string
	// init is set only in the process that created the container, which
	// is the init's parent and may wait for it.
	init *os.Process
	// sock is the init's channel between Create and Commit.
	sock *os.File
	// Warn receives problems that do not fail the operation, such as a
	// failing poststart or poststop hook. Nil drops them.
	Warn func(error)
}

func (c *Container) warn(err error) {
	if err != nil && c.Warn != nil {
		c.Warn(err)
	}
}

// Dir returns the container's state directory.
func (c *Container) Dir() string { return c.dir }

// Load reads the container's state from root. It returns ErrNotExist when
// there is none.
func Load(root, id string) (*Container, error) {
	if err := ValidateID(id); err != nil {
		return nil, err
	}
	dir := filepath.Join(root, id)
	b, err := os.ReadFile(filepath.Join(dir, stateFile))
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotExist
		}
		return nil, fmt.Errorf("read state of %s: %w", id, err)
	}
	c := &Container{root: root, dir: dir}
	if err := spec.Unmarshal(b, &c.State); err != nil {
		return nil, fmt.Errorf("decode state of %s: %w", id, err)
	}
	c.Config = new(specs.Spec)
	if err := spec.Unmarshal(c.ConfigJSON, c.Config); err != nil {
		return nil, fmt.Errorf("decode config in state of %s: %w", id, err)
	}
	return c, nil
}

// save writes state.json atomically: a reader sees the old or the new file,
// never a partial one.
func (c *Container) save() error {
	if c.ConfigJSON == nil {
		cj, err := json.Marshal(c.Config)
		if err != nil {
			return fmt.Errorf("encode config: %w", err)
		}
		c.ConfigJSON = cj
	}
	// The config goes in as it is (valid JSON: it was decoded, or encoded
	// above) and last: encoding/json would scan and compact it all again.
	st := c.State
	st.ConfigJSON = nil
	b, err := json.Marshal(&st)
	if err != nil {
		return fmt.Errorf("encode state: %w", err)
	}
	b = append(append(append(b[:len(b)-1], `,"config":`...), c.ConfigJSON...), '}')
	return writeFileAtomic(filepath.Join(c.dir, stateFile), b, 0o600)
}

func writeFileAtomic(path string, data []byte, perm os.FileMode) error {
	dir, base := filepath.Split(path)
	tmp := filepath.Join(dir, "."+base+".tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC|os.O_EXCL|unix.O_CLOEXEC, perm)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp, path); err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// Status derives the status from the live system on every call: the init
// pid and its start time (so a reused pid is not mistaken for the init), the
// freezer, and the exec fifo.
func (c *Container) Status() Status {
	if !linux.Alive(c.InitPid, c.InitStartTime) {
		return Stopped
	}
	if c.frozen() {
		return Paused
	}
	if _, err := os.Lstat(filepath.Join(c.dir, fifoName)); err == nil {
		return Created
	}
	return Running
}

func (c *Container) frozen() bool {
	if len(c.CgroupPaths) == 0 {
		return false
	}
	if _, ok := c.CgroupPaths["freezer"]; !ok {
		if _, ok := c.CgroupPaths[""]; !ok {
			return false
		}
	}
	m, err := cgroups.Load(c.CgroupPaths)
	if err != nil {
		return false
	}
	f, err := m.Frozen()
	return err == nil && f
}

// OCIState is the state object `cubo-runc state` prints and hooks receive.
func (c *Container) OCIState(st Status) *specs.State {
	s := &specs.State{ID: c.ID, Status: specs.ContainerState(st), Bundle: c.Bundle}
	if c.Config != nil {
		s.Version = c.Config.Version
		s.Annotations = c.Config.Annotations
	}
	if st != Stopped {
		s.Pid = c.InitPid
	}
	return s
}

// lock takes an exclusive flock on the container's directory, serialising
// mutating commands on one container. The lock goes with the process.
func lockDir(dir string) (*os.File, error) {
	f, err := os.OpenFile(dir, unix.O_RDONLY|unix.O_DIRECTORY|unix.O_CLOEXEC, 0)
	if err != nil {
		if errors.Is(err, os.ErrNotExist) {
			return nil, ErrNotExist
		}
		return nil, fmt.Errorf("open state dir: %w", err)
	}
	if err := linux.Retry(func() error { return unix.Flock(int(f.Fd()), unix.LOCK_EX) }); err != nil {
		f.Close()
		return nil, fmt.Errorf("lock state dir: %w", err)
	}
	return f, nil
}
