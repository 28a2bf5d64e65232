package network

import (
	"bufio"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
)

// DefaultNetwork is the network containers join when no network is named (`--network
// bridge`). Its bridge is DefaultBridge on DefaultSubnet.
const (
	DefaultNetwork = "cubo"
	DefaultBridge  = "cubo0"
	// CNIVersion is the config version written: the newest that Debian 12's plugins
	// (containernetworking-plugins 1.1.1) implement.
	CNIVersion = "1.0.0"
)

// DefaultSubnet is the default network's subnet. It is none of the usual defaults
// (podman 10.88.0.0/16 and its user networks from 10.89.0.0/24, docker 172.17.0.0/16,
// libvirt 192.168.122.0/24), so cubo can run beside them.
var DefaultSubnet = netip.MustParsePrefix("10.77.0.0/16")

// userSubnets is where CreateNetwork picks a /24 for a network created without one.
var userSubnets = netip.MustParsePrefix("10.78.0.0/16")

// Network is a bridge network: a CNI conflist under the conf dir.
type Network struct {
	Name    string       `json:"name"`
	Bridge  string       `json:"bridge"`
	Subnet  netip.Prefix `json:"subnet"`
	Gateway netip.Addr   `json:"gateway"`
	// Path is the conflist file.
	Path string `json:"path"`
}

// nameRE and idRE are compiled on first use: package-level compiles run in every
// cubo process, and their bounded repetitions make large programs (178 KB and
// 0.19 ms at each start).
var nameRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,62}$`) })

// reserved are names --network gives another meaning.
var reserved = map[string]bool{"host": true, "none": true, "bridge": true, "container": true, "default": true}

// ValidateNetworkName fails for a name that cannot be a network's: the mode keywords,
// or anything but 1-63 letters, digits, '_', '.', '-' starting with a letter or digit.
func ValidateNetworkName(name string) error {
	if reserved[name] {
		return fmt.Errorf("network name %q is reserved: %w", name, errdefs.ErrInvalidArgument)
	}
	if !nameRE().MatchString(name) {
		return fmt.Errorf("network name %q: want 1-63 of [a-zA-Z0-9_.-], starting with a letter or digit: %w", name, errdefs.ErrInvalidArgument)
	}
	return nil
}

// conflist is the subset of a CNI network list cubo writes and reads back.
type conflist struct {
	CNIVersion string            `json:"cniVersion"`
	Name       string            `json:"name"`
	Plugins    []json.RawMessage `json:"plugins"`
}

type bridgeConf struct {
	Type        string   `json:"type"`
	Bridge      string   `json:"bridge"`
	IsGateway   bool     `json:"isGateway"`
	IPMasq      bool     `json:"ipMasq"`
	HairpinMode bool     `json:"hairpinMode"`
	IPAM        ipamConf `json:"ipam"`
}

type ipamConf struct {
	Type    string        `json:"type"`
	DataDir string        `json:"dataDir"`
	Ranges  [][]ipamRange `json:"ranges"`
	Routes  []ipamRoute   `json:"routes"`
}

type ipamRange struct {
	Subnet  string `json:"subnet"`
	Gateway string `json:"gateway"`
}

type ipamRoute struct {
	Dst string `json:"dst"`
}

// confBytes renders n as the conflist cubo runs:
//   - bridge: the veth pair on n.Bridge, the gateway address on the bridge, hairpin so
//     a container reaches its own published ports; host-local IPAM whose state lives
//     in ipamDir, not /var/lib/cni. No ipMasq: masquerade is the network's rule, made
//     once (rules_linux.go), not a chain per container at every ADD and DEL.
//   - portmap: --publish as DNAT; snat so that 127.0.0.1:HOST works too (it sets
//     route_localnet on the bridge and masquerades hairpin and localhost traffic).
//     attachList drops it for a container that publishes nothing.
//
// There is no firewall plugin: the network's own FORWARD chain accepts its traffic
// even when the host's FORWARD policy is DROP (as docker sets it).
func confBytes(n Network, ipamDir string) ([]byte, error) {
	br, err := json.Marshal(bridgeConf{
		Type: "bridge", Bridge: n.Bridge, IsGateway: true, IPMasq: false, HairpinMode: true,
		IPAM: ipamConf{
			Type:    "host-local",
			DataDir: ipamDir,
			Ranges:  [][]ipamRange{{{Subnet: n.Subnet.String(), Gateway: n.Gateway.String()}}},
			Routes:  []ipamRoute{{Dst: "0.0.0.0/0"}},
		},
	})
	if err != nil {
		return nil, err
	}
	l := conflist{CNIVersion: CNIVersion, Name: n.Name, Plugins: []json.RawMessage{
		br,
		json.RawMessage(`{"type":"portmap","capabilities":{"portMappings":true},"snat":true}`),
	}}
	return json.MarshalIndent(l, "", "  ")
}

// perContainerRules reports whether conflist b makes iptables rules per container: the
// bridge plugin with ipMasq, or the firewall plugin, as cubo wrote its conflists before
// its networks had rules of their own. A container attached with such a list (libcni
// caches the list ADD used) may need teardownMasq and teardownForward after its DEL; a
// network whose conflist on disk is one is rewritten before its next attachment.
func perContainerRules(b []byte) bool {
	var l conflist
	if json.Unmarshal(b, &l) != nil {
		return false
	}
	for _, p := range l.Plugins {
		var t struct {
			Type   string `json:"type"`
			IPMasq bool   `json:"ipMasq"`
		}
		if json.Unmarshal(p, &t) == nil && (t.Type == "firewall" || t.Type == "bridge" && t.IPMasq) {
			return true
		}
	}
	return false
}

// parseConf reads a Network back from a conflist cubo wrote.
func parseConf(path string, b []byte) (Network, error) {
	var l conflist
	if err := json.Unmarshal(b, &l); err != nil {
		return Network{}, fmt.Errorf("parse %s: %w", path, err)
	}
	n := Network{Name: l.Name, Path: path}
	for _, p := range l.Plugins {
		var bc bridgeConf
		if json.Unmarshal(p, &bc) != nil || bc.Type != "bridge" {
			continue
		}
		n.Bridge = bc.Bridge
		if len(bc.IPAM.Ranges) > 0 && len(bc.IPAM.Ranges[0]) > 0 {
			r := bc.IPAM.Ranges[0][0]
			n.Subnet, _ = netip.ParsePrefix(r.Subnet)
			n.Gateway, _ = netip.ParseAddr(r.Gateway)
		}
	}
	if n.Bridge == "" || !n.Subnet.IsValid() {
		return Network{}, fmt.Errorf("parse %s: no bridge plugin with a host-local subnet", path)
	}
	return n, nil
}

func (c *Controller) confPath(name string) string {
	return filepath.Join(c.root, "conf", name+".conflist")
}

// networkNameOf maps the --network spellings of the default network to its name.
func networkNameOf(name string) string {
	if name == "" || name == "bridge" || name == "default" {
		return DefaultNetwork
	}
	return name
}

// Network returns the network called name ("" and "bridge" mean DefaultNetwork, which
// is created on first use). A network that does not exist is errdefs.ErrNotFound.
func (c *Controller) Network(name string) (Network, error) {
	name = networkNameOf(name)
	if name == DefaultNetwork {
		if err := c.ensureDefault(); err != nil {
			return Network{}, err
		}
	}
	return c.readNetwork(name)
}

func (c *Controller) readNetwork(name string) (Network, error) {
	p := c.confPath(name)
	b, err := os.ReadFile(p)
	if errors.Is(err, fs.ErrNotExist) {
		return Network{}, fmt.Errorf("network %q: %w", name, errdefs.ErrNotFound)
	}
	if err != nil {
		return Network{}, fmt.Errorf("read network %q: %w", name, err)
	}
	return parseConf(p, b)
}

// Networks lists the networks, the default one included, sorted by name.
func (c *Controller) Networks() ([]Network, error) {
	if err := c.ensureDefault(); err != nil {
		return nil, err
	}
	return c.networks()
}

func (c *Controller) networks() ([]Network, error) {
	paths, err := filepath.Glob(filepath.Join(c.root, "conf", "*.conflist"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var out []Network
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", p, err)
		}
		n, err := parseConf(p, b)
		if err != nil {
			return nil, err
		}
		out = append(out, n)
	}
	return out, nil
}

func (c *Controller) ensureDefault() error {
	if _, err := os.Stat(c.confPath(DefaultNetwork)); err == nil {
		return nil
	}
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	if _, err := os.Stat(c.confPath(DefaultNetwork)); err == nil {
		return nil
	}
	n := Network{Name: DefaultNetwork, Bridge: c.defaultBridge, Subnet: c.defaultSubnet, Gateway: c.defaultSubnet.Addr().Next()}
	_, err = c.writeNetwork(n)
	return err
}

// writeNetwork writes n's conflist and returns what it wrote.
func (c *Controller) writeNetwork(n Network) ([]byte, error) {
	b, err := confBytes(n, filepath.Join(c.root, "ipam"))
	if err != nil {
		return nil, fmt.Errorf("encode network %q: %w", n.Name, err)
	}
	return b, writeFileAtomic(c.confPath(n.Name), b)
}

// NetworkOptions are CreateNetwork's settings; the zero value picks them all.
type NetworkOptions struct {
	// Subnet is the network's IPv4 subnet; zero picks a free /24 in 10.78.0.0/16.
	Subnet netip.Prefix
	// Gateway is the bridge's address; zero means the subnet's first address.
	Gateway netip.Addr
	// Bridge is the bridge device; empty picks the first free cuboN.
	Bridge string
}

// CreateNetwork creates a user-defined bridge network. Its subnet must not overlap
// another network's or one the host routes; a name in use is errdefs.ErrAlreadyExists.
func (c *Controller) CreateNetwork(name string, o NetworkOptions) (Network, error) {
	if err := ValidateNetworkName(name); err != nil {
		return Network{}, err
	}
	if err := c.ensureDefault(); err != nil {
		return Network{}, err
	}
	unlock, err := c.lock()
	if err != nil {
		return Network{}, err
	}
	defer unlock()
	if _, err := os.Stat(c.confPath(name)); err == nil {
		return Network{}, fmt.Errorf("network %q: %w", name, errdefs.ErrAlreadyExists)
	}
	nets, err := c.networks()
	if err != nil {
		return Network{}, err
	}
	used, err := hostPrefixes()
	if err != nil {
		return Network{}, err
	}
	for _, n := range nets {
		used = append(used, n.Subnet)
	}
	n := Network{Name: name, Bridge: o.Bridge, Subnet: o.Subnet.Masked(), Gateway: o.Gateway}
	if n.Subnet.IsValid() {
		if !n.Subnet.Addr().Is4() || n.Subnet.Bits() > 30 {
			return Network{}, fmt.Errorf("subnet %s: want an IPv4 subnet of /30 or larger: %w", o.Subnet, errdefs.ErrInvalidArgument)
		}
		for _, u := range used {
			if u.Overlaps(n.Subnet) {
				return Network{}, fmt.Errorf("subnet %s overlaps %s in use on this host: %w", n.Subnet, u, errdefs.ErrConflict)
			}
		}
	} else if n.Subnet, err = freeSubnet(used); err != nil {
		return Network{}, err
	}
	if !n.Gateway.IsValid() {
		n.Gateway = n.Subnet.Addr().Next()
	} else if !n.Subnet.Contains(n.Gateway) {
		return Network{}, fmt.Errorf("gateway %s is outside subnet %s: %w", n.Gateway, n.Subnet, errdefs.ErrInvalidArgument)
	}
	if n.Bridge == "" {
		taken := map[string]bool{}
		for _, o := range nets {
			taken[o.Bridge] = true
		}
		for i := 1; ; i++ {
			b := fmt.Sprintf("cubo%d", i)
			if _, err := net.InterfaceByName(b); err != nil && !taken[b] {
				n.Bridge = b
				break
			}
		}
	} else if len(n.Bridge) > 15 {
		return Network{}, fmt.Errorf("bridge name %q: longer than 15 characters: %w", n.Bridge, errdefs.ErrInvalidArgument)
	}
	n.Path = c.confPath(name)
	if _, err := c.writeNetwork(n); err != nil {
		return Network{}, err
	}
	return n, nil
}

func freeSubnet(used []netip.Prefix) (netip.Prefix, error) {
	base := userSubnets.Addr().As4()
	for i := 0; i < 256; i++ {
		cand := netip.PrefixFrom(netip.AddrFrom4([4]byte{base[0], base[1], byte(i), 0}), 24)
		free := true
		for _, u := range used {
			if u.Overlaps(cand) {
				free = false
				break
			}
		}
		if free {
			return cand, nil
		}
	}
	return netip.Prefix{}, fmt.Errorf("no free /24 left in %s: %w", userSubnets, errdefs.ErrResourceExhausted)
}

// hostPrefixes returns the IPv4 subnets the host has routes for, except the default
// route, so a new network never shadows a reachable one.
func hostPrefixes() ([]netip.Prefix, error) {
	f, err := os.Open("/proc/net/route")
	if err != nil {
		return nil, fmt.Errorf("read host routes: %w", err)
	}
	defer f.Close()
	var out []netip.Prefix
	sc := bufio.NewScanner(f)
	sc.Scan() // header
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 8 {
			continue
		}
		dst, err1 := hex.DecodeString(f[1])
		mask, err2 := hex.DecodeString(f[7])
		if err1 != nil || err2 != nil || len(dst) != 4 || len(mask) != 4 {
			continue
		}
		// /proc/net/route prints the addresses in host (little-endian) order.
		d := binary.LittleEndian.Uint32(dst)
		bits, _ := net.IPMask(binary.BigEndian.AppendUint32(nil, binary.LittleEndian.Uint32(mask))).Size()
		if bits == 0 {
			continue
		}
		a := netip.AddrFrom4([4]byte(binary.BigEndian.AppendUint32(nil, d)))
		out = append(out, netip.PrefixFrom(a, bits).Masked())
	}
	return out, sc.Err()
}

// RemoveNetwork deletes a user-defined network, its iptables rules and its bridge. The
// default network cannot be removed (errdefs.ErrInvalidArgument), nor one with
// containers attached (errdefs.ErrConflict, naming them).
func (c *Controller) RemoveNetwork(name string) error {
	if networkNameOf(name) == DefaultNetwork {
		return fmt.Errorf("network %q: the default network cannot be removed: %w", name, errdefs.ErrInvalidArgument)
	}
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	n, err := c.readNetwork(name)
	if err != nil {
		return err
	}
	atts, err := c.attachments()
	if err != nil {
		return err
	}
	var users []string
	for _, a := range atts {
		if a.Network == name {
			users = append(users, a.label())
		}
	}
	if len(users) > 0 {
		return fmt.Errorf("network %q is in use by %s: %w", name, strings.Join(users, ", "), errdefs.ErrConflict)
	}
	if err := c.removeRulesLocked(n); err != nil {
		return err
	}
	if err := deleteLink(n.Bridge); err != nil {
		return err
	}
	if err := os.RemoveAll(filepath.Join(c.root, "ipam", name)); err != nil {
		return fmt.Errorf("remove ipam state of %q: %w", name, err)
	}
	if err := os.Remove(n.Path); err != nil {
		return fmt.Errorf("remove network %q: %w", name, err)
	}
	return nil
}
