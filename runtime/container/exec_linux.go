package container

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/runtime/cgroups"
	"github.com/cubo-dev/cubo/runtime/internal/proto"
	"github.com/cubo-dev/cubo/runtime/nsenter"
)

// ExecOpts describe a process to start in a running container.
type ExecOpts struct {
	Process *specs.Process
	// ConsoleSocket receives the pty master when Process.Terminal.
	ConsoleSocket *os.File
	PreserveFds   int
	// IgnorePaused allows exec into a frozen container.
	IgnorePaused bool
	// SubCgroup is an existing cgroup below the container's to join
	// ("[controller:]path", as runc's --cgroup).
	SubCgroup             []string
	Stdin, Stdout, Stderr *os.File
}

// nsProcNames maps spec namespace types to /proc/<pid>/ns names.
var nsProcNames = map[specs.LinuxNamespaceType]string{
	specs.UserNamespace:    "user",
	specs.MountNamespace:   "mnt",
	specs.NetworkNamespace: "net",
	specs.IPCNamespace:     "ipc",
	specs.UTSNamespace:     "uts",
	specs.CgroupNamespace:  "cgroup",
	specs.TimeNamespace:    "time",
	specs.PIDNamespace:     "pid",
}

// Exec starts a process inside the container: in all its namespaces and
// its cgroup, with the process's own user, capabilities and rlimits, and
// the container's seccomp profile. It returns once the process is about to
// exec; the returned os.Process is a child of the caller.
func (c *Container) Exec(o ExecOpts) (_ *os.Process, retErr error) {
	switch st := c.Status(); st {
	case Stopped:
		return nil, errors.New("cannot exec in a stopped container")
	case Paused:
		if !o.IgnorePaused {
			return nil, errors.New("cannot exec in a paused container (use --ignore-paused to override)")
		}
	}
	s := c.Config
	var joins []string
	pidns := ""
	if s.Linux != nil {
		for _, ns := range s.Linux.Namespaces {
			name, ok := nsProcNames[ns.Type]
			if !ok {
				continue
			}
			path := "/proc/" + strconv.Itoa(c.InitPid) + "/ns/" + name
			if ns.Type == specs.PIDNamespace {
				pidns = path
				continue
			}
			joins = append(joins, name+"="+path)
		}
	}
	parentSock, childSock, err := proto.Socketpair()
	if err != nil {
		return nil, err
	}
	defer parentSock.Close()
	defer childSock.Close()
	exe, err := initExecutable()
	if err != nil {
		return nil, err
	}
	defer exe.Close()

	files, err := preservedFiles(o.PreserveFds, 3)
	if err != nil {
		return nil, err
	}
	env := []string{"GOMAXPROCS=1", "GOGC=off", nsenter.EnvNSEnter + "=" + strings.Join(joins, ";")}
	add := func(name string, f *os.File) int {
		files = append(files, f)
		n := 2 + len(files)
		if name != "" {
			env = append(env, name+"="+strconv.Itoa(n))
		}
		return n
	}
	add(proto.EnvInitPipe, childSock)
	if o.ConsoleSocket != nil {
		add(proto.EnvConsoleFd, o.ConsoleSocket)
	}
	exeFd := add("", exe)
	cmd := &exec.Cmd{
		Path:        "/proc/self/fd/" + strconv.Itoa(exeFd),
		Args:        []string{"cubo-runc", "init"},
		Env:         env,
		Stdin:       orStd(o.Stdin, os.Stdin),
		Stdout:      orStd(o.Stdout, os.Stdout),
		Stderr:      orStd(o.Stderr, os.Stderr),
		ExtraFiles:  files,
		SysProcAttr: &syscall.SysProcAttr{Setsid: o.Process.Terminal},
	}
	if err := startInPidNS(cmd, pidns); err != nil {
		return nil, fmt.Errorf("start exec process: %w", err)
	}
	childSock.Close()
	defer func() {
		if retErr != nil {
			_ = cmd.Process.Kill()
			_, _ = cmd.Process.Wait()
		}
	}()
	if len(c.CgroupPaths) > 0 {
		paths := c.CgroupPaths
		if len(o.SubCgroup) > 0 {
			if paths, err = subCgroupPaths(paths, o.SubCgroup); err != nil {
				return nil, err
			}
		}
		m, err := cgroups.Load(paths)
		if err != nil {
			return nil, err
		}
		if err := m.Apply(cmd.Process.Pid); err != nil {
			return nil, fmt.Errorf("join container cgroup: %w", err)
		}
	}
	pj, err := json.Marshal(o.Process)
	if err != nil {
		return nil, fmt.Errorf("encode process: %w", err)
	}
	cfg := &proto.InitConfig{ID: c.ID, SpecJSON: c.ConfigJSON, Bundle: c.Bundle, Exec: true, ProcessJSON: pj, PreserveFds: o.PreserveFds}
	if err := proto.Send(parentSock, proto.Message{Type: proto.MsgConfig, Config: cfg}); err != nil {
		return nil, err
	}
	m, err := proto.Recv(parentSock)
	if err == nil && m.Type == proto.MsgSeccomp {
		st := c.OCIState(Running)
		st.Pid = cmd.Process.Pid
		serr := sendSeccompListener(s, m.Fd, st)
		unix.Close(m.Fd)
		if serr != nil {
			return nil, serr
		}
		m, err = proto.Recv(parentSock)
	}
	if err == io.EOF {
		ps, _ := cmd.Process.Wait()
		return nil, fmt.Errorf("exec process exited unexpectedly: %v", ps)
	}
	if err != nil {
		return nil, err
	}
	switch m.Type {
	case proto.MsgReady:
		return cmd.Process, nil
	case proto.MsgError:
		return nil, fmt.Errorf("exec failed: unable to start container process: %s", m.Error)
	default:
		return nil, fmt.Errorf("unexpected %s message from exec init", m.Type)
	}
}

// subCgroupPaths resolves runc's --cgroup values ("path" for all
// controllers, or "ctrl[,ctrl]:path") below the container's cgroups.
func subCgroupPaths(base map[string]string, specs []string) (map[string]string, error) {
	out := make(map[string]string, len(base))
	for k, v := range base {
		out[k] = v
	}
	for _, s := range specs {
		ctrls, sub, found := strings.Cut(s, ":")
		if !found {
			sub, ctrls = ctrls, ""
		}
		if strings.Contains(sub, "..") {
			return nil, fmt.Errorf("invalid --cgroup %q", s)
		}
		for k, v := range base {
			if ctrls == "" || containsCtrl(ctrls, k) {
				out[k] = v + "/" + strings.TrimPrefix(sub, "/")
			}
		}
	}
	return out, nil
}

func containsCtrl(list, ctrl string) bool {
	for _, c := range strings.Split(list, ",") {
		if c == ctrl {
			return true
		}
	}
	return false
}
