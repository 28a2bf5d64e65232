// Package nsenter joins existing namespaces before the Go runtime starts
// threads (see nsenter.c). Importing it installs the constructor; it does
// nothing unless _CUBO_NSENTER or _CUBO_UNSHARE is set, which only the
// runtime's own init re-exec does.
package nsenter

/*
#cgo CFLAGS: -Wall -Wextra -O2
const char *cubo_nsenter_error(void);
*/
import "C"

import (
	"errors"

	"golang.org/x/sys/unix"
)

// Env names read by the constructor.
const (
	EnvNSEnter = "_CUBO_NSENTER"
	EnvUnshare = "_CUBO_UNSHARE"
	// EnvTimerSlack sets the timer slack, in ns, of the threads the Go
	// runtime starts instead of 1 ms; 0 leaves it alone (see
	// cubo_timerslack in nsenter.c).
	EnvTimerSlack = "_CUBO_TIMERSLACK"
)

// Err returns the constructor's first failure, or nil.
func Err() error {
	if e := C.cubo_nsenter_error(); e != nil {
		return errors.New(C.GoString(e))
	}
	return nil
}

// callerSlack is the timer slack cubo-runc was started with.
var callerSlack int

func init() {
	// Package initialisation runs on the main thread, whose slack the
	// constructor raised; resetting gives back its default, which is the
	// slack of the thread that forked us.
	_ = unix.Prctl(unix.PR_SET_TIMERSLACK, 0, 0, 0, 0)
	if v, err := unix.PrctlRetInt(unix.PR_GET_TIMERSLACK, 0, 0, 0, 0); err == nil {
		callerSlack = v
	}
}

// RestoreTimerSlack gives the calling thread the timer slack cubo-runc was
// started with, so that a process forked from it does not inherit the runtime
// threads' coarse one (see nsenter.c). The caller must have locked the thread
// (runtime.LockOSThread) until the fork is done.
func RestoreTimerSlack() {
	if callerSlack > 0 {
		_ = unix.Prctl(unix.PR_SET_TIMERSLACK, uintptr(callerSlack), 0, 0, 0)
	}
}
