package tests

import (
	"errors"
	"fmt"
	"io"
	"net"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// consoleReceiver listens on a unix socket the way containerd and conmon do
// and receives the pty master that the runtime sends with SCM_RIGHTS.
type consoleReceiver struct {
	path string
	ln   *net.UnixListener
	got  chan recvResult
}

type recvResult struct {
	master *os.File
	name   string
	err    error
}

func newConsoleReceiver(t *testing.T, dir string) *consoleReceiver {
	t.Helper()
	path := filepath.Join(dir, "console.sock")
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		t.Fatal(err)
	}
	r := &consoleReceiver{path: path, ln: ln, got: make(chan recvResult, 1)}
	t.Cleanup(func() { ln.Close() })
	go r.accept()
	return r
}

func (r *consoleReceiver) accept() {
	conn, err := r.ln.AcceptUnix()
	if err != nil {
		r.got <- recvResult{err: err}
		return
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(deadline))
	name := make([]byte, 4096)
	oob := make([]byte, unix.CmsgSpace(4*8))
	n, oobn, _, _, err := conn.ReadMsgUnix(name, oob)
	if err != nil {
		r.got <- recvResult{err: fmt.Errorf("recvmsg: %w", err)}
		return
	}
	msgs, err := unix.ParseSocketControlMessage(oob[:oobn])
	if err != nil {
		r.got <- recvResult{err: fmt.Errorf("parse control message: %w", err)}
		return
	}
	var fds []int
	for _, m := range msgs {
		f, err := unix.ParseUnixRights(&m)
		if err != nil {
			r.got <- recvResult{err: fmt.Errorf("parse SCM_RIGHTS: %w", err)}
			return
		}
		fds = append(fds, f...)
	}
	if len(msgs) != 1 || len(fds) != 1 {
		for _, fd := range fds {
			unix.Close(fd)
		}
		r.got <- recvResult{err: fmt.Errorf("got %d control messages with %d fds, want exactly one fd", len(msgs), len(fds))}
		return
	}
	r.got <- recvResult{master: os.NewFile(uintptr(fds[0]), "pty-master"), name: string(name[:n])}
}

func (r *consoleReceiver) wait(t *testing.T) (*os.File, string) {
	t.Helper()
	select {
	case res := <-r.got:
		if res.err != nil {
			t.Fatal(res.err)
		}
		t.Cleanup(func() { res.master.Close() })
		return res.master, res.name
	case <-time.After(deadline):
		t.Fatalf("no console fd received within %v", deadline)
	}
	return nil, ""
}

// readAll reads the pty master until the slave side is gone (EIO) or the
// deadline passes.
func readAll(t *testing.T, f *os.File) string {
	t.Helper()
	f.SetReadDeadline(time.Now().Add(deadline))
	var sb strings.Builder
	buf := make([]byte, 4096)
	for {
		n, err := f.Read(buf)
		sb.Write(buf[:n])
		if err != nil {
			if !errors.Is(err, io.EOF) && !errors.Is(err, syscall.EIO) {
				t.Errorf("read pty: %v", err)
			}
			return strings.ReplaceAll(sb.String(), "\r\n", "\n")
		}
	}
}

// TestConsoleSocket runs a terminal container with --console-socket: the
// pty master arrives over the socket, and the container's stdio is the pty.
func TestConsoleSocket(t *testing.T) {
	h, dir := newTestHarness(t)
	b := h.bundle(t, dir, "b", "probe", "tty", "+", "echo", "hello-on-the-pty", "+", "stat", "/dev/console")
	setConfig(t, b, "process.terminal", true)

	t.Run("create", func(t *testing.T) {
		rcv := newConsoleReceiver(t, dir)
		r := h.runDetached(dir, filepath.Join(dir, "c1.out"), filepath.Join(dir, "c1.err"),
			"create", "--console-socket", rcv.path, "--bundle", b, "c1")
		if r.err != nil {
			t.Fatalf("create: %v: %s", r.err, r.stderr)
		}
		if err := h.track("c1"); err != nil {
			t.Fatal(err)
		}
		// The fd must have been sent before create returned.
		master, name := rcv.wait(t)
		if name == "" {
			t.Errorf("the console message carries an empty name")
		}
		if r := h.run("start", "c1"); r.err != nil {
			t.Fatalf("start: %v: %s", r.err, r.stderr)
		}
		out := readAll(t, master)
		for _, want := range []string{
			`^tty 0 /dev/pts/\d+ isatty=true$`,
			`^tty 1 /dev/pts/\d+ isatty=true$`,
			`^tty 2 /dev/pts/\d+ isatty=true$`,
			`^ctty ok$`,
			`^hello-on-the-pty$`,
			`^stat /dev/console char \d+ \d+:\d+ 136:\d+$`,
		} {
			if !regexp.MustCompile(`(?m)` + want).MatchString(out) {
				t.Errorf("pty output lacks %s:\n%s", want, out)
			}
		}
		if err := h.waitState("c1", "stopped"); err != nil {
			t.Fatal(err)
		}
		if r := h.run("delete", "c1"); r.err != nil {
			t.Fatalf("delete: %v: %s", r.err, r.stderr)
		}
	})

	t.Run("run-detach", func(t *testing.T) {
		os.Remove(filepath.Join(dir, "console.sock"))
		rcv := newConsoleReceiver(t, dir)
		r := h.runDetached(dir, filepath.Join(dir, "c2.out"), filepath.Join(dir, "c2.err"),
			"run", "-d", "--console-socket", rcv.path, "--bundle", b, "c2")
		if r.err != nil {
			t.Fatalf("run -d: %v: %s", r.err, r.stderr)
		}
		master, _ := rcv.wait(t)
		out := readAll(t, master)
		if !strings.Contains(out, "hello-on-the-pty") {
			t.Errorf("pty output lacks the greeting:\n%s", out)
		}
		if err := h.waitState("c2", "stopped"); err != nil {
			t.Fatal(err)
		}
		if r := h.run("delete", "c2"); r.err != nil {
			t.Fatalf("delete: %v: %s", r.err, r.stderr)
		}
	})

	t.Run("terminal-without-socket", func(t *testing.T) {
		r := h.runDetached(dir, filepath.Join(dir, "c3.out"), filepath.Join(dir, "c3.err"), "create", "--bundle", b, "c3")
		if r.code != 1 {
			t.Fatalf("create with terminal and no --console-socket: exit status %d, want 1 (%s)", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "cannot allocate tty if runc will detach without setting console socket") {
			t.Errorf("stderr: %s", r.stderr)
		}
		if _, err := os.Stat(filepath.Join(h.root, "c3")); err == nil {
			t.Errorf("state directory left behind")
		}
	})

	t.Run("socket-without-terminal", func(t *testing.T) {
		b2 := h.bundle(t, dir, "b2", "probe", "tty")
		r := h.runDetached(dir, filepath.Join(dir, "c4.out"), filepath.Join(dir, "c4.err"),
			"create", "--console-socket", filepath.Join(dir, "nobody.sock"), "--bundle", b2, "c4")
		if r.code != 1 {
			t.Fatalf("create with --console-socket and terminal false: exit status %d, want 1 (%s)", r.code, r.stderr)
		}
		if !strings.Contains(r.stderr, "cannot use console socket if runc will not detach or allocate tty") {
			t.Errorf("stderr: %s", r.stderr)
		}
		if _, err := os.Stat(filepath.Join(h.root, "c4")); err == nil {
			t.Errorf("state directory left behind")
		}
	})
}
