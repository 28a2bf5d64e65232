package spec

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
)

// ResolveUser turns USER[:GROUP] (names or numbers) into ids using the rootfs's
// /etc/passwd and /etc/group, as docker does. The files are opened through securejoin:
// the image's /etc/passwd may be a symlink, and it must resolve inside the rootfs.
// An empty user is root. A numeric uid missing from passwd keeps gid 0. Unknown names
// are errdefs.ErrInvalidArgument. Shared by `cubo run` and `cubo build` (USER, COPY
// --chown), which must agree.
func ResolveUser(rootfs, user string) (uid, gid uint32, groups []uint32, err error) {
	if user == "" {
		return 0, 0, nil, nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	passwd := readEntries(rootfs, "/etc/passwd")
	grp := readEntries(rootfs, "/etc/group")
	uidSet := false
	if n, err := strconv.ParseUint(u, 10, 32); err == nil {
		uid, uidSet = uint32(n), true
		for _, e := range passwd {
			if len(e) > 3 && e[2] == u {
				u = e[0]
				if n, err := strconv.ParseUint(e[3], 10, 32); err == nil {
					gid = uint32(n)
				}
				break
			}
		}
	} else {
		for _, e := range passwd {
			if len(e) > 3 && e[0] == u {
				n1, err1 := strconv.ParseUint(e[2], 10, 32)
				n2, err2 := strconv.ParseUint(e[3], 10, 32)
				if err1 == nil && err2 == nil {
					uid, gid, uidSet = uint32(n1), uint32(n2), true
				}
				break
			}
		}
	}
	if !uidSet {
		return 0, 0, nil, fmt.Errorf("user %q: no such user in the image's /etc/passwd: %w", user, errdefs.ErrInvalidArgument)
	}
	if hasGroup {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			gid = uint32(n)
		} else {
			found := false
			for _, e := range grp {
				if len(e) > 2 && e[0] == g {
					if n, err := strconv.ParseUint(e[2], 10, 32); err == nil {
						gid, found = uint32(n), true
					}
					break
				}
			}
			if !found {
				return 0, 0, nil, fmt.Errorf("user %q: no such group in the image's /etc/group: %w", user, errdefs.ErrInvalidArgument)
			}
		}
	}
	// Supplementary groups listing the user by name, as login(1) would set them.
	for _, e := range grp {
		if len(e) > 3 && slices.Contains(strings.Split(e[3], ","), u) {
			if n, err := strconv.ParseUint(e[2], 10, 32); err == nil && uint32(n) != gid {
				groups = append(groups, uint32(n))
			}
		}
	}
	return uid, gid, groups, nil
}

// readEntries reads a colon-separated database from the rootfs; a missing or unsafe file
// reads as empty.
func readEntries(rootfs, name string) [][]string {
	p, err := securejoin.SecureJoin(rootfs, name)
	if err != nil {
		return nil
	}
	f, err := os.Open(filepath.Clean(p))
	if err != nil {
		return nil
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(io.LimitReader(f, 4<<20))
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}
