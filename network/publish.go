package network

import (
	"errors"
	"fmt"
	"net"
	"net/netip"
	"strconv"
	"strings"
	"syscall"
)

// PortMapping publishes a container port on the host: what `--publish` asks for.
type PortMapping struct {
	// HostIP is the host address the port is published on; the zero value means every
	// host address (and 127.0.0.1).
	HostIP        netip.Addr `json:"hostIP,omitzero"`
	HostPort      uint16     `json:"hostPort"`
	ContainerPort uint16     `json:"containerPort"`
	// Protocol is "tcp" or "udp".
	Protocol string `json:"protocol"`
}

// String formats m the way ParsePublish reads it.
func (m PortMapping) String() string {
	s := fmt.Sprintf("%d:%d/%s", m.HostPort, m.ContainerPort, m.Protocol)
	if m.HostIP.IsValid() {
		s = m.HostIP.String() + ":" + s
	}
	return s
}

// ParsePublish parses a `--publish` value: HOST:CONT or IP:HOST:CONT, each optionally
// followed by /tcp or /udp (tcp by default). Host and container ports must be 1-65535;
// IP must be an IPv4 address. The error is one line naming the value and what is wrong.
func ParsePublish(s string) (PortMapping, error) {
	bad := func(why string) (PortMapping, error) {
		return PortMapping{}, fmt.Errorf("publish %q: %s", s, why)
	}
	m := PortMapping{Protocol: "tcp"}
	rest := s
	if i := strings.LastIndexByte(rest, '/'); i >= 0 {
		m.Protocol = strings.ToLower(rest[i+1:])
		rest = rest[:i]
		if m.Protocol != "tcp" && m.Protocol != "udp" {
			return bad("protocol must be tcp or udp")
		}
	}
	parts := strings.Split(rest, ":")
	switch len(parts) {
	case 2:
	case 3:
		ip, err := netip.ParseAddr(parts[0])
		if err != nil {
			return bad(fmt.Sprintf("host IP %q is not an IP address", parts[0]))
		}
		if !ip.Is4() {
			return bad("only IPv4 host addresses can be published")
		}
		if !ip.IsUnspecified() {
			m.HostIP = ip
		}
		parts = parts[1:]
	default:
		return bad("want HOST:CONT[/tcp|udp] or IP:HOST:CONT[/tcp|udp]")
	}
	var err error
	if m.HostPort, err = parsePort(parts[0]); err != nil {
		return bad("host port " + err.Error())
	}
	if m.ContainerPort, err = parsePort(parts[1]); err != nil {
		return bad("container port " + err.Error())
	}
	return m, nil
}

func parsePort(s string) (uint16, error) {
	if s == "" {
		return 0, errors.New("is missing")
	}
	if strings.Contains(s, "-") {
		return 0, fmt.Errorf("%q: port ranges are not supported", s)
	}
	n, err := strconv.ParseUint(s, 10, 16)
	if err != nil || n == 0 {
		return 0, fmt.Errorf("%q is not a number in 1-65535", s)
	}
	return uint16(n), nil
}

// ParsePublishes parses several `--publish` values and rejects two that claim the same
// host port and protocol on overlapping addresses.
func ParsePublishes(specs []string) ([]PortMapping, error) {
	var out []PortMapping
	for _, s := range specs {
		m, err := ParsePublish(s)
		if err != nil {
			return nil, err
		}
		for _, o := range out {
			if clash(m, o) {
				return nil, fmt.Errorf("publish %q: host port %d/%s is already published by %q", s, m.HostPort, m.Protocol, o.String())
			}
		}
		out = append(out, m)
	}
	return out, nil
}

// clash reports whether a and b would claim the same host socket.
func clash(a, b PortMapping) bool {
	return a.HostPort == b.HostPort && a.Protocol == b.Protocol &&
		(!a.HostIP.IsValid() || !b.HostIP.IsValid() || a.HostIP == b.HostIP)
}

// ErrPortInUse is wrapped by CheckPorts when a host port is taken.
var ErrPortInUse = errors.New("port is already in use")

// CheckPorts fails when one of ports cannot be bound on the host now: another process
// listens there. It binds each address and closes it again; published ports are DNAT
// rules, not sockets, so ports published by other containers are checked separately
// (the Controller does it against its attachment records).
func CheckPorts(ports []PortMapping) error {
	for _, m := range ports {
		addr := "0.0.0.0"
		if m.HostIP.IsValid() {
			addr = m.HostIP.String()
		}
		hp := net.JoinHostPort(addr, strconv.Itoa(int(m.HostPort)))
		var err error
		if m.Protocol == "udp" {
			var c net.PacketConn
			if c, err = net.ListenPacket("udp4", hp); err == nil {
				err = c.Close()
			}
		} else {
			var l net.Listener
			if l, err = net.Listen("tcp4", hp); err == nil {
				err = l.Close()
			}
		}
		switch {
		case errors.Is(err, syscall.EADDRINUSE):
			return fmt.Errorf("publish %s: host port %s/%s: %w", m, hp, m.Protocol, ErrPortInUse)
		case errors.Is(err, syscall.EADDRNOTAVAIL):
			return fmt.Errorf("publish %s: host address %s is not an address of this host", m, addr)
		case err != nil:
			return fmt.Errorf("publish %s: bind %s/%s: %w", m, hp, m.Protocol, err)
		}
	}
	return nil
}
