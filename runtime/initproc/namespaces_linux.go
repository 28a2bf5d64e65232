package initproc

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// joinSessionKeyring gives the container its own session keyring so it
// cannot see or use the caller's keys.
func joinSessionKeyring(id string) error {
	kr, err := unix.KeyctlJoinSessionKeyring("_ses." + id)
	if err != nil {
		if err == unix.ENOSYS || err == unix.EACCES || err == unix.EPERM {
			// Keyrings may be unavailable (e.g. blocked by a seccomp
			// profile around us); runc ignores this too.
			return nil
		}
		return fmt.Errorf("join session keyring: %w", err)
	}
	// Possessor gets everything, user/group/other get nothing, so a
	// process with another uid in the container cannot peek.
	if err := unix.KeyctlSetperm(kr, 0x3f3f0000); err != nil {
		return fmt.Errorf("set session keyring permissions: %w", err)
	}
	return nil
}
