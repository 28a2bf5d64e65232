package main

import (
	"os"
	"path/filepath"
)

// ResolveRootDir returns Cubo's root dir with the seed README's precedence: the
// --root-dir flag (flag, which kong already filled from CUBO_ROOT when the flag is
// absent), then $XDG_STATE_HOME/cubo, $XDG_DATA_HOME/cubo, $HOME/.local/state/cubo and
// finally /tmp/cubo when HOME is unset.
func ResolveRootDir(flag string) string {
	if flag != "" {
		return flag
	}
	if v := os.Getenv("CUBO_ROOT"); v != "" {
		return v
	}
	if v := os.Getenv("XDG_STATE_HOME"); v != "" {
		return filepath.Join(v, "cubo")
	}
	if v := os.Getenv("XDG_DATA_HOME"); v != "" {
		return filepath.Join(v, "cubo")
	}
	if v := os.Getenv("HOME"); v != "" {
		return filepath.Join(v, ".local", "state", "cubo")
	}
	return "/tmp/cubo"
}
