package manager

import (
	"bytes"
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// logsModel is what `cubo logs` should print for a container.log holding data: every
// complete line (a trailing fragment without a newline is still being written), the last
// tail of them when tail >= 0, and of those only the ones that are log records.
func logsModel(data []byte, tail int, timestamps bool) (stdout, stderr string) {
	lines := strings.SplitAfter(string(data), "\n")
	if n := len(lines); n > 0 && !strings.HasSuffix(lines[n-1], "\n") {
		lines = lines[:n-1]
	}
	if tail >= 0 && len(lines) > tail {
		lines = lines[len(lines)-tail:]
	}
	var out, errb strings.Builder
	for _, line := range lines {
		var l logLine
		if json.Unmarshal([]byte(line), &l) != nil {
			continue
		}
		w := &out
		if l.Stream == "stderr" {
			w = &errb
		}
		if timestamps {
			w.WriteString(l.Time.Format(time.RFC3339Nano) + " ")
		}
		w.WriteString(l.Text)
		if !l.Partial {
			w.WriteByte('\n')
		}
	}
	return out.String(), errb.String()
}

// FuzzLogs gives the log reader arbitrary container.log contents (records, partial
// records, garbage, lines cut short, NULs, huge numbers) with --tail and --timestamps, for
// a stopped container, with and without --follow. It must not panic, must return (no
// endless follow for a stopped container), and must print what logsModel says; follow
// prints the same as a plain read.
func FuzzLogs(f *testing.F) {
	rec := func(stream, text string, partial bool) string {
		b, _ := json.Marshal(logLine{Time: time.Unix(1700000000, 5).UTC(), Stream: stream, Text: text, Partial: partial})
		return string(b) + "\n"
	}
	for _, s := range []struct {
		data string
		tail int
	}{
		{rec("stdout", "hello", false) + rec("stderr", "oops", false), -1},
		{rec("stdout", "a", false) + rec("stdout", "b", false) + rec("stdout", "c", false), 2},
		{rec("stdout", "part1", true) + rec("stdout", "part2", false), 1},
		{rec("stdout", "x", false) + `{"time":"2023-11-14T22:13:20Z","stream":"stdout","te`, -1},
		{"not json\n\n\x00\xff\n" + rec("stderr", "after garbage", false), 0},
		{`{"time":"99999-01-01T00:00:00Z","stream":"stdout","text":"y"}` + "\n", -1},
		{`{"time":null,"stream":1,"text":["a"]}` + "\n" + `{"text":"no time"}` + "\n", 5},
		{strings.Repeat("\n", 100), 3},
		{rec("stdout", strings.Repeat("z", 20000), false), -1},
		{"", -1},
	} {
		f.Add([]byte(s.data), int16(s.tail), false)
		f.Add([]byte(s.data), int16(s.tail), true)
	}
	root := f.TempDir()
	m, err := New(root)
	if err != nil {
		f.Fatal(err)
	}
	id := strings.Repeat("ab", 16)
	dir := m.containerDir(id)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		f.Fatal(err)
	}
	c := &Container{ID: id, Name: "fuzz", Status: StatusStopped, Runtime: "/nonexistent/runtime",
		RuntimeRoot: filepath.Join(root, "no-runtime-root"), dir: dir}
	if err := c.save(); err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, data []byte, tail int16, timestamps bool) {
		if err := os.WriteFile(c.LogPath(), data, 0o600); err != nil {
			t.Fatal(err)
		}
		wantOut, wantErr := logsModel(data, int(tail), timestamps)
		for _, follow := range []bool{false, true} {
			var stdout, stderr bytes.Buffer
			err := m.Logs(context.Background(), id, LogsOpts{Follow: follow, Tail: int(tail), Timestamps: timestamps}, &stdout, &stderr)
			if err != nil {
				t.Fatalf("follow=%v: %v", follow, err)
			}
			if stdout.String() != wantOut || stderr.String() != wantErr {
				t.Fatalf("follow=%v tail=%d: printed\nstdout %q\nstderr %q\nwant\nstdout %q\nstderr %q", follow, tail, stdout.String(), stderr.String(), wantOut, wantErr)
			}
		}
	})
}
