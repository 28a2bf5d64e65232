package network

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"runtime"

	"golang.org/x/sys/unix"
)

// newNetns creates a network namespace and bind-mounts it on path (created empty), as
// `ip netns add` does, so it lives without any process in it until removeNetns.
func newNetns(path string) error {
	f, err := os.OpenFile(path, os.O_RDONLY|os.O_CREATE|os.O_EXCL, 0o444)
	if err != nil {
		return fmt.Errorf("create netns file %s: %w", path, err)
	}
	f.Close()
	errc := make(chan error, 1)
	go func() {
		// unshare changes only this thread's namespace. The thread is never unlocked,
		// so the Go runtime discards it when the goroutine returns instead of running
		// other goroutines in the new namespace (golang/go#20395).
		runtime.LockOSThread()
		if err := unix.Unshare(unix.CLONE_NEWNET); err != nil {
			errc <- fmt.Errorf("unshare network namespace: %w", err)
			return
		}
		src := fmt.Sprintf("/proc/self/task/%d/ns/net", unix.Gettid())
		if err := unix.Mount(src, path, "", unix.MS_BIND, ""); err != nil {
			errc <- fmt.Errorf("bind netns on %s: %w", path, err)
			return
		}
		errc <- nil
	}()
	if err := <-errc; err != nil {
		os.Remove(path)
		return err
	}
	return nil
}

// isNetns reports whether path is a mounted network namespace.
func isNetns(path string) bool {
	var st unix.Statfs_t
	return unix.Statfs(path, &st) == nil && st.Type == unix.NSFS_MAGIC
}

// removeNetns unmounts and removes a namespace made by newNetns. A missing path is not
// an error. The namespace itself goes away once no process is left in it.
func removeNetns(path string) error {
	// A loop because a racing Setup of the same ID could have stacked two mounts.
	for i := 0; i < 8 && isNetns(path); i++ {
		// MNT_DETACH: a plugin or `ip netns exec` may still hold it open.
		if err := unix.Unmount(path, unix.MNT_DETACH); err != nil {
			if errors.Is(err, unix.EINVAL) {
				break
			}
			return fmt.Errorf("unmount netns %s: %w", path, err)
		}
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove netns %s: %w", path, err)
	}
	return nil
}

// IsNetns reports whether path is a mounted network namespace, such as an Attachment's NetNS.
func IsNetns(path string) bool { return isNetns(path) }
