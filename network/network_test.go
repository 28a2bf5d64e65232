package network

import (
	"errors"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/containerd/errdefs"
)

func TestParsePublish(t *testing.T) {
	for _, c := range []struct {
		in, want, err string
	}{
		{"8080:80", "8080:80/tcp", ""},
		{"8080:80/udp", "8080:80/udp", ""},
		{"8080:80/TCP", "8080:80/tcp", ""},
		{"127.0.0.1:8080:80", "127.0.0.1:8080:80/tcp", ""},
		{"0.0.0.0:53:53/udp", "53:53/udp", ""},
		{"80", "", "want HOST:CONT"},
		{"a:b:c:d", "", "want HOST:CONT"},
		{"8080:80/sctp", "", "protocol must be tcp or udp"},
		{"0:80", "", "host port \"0\" is not a number in 1-65535"},
		{"8080:70000", "", "container port \"70000\" is not a number"},
		{":80", "", "host port is missing"},
		{"8080-8081:80", "", "port ranges are not supported"},
		{"localhost:8080:80", "", "host IP \"localhost\" is not an IP address"},
		{"::1:8080:80", "", "want HOST:CONT"},
	} {
		m, err := ParsePublish(c.in)
		if c.err != "" {
			if err == nil || !strings.Contains(err.Error(), c.err) || strings.Contains(err.Error(), "\n") {
				t.Errorf("ParsePublish(%q) = %v, want error containing %q", c.in, err, c.err)
			}
			continue
		}
		if err != nil || m.String() != c.want {
			t.Errorf("ParsePublish(%q) = %v, %v, want %s", c.in, m, err, c.want)
		}
	}
}

func TestParsePublishesClash(t *testing.T) {
	if _, err := ParsePublishes([]string{"8080:80", "8080:81/udp", "127.0.0.1:8081:80", "127.0.0.2:8081:80"}); err != nil {
		t.Fatal(err)
	}
	for _, set := range [][]string{{"8080:80", "8080:81"}, {"127.0.0.1:8080:80", "8080:81"}} {
		if _, err := ParsePublishes(set); err == nil {
			t.Errorf("ParsePublishes(%q) accepted a clash", set)
		}
	}
}

func TestCheckPorts(t *testing.T) {
	l, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	port := uint16(l.Addr().(*net.TCPAddr).Port)
	err = CheckPorts([]PortMapping{{HostPort: port, ContainerPort: 80, Protocol: "tcp"}})
	if !errors.Is(err, ErrPortInUse) {
		t.Fatalf("taken port on 127.0.0.1 checked on all addresses: %v", err)
	}
	// The same number over UDP is free.
	if err := CheckPorts([]PortMapping{{HostPort: port, ContainerPort: 80, Protocol: "udp"}}); err != nil {
		t.Fatal(err)
	}
}

func TestResolvConf(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"nameserver 127.0.0.53\noptions edns0\nsearch example.com\n",
			"options edns0\nsearch example.com\nnameserver 8.8.8.8\nnameserver 8.8.4.4\n"},
		{"# comment\nnameserver 10.0.0.2\nnameserver ::1\nnameserver 127.1.2.3\nnameserver fe80::1%eth0\nnameserver 2001:db8::1\n",
			"# comment\nnameserver 10.0.0.2\nnameserver 2001:db8::1\n"},
		{"", "nameserver 8.8.8.8\nnameserver 8.8.4.4\n"},
	} {
		if got := string(ResolvConf([]byte(c.in))); got != c.want {
			t.Errorf("ResolvConf(%q) =\n%s\nwant\n%s", c.in, got, c.want)
		}
	}
}

func TestWriteFilesInPlace(t *testing.T) {
	dir := t.TempDir()
	resolv := filepath.Join(dir, "host-resolv")
	os.WriteFile(resolv, []byte("nameserver 192.0.2.53\n"), 0o644)
	e := []HostEntry{{IP: netip.MustParseAddr("10.77.0.2"), Names: []string{"web", "web.local"}}}
	if err := WriteFiles(dir, "web", e, resolv); err != nil {
		t.Fatal(err)
	}
	before, _ := os.Stat(filepath.Join(dir, HostsFile))
	e = append(e, HostEntry{IP: netip.MustParseAddr("10.77.0.3"), Names: []string{"db"}})
	if err := WriteFiles(dir, "web", e, filepath.Join(dir, "missing")); err != nil {
		t.Fatal(err)
	}
	after, _ := os.Stat(filepath.Join(dir, HostsFile))
	if !os.SameFile(before, after) {
		t.Error("hosts file replaced, not rewritten: a bind mount would keep the old one")
	}
	hosts, _ := os.ReadFile(filepath.Join(dir, HostsFile))
	want := "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n10.77.0.2\tweb web.local\n10.77.0.3\tdb\n"
	if string(hosts) != want {
		t.Errorf("hosts:\n%s\nwant\n%s", hosts, want)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, HostnameFile)); string(b) != "web\n" {
		t.Errorf("hostname %q", b)
	}
	if b, _ := os.ReadFile(filepath.Join(dir, ResolvFile)); !strings.Contains(string(b), "8.8.8.8") {
		t.Errorf("resolv.conf without host file: %q", b)
	}
}

func TestParseMode(t *testing.T) {
	for in, want := range map[string]Mode{
		"":            {Kind: ModeBridge, Network: DefaultNetwork},
		"bridge":      {Kind: ModeBridge, Network: DefaultNetwork},
		"host":        {Kind: ModeHost},
		"none":        {Kind: ModeNone},
		"container:x": {Kind: ModeContainer, Container: "x"},
		"backend":     {Kind: ModeBridge, Network: "backend"},
	} {
		if got, err := ParseMode(in); err != nil || got != want {
			t.Errorf("ParseMode(%q) = %+v, %v", in, got, err)
		}
	}
	for _, in := range []string{"container:", "-x", "a b", "container"} {
		if _, err := ParseMode(in); !errors.Is(err, errdefs.ErrInvalidArgument) {
			t.Errorf("ParseMode(%q) = %v, want invalid argument", in, err)
		}
	}
}

func TestNetworkStore(t *testing.T) {
	c, err := New(t.TempDir(), WithDefaultNetwork("cubox0", netip.MustParsePrefix("10.74.0.0/16")))
	if err != nil {
		t.Fatal(err)
	}
	d, err := c.Network("bridge")
	if err != nil || d.Name != DefaultNetwork || d.Bridge != "cubox0" || d.Gateway.String() != "10.74.0.1" {
		t.Fatalf("default network %+v, %v", d, err)
	}
	n, err := c.CreateNetwork("one", NetworkOptions{})
	if err != nil || !userSubnets.Contains(n.Subnet.Addr()) || n.Subnet.Bits() != 24 || !strings.HasPrefix(n.Bridge, "cubo") {
		t.Fatalf("create one: %+v, %v", n, err)
	}
	m, err := c.CreateNetwork("two", NetworkOptions{})
	if err != nil || m.Subnet.Overlaps(n.Subnet) || m.Bridge == n.Bridge {
		t.Fatalf("create two: %+v beside %+v, %v", m, n, err)
	}
	if _, err := c.CreateNetwork("one", NetworkOptions{}); !errors.Is(err, errdefs.ErrAlreadyExists) {
		t.Errorf("duplicate: %v", err)
	}
	if _, err := c.CreateNetwork("three", NetworkOptions{Subnet: netip.MustParsePrefix("10.74.5.0/24")}); !errors.Is(err, errdefs.ErrConflict) {
		t.Errorf("overlap with default: %v", err)
	}
	if _, err := c.CreateNetwork("host", NetworkOptions{}); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("reserved name: %v", err)
	}
	got, err := c.Network("one")
	if err != nil || got != n {
		t.Errorf("read back %+v, %v, want %+v", got, err, n)
	}
	nets, err := c.Networks()
	if err != nil || len(nets) != 3 || nets[0].Name != DefaultNetwork {
		t.Errorf("list %+v, %v", nets, err)
	}
	if err := c.RemoveNetwork("bridge"); !errors.Is(err, errdefs.ErrInvalidArgument) {
		t.Errorf("remove default: %v", err)
	}
	if _, err := c.Network("nope"); !errors.Is(err, errdefs.ErrNotFound) {
		t.Errorf("missing network: %v", err)
	}
}

// Without published ports the attachment's list has no portmap (two plugin execs
// saved per container); with them it is the network's list as written.
func TestAttachListPortmap(t *testing.T) {
	n := Network{Name: "n", Bridge: "cubot9", Subnet: netip.MustParsePrefix("10.76.9.0/24"), Gateway: netip.MustParseAddr("10.76.9.1"),
		Path: filepath.Join(t.TempDir(), "n.conflist")}
	b, err := confBytes(n, t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(n.Path, b, 0o644); err != nil {
		t.Fatal(err)
	}
	types := func(ports bool) []string {
		l, err := attachList(n.Name, b, ports)
		if err != nil {
			t.Fatal(err)
		}
		var out []string
		for _, p := range l.Plugins {
			out = append(out, p.Network.Type)
		}
		if l.Name != "n" || l.CNIVersion != CNIVersion {
			t.Fatalf("list %s %s", l.Name, l.CNIVersion)
		}
		return out
	}
	if got := types(false); !slices.Equal(got, []string{"bridge"}) {
		t.Fatalf("no ports: %v", got)
	}
	if got := types(true); !slices.Equal(got, []string{"bridge", "portmap"}) {
		t.Fatalf("ports: %v", got)
	}
}
