package linux

import (
	"errors"
	"os"
	"os/exec"
	"testing"
)

func TestStatSelf(t *testing.T) {
	st, err := Stat(os.Getpid())
	if err != nil {
		t.Fatal(err)
	}
	if st.StartTime == 0 || st.State == 0 {
		t.Fatalf("implausible stat %+v", st)
	}
	if !Alive(os.Getpid(), st.StartTime) {
		t.Fatal("self not alive")
	}
	// A different start time is another process that reused the pid.
	if Alive(os.Getpid(), st.StartTime+1) {
		t.Fatal("start time mismatch not detected")
	}
}

func TestStatMissing(t *testing.T) {
	if _, err := Stat(1 << 30); !errors.Is(err, os.ErrNotExist) {
		t.Fatalf("want ErrNotExist, got %v", err)
	}
	if Alive(0, 1) || Alive(-1, 1) {
		t.Fatal("non-positive pid alive")
	}
}

func TestZombieIsNotAlive(t *testing.T) {
	cmd := exec.Command("/bin/true")
	if err := cmd.Start(); err != nil {
		t.Skip("no /bin/true:", err)
	}
	st, err := Stat(cmd.Process.Pid)
	if err != nil {
		t.Fatal(err)
	}
	exited, err := WaitExit(cmd.Process.Pid, 10000)
	if err != nil || !exited {
		t.Fatalf("WaitExit: %v %v", exited, err)
	}
	// Exited but not reaped: a zombie, which callers must see as stopped.
	if Alive(cmd.Process.Pid, st.StartTime) {
		t.Fatal("zombie counted as alive")
	}
	_ = cmd.Wait()
}
