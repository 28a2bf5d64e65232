package build

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"

	"github.com/containerd/errdefs"
	securejoin "github.com/cyphar/filepath-securejoin"
)

// resolveUser turns USER[:GROUP] (names or numbers) into ids with the rootfs's
// /etc/passwd and /etc/group, opened through securejoin because the image's files may be
// symlinks. An empty user is root; a numeric uid missing from passwd keeps gid 0.
func resolveUser(rootfs, user string) (uid, gid uint32, groups []uint32, err error) {
	if user == "" {
		return 0, 0, nil, nil
	}
	u, g, hasGroup := strings.Cut(user, ":")
	passwd := readEntries(rootfs, "/etc/passwd")
	uidKnown := false
	if n, err := strconv.ParseUint(u, 10, 32); err == nil {
		uid, uidKnown = uint32(n), true
	}
	name := ""
	for _, e := range passwd {
		if len(e) < 4 || (uidKnown && e[2] != u) || (!uidKnown && e[0] != u) {
			continue
		}
		n, err1 := strconv.ParseUint(e[2], 10, 32)
		m, err2 := strconv.ParseUint(e[3], 10, 32)
		if err1 != nil || err2 != nil {
			continue
		}
		uid, gid, uidKnown, name = uint32(n), uint32(m), true, e[0]
		break
	}
	if !uidKnown {
		return 0, 0, nil, fmt.Errorf("user %q: not in the image's /etc/passwd: %w", u, errdefs.ErrNotFound)
	}
	grp := readEntries(rootfs, "/etc/group")
	if hasGroup {
		if n, err := strconv.ParseUint(g, 10, 32); err == nil {
			gid = uint32(n)
		} else {
			found := false
			for _, e := range grp {
				if len(e) >= 3 && e[0] == g {
					if n, err := strconv.ParseUint(e[2], 10, 32); err == nil {
						gid, found = uint32(n), true
						break
					}
				}
			}
			if !found {
				return 0, 0, nil, fmt.Errorf("group %q: not in the image's /etc/group: %w", g, errdefs.ErrNotFound)
			}
		}
	} else if name != "" {
		// Supplementary groups, as a login would have them.
		for _, e := range grp {
			if len(e) < 4 {
				continue
			}
			for _, m := range strings.Split(e[3], ",") {
				if m == name {
					if n, err := strconv.ParseUint(e[2], 10, 32); err == nil && uint32(n) != gid {
						groups = append(groups, uint32(n))
					}
				}
			}
		}
	}
	return uid, gid, groups, nil
}

func readEntries(rootfs, name string) [][]string {
	p, err := securejoin.SecureJoin(rootfs, name)
	if err != nil {
		return nil
	}
	f, err := os.Open(p)
	if err != nil {
		return nil
	}
	defer f.Close()
	var out [][]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		out = append(out, strings.Split(line, ":"))
	}
	return out
}
