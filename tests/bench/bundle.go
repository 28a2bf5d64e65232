package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
)

// busyboxTarball is the shared fixture; Debian's busybox-static is the
// fallback.
const busyboxTarball = "/work/shared/images/busybox-1.38.0-musl-amd64-rootfs.tar.gz"

// makeRootfs fills dir with a busybox rootfs and says where it came from.
func makeRootfs(dir string) (string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return "", err
	}
	if _, err := os.Stat(busyboxTarball); err == nil {
		if out, err := exec.Command("tar", "-xzf", busyboxTarball, "-C", dir).CombinedOutput(); err != nil {
			return "", fmt.Errorf("unpack %s: %v: %s", busyboxTarball, err, out)
		}
		return filepath.Base(busyboxTarball), nil
	}
	bb := "/bin/busybox"
	if _, err := os.Stat(bb); err != nil {
		return "", fmt.Errorf("no busybox rootfs: neither %s nor %s (Debian busybox-static)", busyboxTarball, bb)
	}
	for _, d := range []string{"bin", "dev", "proc", "sys", "tmp", "etc"} {
		if err := os.MkdirAll(filepath.Join(dir, d), 0o755); err != nil {
			return "", err
		}
	}
	b, err := os.ReadFile(bb)
	if err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(dir, "bin/busybox"), b, 0o755); err != nil {
		return "", err
	}
	for _, a := range []string{"true", "sh", "sleep"} {
		if err := os.Symlink("busybox", filepath.Join(dir, "bin", a)); err != nil {
			return "", err
		}
	}
	return "Debian busybox-static " + dpkgVersion("busybox-static"), nil
}

// makeBundle writes dir/config.json from `runc spec` (the yardstick's own
// defaults: read-only root, the standard mounts, masked paths, a deny-all
// device rule) with an ociVersion all three runtimes accept (crun 1.8.1
// refuses versions it does not know), /bin/true, no terminal, the shared
// rootfs, and with or without a network namespace.
func makeBundle(dir, rootfs, runc string, netns bool, args []string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return err
	}
	os.Remove(filepath.Join(dir, "config.json"))
	if out, err := exec.Command(runc, "spec", "--bundle", dir).CombinedOutput(); err != nil {
		return fmt.Errorf("%s spec: %v: %s", runc, err, out)
	}
	p := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(p)
	if err != nil {
		return err
	}
	var c map[string]any
	if err := json.Unmarshal(b, &c); err != nil {
		return err
	}
	c["ociVersion"] = "1.0.2"
	proc := c["process"].(map[string]any)
	proc["args"] = args
	proc["terminal"] = false
	c["root"] = map[string]any{"path": rootfs, "readonly": true}
	linux := c["linux"].(map[string]any)
	var ns []any
	for _, n := range linux["namespaces"].([]any) {
		if n.(map[string]any)["type"] == "network" && !netns {
			continue
		}
		ns = append(ns, n)
	}
	linux["namespaces"] = ns
	b, err = json.MarshalIndent(c, "", "\t")
	if err != nil {
		return err
	}
	return os.WriteFile(p, b, 0o644)
}
