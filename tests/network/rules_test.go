package network_test

import (
	"context"
	"fmt"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/cubo-dev/cubo/network"
)

// The network of the rules tests: a user network of its own, and an "outside" host
// reached through a veth pair that is not the bridge (so traffic to it is forwarded
// and masqueraded, as traffic to the internet is).
const (
	rulesBridge  = "cubot2"
	outsideVeth  = "cubotout0"
	outsideNetns = "cubot-outside"
)

var (
	rulesSubnet = netip.MustParsePrefix("10.75.2.0/24")
	outsideHost = "10.75.3.1" // the host's end of the veth
	outsideAddr = "10.75.3.2" // the outside server
)

// iptablesLines returns the iptables-save lines of table that contain s.
func iptablesLines(t *testing.T, table, s string) []string {
	t.Helper()
	var out []string
	for _, l := range strings.Split(run(t, "iptables-save", "-t", table), "\n") {
		if strings.Contains(l, s) {
			out = append(out, l)
		}
	}
	return out
}

// recordExecs puts wrappers for iptables and friends first in PATH (which libcni passes
// to the plugins, and the controller uses too) that log each call to the returned file,
// then run the real binary.
func recordExecs(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	log := filepath.Join(dir, "calls.log")
	for _, b := range []string{"iptables", "ip6tables", "iptables-restore", "ip6tables-restore", "iptables-save", "ip6tables-save", "iptables-nft", "iptables-legacy"} {
		real, err := exec.LookPath(b)
		if err != nil {
			continue
		}
		w := fmt.Sprintf("#!/bin/sh\necho \"%s $*\" >> %s\nexec %s \"$@\"\n", b, log, real)
		if err := os.WriteFile(filepath.Join(dir, b), []byte(w), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	t.Setenv("PATH", dir+":"+os.Getenv("PATH"))
	return log
}

func readLog(path string) string {
	b, _ := os.ReadFile(path)
	return string(b)
}

// cgiSite is a site whose /cgi-bin/ip answers with the client's address as the server
// sees it (busybox httpd's REMOTE_ADDR).
func cgiSite(t *testing.T) string {
	dir := site(t, "hello\n")
	if err := os.Mkdir(filepath.Join(dir, "cgi-bin"), 0o755); err != nil {
		t.Fatal(err)
	}
	script := "#!/bin/sh\nprintf 'Content-Type: text/plain\\r\\n\\r\\n%s\\n' \"$REMOTE_ADDR\"\n"
	if err := os.WriteFile(filepath.Join(dir, "cgi-bin", "ip"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	return dir
}

// wgetFrom fetches url from inside netns with busybox wget. busybox httpd listens on
// IPv6 and writes an IPv4 client as [::ffff:A.B.C.D]: that is made A.B.C.D.
func wgetFrom(netns, url string) (string, error) {
	out, err := exec.Command("nsenter", "--net="+netns, "busybox", "wget", "-q", "-O", "-", url).CombinedOutput()
	s := strings.TrimSpace(string(out))
	return strings.TrimSuffix(strings.TrimPrefix(s, "[::ffff:"), "]"), err
}

// outside makes the outside host: a namespace with outsideAddr, joined to the host by a
// veth whose host end has outsideHost, serving cgiSite. Removed at cleanup.
func outside(t *testing.T) {
	t.Helper()
	t.Cleanup(func() {
		exec.Command("ip", "link", "del", outsideVeth).Run()
		exec.Command("ip", "netns", "del", outsideNetns).Run()
	})
	run(t, "ip", "netns", "add", outsideNetns)
	run(t, "ip", "link", "add", outsideVeth, "type", "veth", "peer", "name", "eth0", "netns", outsideNetns)
	run(t, "ip", "addr", "add", outsideHost+"/30", "dev", outsideVeth)
	run(t, "ip", "link", "set", outsideVeth, "up")
	run(t, "ip", "-n", outsideNetns, "addr", "add", outsideAddr+"/30", "dev", "eth0")
	run(t, "ip", "-n", outsideNetns, "link", "set", "eth0", "up")
	run(t, "ip", "-n", outsideNetns, "link", "set", "lo", "up")
	httpd(t, "/run/netns/"+outsideNetns, cgiSite(t))
}

// TestNetworkRules: a network's masquerade and FORWARD rules are made by the first
// attachment, not per container; later attachments exec no iptables at all; a
// container reaches a host outside its subnet with its source masqueraded, even with
// a DROP for the bridge's traffic after the network's FORWARD jump; containers on the
// bridge see each other's real addresses; a published port answers a container on the
// bridge through the host's address (hairpin); `system check` finds and repairs
// missing rules; `network rm` removes them.
func TestNetworkRules(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	if _, err := e.c.CreateNetwork("ruled", network.NetworkOptions{Bridge: rulesBridge, Subnet: rulesSubnet}); err != nil {
		t.Fatal(err)
	}
	chain := "CUBO-NAT-" + rulesBridge
	if l := iptablesLines(t, "nat", chain); len(l) > 0 {
		t.Fatalf("rules before the first attachment: %q", l)
	}
	// A DROP for the bridge's forwarded traffic after the network's jump (which is
	// inserted first): what docker's FORWARD policy DROP does, without changing the
	// policy of a machine other tests share.
	for _, dir := range []string{"-i", "-o"} {
		rule := []string{"FORWARD", dir, rulesBridge, "-j", "DROP"}
		run(t, "iptables", append([]string{"-w", "-A"}, rule...)...)
		t.Cleanup(func() { exec.Command("iptables", append([]string{"-w", "-D"}, rule...)...).Run() })
	}
	outside(t)

	calls := recordExecs(t)
	m, _ := network.ParseMode("ruled")
	a, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-ra", Name: "ra", Mode: m})
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(readLog(calls), "iptables-restore") {
		t.Errorf("first attachment did not install the network's rules; calls:\n%s", readLog(calls))
	}
	sub := rulesSubnet.String()
	for _, want := range []struct{ table, rule string }{
		{"nat", "-A POSTROUTING -j " + chain},
		{"nat", fmt.Sprintf("-A %s -s %s ! -d 224.0.0.0/4 ! -o %s -j MASQUERADE", chain, sub, rulesBridge)},
		{"filter", "-A FORWARD -j CUBO-FWD-" + rulesBridge},
		{"filter", fmt.Sprintf("-A CUBO-FWD-%s -s %s -i %s -j ACCEPT", rulesBridge, sub, rulesBridge)},
		{"filter", fmt.Sprintf("-A CUBO-FWD-%s -d %s -o %s -m conntrack --ctstate RELATED,ESTABLISHED -j ACCEPT", rulesBridge, sub, rulesBridge)},
	} {
		found := false
		for _, l := range iptablesLines(t, want.table, rulesBridge) {
			found = found || l == want.rule
		}
		if !found {
			t.Errorf("%s: no %q in\n%s", want.table, want.rule, strings.Join(iptablesLines(t, want.table, rulesBridge), "\n"))
		}
	}
	// No per-container rules: nothing names the container's address.
	for _, table := range []string{"nat", "filter"} {
		if l := iptablesLines(t, table, a.IP.String()+"/32"); len(l) > 0 {
			t.Errorf("%s: rules for the container's address: %q", table, l)
		}
	}

	// The rules are in place: a second container's Setup and Teardown exec no
	// iptables, not even the plugins.
	if err := os.Truncate(calls, 0); err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-rb", Name: "rb", Mode: m}); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Teardown(ctx, "cubot-rb"); err != nil {
		t.Fatal(err)
	}
	if got := readLog(calls); got != "" {
		t.Errorf("a Setup and Teardown on a network with its rules in place exec'd:\n%s", got)
	}

	// Out through the other veth: masqueraded to the host's address there.
	if got, err := wgetFrom(a.NetNS, "http://"+outsideAddr+"/cgi-bin/ip"); err != nil || got != outsideHost {
		t.Errorf("outside server saw the container as %q (%v), want %s (masqueraded)", got, err, outsideHost)
	}
	// Container to container on the bridge: not masqueraded.
	b, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-rb", Name: "rb", Mode: m,
		Ports: []network.PortMapping{{HostPort: 18097, ContainerPort: 80, Protocol: "tcp"}}})
	if err != nil {
		t.Fatal(err)
	}
	httpd(t, b.NetNS, cgiSite(t))
	if got, err := wgetFrom(a.NetNS, "http://"+b.IP.String()+"/cgi-bin/ip"); err != nil || got != a.IP.String() {
		t.Errorf("container rb saw ra as %q (%v), want %s", got, err, a.IP)
	}
	// A published port through the host's address, from a container on the bridge
	// and from the host.
	for _, ns := range []string{a.NetNS, b.NetNS} {
		if got, err := wgetFrom(ns, fmt.Sprintf("http://%s:18097/", hostIP(t))); err != nil || got != "hello" {
			t.Errorf("published port from %s: %q, %v", ns, got, err)
		}
	}
	if body, err := get("http://127.0.0.1:18097/"); err != nil || body != "hello\n" {
		t.Errorf("published port from the host: %q, %v", body, err)
	}

	// Someone flushes the FORWARD jump: system check reports it, repair restores it.
	run(t, "iptables", "-w", "-D", "FORWARD", "-j", "CUBO-FWD-"+rulesBridge)
	found, err := e.c.CheckRules(false)
	if err != nil {
		t.Fatal(err)
	}
	missing := false
	for _, f := range found {
		missing = missing || (!f.Garbage && strings.Contains(f.Problem, `"ruled"`))
	}
	if !missing {
		t.Errorf("check did not find the missing jump: %+v", found)
	}
	if _, err := e.c.CheckRules(true); err != nil {
		t.Fatal(err)
	}
	if l := iptablesLines(t, "filter", "-A FORWARD -j CUBO-FWD-"+rulesBridge); len(l) != 1 {
		t.Errorf("after repair, FORWARD jumps: %q", l)
	}
	if got, err := wgetFrom(a.NetNS, "http://"+outsideAddr+"/cgi-bin/ip"); err != nil || got != outsideHost {
		t.Errorf("after repair: outside server saw %q (%v)", got, err)
	}

	for _, id := range []string{"cubot-ra", "cubot-rb"} {
		if err := e.c.Teardown(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	if l := iptablesLines(t, "nat", chain); len(l) == 0 {
		t.Errorf("the network's rules went with its last container; they belong to the network")
	}
	if err := e.c.RemoveNetwork("ruled"); err != nil {
		t.Fatal(err)
	}
	for _, table := range []string{"nat", "filter"} {
		for _, l := range iptablesLines(t, table, rulesBridge) {
			if !strings.HasSuffix(l, "-j DROP") { // the test's own, removed at cleanup
				t.Errorf("%s: left after network rm: %q", table, l)
			}
		}
	}
}

// TestDefaultNetworkRulesSwept: the default network is never removed; its rules stay
// with its bridge, and once the bridge is gone SweepRules (system check --repair)
// removes them. A Setup after that installs them again.
func TestDefaultNetworkRulesSwept(t *testing.T) {
	e := newEnv(t)
	e.warm("bridge")
	if l := iptablesLines(t, "nat", "CUBO-NAT-"+testBridge); len(l) == 0 {
		t.Fatal("default network has no rules after an attachment")
	}
	run(t, "ip", "link", "del", testBridge)
	found, err := network.SweepRules(true)
	if err != nil {
		t.Fatal(err)
	}
	swept := false
	for _, f := range found {
		swept = swept || (f.Garbage && f.Repaired && strings.Contains(f.Object, "CUBO-NAT-"+testBridge))
	}
	if !swept {
		t.Errorf("sweep findings: %+v", found)
	}
	for _, table := range []string{"nat", "filter"} {
		if l := iptablesLines(t, table, testBridge); len(l) > 0 {
			t.Errorf("%s: left after the sweep: %q", table, l)
		}
	}
	// The marker still says "installed this boot", but the bridge was gone: the next
	// attachment makes the bridge and the rules again.
	e.warm("bridge")
	if l := iptablesLines(t, "filter", "-A FORWARD -j CUBO-FWD-"+testBridge); len(l) != 1 {
		t.Errorf("FORWARD jumps after the bridge came back: %q", l)
	}
}
