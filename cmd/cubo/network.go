package main

import (
	"encoding/json"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"text/tabwriter"

	"github.com/cubo-dev/cubo/network"
)

// networkCmd groups the bridge-network verbs.
type networkCmd struct {
	Ls      networkLsCmd      `cmd:"" help:"List networks."`
	Create  networkCreateCmd  `cmd:"" help:"Create a bridge network; containers on it reach each other by name."`
	Rm      networkRmCmd      `cmd:"" help:"Remove networks no container uses."`
	Inspect networkInspectCmd `cmd:"" help:"Show networks and their containers as JSON."`
}

// networks opens the network controller under root_dir/network.
func (g *globals) networks() (*network.Controller, error) {
	c, err := network.New(filepath.Join(g.root, "network"), append([]network.Opt{network.WithLogger(g.log)}, g.netOpts...)...)
	if err != nil {
		return nil, fmt.Errorf("open networks: %w", err)
	}
	return c, nil
}

type networkLsCmd struct {
	Format string `enum:"table,json" default:"table" help:"Output format: table or json."`
}

// Run lists networks as NAME, BRIDGE, SUBNET, GATEWAY, CONTAINERS.
func (c *networkLsCmd) Run(g *globals) error {
	nc, err := g.networks()
	if err != nil {
		return err
	}
	nets, err := nc.Networks()
	if err != nil {
		return err
	}
	if c.Format == "json" {
		return printJSONValue(nets)
	}
	atts, err := nc.Attachments()
	if err != nil {
		return err
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "NAME\tBRIDGE\tSUBNET\tGATEWAY\tCONTAINERS")
	for _, n := range nets {
		count := 0
		for _, a := range atts {
			if a.Network == n.Name {
				count++
			}
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\n", n.Name, n.Bridge, n.Subnet, n.Gateway, count)
	}
	return tw.Flush()
}

type networkCreateCmd struct {
	Name    string `arg:"" help:"Network name."`
	Subnet  string `placeholder:"CIDR" help:"IPv4 subnet (default: a free /24 in 10.78.0.0/16)."`
	Gateway string `placeholder:"IP" help:"The bridge's address (default: the subnet's first)."`
	Bridge  string `placeholder:"NAME" help:"Bridge device name (default: the first free cuboN)."`
}

// Run creates the network and prints its name.
func (c *networkCreateCmd) Run(g *globals) error {
	var o network.NetworkOptions
	var err error
	if c.Subnet != "" {
		if o.Subnet, err = netip.ParsePrefix(c.Subnet); err != nil {
			return fmt.Errorf("subnet %q: want a CIDR such as 10.78.5.0/24", c.Subnet)
		}
	}
	if c.Gateway != "" {
		if o.Gateway, err = netip.ParseAddr(c.Gateway); err != nil {
			return fmt.Errorf("gateway %q: want an IPv4 address", c.Gateway)
		}
	}
	o.Bridge = c.Bridge
	nc, err := g.networks()
	if err != nil {
		return err
	}
	n, err := nc.CreateNetwork(c.Name, o)
	if err != nil {
		return err
	}
	fmt.Println(n.Name)
	return nil
}

type networkRmCmd struct {
	Names []string `arg:"" name:"network" help:"Network names."`
}

// Run removes each network, printing its name; it stops at the first failure.
func (c *networkRmCmd) Run(g *globals) error {
	nc, err := g.networks()
	if err != nil {
		return err
	}
	for _, name := range c.Names {
		if err := nc.RemoveNetwork(name); err != nil {
			return err
		}
		fmt.Println(name)
	}
	return nil
}

type networkInspectCmd struct {
	Names []string `arg:"" name:"network" help:"Network names."`
}

// networkInfo is what inspect prints for one network.
type networkInfo struct {
	network.Network
	Containers []*network.Attachment `json:"containers"`
}

// Run prints the networks and the containers attached to them as a JSON array.
func (c *networkInspectCmd) Run(g *globals) error {
	nc, err := g.networks()
	if err != nil {
		return err
	}
	atts, err := nc.Attachments()
	if err != nil {
		return err
	}
	out := []networkInfo{}
	for _, name := range c.Names {
		n, err := nc.Network(name)
		if err != nil {
			return err
		}
		info := networkInfo{Network: n, Containers: []*network.Attachment{}}
		for _, a := range atts {
			if a.Network == n.Name {
				info.Containers = append(info.Containers, a)
			}
		}
		out = append(out, info)
	}
	return printJSONValue(out)
}

func printJSONValue(v any) error {
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(v)
}
