package manager

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"time"

	"golang.org/x/sys/unix"
)

// LogsOpts select what Logs prints.
type LogsOpts struct {
	// Follow keeps printing new lines until the container stops.
	Follow bool
	// Tail prints only the last Tail lines first; negative means all.
	Tail int
	// Timestamps prefixes each line with its RFC 3339 time.
	Timestamps bool
}

// Logs writes the container's output to stdout and stderr, each line to the stream it
// came from.
func (m *Manager) Logs(ctx context.Context, ref string, o LogsOpts, stdout, stderr io.Writer) error {
	c, err := m.Get(ctx, ref)
	if err != nil {
		return err
	}
	old, f, err := openLogs(c)
	if err != nil {
		return err
	}
	defer func() { f.Close() }()
	out := func(line []byte) {
		var l logLine
		if json.Unmarshal(line, &l) != nil {
			return
		}
		w := stdout
		if l.Stream == "stderr" {
			w = stderr
		}
		var b bytes.Buffer
		if o.Timestamps {
			b.WriteString(l.Time.Format(time.RFC3339Nano))
			b.WriteByte(' ')
		}
		b.WriteString(l.Text)
		if !l.Partial {
			b.WriteByte('\n')
		}
		_, _ = w.Write(b.Bytes())
	}
	var lines [][]byte
	// collect reads the complete lines of r; keep bounds how many are kept (all when
	// negative). A line still being written (no newline yet) waits in pending.
	var pending []byte
	collect := func(r *bufio.Reader, keep int) {
		for {
			chunk, err := r.ReadBytes('\n')
			pending = append(pending, chunk...)
			if err != nil {
				break
			}
			lines = append(lines, pending)
			pending = nil
			if keep >= 0 && len(lines) > keep {
				lines = lines[1:]
			}
		}
	}
	flush := func() {
		for _, l := range lines {
			out(l)
		}
		lines = nil
	}
	if old != nil {
		// The rotated file is complete: whatever it lacks a newline for is lost.
		collect(bufio.NewReaderSize(old, 64<<10), o.Tail)
		old.Close()
		pending = nil
	}
	r := bufio.NewReaderSize(f, 64<<10)
	drain := func(keep int) {
		collect(r, keep)
		flush()
	}
	if !o.Follow {
		drain(o.Tail)
		return nil
	}

	in, err := unix.InotifyInit1(unix.IN_CLOEXEC)
	if err != nil {
		return fmt.Errorf("follow log: %w", err)
	}
	inf := os.NewFile(uintptr(in), "inotify")
	defer inf.Close()
	// The log grows by appends (IN_MODIFY); meta.json is replaced by rename (IN_MOVED_TO).
	if _, err := unix.InotifyAddWatch(in, c.dir, unix.IN_MODIFY|unix.IN_MOVED_TO|unix.IN_DELETE_SELF|unix.IN_MOVE_SELF); err != nil {
		return fmt.Errorf("follow log: %w", err)
	}
	events := make(chan struct{}, 1)
	go func() {
		buf := make([]byte, 4096)
		for {
			if _, err := inf.Read(buf); err != nil {
				close(events)
				return
			}
			select {
			case events <- struct{}{}:
			default:
			}
		}
	}()
	drain(o.Tail)
	// A dead monitor wakes nobody, so the record is also checked now and then.
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		nc, err := m.load(ctx, c.ID)
		stopped := err != nil || nc.Status == StatusStopped || (nc.Status == StatusRunning && nc.Error != "")
		// The monitor records "stopped" only after the last line is in the log, so
		// draining after seeing it prints everything.
		drain(-1)
		// A rotation renamed the file we read to container.log.1: it is complete once
		// drained, and the rest is in the new container.log.
		for rotated(f, c.LogPath()) {
			nf, err := os.Open(c.LogPath())
			if err != nil {
				break
			}
			drain(-1)
			f.Close()
			f = nf
			r = bufio.NewReaderSize(f, 64<<10)
			pending = nil
			drain(-1)
		}
		if stopped {
			return nil
		}
		select {
		case <-ctx.Done():
			return nil
		case _, ok := <-events:
			if !ok {
				return nil
			}
		case <-tick.C:
		}
	}
}

// openLogs opens container.log.1 (nil when there is none) and container.log of c as one
// consistent pair: a rotation between the two opens would skip a whole file, so the
// pair is opened again when container.log.1 changed meanwhile.
func openLogs(c *Container) (old, cur *os.File, err error) {
	rotatedPath := filepath.Join(c.dir, rotatedLogName)
	for {
		old, err = os.Open(rotatedPath)
		if err != nil && !errors.Is(err, fs.ErrNotExist) {
			return nil, nil, fmt.Errorf("open log of %s: %w", c.ID, err)
		}
		cur, err = os.Open(c.LogPath())
		if err != nil {
			if old != nil {
				old.Close()
			}
			return nil, nil, fmt.Errorf("open log of %s: %w", c.ID, err)
		}
		if old == nil {
			if _, err := os.Stat(rotatedPath); errors.Is(err, fs.ErrNotExist) {
				return nil, cur, nil
			}
		} else if !rotated(old, rotatedPath) {
			return old, cur, nil
		}
		if old != nil {
			old.Close()
		}
		cur.Close()
	}
}

// rotated tells whether path no longer names the file f is open on.
func rotated(f *os.File, path string) bool {
	var a, b unix.Stat_t
	if unix.Fstat(int(f.Fd()), &a) != nil || unix.Stat(path, &b) != nil {
		return false
	}
	return a.Dev != b.Dev || a.Ino != b.Ino
}
