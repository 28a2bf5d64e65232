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

import "errors"

// Env names read by the constructor.
const (
	EnvNSEnter = "_CUBO_NSENTER"
	EnvUnshare = "_CUBO_UNSHARE"
	// EnvTimerSlack sets the timer slack, in ns, of the threads the Go
	// runtime starts (see cubo_timerslack in nsenter.c).
	EnvTimerSlack = "_CUBO_TIMERSLACK"
)

// Err returns the constructor's first failure, or nil.
func Err() error {
	if e := C.cubo_nsenter_error(); e != nil {
		return errors.New(C.GoString(e))
	}
	return nil
}
