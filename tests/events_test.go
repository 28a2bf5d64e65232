package tests

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// oomDeadline bounds the whole wait for the oom line; it is a safety net,
// not a timing assumption.
const oomDeadline = 60 * time.Second

// TestEventsOOM streams `events ID` while a process in the container
// allocates past its memory limit (32 MiB, no swap): the stream must carry
// `{"type":"oom","id":"ID"}` besides its stats lines, and it must end on its
// own once the container is deleted.
func TestEventsOOM(t *testing.T) {
	if !memoryCgroupAvailable() {
		t.Skip("no memory cgroup (v1 memory hierarchy or v2 memory.events)")
	}
	h, dir := newTestHarness(t)
	const id = "events-oom"
	b := h.bundle(t, dir, "b", "probe")
	share := shareDir(t, dir, b)
	limit := 32 << 20
	setConfig(t, b,
		"process.args", stringsToAny([]string{"/probe", "sleep", "/share/ready"}),
		"linux.resources.memory", map[string]any{"limit": limit, "swap": limit},
	)
	if r := h.runDetached(dir, filepath.Join(dir, id+".out"), filepath.Join(dir, id+".err"), "run", "-d", "--bundle", b, id); r.err != nil {
		t.Fatalf("run -d: %v: %s", r.err, r.stderr)
	}
	if err := h.track(id); err != nil {
		t.Fatal(err)
	}
	waitFile(t, filepath.Join(share, "ready"))

	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	ev := h.command(ctx, "events", "--interval", "1s", id)
	var stderr strings.Builder
	ev.Stderr = &stderr
	out, err := ev.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := ev.Start(); err != nil {
		t.Fatal(err)
	}
	var waitErr error
	exited := make(chan struct{})
	lines := make(chan string)
	go func() {
		sc := bufio.NewScanner(out)
		sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
		waitErr = ev.Wait()
		close(exited)
	}()
	t.Cleanup(func() {
		select {
		case <-exited:
			return
		default:
		}
		ev.Process.Kill()
		for range lines {
		}
		<-exited
	})

	end := time.After(oomDeadline)
	// next returns the next events line, checking it is one of ours.
	next := func(what string) (string, bool) {
		t.Helper()
		select {
		case l, ok := <-lines:
			if !ok {
				return "", false
			}
			t.Logf("events: %.120s", l)
			var e struct {
				Type string          `json:"type"`
				ID   string          `json:"id"`
				Data json.RawMessage `json:"data"`
			}
			if err := json.Unmarshal([]byte(l), &e); err != nil {
				t.Fatalf("events printed a line that is not JSON: %q: %v", l, err)
			}
			if e.ID != id || (e.Type != "stats" && e.Type != "oom") {
				t.Fatalf("unexpected events line %q", l)
			}
			if e.Type == "stats" && len(e.Data) == 0 {
				t.Fatalf("stats line without data: %q", l)
			}
			return l, true
		case <-end:
			t.Fatalf("%s: nothing within %v; events stderr: %s", what, oomDeadline, stderr.String())
		}
		return "", false
	}

	// The first line is a stats sample, printed once the OOM watch is set up.
	first, ok := next("first stats line")
	if !ok {
		t.Fatalf("events ended before its first line: %s", stderr.String())
	}
	if !strings.HasPrefix(first, `{"type":"stats",`) {
		t.Fatalf("first line %q, want a stats line", first)
	}

	// A process in the container allocates past the limit; the kernel kills
	// it (the init, which uses almost nothing, survives).
	r := h.run("exec", id, "/probe", "alloc", "256")
	if r.code != 128+9 {
		t.Fatalf("exec /probe alloc 256: exit status %d, want 137 (OOM-killed)\nstdout: %s\nstderr: %s", r.code, r.stdout, r.stderr)
	}
	want := fmt.Sprintf(`{"type":"oom","id":%q}`, id)
	for {
		l, ok := next("oom line")
		if !ok {
			t.Fatalf("events ended without an oom line; stderr: %s", stderr.String())
		}
		if l == want {
			break
		}
		if strings.HasPrefix(l, `{"type":"oom"`) {
			t.Fatalf("oom line %q, want %q", l, want)
		}
	}

	// The container is still running; deleting it ends the stream.
	if r := h.run("state", id); r.err != nil || !strings.Contains(r.stdout, `"running"`) {
		t.Fatalf("state after the OOM: %v: %s%s", r.err, r.stdout, r.stderr)
	}
	if r := h.run("delete", "--force", id); r.err != nil {
		t.Fatalf("delete --force: %v: %s", r.err, r.stderr)
	}
	for {
		if _, ok := next("end of the stream after delete"); !ok {
			break
		}
	}
	<-exited
	if waitErr != nil {
		t.Errorf("events after delete: %v; stderr: %s", waitErr, stderr.String())
	}
}

// memoryCgroupAvailable reports whether this host has a memory controller the
// container can be limited by: a v1 memory hierarchy, or memory enabled on a
// unified-only host.
func memoryCgroupAvailable() bool {
	if _, err := os.Stat("/sys/fs/cgroup/memory/cgroup.procs"); err == nil {
		return true
	}
	b, err := os.ReadFile("/sys/fs/cgroup/cgroup.controllers")
	return err == nil && strings.Contains(" "+strings.TrimSpace(string(b))+" ", " memory ")
}
