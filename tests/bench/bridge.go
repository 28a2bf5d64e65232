package main

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
)

// The bridge figures give cubo and podman networks of their own, so the runs
// touch neither cubo0/10.77/16 nor podman's cni-podman0/10.88/16, and the
// cleanup knows exactly what is the harness's.
const (
	cuboBenchBridge   = "cubobb0"
	cuboBenchSubnet   = "10.216.0.0/24"
	podmanBenchBridge = "cubobp0"
	podmanBenchSubnet = "10.217.0.0/24"
)

// podmanBridgeEnv writes a containers.conf whose default network is a CNI
// bridge with the plugins of podman's CNI default network (bridge with
// masquerade, portmap, firewall: the per-container rules cubo's networks used
// too before they had rules of their own), and returns the environment that
// selects it.
func podmanBridgeEnv(dir string) ([]string, error) {
	netDir := filepath.Join(dir, "net")
	if err := os.MkdirAll(netDir, 0o755); err != nil {
		return nil, err
	}
	conf := fmt.Sprintf("[network]\nnetwork_backend = \"cni\"\ncni_plugin_dirs = [\"/usr/lib/cni\", \"/usr/libexec/cni\", \"/opt/cni/bin\"]\n"+
		"network_config_dir = %q\ndefault_network = \"benchnet\"\n", netDir)
	conflist := fmt.Sprintf(`{"cniVersion": "0.4.0", "name": "benchnet", "plugins": [
  {"type": "bridge", "bridge": %q, "isGateway": true, "ipMasq": true, "hairpinMode": true,
   "ipam": {"type": "host-local", "dataDir": %q, "routes": [{"dst": "0.0.0.0/0"}], "ranges": [[{"subnet": %q}]]}},
  {"type": "portmap", "capabilities": {"portMappings": true}},
  {"type": "firewall", "backend": "iptables"}
]}
`, podmanBenchBridge, filepath.Join(dir, "ipam"), podmanBenchSubnet)
	if err := os.WriteFile(filepath.Join(netDir, "benchnet.conflist"), []byte(conflist), 0o644); err != nil {
		return nil, err
	}
	if err := os.WriteFile(filepath.Join(dir, "containers.conf"), []byte(conf), 0o644); err != nil {
		return nil, err
	}
	return append(os.Environ(), "CONTAINERS_CONF="+filepath.Join(dir, "containers.conf")), nil
}

// netState is what the bridge runs may add to the host: the two bridges and
// iptables chains and rules.
type netState struct {
	links map[string]bool
	rules map[string][]string // table -> `iptables -S` lines
}

var benchTables = []string{"filter", "nat"}

func takeNetState() netState {
	s := netState{links: map[string]bool{}, rules: map[string][]string{}}
	for _, l := range []string{cuboBenchBridge, podmanBenchBridge} {
		if _, err := os.Stat("/sys/class/net/" + l); err == nil {
			s.links[l] = true
		}
	}
	for _, t := range benchTables {
		out, _ := exec.Command("iptables", "-w", "-t", t, "-S").Output()
		s.rules[t] = strings.Split(strings.TrimSpace(string(out)), "\n")
	}
	return s
}

// restoreNetState removes the bridges and the iptables chains and rules that
// appeared since before was taken (the CNI plugins remove their per-container
// rules, but the bridges, the firewall plugin's chains and the cubo network's
// CUBO-NAT-/CUBO-FWD- chains stay), and returns what it removed.
func restoreNetState(before netState) []string {
	var done []string
	for _, l := range []string{cuboBenchBridge, podmanBenchBridge} {
		if _, err := os.Stat("/sys/class/net/" + l); err == nil && !before.links[l] {
			if exec.Command("ip", "link", "del", l).Run() == nil {
				done = append(done, "link "+l)
			}
		}
	}
	for _, t := range benchTables {
		out, _ := exec.Command("iptables", "-w", "-t", t, "-S").Output()
		lines := strings.Split(strings.TrimSpace(string(out)), "\n")
		// Chains that appeared are the plugins' (per-container ones and the
		// firewall plugin's CNI-FORWARD/CNI-ADMIN when no one had made them).
		var newChains []string
		for _, r := range lines {
			if f := strings.Fields(r); len(f) == 2 && f[0] == "-N" && !slices.Contains(before.rules[t], r) {
				newChains = append(newChains, f[1])
			}
		}
		ours := func(r string) bool {
			for _, m := range []string{cuboBenchBridge, podmanBenchBridge, "10.216.0.", "10.217.0."} {
				if strings.Contains(r, m) {
					return true
				}
			}
			f := strings.Fields(r)
			for i := 0; i+1 < len(f); i++ {
				if (f[i] == "-j" || f[i] == "-g") && slices.Contains(newChains, f[i+1]) {
					return true
				}
			}
			return false
		}
		for _, r := range lines {
			f := strings.Fields(r)
			if len(f) < 3 || f[0] != "-A" || slices.Contains(before.rules[t], r) || slices.Contains(newChains, f[1]) || !ours(r) {
				continue
			}
			// iptables -S quotes comments as a shell would: let sh split them.
			if exec.Command("sh", "-c", "iptables -w -t "+t+" -D "+strings.TrimPrefix(r, "-A ")).Run() == nil {
				done = append(done, t+": "+r)
			}
		}
		for _, c := range newChains {
			_ = exec.Command("iptables", "-w", "-t", t, "-F", c).Run()
			if exec.Command("iptables", "-w", "-t", t, "-X", c).Run() == nil {
				done = append(done, t+": chain "+c)
			}
		}
	}
	return done
}
