package cgroups

import (
	"errors"
	"fmt"
	"strings"
	"time"
)

// settle polls check with a growing pause (10µs up to 10ms, about 3s in all)
// until it reports done. Freezing is asynchronous in the kernel: the state
// file shows the transition, and there is no event to wait on in v1.
func settle(check func(attempt int) (bool, error)) (bool, error) {
	delay := 10 * time.Microsecond
	for i := 0; i < 320; i++ {
		done, err := check(i)
		if err != nil || done {
			return done, err
		}
		time.Sleep(delay)
		if delay < 10*time.Millisecond {
			delay *= 2
		}
	}
	return false, nil
}

func (m *manager) freezerDir() (dir string, v2 bool, err error) {
	if d, ok := m.paths["freezer"]; ok {
		return d, false, nil
	}
	if m.mode == ModeV2 {
		return m.paths[""], true, nil
	}
	return "", false, errors.New("freeze cgroup: freezer hierarchy not mounted")
}

func (m *manager) Freeze(frozen bool) error {
	dir, v2, err := m.freezerDir()
	if err != nil {
		return err
	}
	if v2 {
		return freezeV2(dir, frozen)
	}
	return freezeV1(dir, frozen)
}

func freezeV1(dir string, frozen bool) error {
	want := "THAWED"
	if frozen {
		want = "FROZEN"
	}
	var last string
	ok, err := settle(func(i int) (bool, error) {
		// Writing FROZEN again restarts a freeze that stalled on tasks
		// forked while it ran.
		if i%25 == 0 {
			if err := writeFile(dir, "freezer.state", want); err != nil {
				return false, err
			}
		}
		s, err := readFile(dir, "freezer.state")
		last = s
		return s == want, err
	})
	if err != nil {
		return fmt.Errorf("freeze cgroup: %w", err)
	}
	if !ok {
		if frozen {
			// Leave no half-frozen container behind.
			_ = writeFile(dir, "freezer.state", "THAWED")
		}
		return fmt.Errorf("freeze cgroup %s: state stuck at %s, wanted %s", dir, last, want)
	}
	return nil
}

func freezeV2(dir string, frozen bool) error {
	want := "0"
	if frozen {
		want = "1"
	}
	if err := writeFile(dir, "cgroup.freeze", want); err != nil {
		return fmt.Errorf("freeze cgroup: %w", err)
	}
	ok, err := settle(func(int) (bool, error) {
		v, found, err := eventsFrozen(dir)
		if !found {
			// Kernels without the frozen key apply the write at once.
			return true, err
		}
		return v == want, err
	})
	if err != nil {
		return fmt.Errorf("freeze cgroup: %w", err)
	}
	if !ok {
		if frozen {
			_ = writeFile(dir, "cgroup.freeze", "0")
		}
		return fmt.Errorf("freeze cgroup %s: cgroup.events never showed frozen %s", dir, want)
	}
	return nil
}

func eventsFrozen(dir string) (string, bool, error) {
	s, err := readFile(dir, "cgroup.events")
	if err != nil {
		return "", false, err
	}
	for _, line := range strings.Split(s, "\n") {
		if v, ok := strings.CutPrefix(line, "frozen "); ok {
			return strings.TrimSpace(v), true, nil
		}
	}
	return "", false, nil
}

func (m *manager) Frozen() (bool, error) {
	dir, v2, err := m.freezerDir()
	if err != nil {
		return false, err
	}
	if v2 {
		s, err := readFile(dir, "cgroup.freeze")
		if err != nil {
			return false, err
		}
		// cgroup.freeze is what was asked for: a freeze still settling
		// counts as paused, which is what `resume` must undo.
		return s == "1", nil
	}
	var state string
	ok, err := settle(func(int) (bool, error) {
		s, err := readFile(dir, "freezer.state")
		state = s
		return s != "FREEZING", err
	})
	if err != nil {
		return false, err
	}
	if !ok {
		return true, nil
	}
	if state != "FROZEN" {
		return false, nil
	}
	// FROZEN only because an ancestor is frozen is not our pause to undo.
	self, err := readFile(dir, "freezer.self_freezing")
	if err != nil {
		return false, err
	}
	return self == "1", nil
}
