package interop

import (
	"fmt"
	"os"
	"os/exec"
	"strings"
)

// restoreNet undoes what an engine did to the host network and leaves
// behind by design (Docker and CNI's portmap keep their iptables chains,
// bridges outlive the daemons, both turn on ip_forward). Within sc only:
// it deletes the rules added since before; a chain added since before is
// flushed and deleted only when every rule in it is ours (a chain shared
// with concurrent work keeps its jumps); it restores built-in chain
// policies and ip_forward and deletes the given links. It returns what it
// did.
func restoreNet(before snapshot, sc scope, links ...string) []string {
	var done []string
	for _, l := range links {
		if out, err := exec.Command("ip", "-o", "link", "show", "master", l).Output(); err == nil {
			enslavedMu.Lock()
			for _, line := range strings.Split(string(out), "\n") {
				if f := strings.Fields(line); len(f) >= 2 {
					enslavedVeths[strings.SplitN(strings.TrimSuffix(f[1], ":"), "@", 2)[0]] = true
				}
			}
			enslavedMu.Unlock()
		}
		if exec.Command("ip", "link", "show", l).Run() == nil {
			if out, err := exec.Command("ip", "link", "del", l).CombinedOutput(); err != nil {
				done = append(done, fmt.Sprintf("ip link del %s: %v %s", l, err, out))
			} else {
				done = append(done, "link "+l)
			}
		}
	}
	now := takeSnapshot("/nonexistent-marker", "")
	plus, _ := sc.iptChanges(before.ipt, now.ipt)
	ours := map[string]bool{}
	for _, r := range plus {
		ours[r] = true
	}
	beforePolicy := map[string]string{}
	for _, r := range before.ipt {
		if f := strings.Fields(r); len(f) == 3 && strings.HasPrefix(f[1], ":") {
			beforePolicy[f[0]+" "+f[1]] = f[2]
		}
	}
	// Chains we may remove: added, and holding only our rules.
	removable := map[string]bool{} // "*table CHAIN"
	for _, r := range plus {
		if f := strings.Fields(r); len(f) == 3 && strings.HasPrefix(f[1], ":") && f[2] == "-" {
			removable[f[0]+" "+strings.TrimPrefix(f[1], ":")] = true
		}
	}
	for _, r := range now.ipt {
		f := strings.Fields(r)
		if len(f) >= 3 && f[1] == "-A" && !ours[r] {
			delete(removable, f[0]+" "+f[2])
		}
	}
	var order []string
	script := map[string][]string{}
	add := func(table, line string) {
		if script[table] == nil {
			order = append(order, table)
		}
		script[table] = append(script[table], line)
	}
	jumpsTo := func(table, rule string) string {
		f := strings.Fields(rule)
		for i, w := range f {
			if (w == "-j" || w == "-g") && i+1 < len(f) {
				return table + " " + f[i+1]
			}
		}
		return ""
	}
	var drops [][2]string
	for _, r := range plus {
		table, rule, _ := strings.Cut(r, " ")
		f := strings.Fields(rule)
		switch {
		case strings.HasPrefix(rule, "-A "):
			if removable[table+" "+f[1]] {
				continue // flushed below
			}
			if tgt := jumpsTo(table, rule); tgt != "" && strings.HasPrefix(strings.Fields(tgt)[1], "CNI-HOSTPORT") && !removable[tgt] {
				continue // a shared portmap chain stays reachable
			}
			add(table, "-D "+strings.TrimPrefix(rule, "-A "))
		case strings.HasPrefix(rule, ":"):
			name := strings.TrimPrefix(f[0], ":")
			if f[1] == "-" {
				if removable[table+" "+name] {
					drops = append(drops, [2]string{table, name})
				}
				continue
			}
			p := beforePolicy[table+" "+f[0]]
			if p == "" {
				p = "ACCEPT"
			}
			if err := exec.Command("iptables", "-t", strings.TrimPrefix(table, "*"), "-P", name, p).Run(); err != nil {
				done = append(done, fmt.Sprintf("iptables -P %s %s: %v", name, p, err))
			} else {
				done = append(done, fmt.Sprintf("iptables %s policy %s %s", table, name, p))
			}
		}
	}
	for _, d := range drops {
		add(d[0], "-F "+d[1])
	}
	for _, d := range drops {
		add(d[0], "-X "+d[1])
	}
	for _, table := range order {
		// One line per restore: a rule already gone must not block the rest.
		for _, l := range script[table] {
			cmd := exec.Command("iptables-restore", "--noflush")
			cmd.Stdin = strings.NewReader(table + "\n" + l + "\nCOMMIT\n")
			if out, err := cmd.CombinedOutput(); err != nil {
				done = append(done, fmt.Sprintf("iptables %s %s: %v %s", table, l, err, out))
			}
		}
		done = append(done, fmt.Sprintf("iptables %s: %d ops", table, len(script[table])))
	}
	if now.ipfwd != before.ipfwd && before.ipfwd != "" {
		os.WriteFile("/proc/sys/net/ipv4/ip_forward", []byte(before.ipfwd), 0)
		done = append(done, "net.ipv4.ip_forward="+before.ipfwd)
	}
	return done
}
