// Package network gives cubo containers their network: a network namespace per
// container attached to a bridge through CNI (libcni driving the bridge, host-local,
// portmap and loopback plugins), each network's masquerade and FORWARD rules (made once
// per network, not per container), published ports, the generated /etc/hosts,
// /etc/hostname and /etc/resolv.conf, and user-defined bridge networks.
//
// Everything it keeps lives under the root the caller gives (root_dir/network):
//
//	conf/<network>.conflist   CNI network lists, one per network
//	cache/                    libcni's cache (results and configs of ADDs, used by DEL)
//	ipam/<network>/           host-local's address leases
//	netns/<container id>      bind-mounted network namespaces (WithNetnsDir moves them)
//	attach/<container id>.json what Setup did, so Teardown and Reconcile can undo it
//	rules/<network>           marker: the network's iptables rules are in place (boot id)
//
// so nothing is shared with podman's or containerd's /etc/cni and /var/lib/cni.
package network

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strings"
	"sync"

	"github.com/containerd/errdefs"
	"github.com/containernetworking/cni/libcni"
	types100 "github.com/containernetworking/cni/pkg/types/100"
	"github.com/rs/zerolog"
	"golang.org/x/sys/unix"
)

// Mode kinds, as `--network` spells them.
const (
	ModeBridge    = "bridge"
	ModeHost      = "host"
	ModeNone      = "none"
	ModeContainer = "container"
)

// IfName is the container's interface on a bridge network.
const IfName = "eth0"

// Mode is a parsed `--network` value.
type Mode struct {
	// Kind is ModeBridge, ModeHost, ModeNone or ModeContainer.
	Kind string `json:"kind"`
	// Network is the bridge network's name (ModeBridge).
	Network string `json:"network,omitempty"`
	// Container names the container whose namespace is shared (ModeContainer), as the
	// user wrote it; the caller resolves it to that container's ID for Setup.
	Container string `json:"container,omitempty"`
}

// String formats m the way ParseMode reads it.
func (m Mode) String() string {
	switch m.Kind {
	case ModeContainer:
		return "container:" + m.Container
	case ModeBridge:
		if m.Network != DefaultNetwork {
			return m.Network
		}
	}
	return m.Kind
}

// ParseMode parses `--network`: "" or "bridge" (the default network), "host", "none",
// "container:NAME", or the name of a user-defined network.
func ParseMode(s string) (Mode, error) {
	switch s {
	case "", "bridge", "default":
		return Mode{Kind: ModeBridge, Network: DefaultNetwork}, nil
	case ModeHost, ModeNone:
		return Mode{Kind: s}, nil
	}
	if name, ok := strings.CutPrefix(s, "container:"); ok {
		if name == "" {
			return Mode{}, fmt.Errorf("network %q: want container:NAME: %w", s, errdefs.ErrInvalidArgument)
		}
		return Mode{Kind: ModeContainer, Container: name}, nil
	}
	if !nameRE().MatchString(s) || reserved[s] {
		return Mode{}, fmt.Errorf("network %q: want bridge, host, none, container:NAME or a network name: %w", s, errdefs.ErrInvalidArgument)
	}
	return Mode{Kind: ModeBridge, Network: s}, nil
}

// Controller sets up and tears down container networking under one root.
type Controller struct {
	root          string
	netnsDir      string
	pluginDirs    []string
	resolvPath    string
	defaultSubnet netip.Prefix
	defaultBridge string
	log           zerolog.Logger
	cni           *libcni.CNIConfig
}

// Opt configures a Controller.
type Opt func(*Controller)

// WithLogger logs what the Controller does (default: nothing).
func WithLogger(l zerolog.Logger) Opt { return func(c *Controller) { c.log = l } }

// WithNetnsDir puts the namespace bind mounts in dir (default root/netns), such as
// /run/cubo/netns so that a reboot cannot leave stale files behind.
func WithNetnsDir(dir string) Opt { return func(c *Controller) { c.netnsDir = dir } }

// WithPluginDirs sets where CNI plugin binaries are looked up (default /usr/lib/cni,
// where Debian installs them, then /opt/cni/bin).
func WithPluginDirs(dirs ...string) Opt { return func(c *Controller) { c.pluginDirs = dirs } }

// WithResolvConf reads the host's resolver config from path (default /etc/resolv.conf).
func WithResolvConf(path string) Opt { return func(c *Controller) { c.resolvPath = path } }

// WithDefaultNetwork sets the bridge and subnet of the default network when it is
// first written (default cubo0, 10.77.0.0/16). Tests use it to stay off the real one.
func WithDefaultNetwork(bridge string, subnet netip.Prefix) Opt {
	return func(c *Controller) { c.defaultBridge, c.defaultSubnet = bridge, subnet.Masked() }
}

// New returns a Controller keeping its state under root (root_dir/network), creating
// the directories it needs.
func New(root string, opts ...Opt) (*Controller, error) {
	c := &Controller{
		root:          root,
		netnsDir:      filepath.Join(root, "netns"),
		pluginDirs:    []string{"/usr/lib/cni", "/opt/cni/bin"},
		resolvPath:    "/etc/resolv.conf",
		defaultSubnet: DefaultSubnet,
		defaultBridge: DefaultBridge,
		log:           zerolog.Nop(),
	}
	for _, o := range opts {
		o(c)
	}
	for _, d := range []string{"conf", "cache", "ipam", "attach"} {
		if err := os.MkdirAll(filepath.Join(root, d), 0o700); err != nil {
			return nil, fmt.Errorf("create network dir: %w", err)
		}
	}
	if err := os.MkdirAll(c.netnsDir, 0o700); err != nil {
		return nil, fmt.Errorf("create netns dir: %w", err)
	}
	c.cni = libcni.NewCNIConfigWithCacheDir(c.pluginDirs, filepath.Join(root, "cache"), nil)
	return c, nil
}

// lock takes the Controller's exclusive lock, which serializes every change to
// attachments and networks across cubo processes.
func (c *Controller) lock() (func(), error) {
	unlock, err := lockFile(filepath.Join(c.root, "lock"))
	if err != nil {
		return nil, fmt.Errorf("lock network state: %w", err)
	}
	return unlock, nil
}

// lockFile takes an exclusive flock of path (created if missing) and returns its
// release.
func lockFile(path string) (func(), error) {
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, err
	}
	for {
		err = unix.Flock(int(f.Fd()), unix.LOCK_EX)
		if !errors.Is(err, unix.EINTR) {
			break
		}
	}
	if err != nil {
		f.Close()
		return nil, err
	}
	return func() { f.Close() }, nil
}

// Attachment is what Setup did for one container; Teardown undoes it.
type Attachment struct {
	ID       string `json:"id"`
	Name     string `json:"name,omitempty"`
	Hostname string `json:"hostname,omitempty"`
	Mode     Mode   `json:"mode"`
	// Network is the bridge network's name (bridge mode only).
	Network string `json:"network,omitempty"`
	// NetNS is the namespace path to put in config.json's network namespace; empty
	// for the host network. For container mode it is the shared container's.
	NetNS string `json:"netns,omitempty"`
	// Interface, IP, Subnet, Gateway and MAC describe the container's side of the
	// bridge (bridge mode only).
	Interface string       `json:"interface,omitempty"`
	IP        netip.Addr   `json:"ip,omitzero"`
	Subnet    netip.Prefix `json:"subnet,omitzero"`
	Gateway   netip.Addr   `json:"gateway,omitzero"`
	MAC       string       `json:"mac,omitempty"`
	// HostVeth is the host end of the veth pair.
	HostVeth string        `json:"hostVeth,omitempty"`
	Ports    []PortMapping `json:"ports,omitempty"`
	// FilesDir holds the container's hosts file that peers' Setup and Teardown keep up
	// to date.
	FilesDir string `json:"filesDir,omitempty"`
	// Complete is false while Setup runs; Reconcile undoes incomplete attachments.
	Complete bool `json:"complete"`
	// ownsNetns: the namespace is this attachment's to delete.
	OwnsNetns bool `json:"ownsNetns,omitempty"`
}

func (a *Attachment) label() string {
	if a.Name != "" {
		return a.Name
	}
	return a.ID
}

// SetupOptions describe the container Setup prepares.
type SetupOptions struct {
	// ID is the container's ID; required.
	ID string
	// Name and Hostname are the names peers and the container itself resolve.
	Name     string
	Hostname string
	Mode     Mode
	// Target is the ID of the container whose namespace a ModeContainer container
	// shares; the caller resolves Mode.Container (a name) to it.
	Target string
	// Ports are published on the host (bridge mode only).
	Ports []PortMapping
	// FilesDir is the directory holding the container's hosts, hostname and
	// resolv.conf, as the container will see it (final path). Setup writes them; when
	// empty, no files are written and the container's hosts file is not kept current.
	FilesDir string
}

var idRE = sync.OnceValue(func() *regexp.Regexp { return regexp.MustCompile(`^[a-zA-Z0-9][a-zA-Z0-9_.-]{0,127}$`) })

// Setup prepares a container's network before the container is created: for bridge,
// a new namespace attached to the network (CNI ADD) with the ports published; for
// none, a new namespace with only loopback up; for container, the target's namespace;
// for host, nothing. It writes the container's /etc files into FilesDir and adds the
// container to its peers' hosts files. A published port that is taken fails with
// ErrPortInUse before anything is set up. On error nothing is left behind.
func (c *Controller) Setup(ctx context.Context, o SetupOptions) (*Attachment, error) {
	if !idRE().MatchString(o.ID) {
		return nil, fmt.Errorf("container id %q: %w", o.ID, errdefs.ErrInvalidArgument)
	}
	if o.Mode.Kind == "" {
		o.Mode = Mode{Kind: ModeBridge, Network: DefaultNetwork}
	}
	if len(o.Ports) > 0 && o.Mode.Kind != ModeBridge {
		return nil, fmt.Errorf("publish: ports can only be published on a bridge network, not with --network %s: %w", o.Mode, errdefs.ErrInvalidArgument)
	}
	a := &Attachment{ID: o.ID, Name: o.Name, Hostname: o.Hostname, Mode: o.Mode, Ports: o.Ports, FilesDir: o.FilesDir}
	var n Network
	if o.Mode.Kind == ModeBridge {
		var err error
		if n, err = c.Network(o.Mode.Network); err != nil {
			return nil, err
		}
		a.Network = n.Name
		a.Mode.Network = n.Name
	}

	unlock, err := c.lock()
	if err != nil {
		return nil, err
	}
	defer unlock()
	if _, err := c.readAttachment(o.ID); err == nil {
		return nil, fmt.Errorf("container %s: network already set up: %w", o.ID, errdefs.ErrAlreadyExists)
	}
	switch o.Mode.Kind {
	case ModeHost:
	case ModeContainer:
		t, err := c.readAttachment(o.Target)
		if err != nil {
			return nil, fmt.Errorf("network container:%s: %w", o.Mode.Container, err)
		}
		// Sharing a container that itself shares another means sharing that one.
		a.NetNS, a.Network, a.IP, a.Subnet, a.Gateway, a.MAC = t.NetNS, t.Network, t.IP, t.Subnet, t.Gateway, t.MAC
		if t.Mode.Kind == ModeHost {
			a.Mode.Kind = ModeHost
		}
	case ModeNone, ModeBridge:
		if err := c.checkPortsLocked(o.Ports); err != nil {
			return nil, err
		}
		a.NetNS = c.NetnsPath(o.ID)
		a.OwnsNetns = true
		// The record goes down first so that a crash from here on leaves something for
		// Reconcile to undo.
		if err := c.saveAttachment(a); err != nil {
			return nil, err
		}
		if err := c.attachLocked(ctx, a, n); err != nil {
			if derr := c.teardownLocked(ctx, a); derr != nil {
				c.log.Warn().Err(derr).Str("id", a.ID).Msg("undo failed network setup")
			}
			return nil, err
		}
	default:
		return nil, fmt.Errorf("network mode %q: %w", o.Mode.Kind, errdefs.ErrInvalidArgument)
	}
	a.Complete = true
	if err := c.saveAttachment(a); err != nil {
		if derr := c.teardownLocked(ctx, a); derr != nil {
			c.log.Warn().Err(derr).Str("id", a.ID).Msg("undo failed network setup")
		}
		return nil, err
	}
	if err := c.writeFilesLocked(a); err != nil {
		if derr := c.teardownLocked(ctx, a); derr != nil {
			c.log.Warn().Err(derr).Str("id", a.ID).Msg("undo failed network setup")
		}
		return nil, err
	}
	if a.Network != "" {
		c.refreshPeersLocked(a.Network, a.ID)
	}
	c.log.Debug().Str("id", a.ID).Str("mode", a.Mode.String()).Str("ip", a.IP.String()).Msg("network set up")
	return a, nil
}

// checkPortsLocked fails when ports clash with one another, with a port another
// container published (a DNAT rule, invisible to bind), or with a host socket.
func (c *Controller) checkPortsLocked(ports []PortMapping) error {
	if len(ports) == 0 {
		return nil
	}
	atts, err := c.attachments()
	if err != nil {
		return err
	}
	for i, m := range ports {
		for _, o := range ports[:i] {
			if clash(m, o) {
				return fmt.Errorf("publish %s: host port %d/%s is published twice: %w", m, m.HostPort, m.Protocol, ErrPortInUse)
			}
		}
		for _, a := range atts {
			for _, o := range a.Ports {
				if clash(m, o) {
					return fmt.Errorf("publish %s: host port %d/%s is published by container %s: %w", m, m.HostPort, m.Protocol, a.label(), ErrPortInUse)
				}
			}
		}
	}
	return CheckPorts(ports)
}

var loopbackConf = []byte(`{"cniVersion":"` + CNIVersion + `","name":"cubo-loopback","type":"loopback"}`)

// attachList makes the list of one attachment from network name's conflist b.
// Without published ports the portmap plugin has nothing to do but still costs an
// exec at ADD and one at DEL (libcni's cache keeps the list ADD used, so DEL skips it
// too): it is left out.
func attachList(name string, b []byte, ports bool) (*libcni.NetworkConfigList, error) {
	if !ports {
		var l map[string]json.RawMessage
		var plugins []json.RawMessage
		if json.Unmarshal(b, &l) == nil && json.Unmarshal(l["plugins"], &plugins) == nil {
			kept := plugins[:0]
			for _, p := range plugins {
				var t struct{ Type string }
				if json.Unmarshal(p, &t) == nil && t.Type == "portmap" {
					continue
				}
				kept = append(kept, p)
			}
			if pb, err := json.Marshal(kept); err == nil {
				l["plugins"] = pb
				if nb, err := json.Marshal(l); err == nil {
					b = nb
				}
			}
		}
	}
	list, err := libcni.ConfListFromBytes(b)
	if err != nil {
		return nil, fmt.Errorf("load network %q: %w", name, err)
	}
	return list, nil
}

// upgradeConfLocked reads n's conflist for an attachment and returns it, rewritten
// first when it is one cubo wrote before networks had rules of their own (bridge
// ipMasq, firewall plugin), so that new attachments get no per-container rules.
// Containers attached with the old list keep it for their DEL (libcni caches the list
// each ADD used).
func (c *Controller) upgradeConfLocked(n Network) ([]byte, error) {
	b, err := os.ReadFile(n.Path)
	if err != nil {
		return nil, fmt.Errorf("load network %q: %w", n.Name, err)
	}
	if !perContainerRules(b) {
		return b, nil
	}
	c.log.Info().Str("network", n.Name).Msg("rewrite conflist without per-container masquerade and firewall")
	return c.writeNetwork(n)
}

func (c *Controller) attachLocked(ctx context.Context, a *Attachment, n Network) error {
	if err := newNetns(a.NetNS); err != nil {
		return err
	}
	lo, err := libcni.ConfFromBytes(loopbackConf)
	if err != nil {
		return err
	}
	rt := &libcni.RuntimeConf{ContainerID: a.ID, NetNS: a.NetNS, IfName: "lo"}
	if _, err := c.cni.AddNetwork(ctx, lo, rt); err != nil {
		return fmt.Errorf("bring up loopback: %w", err)
	}
	if a.Mode.Kind != ModeBridge {
		return nil
	}
	conf, err := c.upgradeConfLocked(n)
	if err != nil {
		return err
	}
	// Asked before ADD, which creates a missing bridge: a bridge that was gone may
	// have taken the network's rules with it.
	fresh := c.rulesFresh(n)
	list, err := attachList(n.Name, conf, len(a.Ports) > 0)
	if err != nil {
		return err
	}
	res, err := c.cni.AddNetworkList(ctx, list, c.runtimeConf(a))
	if err != nil {
		return fmt.Errorf("attach to network %q: %w", n.Name, err)
	}
	// After ADD, so the bridge exists: SweepRules removes the chains of missing
	// bridges. The container has not started yet, so none of its traffic misses them.
	if !fresh {
		if err := c.ensureRulesLocked(n); err != nil {
			return err
		}
	}
	r, err := types100.NewResultFromResult(res)
	if err != nil {
		return fmt.Errorf("attach to network %q: read result: %w", n.Name, err)
	}
	a.Interface = IfName
	for _, ifc := range r.Interfaces {
		switch {
		case ifc.Name == IfName && ifc.Sandbox != "":
			a.MAC = ifc.Mac
		case ifc.Sandbox == "" && ifc.Name != n.Bridge:
			a.HostVeth = ifc.Name
		}
	}
	for _, ipc := range r.IPs {
		ip, ok := netip.AddrFromSlice(ipc.Address.IP)
		if !ok || !ip.Unmap().Is4() {
			continue
		}
		ones, _ := ipc.Address.Mask.Size()
		a.IP = ip.Unmap()
		a.Subnet = netip.PrefixFrom(a.IP, ones).Masked()
		if gw, ok := netip.AddrFromSlice(ipc.Gateway); ok {
			a.Gateway = gw.Unmap()
		}
		break
	}
	if !a.IP.IsValid() {
		return fmt.Errorf("attach to network %q: no IPv4 address in the CNI result", n.Name)
	}
	return nil
}

// runtimeConf is the CNI runtime config of a's bridge attachment. DEL gets the same
// portMappings as ADD: portmap only removes its rules when it is told the ports.
func (c *Controller) runtimeConf(a *Attachment) *libcni.RuntimeConf {
	rt := &libcni.RuntimeConf{ContainerID: a.ID, NetNS: a.NetNS, IfName: IfName}
	if len(a.Ports) > 0 {
		pm := make([]map[string]any, 0, len(a.Ports))
		for _, p := range a.Ports {
			m := map[string]any{"hostPort": int(p.HostPort), "containerPort": int(p.ContainerPort), "protocol": p.Protocol}
			if p.HostIP.IsValid() {
				m["hostIP"] = p.HostIP.String()
			}
			pm = append(pm, m)
		}
		rt.CapabilityArgs = map[string]any{"portMappings": pm}
	}
	return rt
}

// Teardown undoes Setup for container id: CNI DEL (releasing the address, the veth and
// the iptables rules even when the namespace is already gone), the namespace bind
// mount, the record, and the container's line in its peers' hosts files. It is
// idempotent: tearing down an unknown or already torn down container returns nil.
func (c *Controller) Teardown(ctx context.Context, id string) error {
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	a, err := c.readAttachment(id)
	if errors.Is(err, errdefs.ErrNotFound) {
		// Nothing recorded, but a crash between CNI ADD and the record is impossible
		// (the record comes first); still sweep what a foreign crash could leave.
		return c.sweepLocked(ctx, id)
	}
	if err != nil {
		return err
	}
	return c.teardownLocked(ctx, a)
}

func (c *Controller) teardownLocked(ctx context.Context, a *Attachment) error {
	var errs []error
	if a.OwnsNetns {
		if err := c.delLocked(ctx, a); err != nil {
			errs = append(errs, err)
		}
		if err := removeNetns(a.NetNS); err != nil {
			errs = append(errs, err)
		}
	}
	if len(errs) > 0 {
		// Keep the record so a later Teardown or Reconcile tries again.
		return errors.Join(errs...)
	}
	if err := os.Remove(c.attachPath(a.ID)); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("remove network record of %s: %w", a.ID, err)
	}
	if a.Network != "" {
		c.refreshPeersLocked(a.Network, "")
	}
	c.log.Debug().Str("id", a.ID).Msg("network torn down")
	return nil
}

// delLocked runs CNI DEL for a's bridge network and loopback. With the namespace gone
// (a reboot, someone's umount) DEL still runs, with no namespace: the plugins then
// release the address and their iptables rules from libcni's cached result.
func (c *Controller) delLocked(ctx context.Context, a *Attachment) error {
	ns := a.NetNS
	if !isNetns(ns) {
		ns = ""
	}
	var errs []error
	if a.Mode.Kind == ModeBridge && a.Network != "" {
		// Before DEL releases it: an interrupted Setup's rules are found
		// by the leased address (the record may not have it yet).
		leased := c.leaseIP(a.Network, a.ID)
		defer func() {
			if leased.IsValid() && leased != a.IP {
				_ = teardownMasq(a.Network, a.ID, leased)
				_ = teardownForward(leased)
			}
		}()
		rt := c.runtimeConf(a)
		rt.NetNS = ns
		list, err := c.delList(a.Network, rt)
		if err != nil {
			errs = append(errs, err)
		} else if err := c.del(list.Name, rt, func() error { return c.cni.DelNetworkList(ctx, list, rt) }); err != nil {
			errs = append(errs, fmt.Errorf("detach from network %q: %w", a.Network, err))
		}
		if ns == "" {
			// Only lists with the bridge plugin's ipMasq made a masquerade chain for
			// the container; the network's own rules are not the container's.
			if list != nil && perContainerRules(list.Bytes) {
				if err := teardownMasq(list.Name, a.ID, a.IP); err != nil {
					errs = append(errs, err)
				}
			}
			// The kernel destroys a namespace, and the veths in it, asynchronously
			// after its last reference goes: do not leave the host end to chance.
			if a.HostVeth != "" {
				if err := deleteLink(a.HostVeth); err != nil {
					errs = append(errs, err)
				}
			}
		}
	}
	lo, err := libcni.ConfFromBytes(loopbackConf)
	if err != nil {
		return err
	}
	lrt := &libcni.RuntimeConf{ContainerID: a.ID, NetNS: ns, IfName: "lo"}
	if err := c.del(lo.Network.Name, lrt, func() error { return c.cni.DelNetwork(ctx, lo, lrt) }); err != nil {
		errs = append(errs, fmt.Errorf("loopback: %w", err))
	}
	return errors.Join(errs...)
}

// del runs a CNI DEL of network for rt, once more without libcni's cached
// result if that is torn: a cubo killed while libcni wrote it leaves a file
// that fails every later DEL, and without it DEL still releases the address
// and rules from the config.
func (c *Controller) del(network string, rt *libcni.RuntimeConf, run func() error) error {
	err := run()
	if err != nil && c.dropTornCache(network, rt) {
		err = run()
	}
	return err
}

// delList is the network list to DEL with: the one ADD used, from libcni's cache, so
// that a network edited or removed since still gets the right DEL; else the current.
func (c *Controller) delList(network string, rt *libcni.RuntimeConf) (*libcni.NetworkConfigList, error) {
	probe := &libcni.NetworkConfigList{Name: network, CNIVersion: CNIVersion}
	if b, _, err := c.cni.GetNetworkListCachedConfig(probe, rt); err == nil && len(b) > 0 {
		if l, err := libcni.ConfListFromBytes(b); err == nil {
			return l, nil
		}
	}
	l, err := libcni.ConfListFromFile(c.confPath(network))
	if err != nil {
		return nil, fmt.Errorf("load network %q: %w", network, err)
	}
	return l, nil
}

// Reconcile undoes the networking of every container not in live: attachments whose
// container is gone (removed while cubo was killed, or a Setup that crashed), libcni
// cache entries and address leases without a record, and stray namespace mounts. The
// manager calls it at startup with the IDs of the containers it has.
func (c *Controller) Reconcile(ctx context.Context, live []string) error {
	keep := make(map[string]bool, len(live))
	for _, id := range live {
		keep[id] = true
	}
	return c.ReconcileFunc(ctx, func(id string) bool { return keep[id] })
}

// ReconcileFunc is Reconcile with alive telling whether container id still needs its
// network. alive is called under the lock that Setup holds, so a container set up
// while the caller was listing its containers is judged by its state then, never torn
// down for missing from a list made before it existed.
func (c *Controller) ReconcileFunc(ctx context.Context, alive func(id string) bool) error {
	keep := map[string]bool{}
	unlock, err := c.lock()
	if err != nil {
		return err
	}
	defer unlock()
	var errs []error
	atts, err := c.attachments()
	if err != nil {
		return err
	}
	for _, a := range atts {
		keep[a.ID] = alive(a.ID)
		if !keep[a.ID] {
			c.log.Info().Str("id", a.ID).Msg("reconcile: tear down network of a container that is gone")
			if err := c.teardownLocked(ctx, a); err != nil {
				errs = append(errs, err)
			}
		}
	}
	ids, err := c.strayIDs()
	if err != nil {
		return err
	}
	for id := range ids {
		k, seen := keep[id]
		if !seen {
			k = alive(id)
		}
		if !k {
			if err := c.sweepLocked(ctx, id); err != nil {
				errs = append(errs, err)
			}
		}
	}
	return errors.Join(errs...)
}

// strayIDs returns the container IDs named by namespace files, libcni cache entries and
// address leases.
func (c *Controller) strayIDs() (map[string]bool, error) {
	ids := map[string]bool{}
	ents, err := os.ReadDir(c.netnsDir)
	if err != nil {
		return nil, fmt.Errorf("list netns dir: %w", err)
	}
	for _, e := range ents {
		ids[e.Name()] = true
	}
	caches, _ := filepath.Glob(filepath.Join(c.root, "cache", "results", "*"))
	for _, p := range caches {
		var ci struct {
			ContainerID string `json:"containerId"`
		}
		if b, err := os.ReadFile(p); err == nil && json.Unmarshal(b, &ci) == nil && ci.ContainerID != "" {
			ids[ci.ContainerID] = true
		}
	}
	leases, _ := filepath.Glob(filepath.Join(c.root, "ipam", "*", "*"))
	for _, p := range leases {
		if id := leaseOwner(p); id != "" {
			ids[id] = true
		}
	}
	return ids, nil
}

// leaseOwner returns the container ID in a host-local lease file ("ID\r\nIFNAME"), or
// "" for host-local's lock and last-reserved files.
func leaseOwner(path string) string {
	if _, err := netip.ParseAddr(filepath.Base(path)); err != nil {
		return ""
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return ""
	}
	id, _, _ := strings.Cut(string(b), "\n")
	return strings.TrimSpace(id)
}

// sweepLocked removes what container id may have left without a record: CNI DEL from
// libcni's cached attachments, its leases, its namespace mount.
func (c *Controller) sweepLocked(ctx context.Context, id string) error {
	var errs []error
	nsPath := c.NetnsPath(id)
	ns := nsPath
	if !isNetns(ns) {
		ns = ""
	}
	cached, _ := c.cni.GetCachedAttachments(id)
	for _, ca := range cached {
		rt := &libcni.RuntimeConf{ContainerID: id, NetNS: ns, IfName: ca.IfName, Args: ca.CniArgs, CapabilityArgs: ca.CapabilityArgs}
		var err error
		if l, lerr := libcni.ConfListFromBytes(ca.Config); lerr == nil && len(l.Plugins) > 0 {
			var ip netip.Addr
			var veths []string
			if res, rerr := c.cni.GetNetworkListCachedResult(l, rt); rerr == nil && res != nil {
				if r, cerr := types100.NewResultFromResult(res); cerr == nil {
					for _, ipc := range r.IPs {
						if a, ok := netip.AddrFromSlice(ipc.Address.IP); ok && a.Unmap().Is4() {
							ip = a.Unmap()
						}
					}
					for _, ifc := range r.Interfaces {
						if ifc.Sandbox == "" && strings.HasPrefix(ifc.Name, "veth") {
							veths = append(veths, ifc.Name)
						}
					}
				}
			}
			if err = c.cni.DelNetworkList(ctx, l, rt); err == nil && ns == "" {
				if perContainerRules(ca.Config) {
					err = teardownMasq(l.Name, id, ip)
				}
				for _, v := range veths {
					err = errors.Join(err, deleteLink(v))
				}
			}
		} else if p, perr := libcni.ConfFromBytes(ca.Config); perr == nil {
			err = c.cni.DelNetwork(ctx, p, rt)
		} else {
			err = fmt.Errorf("parse cached config: %w", lerr)
		}
		if err != nil {
			errs = append(errs, fmt.Errorf("sweep network %q of %s: %w", ca.Network, id, err))
		}
	}
	leases, _ := filepath.Glob(filepath.Join(c.root, "ipam", "*", "*"))
	for _, p := range leases {
		if leaseOwner(p) == id {
			// A Setup killed during CNI ADD left rules for this address
			// but no cached result to DEL them from: the lease names it.
			if ip, err := netip.ParseAddr(filepath.Base(p)); err == nil {
				if err := teardownMasq(filepath.Base(filepath.Dir(p)), id, ip); err != nil {
					errs = append(errs, err)
				}
				if err := teardownForward(ip); err != nil {
					errs = append(errs, err)
				}
			}
			if err := os.Remove(p); err != nil {
				errs = append(errs, fmt.Errorf("release lease %s: %w", p, err))
			}
		}
	}
	if err := removeNetns(nsPath); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}

// NetnsPath is where Setup puts container id's namespace in bridge and none mode. It
// does not change between Setups of the same ID, so the manager can write it into
// config.json when it creates the bundle and run Setup only when the container starts.
func (c *Controller) NetnsPath(id string) string {
	return filepath.Join(c.netnsDir, id)
}

func (c *Controller) attachPath(id string) string {
	return filepath.Join(c.root, "attach", id+".json")
}

// Attachment returns container id's record; errdefs.ErrNotFound when it has none.
func (c *Controller) Attachment(id string) (*Attachment, error) {
	return c.readAttachment(id)
}

func (c *Controller) readAttachment(id string) (*Attachment, error) {
	if id == "" || !idRE().MatchString(id) {
		return nil, fmt.Errorf("container %q: %w", id, errdefs.ErrNotFound)
	}
	b, err := os.ReadFile(c.attachPath(id))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("network of container %s: %w", id, errdefs.ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read network record of %s: %w", id, err)
	}
	var a Attachment
	if err := json.Unmarshal(b, &a); err != nil {
		return nil, fmt.Errorf("parse network record of %s: %w", id, err)
	}
	return &a, nil
}

func (c *Controller) saveAttachment(a *Attachment) error {
	b, err := json.MarshalIndent(a, "", "  ")
	if err != nil {
		return fmt.Errorf("encode network record of %s: %w", a.ID, err)
	}
	return writeFileAtomic(c.attachPath(a.ID), b)
}

// Attachments returns every container's record, sorted by ID.
func (c *Controller) Attachments() ([]*Attachment, error) {
	return c.attachments()
}

func (c *Controller) attachments() ([]*Attachment, error) {
	paths, err := filepath.Glob(filepath.Join(c.root, "attach", "*.json"))
	if err != nil {
		return nil, err
	}
	sort.Strings(paths)
	var out []*Attachment
	for _, p := range paths {
		a, err := c.readAttachment(strings.TrimSuffix(filepath.Base(p), ".json"))
		if err != nil {
			return nil, err
		}
		out = append(out, a)
	}
	return out, nil
}

// hostEntries returns a's /etc/hosts entries: itself first, then the other containers
// on its network. A container sharing another's namespace answers to that one's IP.
func (c *Controller) hostEntries(a *Attachment, atts []*Attachment) []HostEntry {
	if !a.IP.IsValid() {
		names := names(a.Hostname, a.Name)
		if len(names) == 0 || a.Mode.Kind == ModeHost {
			return nil
		}
		// No address of its own to name: the hostname resolves to loopback, as
		// docker does with --network none.
		return []HostEntry{{IP: netip.MustParseAddr("127.0.1.1"), Names: names}}
	}
	out := []HostEntry{{IP: a.IP, Names: names(a.Hostname, a.Name)}}
	for _, p := range atts {
		if p.ID == a.ID || p.Network != a.Network || !p.IP.IsValid() || !p.Complete {
			continue
		}
		if n := names(p.Name, p.Hostname); len(n) > 0 {
			out = append(out, HostEntry{IP: p.IP, Names: n})
		}
	}
	return out
}

func names(ns ...string) []string {
	var out []string
	for _, n := range ns {
		if n != "" && !strings.ContainsAny(n, " \t\r\n#") && !contains(out, n) {
			out = append(out, n)
		}
	}
	return out
}

func contains(s []string, v string) bool {
	for _, x := range s {
		if x == v {
			return true
		}
	}
	return false
}

// writeFilesLocked writes a's hostname, hosts and resolv.conf into a.FilesDir. With the
// host network the container sees the host's own hosts and resolv.conf, as docker does.
func (c *Controller) writeFilesLocked(a *Attachment) error {
	if a.FilesDir == "" {
		return nil
	}
	if err := os.MkdirAll(a.FilesDir, 0o755); err != nil {
		return fmt.Errorf("create %s: %w", a.FilesDir, err)
	}
	if a.Mode.Kind == ModeHost {
		hostname := a.Hostname
		if hostname == "" {
			hostname, _ = os.Hostname()
		}
		hosts, err := os.ReadFile("/etc/hosts")
		if err != nil {
			hosts = Hosts(nil)
		}
		resolv, _ := os.ReadFile(c.resolvPath)
		for name, data := range map[string][]byte{HostnameFile: []byte(hostname + "\n"), HostsFile: hosts, ResolvFile: resolv} {
			if err := writeInPlace(filepath.Join(a.FilesDir, name), data); err != nil {
				return err
			}
		}
		return nil
	}
	atts, err := c.attachments()
	if err != nil {
		return err
	}
	return WriteFiles(a.FilesDir, a.Hostname, c.hostEntries(a, atts), c.resolvPath)
}

// refreshPeersLocked rewrites the hosts file of every container on network (except
// skip, written already), so that they resolve one another by name. A failure is
// logged, not returned: one container's hosts file cannot fail another's start.
func (c *Controller) refreshPeersLocked(network, skip string) {
	atts, err := c.attachments()
	if err != nil {
		c.log.Warn().Err(err).Msg("refresh hosts files")
		return
	}
	for _, p := range atts {
		if p.ID == skip || p.Network != network || p.FilesDir == "" || !p.Complete {
			continue
		}
		if _, err := os.Stat(filepath.Join(p.FilesDir, HostsFile)); err != nil {
			continue
		}
		if err := writeInPlace(filepath.Join(p.FilesDir, HostsFile), Hosts(c.hostEntries(p, atts))); err != nil {
			c.log.Warn().Err(err).Str("id", p.ID).Msg("refresh hosts file")
		}
	}
}

// writeFileAtomic writes path by temp file, fsync and rename.
func writeFileAtomic(path string, data []byte) error {
	f, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	defer os.Remove(f.Name())
	if _, err = f.Write(data); err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

// dropTornCache removes libcni's cached result for (network, rt) if it is
// not valid JSON, and reports whether it did.
func (c *Controller) dropTornCache(network string, rt *libcni.RuntimeConf) bool {
	p := filepath.Join(c.root, "cache", "results", network+"-"+rt.ContainerID+"-"+rt.IfName)
	b, err := os.ReadFile(p)
	if err != nil || json.Valid(b) {
		return false
	}
	return os.Remove(p) == nil
}

// leaseIP returns the address host-local leased to container id on network,
// if any.
func (c *Controller) leaseIP(network, id string) netip.Addr {
	leases, _ := filepath.Glob(filepath.Join(c.root, "ipam", network, "*"))
	for _, p := range leases {
		if leaseOwner(p) == id {
			if ip, err := netip.ParseAddr(filepath.Base(p)); err == nil {
				return ip
			}
		}
	}
	return netip.Addr{}
}
