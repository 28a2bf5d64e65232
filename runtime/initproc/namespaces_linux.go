package initproc

import (
	"fmt"

	specs "github.com/opencontainers/runtime-spec/specs-go"
	"golang.org/x/sys/unix"
)

// nsFlags maps the namespace types an init can join by itself with setns on
// its locked thread. User, mount and pid namespaces cannot be joined from a
// multi-threaded process; the parent handles those before the init starts.
var nsFlags = map[specs.LinuxNamespaceType]int{
	specs.NetworkNamespace: unix.CLONE_NEWNET,
	specs.UTSNamespace:     unix.CLONE_NEWUTS,
	specs.IPCNamespace:     unix.CLONE_NEWIPC,
	specs.CgroupNamespace:  unix.CLONE_NEWCGROUP,
	specs.TimeNamespace:    unix.CLONE_NEWTIME,
}

// joinNamespaces enters the namespaces config.json names by path.
func joinNamespaces(s *specs.Spec) error {
	if s.Linux == nil {
		return nil
	}
	for _, ns := range s.Linux.Namespaces {
		if ns.Path == "" {
			continue
		}
		flag, ok := nsFlags[ns.Type]
		if !ok {
			continue // joined by the parent
		}
		fd, err := unix.Open(ns.Path, unix.O_RDONLY|unix.O_CLOEXEC, 0)
		if err != nil {
			return fmt.Errorf("open %s namespace %s: %w", ns.Type, ns.Path, err)
		}
		err = unix.Setns(fd, flag)
		unix.Close(fd)
		if err != nil {
			return fmt.Errorf("join %s namespace %s: %w", ns.Type, ns.Path, err)
		}
	}
	return nil
}

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
