// Package proto is the wire protocol between the cubo-runc parent and the
// container init it re-executes. Both ends live in this module and are always
// the same build, so the format only has to be simple and bounded, not stable.
//
// The channel is a SOCK_SEQPACKET socketpair: the kernel keeps message
// boundaries, so every message is exactly one JSON object in one datagram and
// no length framing is needed. A MsgConfig carries the container's
// config.json (and an exec's process.json) after its JSON object, each
// behind a NUL byte, which valid JSON never contains: encoding/json would
// otherwise scan and compact the whole config again to embed it.
//
//	parent                              init
//	  |  start init (clone flags)         |
//	  |  join cgroup, write id maps       |
//	  | ------------ MsgConfig ---------> |  setns/unshare, mounts
//	  | <----------- MsgHooks ----------- |  (only when prestart/createRuntime hooks exist)
//	  |  run prestart, createRuntime      |
//	  | ----------- MsgHooksDone -------> |  createContainer hooks, pivot_root,
//	  |                                   |  console, rlimits, user, caps
//	  | <----------- MsgReady ----------- |
//	  |  write state.json, pid file       |
//	  | ---------- MsgCommitted --------> |  close socket, block on exec fifo
//
// Any step may be answered with MsgError instead, after which the init exits.
package proto

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"unsafe"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/spec"
)

// Environment variables that tell the re-executed init where its fds are.
// They are cleared before anything runs in the container.
const (
	EnvInitPipe   = "_CUBO_INITPIPE"
	EnvFifoFd     = "_CUBO_FIFODIRFD" // O_PATH fd of the dir holding exec.fifo
	EnvConsoleFd  = "_CUBO_CONSOLEFD"
	EnvInitType   = "_CUBO_INITTYPE"
	EnvPreserveFd = "_CUBO_PRESERVEFDS"
)

// Type identifies a message.
type Type string

// Message types; see the package comment for their order.
const (
	MsgConfig    Type = "config"
	MsgHooks     Type = "hooks"
	MsgHooksDone Type = "hooks-done"
	MsgReady     Type = "ready"
	// MsgCommitted tells the init that create finished (state.json and
	// the pid file are written); only then may it wait for start.
	MsgCommitted Type = "committed"
	// MsgSeccomp carries the seccomp notify listener fd (SCM_RIGHTS) for
	// the parent to hand to linux.seccomp.listenerPath.
	MsgSeccomp Type = "seccomp"
	MsgError   Type = "error"
)

// maxMsg bounds one message; a config.json larger than this is refused by the
// parent before it is sent.
const maxMsg = 4 << 20

// InitConfig is everything the init needs to build the container.
type InitConfig struct {
	ID string `json:"id"`
	// Spec is decoded by the init from SpecJSON (see DecodeSpec).
	Spec *specs.Spec `json:"-"`
	// SpecJSON is config.json as read: re-encoding the runtime-spec type
	// tree costs the parent more than the rest of a create.
	SpecJSON json.RawMessage `json:"-"`
	Rootfs   string          `json:"rootfs"`
	// Bundle is the absolute bundle path, used as cwd for createContainer hooks.
	Bundle       string `json:"bundle"`
	NoPivot      bool   `json:"noPivot,omitempty"`
	NoNewKeyring bool   `json:"noNewKeyring,omitempty"`
	// PreserveFds counts the fds from 3 on that the container keeps.
	PreserveFds int `json:"preserveFds,omitempty"`
	// HookSync asks the init to stop before pivot_root so the parent can run
	// prestart and createRuntime hooks.
	HookSync bool `json:"hookSync,omitempty"`
	// CgroupNS asks the init to unshare the cgroup namespace once it sits in
	// its final cgroup, so the namespace root is the container's cgroup.
	CgroupNS bool `json:"cgroupNS,omitempty"`
	// Exec marks a process joining an existing container (no rootfs setup).
	Exec bool `json:"exec,omitempty"`
	// Process overrides Spec.Process for exec (decoded from ProcessJSON).
	Process     *specs.Process  `json:"-"`
	ProcessJSON json.RawMessage `json:"-"`
	// CgroupMounts maps each v1 hierarchy mount point (or "unified") to the
	// container's cgroup dir in it, for bind-mounting cgroupfs without cgroupns.
	CgroupPaths map[string]string `json:"cgroupPaths,omitempty"`
	// MountFds maps a mount's index in Spec.Mounts to the init's fd of a
	// detached mount prepared by the parent (idmapped mounts).
	MountFds map[int]int `json:"mountFds,omitempty"`
}

// Message is one datagram.
type Message struct {
	Type   Type        `json:"type"`
	Config *InitConfig `json:"config,omitempty"`
	Error  string      `json:"error,omitempty"`
	// Pid is the container-side pid of the init, for hooks.
	Pid int `json:"pid,omitempty"`
	// Fd is a file descriptor passed along with the message, -1 if none.
	Fd int `json:"-"`
}

// MarshalJSON encodes a message without a Config through a small struct of its own:
// encoding/json builds its encoders for a type and every type under it on first
// use, and for Message that would be InitConfig and runtime-spec's whole tree,
// a cost the init (which only ever sends small messages) would pay at every start.
func (m Message) MarshalJSON() ([]byte, error) {
	if m.Config != nil {
		type full Message // no MarshalJSON method
		return json.Marshal(full(m))
	}
	return json.Marshal(struct {
		Type  Type   `json:"type"`
		Error string `json:"error,omitempty"`
		Pid   int    `json:"pid,omitempty"`
	}{m.Type, m.Error, m.Pid})
}

// Send writes one message.
func Send(f *os.File, m Message) error {
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("encode %s message: %w", m.Type, err)
	}
	if c := m.Config; c != nil {
		for _, raw := range [][]byte{c.SpecJSON, c.ProcessJSON} {
			if bytes.IndexByte(raw, 0) >= 0 {
				return fmt.Errorf("encode %s message: NUL byte in embedded JSON", m.Type)
			}
			b = append(append(b, 0), raw...)
		}
	}
	if len(b) > maxMsg {
		return fmt.Errorf("encode %s message: %d bytes exceeds the %d byte limit", m.Type, len(b), maxMsg)
	}
	var oob []byte
	if m.Fd > 0 {
		oob = unix.UnixRights(m.Fd)
	}
	for {
		err = unix.Sendmsg(int(f.Fd()), b, oob, nil, 0)
		if err != unix.EINTR {
			break
		}
	}
	if err != nil {
		return fmt.Errorf("send %s message: %w", m.Type, err)
	}
	return nil
}

// Recv reads one message. io.EOF means the other end closed the socket,
// which for the parent means the init died or finished.
func Recv(f *os.File) (Message, error) { return recv(f, false) }

// RecvRaw is Recv with raw syscalls, for the container init: it waits
// without the Go scheduler's syscall bookkeeping, which would hand its P
// to another thread and wake sysmon (see initproc's raw_linux.go).
func RecvRaw(f *os.File) (Message, error) { return recv(f, true) }

func recv(f *os.File, raw bool) (Message, error) {
	var m Message
	// Peek with MSG_TRUNC to learn the datagram's size, so a small message
	// does not cost a maxMsg buffer (peak RSS is a speed target).
	var one [1]byte
	var n int
	var err error
	fd := int(f.Fd())
	for {
		if raw {
			n, err = rawRecv(fd, one[:], unix.MSG_PEEK|unix.MSG_TRUNC)
		} else {
			n, _, err = unix.Recvfrom(fd, one[:], unix.MSG_PEEK|unix.MSG_TRUNC)
		}
		if err != unix.EINTR {
			break
		}
	}
	if err == nil && n > 0 {
		if n > maxMsg {
			return m, fmt.Errorf("receive message: %d bytes exceeds the %d byte limit", n, maxMsg)
		}
		buf := make([]byte, n)
		oob := make([]byte, unix.CmsgSpace(4))
		var oobn int
		for {
			n, oobn, _, _, err = unix.Recvmsg(int(f.Fd()), buf, oob, unix.MSG_CMSG_CLOEXEC)
			if err != unix.EINTR {
				break
			}
		}
		if err == nil && n > 0 {
			head, rest, _ := bytes.Cut(buf[:n], []byte{0})
			if err := spec.Unmarshal(head, &m); err != nil {
				return m, fmt.Errorf("decode message: %w", err)
			}
			if m.Config != nil {
				m.Config.SpecJSON, m.Config.ProcessJSON, _ = bytes.Cut(rest, []byte{0})
			}
			m.Fd = -1
			if oobn > 0 {
				if cms, err := unix.ParseSocketControlMessage(oob[:oobn]); err == nil && len(cms) == 1 {
					if fds, err := unix.ParseUnixRights(&cms[0]); err == nil && len(fds) == 1 {
						m.Fd = fds[0]
					}
				}
			}
			return m, nil
		}
	}
	if err != nil {
		if errors.Is(err, unix.ECONNRESET) {
			return m, io.EOF
		}
		return m, fmt.Errorf("receive message: %w", err)
	}
	return m, io.EOF
}

// Socketpair returns the parent and child ends of a fresh channel. Both are
// close-on-exec; the child end is handed to the init via ExtraFiles.
func Socketpair() (parent, child *os.File, err error) {
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_SEQPACKET|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, nil, fmt.Errorf("create init socketpair: %w", err)
	}
	return os.NewFile(uintptr(fds[0]), "init-parent"), os.NewFile(uintptr(fds[1]), "init-child"), nil
}

// Decode fills Spec and Process from their JSON forms.
func (c *InitConfig) Decode() error {
	c.Spec = new(specs.Spec)
	if err := spec.Unmarshal(c.SpecJSON, c.Spec); err != nil {
		return fmt.Errorf("decode config: %w", err)
	}
	if len(c.ProcessJSON) > 0 {
		c.Process = new(specs.Process)
		if err := spec.Unmarshal(c.ProcessJSON, c.Process); err != nil {
			return fmt.Errorf("decode process: %w", err)
		}
	}
	return nil
}

// rawRecv is recvfrom(2) without address, as a raw syscall.
func rawRecv(fd int, p []byte, flags int) (int, error) {
	r, _, e := unix.RawSyscall6(unix.SYS_RECVFROM, uintptr(fd), uintptr(unsafe.Pointer(&p[0])), uintptr(len(p)), uintptr(flags), 0, 0)
	if e != 0 {
		return int(r), e
	}
	return int(r), nil
}
