package network

import (
	"context"
	"encoding/json"
	"net/netip"
	"os"
	"os/exec"
	"strings"
	"testing"

	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
)

// oldConfBytes is the conflist cubo wrote before networks had rules of their own: the
// bridge plugin masquerading per container, and the firewall plugin.
func oldConfBytes(t *testing.T, n Network, ipamDir string) []byte {
	t.Helper()
	b, err := confBytes(n, ipamDir)
	if err != nil {
		t.Fatal(err)
	}
	var l conflist
	if err := json.Unmarshal(b, &l); err != nil {
		t.Fatal(err)
	}
	var br map[string]any
	if err := json.Unmarshal(l.Plugins[0], &br); err != nil {
		t.Fatal(err)
	}
	br["ipMasq"] = true
	l.Plugins[0], _ = json.Marshal(br)
	l.Plugins = append(l.Plugins, json.RawMessage(`{"type":"firewall","backend":"iptables"}`))
	out, _ := json.Marshal(l)
	return out
}

func rulesNaming(t *testing.T, marks ...string) []string {
	t.Helper()
	var out []string
	for _, table := range []string{"nat", "filter"} {
		b, err := exec.Command("iptables-save", "-t", table).Output()
		if err != nil {
			t.Fatal(err)
		}
		for _, l := range strings.Split(string(b), "\n") {
			for _, m := range marks {
				if strings.HasPrefix(l, "-A ") && strings.Contains(l, m) {
					out = append(out, table+" "+l)
					break
				}
			}
		}
	}
	return out
}

// TestOldConflistUpgrade (bridge cubou8, 10.70.8.0/24 and cubou-* IDs: names no other
// test package watches, since packages run at the same time): a container attached by an older cubo, with the conflist
// that masqueraded per container and ran the firewall plugin, is torn down fully (its
// namespace gone, the hardest case) after the conflist was rewritten for a new
// container; the new container gets no per-container rules.
func TestOldConflistUpgrade(t *testing.T) {
	if testing.Short() || os.Geteuid() != 0 {
		t.Skip("needs root and the CNI plugins")
	}
	for _, p := range []string{"/usr/lib/cni/bridge", "/usr/lib/cni/firewall", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback"} {
		if _, err := os.Stat(p); err != nil {
			t.Skipf("%s missing", p)
		}
	}
	const bridge = "cubou8"
	subnet := netip.MustParsePrefix("10.70.8.0/24")
	root := t.TempDir()
	c, err := New(root, WithDefaultNetwork(bridge, subnet))
	if err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	t.Cleanup(func() {
		if err := c.Reconcile(ctx, nil); err != nil {
			t.Errorf("reconcile: %v", err)
		}
		_ = deleteLink(bridge)
		if _, err := SweepRules(true); err != nil {
			t.Errorf("sweep: %v", err)
		}
		if l := rulesNaming(t, bridge, "10.70.8.", "cubou-old", "cubou-new"); len(l) > 0 {
			t.Errorf("left behind: %q", l)
		}
	})
	n, err := c.Network("")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.Path, oldConfBytes(t, n, root+"/ipam"), 0o600); err != nil {
		t.Fatal(err)
	}

	// What the older cubo's Setup did: record, namespace, ADD with the old list.
	old := &Attachment{ID: "cubou-old", Mode: Mode{Kind: ModeBridge, Network: n.Name}, Network: n.Name, NetNS: c.NetnsPath("cubou-old"), OwnsNetns: true}
	if err := c.saveAttachment(old); err != nil {
		t.Fatal(err)
	}
	if err := newNetns(old.NetNS); err != nil {
		t.Fatal(err)
	}
	list, err := libcni.ConfListFromFile(n.Path)
	if err != nil {
		t.Fatal(err)
	}
	res, err := c.cni.AddNetworkList(ctx, list, c.runtimeConf(old))
	if err != nil {
		t.Fatal(err)
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil || len(r.IPs) == 0 {
		t.Fatalf("result %v, %v", r, err)
	}
	old.IP, _ = netip.AddrFromSlice(r.IPs[0].Address.IP.To4())
	old.Complete = true
	if err := c.saveAttachment(old); err != nil {
		t.Fatal(err)
	}
	ip32 := old.IP.String() + "/32"
	if l := rulesNaming(t, ip32); len(l) < 3 {
		t.Fatalf("the old list made no per-container rules: %q", l)
	}

	// A new container: the conflist is rewritten, the network's rules made, and
	// nothing is made for the new container's address.
	a, err := c.Setup(ctx, SetupOptions{ID: "cubou-new"})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(n.Path)
	if perContainerRules(b) {
		t.Errorf("conflist not rewritten:\n%s", b)
	}
	if l := rulesNaming(t, a.IP.String()+"/32"); len(l) > 0 {
		t.Errorf("per-container rules for the new container: %q", l)
	}
	if l := rulesNaming(t, "CUBO-NAT-"+bridge); len(l) == 0 {
		t.Error("no network rules after the new container's Setup")
	}

	// The old container's namespace is gone (a reboot would do that too): its DEL
	// runs with the cached old list, and teardownMasq removes the masquerade chain
	// the bridge plugin cannot find without the interface.
	if err := removeNetns(old.NetNS); err != nil {
		t.Fatal(err)
	}
	for _, id := range []string{"cubou-old", "cubou-new"} {
		if err := c.Teardown(ctx, id); err != nil {
			t.Fatalf("teardown %s: %v", id, err)
		}
	}
	if l := rulesNaming(t, ip32, "cubou-old"); len(l) > 0 {
		t.Errorf("old container's rules left: %q", l)
	}
}
