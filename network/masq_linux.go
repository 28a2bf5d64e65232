package network

import (
	"crypto/sha512"
	"fmt"
	"net/netip"
)

// teardownMasq removes the bridge plugin's masquerade rules for container id at ip:
// the POSTROUTING jump and the per-container chain. The bridge plugin in Debian 12
// (1.1.1) finds the addresses to unmasquerade by reading them from the container's
// interface, so its DEL leaves these behind when the namespace is gone; this does what
// it would have done, with the names it uses (plugins/pkg/utils FormatChainName and
// FormatComment). Rules already gone are not an error.
func teardownMasq(network, id string, ip netip.Addr) error {
	if !ip.IsValid() {
		return nil
	}
	sum := sha512.Sum512([]byte(network + id))
	chain := fmt.Sprintf("CNI-%x", sum)[:28]
	comment := fmt.Sprintf("name: %q id: %q", network, id)
	jump := []string{"POSTROUTING", "-s", ip.String() + "/32", "-m", "comment", "--comment", comment, "-j", chain}
	if err := deleteRule("nat", jump...); err != nil {
		return err
	}
	return deleteChain("nat", chain)
}

// teardownForward removes the firewall plugin's CNI-FORWARD rules for ip,
// for an address whose ADD was interrupted before libcni cached a result.
func teardownForward(ip netip.Addr) error {
	if !ip.IsValid() {
		return nil
	}
	host := ip.String() + "/32"
	for _, rule := range [][]string{
		{"CNI-FORWARD", "-d", host, "-m", "conntrack", "--ctstate", "RELATED,ESTABLISHED", "-j", "ACCEPT"},
		{"CNI-FORWARD", "-s", host, "-j", "ACCEPT"},
	} {
		if err := deleteRule("filter", rule...); err != nil {
			return err
		}
	}
	return nil
}
