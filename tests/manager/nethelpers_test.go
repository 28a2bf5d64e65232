package manager_test

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// The tests' networks: the default one is testBridge on testSubnet (set through
// CUBO_DEFAULT_BRIDGE and CUBO_DEFAULT_SUBNET), user networks are cubom1, cubom2... on
// 10.73.N.0/24. None of it is a real cubo's (cubo0, 10.77/16; 10.78/16) or another
// test package's (cubot*, 10.76/16, 10.75.1/24).
const (
	testBridge = "cubom0"
	testSubnet = "10.73.0.0/24"
)

var netMarkers = []string{"10.73.", "cubom"}

// perContainerChain matches the chains the plugins make for one container (bridge's
// masquerade CNI-<hash>, portmap's CNI-DN-<hash>), whose rules need not name the test.
var perContainerChain = regexp.MustCompile(`^CNI-(DN-)?[0-9a-f]{16,}$`)

// netState is the machine's state of the test networks: their links (cubom* bridges
// and the veths on them) and the iptables rules naming their subnets or bridges, with
// the rules of the per-container chains those jump to. Only the tests' own: other
// packages' tests add and remove their own meanwhile, in chains the plugins share.
type netState struct {
	links, rules []string
}

func netMarked(s string) bool {
	for _, m := range netMarkers {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func snapshotNet(t *testing.T) netState {
	t.Helper()
	var s netState
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		master, _ := os.Readlink("/sys/class/net/" + i.Name + "/master")
		if netMarked(i.Name) || netMarked(filepath.Base(master)) {
			s.links = append(s.links, i.Name)
		}
	}
	for _, table := range []string{"nat", "filter"} {
		out, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			t.Fatalf("iptables-save -t %s: %v", table, err)
		}
		lines := strings.Split(string(out), "\n")
		chains := map[string]bool{}
		for _, l := range lines {
			if !strings.HasPrefix(l, "-A ") || !netMarked(l) {
				continue
			}
			s.rules = append(s.rules, table+" "+l)
			for _, f := range strings.Fields(l) {
				if perContainerChain.MatchString(f) {
					chains[f] = true
				}
			}
		}
		for _, l := range lines {
			f := strings.Fields(l)
			if len(f) > 2 && f[0] == "-A" && chains[f[1]] && !netMarked(l) {
				s.rules = append(s.rules, table+" "+l)
			}
			// A per-container chain left behind, even empty.
			if len(f) > 0 && strings.HasPrefix(f[0], ":") && chains[f[0][1:]] {
				s.rules = append(s.rules, table+" "+f[0])
			}
		}
	}
	slices.Sort(s.links)
	slices.Sort(s.rules)
	return s
}

// added returns what b has and a has not.
func added(a, b []string) []string {
	var out []string
	for _, v := range b {
		if !slices.Contains(a, v) {
			out = append(out, v)
		}
	}
	return out
}

// assertNetClean checks, once every container is removed, that the network controller
// holds nothing (records, namespaces, leases, libcni cache), removes the test's
// networks and bridges, and compares links and iptables rules with how they were.
func (e *env) assertNetClean() {
	t := e.t
	t.Helper()
	nroot := filepath.Join(e.root, "network")
	if _, err := os.Stat(nroot); err != nil {
		return // no container ever had a network here
	}
	for _, pat := range []string{"attach/*", "netns/*", "ipam/*/*.*.*.*", "cache/results/*"} {
		m, _ := filepath.Glob(filepath.Join(nroot, pat))
		for _, p := range m {
			t.Errorf("left behind: network/%s", strings.TrimPrefix(p, nroot+"/"))
		}
	}
	var nets []struct {
		Name   string `json:"name"`
		Bridge string `json:"bridge"`
	}
	out, _, _ := e.run("network", "ls", "--format", "json")
	if err := json.Unmarshal([]byte(out), &nets); err != nil {
		t.Errorf("network ls: %v: %q", err, out)
	}
	for _, n := range nets {
		if n.Name != "cubo" {
			if _, errs, code := e.run("network", "rm", n.Name); code != 0 {
				t.Errorf("network rm %s: %s", n.Name, errs)
			}
		}
	}
	// cubo never deletes the default network's bridge: the test does, when it made it.
	// The network's iptables chains stay with the bridge; once it is gone, `system
	// check --repair` removes them (they are garbage then).
	deleted := false
	for _, n := range nets {
		if _, err := net.InterfaceByName(n.Bridge); err == nil && !slices.Contains(e.net.links, n.Bridge) {
			if out, err := exec.Command("ip", "link", "del", n.Bridge).CombinedOutput(); err != nil {
				t.Errorf("ip link del %s: %v %s", n.Bridge, err, out)
			}
			deleted = true
		}
	}
	if deleted {
		if out, errs, code := e.run("system", "check", "--repair"); code != 0 {
			t.Errorf("system check --repair: exit %d\n%s%s", code, out, errs)
		}
	}
	after := snapshotNet(t)
	for _, c := range []struct {
		what   string
		before []string
		after  []string
	}{{"links", e.net.links, after.links}, {"iptables rules", e.net.rules, after.rules}} {
		if a := added(c.before, c.after); len(a) > 0 {
			t.Errorf("left behind: %s %q", c.what, a)
		}
	}
}
