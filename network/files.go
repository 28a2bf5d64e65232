package network

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"strings"
)

// HostEntry is one /etc/hosts line: an address and its names.
type HostEntry struct {
	IP    netip.Addr
	Names []string
}

// FallbackNameservers are written to resolv.conf when the host's only nameservers are
// loopback addresses (systemd-resolved's 127.0.0.53, a local dnsmasq): those answer in
// the host's network namespace, not in the container's, so they would be dead there.
// Docker falls back to the same public resolvers.
var FallbackNameservers = []string{"8.8.8.8", "8.8.4.4"}

// Hosts returns /etc/hosts content: the localhost lines, then self (the container's
// own address and names, which the first line of entries usually is), then peers.
// Entries without a valid address or names are skipped.
func Hosts(entries []HostEntry) []byte {
	var b bytes.Buffer
	b.WriteString("127.0.0.1\tlocalhost\n")
	b.WriteString("::1\tlocalhost ip6-localhost ip6-loopback\n")
	for _, e := range entries {
		if !e.IP.IsValid() || len(e.Names) == 0 {
			continue
		}
		fmt.Fprintf(&b, "%s\t%s\n", e.IP, strings.Join(e.Names, " "))
	}
	return b.Bytes()
}

// ResolvConf returns the container's resolv.conf made from the host's (src): every
// line is kept except nameservers on a loopback address (127.0.0.0/8, ::1), which do
// not answer inside another network namespace. When no nameserver is left,
// FallbackNameservers are added.
func ResolvConf(src []byte) []byte {
	var b bytes.Buffer
	servers := 0
	sc := bufio.NewScanner(bytes.NewReader(src))
	for sc.Scan() {
		line := sc.Text()
		f := strings.Fields(line)
		if len(f) >= 2 && f[0] == "nameserver" {
			// A zone suffix (fe80::1%eth0) names a host interface: useless inside too.
			ip, err := netip.ParseAddr(f[1])
			if err != nil || ip.IsLoopback() || ip.Zone() != "" {
				continue
			}
			servers++
		}
		b.WriteString(line)
		b.WriteByte('\n')
	}
	if servers == 0 {
		for _, s := range FallbackNameservers {
			fmt.Fprintf(&b, "nameserver %s\n", s)
		}
	}
	return b.Bytes()
}

// File names WriteFiles writes, as the container sees them under /etc.
const (
	HostsFile    = "hosts"
	HostnameFile = "hostname"
	ResolvFile   = "resolv.conf"
)

// WriteFiles writes hostname, hosts and resolv.conf into dir for a container to
// bind-mount at /etc: hostname on a line, Hosts(entries), and ResolvConf of the host's
// resolvPath (usually /etc/resolv.conf; a missing file gives the fallback servers).
func WriteFiles(dir, hostname string, entries []HostEntry, resolvPath string) error {
	src, err := os.ReadFile(resolvPath)
	if err != nil && !errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("read %s: %w", resolvPath, err)
	}
	for name, data := range map[string][]byte{
		HostnameFile: []byte(hostname + "\n"),
		HostsFile:    Hosts(entries),
		ResolvFile:   ResolvConf(src),
	} {
		if err := writeInPlace(filepath.Join(dir, name), data); err != nil {
			return err
		}
	}
	return nil
}

// writeInPlace replaces path's content without replacing the file: a running
// container has it bind-mounted, and a bind mount pins the inode, so a rename would
// leave the container reading the old file.
func writeInPlace(path string, data []byte) error {
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}
