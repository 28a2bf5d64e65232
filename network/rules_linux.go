package network

import (
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
)

// A bridge network's iptables rules are cubo's own, one set per network (per bridge),
// not per container, as docker does for docker0: the CNI bridge plugin's ipMasq and the
// firewall plugin made a chain or rules per container at every ADD and DEL, 29 iptables
// executions per `cubo run --rm` that cost more than the rest of the run.
//
//	nat:    POSTROUTING -j CUBO-NAT-<bridge>
//	        CUBO-NAT-<bridge> -s SUBNET ! -o BRIDGE ! -d 224.0.0.0/4 -j MASQUERADE
//	filter: FORWARD (first) -j CUBO-FWD-<bridge>
//	        CUBO-FWD-<bridge> -s SUBNET -i BRIDGE -j ACCEPT
//	        CUBO-FWD-<bridge> -d SUBNET -o BRIDGE -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT
//
// The masquerade spares traffic that stays on the bridge (container to container keeps
// its source address) and multicast, as the bridge plugin's did. The FORWARD rules
// accept what the firewall plugin accepted for each container address (everything
// from it, replies to it), for the bridge's subnet as a whole and only through the
// bridge; new connections into the bridge are not accepted (published ports are
// DNAT'd by portmap; under a FORWARD DROP policy they are reachable from the host
// only, as with the firewall plugin).
//
// The chains are named by bridge, not by network, because the bridge is the kernel
// object: two root dirs whose default network uses the same bridge share one set.
// Chain names are at most 9+15 characters, under iptables' 28.
const (
	natChainPrefix = "CUBO-NAT-"
	fwdChainPrefix = "CUBO-FWD-"
	// rulesLockPath serializes rule changes across root dirs (the controller's own
	// lock is per root dir): without it two cubos could both find a jump missing and
	// both insert it.
	rulesLockPath = "/run/cubo/network-rules.lock"
)

func natChain(bridge string) string { return natChainPrefix + bridge }
func fwdChain(bridge string) string { return fwdChainPrefix + bridge }

// jumps are the rules in the built-in chains that lead to a bridge's chains.
func jumps(bridge string) [][]string {
	return [][]string{
		{"nat", "POSTROUTING", "-j", natChain(bridge)},
		{"filter", "FORWARD", "-j", fwdChain(bridge)},
	}
}

// chainRules are the rules in n's two chains, each as table, chain, rule spec.
func chainRules(n Network) [][]string {
	br, sub := n.Bridge, n.Subnet.Masked().String()
	return [][]string{
		{"nat", natChain(br), "-s", sub, "!", "-o", br, "!", "-d", "224.0.0.0/4", "-j", "MASQUERADE"},
		{"filter", fwdChain(br), "-s", sub, "-i", br, "-j", "ACCEPT"},
		{"filter", fwdChain(br), "-d", sub, "-o", br, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
	}
}

// rulesLock takes the machine-wide lock of cubo's network rules.
func rulesLock() (func(), error) {
	if err := os.MkdirAll(filepath.Dir(rulesLockPath), 0o700); err != nil {
		return nil, fmt.Errorf("network rules lock: %w", err)
	}
	unlock, err := lockFile(rulesLockPath)
	if err != nil {
		return nil, fmt.Errorf("network rules lock: %w", err)
	}
	return unlock, nil
}

// ensureRules installs n's rules, idempotently: iptables-restore --noflush rewrites
// the two chains whole (declaring a chain flushes it), and the jumps are added only
// when `iptables -C` does not find them.
func ensureRules(n Network) error {
	unlock, err := rulesLock()
	if err != nil {
		return err
	}
	defer unlock()
	br := n.Bridge
	// Declaring a chain (":CHAIN - [0:0]") creates or flushes it.
	var in strings.Builder
	for _, t := range []struct{ table, chain string }{{"nat", natChain(br)}, {"filter", fwdChain(br)}} {
		fmt.Fprintf(&in, "*%s\n:%s - [0:0]\n", t.table, t.chain)
		for _, r := range chainRules(n) {
			if r[0] == t.table {
				fmt.Fprintf(&in, "-A %s\n", strings.Join(r[1:], " "))
			}
		}
		in.WriteString("COMMIT\n")
	}
	cmd := exec.Command("iptables-restore", "-w", "--noflush")
	cmd.Stdin = strings.NewReader(in.String())
	if out, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("network %q: install rules: iptables-restore: %w: %s", n.Name, err, strings.TrimSpace(string(out)))
	}
	for _, j := range jumps(br) {
		table, rule := j[0], j[1:]
		if iptablesT(table, append([]string{"-C"}, rule...)...) == nil {
			continue
		}
		// FORWARD: first, so that a DROP rule or policy (docker's) after it does not
		// see the bridge's traffic; POSTROUTING: last is enough, MASQUERADE and the
		// portmap plugin's masquerade both only apply to their own traffic.
		op := []string{"-A", rule[0]}
		if rule[0] == "FORWARD" {
			op = []string{"-I", rule[0], "1"}
		}
		if err := iptablesT(table, append(op, rule[1:]...)...); err != nil {
			return fmt.Errorf("network %q: install rules: %w", n.Name, err)
		}
	}
	return nil
}

// removeRules deletes bridge's chains and the jumps to them; what is already gone is
// not an error.
func removeRules(bridge string) error {
	unlock, err := rulesLock()
	if err != nil {
		return err
	}
	defer unlock()
	return removeRulesLocked(bridge)
}

func removeRulesLocked(bridge string) error {
	var errs []error
	for _, j := range jumps(bridge) {
		table, rule := j[0], j[1:]
		// A loop: a jump added twice by hand, or by a cubo without the rules lock.
		for i := 0; i < 8 && iptablesT(table, append([]string{"-C"}, rule...)...) == nil; i++ {
			if err := iptablesT(table, append([]string{"-D"}, rule...)...); err != nil {
				errs = append(errs, err)
				break
			}
		}
		if err := deleteChain(table, rule[len(rule)-1]); err != nil {
			errs = append(errs, err)
		}
	}
	return errors.Join(errs...)
}

// deleteRule deletes rule (chain first) from table if it is there.
func deleteRule(table string, rule ...string) error {
	if iptablesT(table, append([]string{"-C"}, rule...)...) != nil {
		return nil
	}
	return iptablesT(table, append([]string{"-D"}, rule...)...)
}

// deleteChain flushes and deletes chain in table if it exists.
func deleteChain(table, chain string) error {
	if iptablesT(table, "-n", "-L", chain) != nil {
		return nil
	}
	if err := iptablesT(table, "-F", chain); err != nil {
		return err
	}
	return iptablesT(table, "-X", chain)
}

// iptablesT runs iptables on table; -w waits for the xtables lock the CNI plugins
// take too, instead of failing.
func iptablesT(table string, args ...string) error {
	out, err := exec.Command("iptables", append([]string{"-w", "-t", table}, args...)...).CombinedOutput()
	if err != nil {
		return fmt.Errorf("iptables -t %s %s: %w: %s", table, strings.Join(args, " "), err, strings.TrimSpace(string(out)))
	}
	return nil
}

// bootID identifies this boot: iptables rules do not survive a reboot, the marker
// written with them must not either.
func bootID() string {
	b, _ := os.ReadFile("/proc/sys/kernel/random/boot_id")
	return strings.TrimSpace(string(b))
}

func (c *Controller) rulesMarker(name string) string {
	return filepath.Join(c.root, "rules", name)
}

// markerText is what the marker of n holds: the boot and what the rules were made for,
// so a network re-created under the same name with another bridge or subnet, or a
// reboot, makes it stale.
func markerText(n Network, boot string) []byte {
	return []byte(fmt.Sprintf("%s %s %s\n", boot, n.Bridge, n.Subnet.Masked()))
}

// rulesFresh reports whether n's rules were installed in this boot for its bridge and
// subnet and its bridge still exists: the hot path's whole check, three small reads
// and no exec. A bridge that is gone (deleted by hand, by a test, or by another root
// dir's `network rm`) may have taken its rules with it (SweepRules removes the chains
// of missing bridges), so its rules are ensured again.
func (c *Controller) rulesFresh(n Network) bool {
	b, err := os.ReadFile(c.rulesMarker(n.Name))
	if err != nil || !bytes.Equal(b, markerText(n, bootID())) {
		return false
	}
	_, err = os.Stat("/sys/class/net/" + n.Bridge)
	return err == nil
}

// ensureRulesLocked installs n's rules and writes the marker that lets later runs skip
// them. The marker is written after the rules, so a cubo killed in between only makes
// the next run ensure them again.
func (c *Controller) ensureRulesLocked(n Network) error {
	if err := ensureRules(n); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Join(c.root, "rules"), 0o700); err != nil {
		return fmt.Errorf("network %q: rules marker: %w", n.Name, err)
	}
	return writeFileAtomic(c.rulesMarker(n.Name), markerText(n, bootID()))
}

// removeRulesLocked forgets n's marker, then removes its rules. Marker first: a cubo
// killed in between leaves rules without a marker (ensured again, or swept once the
// bridge is gone), never a marker that claims rules that are not there.
func (c *Controller) removeRulesLocked(n Network) error {
	if err := os.Remove(c.rulesMarker(n.Name)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("network %q: remove rules marker: %w", n.Name, err)
	}
	return removeRules(n.Bridge)
}

// RulesFinding is one problem CheckRules found with cubo's network rules.
type RulesFinding struct {
	// Object names the rules ("iptables chains CUBO-NAT-cubo1, CUBO-FWD-cubo1").
	Object  string
	Problem string
	// Garbage: harmless leftovers (chains of a bridge that is gone); otherwise the
	// network's forwarding or masquerade is broken.
	Garbage  bool
	Repaired bool
}

// CheckRules finds the rules of this root's networks that a marker says are installed
// but are not (someone flushed them: the containers lose their way out), and, on the
// whole machine, cubo chains whose bridge no longer exists (left when a bridge was
// deleted by hand or by a test; a removed network takes its rules along). With repair
// it installs the missing rules and deletes the stale chains.
func (c *Controller) CheckRules(repair bool) ([]RulesFinding, error) {
	unlock, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	out, err := SweepRules(repair)
	if err != nil {
		return nil, err
	}
	nets, err := c.networks()
	if err != nil {
		return nil, err
	}
	for _, n := range nets {
		if !c.rulesFresh(n) {
			continue // ensured by the next run on it
		}
		installed, err := rulesInstalled(n)
		if err != nil {
			return nil, err
		}
		if installed {
			continue
		}
		f := RulesFinding{Object: fmt.Sprintf("iptables chains %s, %s", natChain(n.Bridge), fwdChain(n.Bridge)),
			Problem: fmt.Sprintf("rules of network %q (bridge %s) are missing: its containers cannot reach the outside", n.Name, n.Bridge)}
		if repair {
			f.Repaired = c.ensureRulesLocked(n) == nil
		}
		out = append(out, f)
	}
	return out, nil
}

// rulesInstalled reports whether every rule of n is in place.
func rulesInstalled(n Network) (bool, error) {
	for _, r := range append(jumps(n.Bridge), chainRules(n)...) {
		if iptablesT(r[0], append([]string{"-C"}, r[1:]...)...) != nil {
			return false, nil
		}
	}
	return true, nil
}

// cuboChains returns the bridges that have a cubo chain in the nat or filter table,
// from iptables-save.
func cuboChains() (map[string]bool, error) {
	out := map[string]bool{}
	for _, t := range []string{"nat", "filter"} {
		b, err := exec.Command("iptables-save", "-t", t).Output()
		if errors.Is(err, exec.ErrNotFound) {
			return out, nil // no iptables, no rules of cubo's
		}
		if err != nil {
			return nil, fmt.Errorf("iptables-save -t %s: %w", t, err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			name, ok := strings.CutPrefix(strings.Fields(l + " x")[0], ":")
			if !ok {
				continue
			}
			for _, p := range []string{natChainPrefix, fwdChainPrefix} {
				if br, ok := strings.CutPrefix(name, p); ok && br != "" {
					out[br] = true
				}
			}
		}
	}
	return out, nil
}

// SweepRules finds cubo's chains whose bridge does not exist (on the whole machine:
// they belong to no root dir in particular, and rules for a missing bridge do nothing
// but masquerade what may come from its subnet elsewhere) and, with repair, deletes
// them. It holds the machine-wide rules lock, so a cubo installing a network's rules
// (always after its bridge exists) is never swept half-way.
func SweepRules(repair bool) ([]RulesFinding, error) {
	unlock, err := rulesLock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	have, err := cuboChains()
	if err != nil {
		return nil, err
	}
	var out []RulesFinding
	for br := range have {
		if _, err := os.Stat("/sys/class/net/" + br); err == nil {
			continue
		}
		f := RulesFinding{Object: fmt.Sprintf("iptables chains %s, %s", natChain(br), fwdChain(br)),
			Problem: fmt.Sprintf("rules of bridge %s, which no longer exists", br), Garbage: true}
		if repair {
			f.Repaired = removeRulesLocked(br) == nil
		}
		out = append(out, f)
	}
	return out, nil
}
