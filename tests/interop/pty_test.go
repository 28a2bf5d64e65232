package interop

import (
	"bytes"
	"fmt"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// ptySession runs a command on the slave side of a fresh pty, as a user's
// terminal would, and collects everything written to the master.
type ptySession struct {
	master *os.File
	cmd    *exec.Cmd
	mu     sync.Mutex
	buf    bytes.Buffer
	done   chan struct{}
	err    error
}

func openPty() (master, slave *os.File, err error) {
	m, err := os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	if err := unix.IoctlSetPointerInt(int(m.Fd()), unix.TIOCSPTLCK, 0); err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("unlockpt: %w", err)
	}
	n, err := unix.IoctlGetInt(int(m.Fd()), unix.TIOCGPTN)
	if err != nil {
		m.Close()
		return nil, nil, fmt.Errorf("ptsname: %w", err)
	}
	s, err := os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		m.Close()
		return nil, nil, err
	}
	unix.IoctlSetWinsize(int(s.Fd()), unix.TIOCSWINSZ, &unix.Winsize{Row: 24, Col: 80})
	return m, s, nil
}

func startPty(env []string, name string, args ...string) (*ptySession, error) {
	m, s, err := openPty()
	if err != nil {
		return nil, err
	}
	defer s.Close()
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = s, s, s
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		m.Close()
		return nil, err
	}
	p := &ptySession{master: m, cmd: cmd, done: make(chan struct{})}
	go func() {
		b := make([]byte, 4096)
		for {
			n, err := m.Read(b)
			p.mu.Lock()
			p.buf.Write(b[:n])
			p.mu.Unlock()
			if err != nil {
				return
			}
		}
	}()
	go func() { p.err = cmd.Wait(); close(p.done) }()
	return p, nil
}

func (p *ptySession) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.buf.String()
}

// expect waits until the output contains s.
func (p *ptySession) expect(s string) error {
	return waitFor(fmt.Sprintf("pty output contains %q", s), cmdTimeout, func() error {
		if strings.Contains(p.output(), s) {
			return nil
		}
		select {
		case <-p.done:
			if strings.Contains(p.output(), s) {
				return nil
			}
			return stopWaiting{fmt.Errorf("command exited (%v); output %q", p.err, p.output())}
		default:
		}
		return fmt.Errorf("output so far %q", p.output())
	})
}

func (p *ptySession) send(s string) error {
	_, err := p.master.WriteString(s)
	return err
}

// wait waits for the command to exit and returns its exit code.
func (p *ptySession) wait() (int, error) {
	select {
	case <-p.done:
	case <-time.After(cmdTimeout):
		p.cmd.Process.Kill()
		<-p.done
		return -1, fmt.Errorf("pty command did not exit; output %q", p.output())
	}
	p.master.Close()
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode(), nil
	}
	if p.err != nil {
		return -1, p.err
	}
	return 0, nil
}

func (p *ptySession) kill() {
	select {
	case <-p.done:
	default:
		p.cmd.Process.Kill()
		<-p.done
	}
	p.master.Close()
}
