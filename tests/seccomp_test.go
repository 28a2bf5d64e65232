package tests

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// seccompNotif and seccompNotifResp are struct seccomp_notif and struct
// seccomp_notif_resp of <linux/seccomp.h>.
type seccompNotif struct {
	id    uint64
	pid   uint32
	flags uint32
	nr    int32
	arch  uint32
	ip    uint64
	args  [6]uint64
}

type seccompNotifResp struct {
	id    uint64
	val   int64
	error int32
	flags uint32
}

// seccompAgent is a seccomp notify agent: it listens on listenerPath,
// receives the container process state and the notify fd, and answers
// every notification with errno (or lets it continue if errno is 0).
type seccompAgent struct {
	path  string
	ln    *net.UnixListener
	state chan agentState
}

type agentState struct {
	raw  []byte
	nfds int
	err  error
}

func newSeccompAgent(t *testing.T, dir string, errno unix.Errno) *seccompAgent {
	t.Helper()
	path := filepath.Join(dir, "seccomp.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	a := &seccompAgent{path: path, ln: ln, state: make(chan agentState, 1)}
	go a.serve(errno)
	return a
}

func (a *seccompAgent) serve(errno unix.Errno) {
	conn, err := a.ln.AcceptUnix()
	if err != nil {
		a.state <- agentState{err: err}
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(deadline))
	buf := make([]byte, 64<<10)
	oob := make([]byte, unix.CmsgSpace(4*4))
	n, oobn, _, _, err := conn.ReadMsgUnix(buf, oob)
	if err != nil {
		a.state <- agentState{err: fmt.Errorf("recvmsg: %w", err)}
		return
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		a.state <- agentState{err: err}
		return
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err == nil {
			fds = append(fds, f...)
		}
	}
	a.state <- agentState{raw: append([]byte(nil), buf[:n]...), nfds: len(fds)}
	if len(fds) == 0 {
		return
	}
	for _, fd := range fds[1:] {
		unix.Close(fd)
	}
	fd := fds[0]
	defer unix.Close(fd)
	for {
		var req seccompNotif
		if _, _, e := unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_RECV, uintptr(unsafe.Pointer(&req))); e != 0 {
			if e == unix.EINTR {
				continue
			}
			return // ENOENT: the container is gone
		}
		resp := seccompNotifResp{id: req.id}
		if errno == 0 {
			resp.flags = unix.SECCOMP_USER_NOTIF_FLAG_CONTINUE
		} else {
			resp.error = -int32(errno)
		}
		unix.Syscall(unix.SYS_IOCTL, uintptr(fd), unix.SECCOMP_IOCTL_NOTIF_SEND, uintptr(unsafe.Pointer(&resp)))
	}
}

// TestSeccompNotify runs a container whose mkdir is SCMP_ACT_NOTIFY with
// a listenerPath: the agent gets the state and the notify fd over the
// socket and makes mkdir fail with EXDEV, which the probe sees.
func TestSeccompNotify(t *testing.T) {
	h, dir := newTestHarness(t)
	b := h.bundle(t, dir, "b", "probe", "mkdir", "/tmp/notified", "+", "write", "/tmp/f")
	agent := newSeccompAgent(t, dir, unix.EXDEV)
	setConfig(t, b,
		"root.readonly", false,
		"mounts.-", map[string]any{"destination": "/tmp", "type": "tmpfs", "source": "tmpfs"},
		"linux.seccomp", map[string]any{
			"defaultAction":    "SCMP_ACT_ALLOW",
			"listenerPath":     agent.path,
			"listenerMetadata": "agent-metadata",
			"syscalls": []any{map[string]any{
				"names":  []any{"mkdir", "mkdirat"},
				"action": "SCMP_ACT_NOTIFY",
			}},
		})
	_, wait := h.startBackground(t, dir, "n1", nil, "run", "--bundle", b, "n1")
	code, out, errOut := wait()
	if code != 0 {
		t.Fatalf("run: exit status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
	}
	if !regexp.MustCompile(`(?m)^mkdir /tmp/notified EXDEV$`).MatchString(out) {
		t.Errorf("mkdir did not get the agent's EXDEV:\n%s", out)
	}
	if !regexp.MustCompile(`(?m)^write /tmp/f ok$`).MatchString(out) {
		t.Errorf("write failed:\n%s", out)
	}

	var st agentState
	select {
	case st = <-agent.state:
	case <-time.After(deadline):
		t.Fatal("the agent got no connection")
	}
	if st.err != nil {
		t.Fatal(st.err)
	}
	if st.nfds != 1 {
		t.Errorf("got %d fds with the state, want 1", st.nfds)
	}
	// runtime-spec ContainerProcessState
	var ps struct {
		OCIVersion string   `json:"ociVersion"`
		FDs        []string `json:"fds"`
		Pid        int      `json:"pid"`
		Metadata   string   `json:"metadata"`
		State      struct {
			ID     string `json:"id"`
			Status string `json:"status"`
			Pid    int    `json:"pid"`
			Bundle string `json:"bundle"`
		} `json:"state"`
	}
	if err := json.Unmarshal(st.raw, &ps); err != nil {
		t.Fatalf("decode the state %q: %v", st.raw, err)
	}
	if ps.OCIVersion == "" || len(ps.FDs) != 1 || ps.FDs[0] != "seccompFd" || ps.Pid <= 0 ||
		ps.Metadata != "agent-metadata" || ps.State.ID != "n1" || ps.State.Bundle != b {
		t.Errorf("unexpected container process state: %s", st.raw)
	}

	// The agent may also let the call through.
	t.Run("continue", func(t *testing.T) {
		os.Remove(agent.path)
		agent2 := newSeccompAgent(t, dir, 0)
		setConfig(t, b, "linux.seccomp.listenerPath", agent2.path)
		_, wait := h.startBackground(t, dir, "n2", nil, "run", "--bundle", b, "n2")
		code, out, errOut := wait()
		if code != 0 {
			t.Fatalf("run: exit status %d\nstdout:\n%s\nstderr:\n%s", code, out, errOut)
		}
		if !regexp.MustCompile(`(?m)^mkdir /tmp/notified ok$`).MatchString(out) {
			t.Errorf("mkdir was not let through:\n%s", out)
		}
	})
}
