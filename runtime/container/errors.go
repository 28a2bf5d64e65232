// Package container is the parent side of cubo-runc: it creates containers
// by re-executing the runtime as their init, keeps their state under the
// runtime root, and starts, signals and destroys them.
package container

import "errors"

// Errors whose text callers match word for word (containerd's shim, podman,
// runtime-tools), so they must not change.
var (
	// ErrNotExist is returned for an ID with no state under the root.
	ErrNotExist = errors.New("container does not exist")
	// ErrExist is returned by Create when the ID is taken.
	ErrExist = errors.New("container with given ID already exists")
	// ErrNotRunning is returned when signalling a stopped container.
	ErrNotRunning = errors.New("container not running")
	// ErrNotPaused is returned by Resume on a container that is not paused.
	ErrNotPaused = errors.New("container not paused")
	// ErrPaused is returned for operations a paused container refuses.
	ErrPaused = errors.New("container paused")
	// ErrInvalidID is returned for IDs with characters outside
	// [A-Za-z0-9_+.-], "." or "..", or longer than a file name may be.
	ErrInvalidID = errors.New("invalid container ID format")
	// ErrEmptyID is returned for an empty ID.
	ErrEmptyID = errors.New("container id cannot be empty")
)
