package manager

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"os"
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
	f, err := os.Open(c.LogPath())
	if err != nil {
		return fmt.Errorf("open log of %s: %w", c.ID, err)
	}
	defer f.Close()
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
	r := bufio.NewReaderSize(f, 64<<10)
	var pending []byte
	// drain prints the complete lines available now; a line still being written (no
	// newline yet) waits in pending for the rest.
	drain := func(keep int) {
		var lines [][]byte
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
		for _, l := range lines {
			out(l)
		}
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
