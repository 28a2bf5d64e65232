// Package network_test exercises package network as root against the real kernel:
// network namespaces, veths on a bridge, iptables through Debian's CNI plugins, and
// busybox httpd/wget inside the namespaces. Every test checks that links, iptables
// rules, address leases and namespace mounts are back as they were.
package network_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/cubo-dev/cubo/network"
)

// Test networks stay off the real default (cubo0, 10.77.0.0/16) so a cubo in use on
// the machine is not disturbed.
const (
	testBridge = "cubot0"
	testUser   = "cubot1"
)

var testSubnet = netip.MustParsePrefix("10.76.0.0/16")

func requireNet(t *testing.T) {
	t.Helper()
	if testing.Short() {
		t.Skip("network tests need root and the kernel; skipped with -short")
	}
	if os.Geteuid() != 0 {
		t.Skip("network tests need root")
	}
	for _, p := range []string{"/usr/lib/cni/bridge", "/usr/lib/cni/portmap", "/usr/lib/cni/host-local", "/usr/lib/cni/loopback"} {
		if _, err := os.Stat(p); err != nil {
			t.Fatalf("%s missing: apt-get install containernetworking-plugins", p)
		}
	}
	for _, b := range []string{"iptables", "iptables-save", "iptables-restore", "ip", "nsenter", "unshare", "busybox"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Fatalf("%s missing: apt-get install iptables iproute2 util-linux busybox-static", b)
		}
	}
}

func run(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, err := exec.Command(name, args...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return string(out)
}

// state is what the tests compare before and after: this test's links (cubot*
// bridges and the veths on them), this test's iptables rules (those naming its subnets,
// bridges or cubot-* container IDs, and the chains they use), address leases and
// namespace files. Only this test's: other tests on the machine (podman's, say) add
// and remove their own links and rules meanwhile, in chains CNI plugins share.
type state struct {
	links, rules, leases, netns []string
}

var markers = []string{"10.76.", "10.75.", "cubot"}

// perContainerChain matches the chains plugins make for one container (bridge's
// masquerade CNI-<hash>, portmap's CNI-DN-<hash>), whose rules need not name the test.
var perContainerChain = regexp.MustCompile(`^CNI-(DN-)?[0-9a-f]{16,}$`)

func marked(s string) bool {
	for _, m := range markers {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

func snapshot(t *testing.T, root string) state {
	t.Helper()
	var s state
	ifs, err := net.Interfaces()
	if err != nil {
		t.Fatal(err)
	}
	for _, i := range ifs {
		master, _ := os.Readlink("/sys/class/net/" + i.Name + "/master")
		if marked(i.Name) || marked(filepath.Base(master)) {
			s.links = append(s.links, i.Name)
		}
	}
	for _, table := range []string{"nat", "filter"} {
		var rules []string
		chains := map[string]bool{}
		for _, l := range strings.Split(run(t, "iptables-save", "-t", table), "\n") {
			if !strings.HasPrefix(l, "-A ") || !marked(l) {
				continue
			}
			rules = append(rules, table+" "+l)
			f := strings.Fields(l)
			for _, c := range f {
				if perContainerChain.MatchString(c) {
					chains[c] = true
				}
			}
		}
		for _, l := range strings.Split(run(t, "iptables-save", "-t", table), "\n") {
			f := strings.Fields(l)
			switch {
			case len(f) > 2 && f[0] == "-A" && chains[f[1]] && !marked(l):
				rules = append(rules, table+" "+l)
			}
		}
		s.rules = append(s.rules, rules...)
	}
	s.leases = globNames(t, filepath.Join(root, "ipam", "*", "*.*.*.*"))
	s.netns = globNames(t, filepath.Join(root, "netns", "*"))
	for _, l := range [][]string{s.links, s.rules, s.leases, s.netns} {
		sort.Strings(l)
	}
	return s
}

func globNames(t *testing.T, pattern string) []string {
	m, err := filepath.Glob(pattern)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

func diff(a, b []string) (gone, added []string) {
	in := func(l []string, v string) bool {
		i := sort.SearchStrings(l, v)
		return i < len(l) && l[i] == v
	}
	for _, v := range a {
		if !in(b, v) {
			gone = append(gone, v)
		}
	}
	for _, v := range b {
		if !in(a, v) {
			added = append(added, v)
		}
	}
	return gone, added
}

func requireSame(t *testing.T, what string, before, after state) {
	t.Helper()
	for _, c := range []struct {
		name string
		a, b []string
	}{{"links", before.links, after.links}, {"iptables", before.rules, after.rules}, {"leases", before.leases, after.leases}, {"netns", before.netns, after.netns}} {
		if gone, added := diff(c.a, c.b); len(gone)+len(added) > 0 {
			t.Errorf("%s: %s changed: gone %q, added %q", what, c.name, gone, added)
		}
	}
}

// env is one test's controller with its cleanup: attachments reconciled away, networks
// removed, bridges deleted (and the default network's rules with its bridge), and the
// machine compared with how it was. The chains the
// plugins share (CNI-HOSTPORT-*, CNI-FORWARD, CNI-ADMIN) stay, as they do with podman,
// which uses the same ones.
type env struct {
	t    *testing.T
	c    *network.Controller
	root string
}

func newEnv(t *testing.T) *env {
	t.Helper()
	requireNet(t)
	root := t.TempDir()
	before := snapshot(t, root)
	c, err := network.New(root, network.WithDefaultNetwork(testBridge, testSubnet))
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, c: c, root: root}
	t.Cleanup(func() {
		ctx := context.Background()
		if err := c.Reconcile(ctx, nil); err != nil {
			t.Errorf("reconcile at cleanup: %v", err)
		}
		nets, err := c.Networks()
		if err != nil {
			t.Error(err)
		}
		for _, n := range nets {
			if n.Name != network.DefaultNetwork {
				if err := c.RemoveNetwork(n.Name); err != nil {
					t.Errorf("remove network %s: %v", n.Name, err)
				}
			}
		}
		exec.Command("ip", "link", "del", testBridge).Run()
		// The default network's rules stay with its bridge; with the bridge gone,
		// the sweep (`system check --repair`) removes them.
		if _, err := network.SweepRules(true); err != nil {
			t.Errorf("sweep network rules: %v", err)
		}
		requireSame(t, "after the test", before, snapshot(t, root))
	})
	return e
}

// warm attaches and detaches once, so that the bridge and the plugins' shared chains
// exist and later snapshots show only what each attachment adds.
func (e *env) warm(net string) {
	e.t.Helper()
	m, _ := network.ParseMode(net)
	if _, err := e.c.Setup(context.Background(), network.SetupOptions{ID: "cubot-warm", Mode: m, Ports: []network.PortMapping{{HostPort: 1, ContainerPort: 1, Protocol: "tcp"}}}); err != nil {
		e.t.Fatalf("warm up: %v", err)
	}
	if err := e.c.Teardown(context.Background(), "cubot-warm"); err != nil {
		e.t.Fatalf("warm up: %v", err)
	}
}

// httpd serves dir's files on port 80 inside the namespace; stopped at cleanup by PID.
func httpd(t *testing.T, netns, dir string) {
	t.Helper()
	cmd := exec.Command("nsenter", "--net="+netns, "busybox", "httpd", "-f", "-p", "80", "-h", dir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	// Wait for the listener from inside the namespace: a connect that succeeds, not a sleep.
	for i := 0; ; i++ {
		if exec.Command("nsenter", "--net="+netns, "busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1/").Run() == nil {
			return
		}
		if i == 500 {
			t.Fatal("httpd did not listen")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func get(url string) (string, error) {
	cl := http.Client{Timeout: 10 * time.Second}
	r, err := cl.Get(url)
	if err != nil {
		return "", err
	}
	defer r.Body.Close()
	b, err := io.ReadAll(r.Body)
	return string(b), err
}

func hostIP(t *testing.T) netip.Addr {
	t.Helper()
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 || i.Flags&net.FlagUp == 0 || strings.HasPrefix(i.Name, "cubo") {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if p, err := netip.ParsePrefix(a.String()); err == nil && p.Addr().Is4() {
				return p.Addr()
			}
		}
	}
	t.Skip("no non-loopback IPv4 address on this host")
	return netip.Addr{}
}

func site(t *testing.T, body string) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

func TestPublishLocalhostAndHostIP(t *testing.T) {
	e := newEnv(t)
	e.warm("bridge")
	clean := snapshot(t, e.root)
	ctx := context.Background()
	ports, err := network.ParsePublishes([]string{"18080:80", "127.0.0.1:18081:80/tcp", "18082:80/udp"})
	if err != nil {
		t.Fatal(err)
	}
	files := t.TempDir()
	a, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-web", Name: "web", Hostname: "web", Ports: ports, FilesDir: files})
	if err != nil {
		t.Fatal(err)
	}
	if !testSubnet.Contains(a.IP) || a.Gateway != testSubnet.Addr().Next() || a.MAC == "" || !network.IsNetns(a.NetNS) {
		t.Fatalf("attachment %+v", a)
	}
	httpd(t, a.NetNS, site(t, "hello from web\n"))
	for _, url := range []string{
		"http://127.0.0.1:18080/",
		"http://127.0.0.1:18081/",
		fmt.Sprintf("http://%s:18080/", hostIP(t)),
		fmt.Sprintf("http://%s/", a.IP),
	} {
		if body, err := get(url); err != nil || body != "hello from web\n" {
			t.Errorf("GET %s: %q, %v", url, body, err)
		}
	}
	// The same through curl and busybox wget, as a person would check it (no -T: busybox
	// 1.35's wget crashes with it).
	for _, cmd := range [][]string{
		{"curl", "-sS", "--max-time", "10", "http://127.0.0.1:18080/"},
		{"busybox", "wget", "-q", "-O", "-", fmt.Sprintf("http://%s:18080/", hostIP(t))},
	} {
		if _, err := exec.LookPath(cmd[0]); err != nil {
			continue
		}
		if out, err := exec.Command(cmd[0], cmd[1:]...).CombinedOutput(); err != nil || string(out) != "hello from web\n" {
			t.Errorf("%s: %q, %v", strings.Join(cmd, " "), out, err)
		}
	}
	// 18081 is published on 127.0.0.1 only.
	if _, err := get(fmt.Sprintf("http://%s:18081/", hostIP(t))); err == nil {
		t.Errorf("port published on 127.0.0.1 answers on the host IP")
	}
	hosts, _ := os.ReadFile(filepath.Join(files, "hosts"))
	if !strings.Contains(string(hosts), a.IP.String()+"\tweb\n") {
		t.Errorf("hosts file:\n%s", hosts)
	}
	if err := e.c.Teardown(ctx, "cubot-web"); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Teardown(ctx, "cubot-web"); err != nil {
		t.Fatalf("second teardown: %v", err)
	}
	requireSame(t, "after teardown", clean, snapshot(t, e.root))
	if _, err := get("http://127.0.0.1:18080/"); err == nil {
		t.Errorf("port still answers after teardown")
	}
}

func TestPortTakenRefusedBeforeSetup(t *testing.T) {
	e := newEnv(t)
	e.warm("bridge")
	clean := snapshot(t, e.root)
	ctx := context.Background()
	l, err := net.Listen("tcp4", "0.0.0.0:18090")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	_, err = e.c.Setup(ctx, network.SetupOptions{ID: "cubot-taken", Ports: []network.PortMapping{{HostPort: 18090, ContainerPort: 80, Protocol: "tcp"}}})
	if !errors.Is(err, network.ErrPortInUse) {
		t.Fatalf("want ErrPortInUse, got %v", err)
	}
	t.Logf("error: %v", err)
	requireSame(t, "after refused setup", clean, snapshot(t, e.root))

	// A port another container published is a DNAT rule, not a socket: refused too.
	if _, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-first", Name: "first", Ports: []network.PortMapping{{HostPort: 18091, ContainerPort: 80, Protocol: "tcp"}}}); err != nil {
		t.Fatal(err)
	}
	_, err = e.c.Setup(ctx, network.SetupOptions{ID: "cubot-second", Ports: []network.PortMapping{{HostPort: 18091, ContainerPort: 8080, Protocol: "tcp"}}})
	if !errors.Is(err, network.ErrPortInUse) || !strings.Contains(err.Error(), "first") {
		t.Fatalf("want ErrPortInUse naming first, got %v", err)
	}
	if err := e.c.Teardown(ctx, "cubot-first"); err != nil {
		t.Fatal(err)
	}
	requireSame(t, "after teardown", clean, snapshot(t, e.root))
}

func TestUserNetworkByName(t *testing.T) {
	e := newEnv(t)
	ctx := context.Background()
	n, err := e.c.CreateNetwork("backend", network.NetworkOptions{Bridge: testUser, Subnet: netip.MustParsePrefix("10.75.1.0/24")})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := e.c.CreateNetwork("backend", network.NetworkOptions{}); err == nil {
		t.Fatal("second create of the same network succeeded")
	}
	if _, err := e.c.CreateNetwork("clash", network.NetworkOptions{Subnet: n.Subnet}); err == nil {
		t.Fatal("overlapping subnet accepted")
	}
	e.warm("backend")
	clean := snapshot(t, e.root)

	m, _ := network.ParseMode("backend")
	fa, fb := t.TempDir(), t.TempDir()
	a, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-ida", Name: "alpha", Hostname: "alpha", Mode: m, FilesDir: fa})
	if err != nil {
		t.Fatal(err)
	}
	b, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-idb", Name: "beta", Hostname: "beta", Mode: m, FilesDir: fb})
	if err != nil {
		t.Fatal(err)
	}
	if !n.Subnet.Contains(a.IP) || !n.Subnet.Contains(b.IP) {
		t.Fatalf("addresses %s %s outside %s", a.IP, b.IP, n.Subnet)
	}
	if err := e.c.RemoveNetwork("backend"); err == nil {
		t.Fatal("removed a network in use")
	}
	httpd(t, b.NetNS, site(t, "beta here\n"))
	// alpha's hosts file was rewritten in place when beta joined: wget in alpha's
	// namespace with alpha's hosts file as /etc/hosts finds beta by name.
	wget := fmt.Sprintf("mount --bind %s /etc/hosts && busybox wget -q -O - http://beta/", filepath.Join(fa, "hosts"))
	out, err := exec.Command("nsenter", "--net="+a.NetNS, "unshare", "--mount", "sh", "-c", wget).CombinedOutput()
	if err != nil || string(out) != "beta here\n" {
		hosts, _ := os.ReadFile(filepath.Join(fa, "hosts"))
		t.Fatalf("wget http://beta/ from alpha: %v: %q\nhosts:\n%s", err, out, hosts)
	}
	hb, _ := os.ReadFile(filepath.Join(fb, "hosts"))
	if !strings.Contains(string(hb), a.IP.String()+"\talpha\n") {
		t.Errorf("beta's hosts file lacks alpha:\n%s", hb)
	}
	if err := e.c.Teardown(ctx, "cubot-idb"); err != nil {
		t.Fatal(err)
	}
	ha, _ := os.ReadFile(filepath.Join(fa, "hosts"))
	if strings.Contains(string(ha), "beta") {
		t.Errorf("alpha's hosts file still names beta after its teardown:\n%s", ha)
	}
	if err := e.c.Teardown(ctx, "cubot-ida"); err != nil {
		t.Fatal(err)
	}
	requireSame(t, "after teardown", clean, snapshot(t, e.root))
	if err := e.c.RemoveNetwork("backend"); err != nil {
		t.Fatal(err)
	}
	if _, err := net.InterfaceByName(testUser); err == nil {
		t.Errorf("bridge %s left after network rm", testUser)
	}
}

func TestNoneHostAndContainerModes(t *testing.T) {
	e := newEnv(t)
	e.warm("bridge")
	clean := snapshot(t, e.root)
	ctx := context.Background()
	none, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-none", Mode: network.Mode{Kind: network.ModeNone}})
	if err != nil {
		t.Fatal(err)
	}
	out := run(t, "nsenter", "--net="+none.NetNS, "ip", "-o", "link")
	if !strings.Contains(out, "lo: <LOOPBACK,UP") || strings.Count(out, "\n") != 1 {
		t.Errorf("none namespace links:\n%s", out)
	}
	host, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-host", Mode: network.Mode{Kind: network.ModeHost}})
	if err != nil || host.NetNS != "" {
		t.Fatalf("host mode: %+v, %v", host, err)
	}
	web, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-web", Name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := network.ParseMode("container:web")
	side, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-side", Mode: m, Target: "cubot-web", FilesDir: t.TempDir()})
	if err != nil || side.NetNS != web.NetNS || side.IP != web.IP {
		t.Fatalf("container mode: %+v, %v", side, err)
	}
	if _, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-side2", Mode: m, Target: "cubot-nope"}); err == nil {
		t.Fatal("container mode with an unknown target succeeded")
	}
	for _, id := range []string{"cubot-side", "cubot-web", "cubot-host", "cubot-none"} {
		if err := e.c.Teardown(ctx, id); err != nil {
			t.Fatal(err)
		}
	}
	requireSame(t, "after teardown", clean, snapshot(t, e.root))
}

// TestTeardownWithoutNetns: the namespace mount is gone (a reboot, a stray umount)
// before teardown; DEL must still release the address and the iptables rules.
func TestTeardownWithoutNetns(t *testing.T) {
	e := newEnv(t)
	e.warm("bridge")
	clean := snapshot(t, e.root)
	ctx := context.Background()
	a, err := e.c.Setup(ctx, network.SetupOptions{ID: "cubot-lost", Ports: []network.PortMapping{{HostPort: 18095, ContainerPort: 80, Protocol: "tcp"}}})
	if err != nil {
		t.Fatal(err)
	}
	run(t, "umount", a.NetNS)
	if err := e.c.Teardown(ctx, "cubot-lost"); err != nil {
		t.Fatal(err)
	}
	requireSame(t, "after teardown without netns", clean, snapshot(t, e.root))
}

// TestReconcile: cubo was killed with attachments recorded; Reconcile keeps the live
// ones and removes the rest.
func TestReconcile(t *testing.T) {
	e := newEnv(t)
	e.warm("bridge")
	clean := snapshot(t, e.root)
	ctx := context.Background()
	for _, id := range []string{"cubot-live", "cubot-dead1", "cubot-dead2"} {
		if _, err := e.c.Setup(ctx, network.SetupOptions{ID: id}); err != nil {
			t.Fatal(err)
		}
	}
	// dead2's record is lost as well: only libcni's cache, the lease and the netns remain.
	if err := os.Remove(filepath.Join(e.root, "attach", "cubot-dead2.json")); err != nil {
		t.Fatal(err)
	}
	if err := e.c.Reconcile(ctx, []string{"cubot-live"}); err != nil {
		t.Fatal(err)
	}
	atts, err := e.c.Attachments()
	if err != nil || len(atts) != 1 || atts[0].ID != "cubot-live" {
		t.Fatalf("after reconcile: %+v, %v", atts, err)
	}
	if err := e.c.Reconcile(ctx, nil); err != nil {
		t.Fatal(err)
	}
	requireSame(t, "after reconcile", clean, snapshot(t, e.root))
}

// TestHundredAttachments sets up and tears down 100 attachments with a published port
// each: links, iptables, leases and namespaces must end as they began.
func TestHundredAttachments(t *testing.T) {
	e := newEnv(t)
	e.warm("bridge")
	clean := snapshot(t, e.root)
	ctx := context.Background()
	start := time.Now()
	seen := map[netip.Addr]bool{}
	for i := 0; i < 100; i++ {
		id := fmt.Sprintf("cubot-c%03d", i)
		a, err := e.c.Setup(ctx, network.SetupOptions{ID: id, Name: id, Ports: []network.PortMapping{{HostPort: uint16(19000 + i), ContainerPort: 80, Protocol: "tcp"}}})
		if err != nil {
			t.Fatalf("setup %s: %v", id, err)
		}
		if seen[a.IP] {
			t.Fatalf("address %s given twice", a.IP)
		}
		seen[a.IP] = true
	}
	mid := time.Now()
	for i := 0; i < 100; i++ {
		if err := e.c.Teardown(ctx, fmt.Sprintf("cubot-c%03d", i)); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("100 setups in %v (%v each), 100 teardowns in %v", mid.Sub(start), mid.Sub(start)/100, time.Since(mid))
	requireSame(t, "after 100 attachments", clean, snapshot(t, e.root))
}
