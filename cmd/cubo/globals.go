package main

import (
	"fmt"
	"net/netip"

	"github.com/cubo-dev/cubo/images"
	"github.com/cubo-dev/cubo/network"
	"github.com/rs/zerolog"
)

// globals are the flags every verb shares and what is derived from them; verbs receive
// a *globals in Run.
type globals struct {
	RootDir  string `name:"root-dir" env:"CUBO_ROOT" placeholder:"DIR" help:"Directory for images and containers (default $XDG_STATE_HOME/cubo, $XDG_DATA_HOME/cubo, ~/.local/state/cubo or /tmp/cubo)."`
	LogLevel string `name:"log-level" env:"CUBO_LOG" default:"warn" placeholder:"LEVEL" help:"Log verbosity on stderr: trace, debug, info, warn, error, disabled."`
	Runtime  string `name:"runtime" env:"CUBO_RUNTIME" default:"cubo-runc" placeholder:"PATH|NAME" help:"OCI runtime binary: cubo-runc (next to cubo, then on PATH), runc, crun or a path."`
	// The default network is written once, on first use; these only matter then.
	DefaultBridge string `name:"default-bridge" env:"CUBO_DEFAULT_BRIDGE" placeholder:"DEV" help:"Bridge of the default network when it is first created (default cubo0)."`
	DefaultSubnet string `name:"default-subnet" env:"CUBO_DEFAULT_SUBNET" placeholder:"CIDR" help:"Subnet of the default network when it is first created (default 10.77.0.0/16)."`

	root    string
	log     zerolog.Logger
	netOpts []network.Opt
	// inUse tells the image store whether a container uses an image; the container
	// manager sets it so that rmb refuses images in use.
	inUse images.InUseFunc
}

func (g *globals) init() error {
	l, err := newLogger(g.LogLevel)
	if err != nil {
		return err
	}
	g.log = l
	g.root = ResolveRootDir(g.RootDir)
	if g.DefaultBridge != "" || g.DefaultSubnet != "" {
		bridge, subnet := network.DefaultBridge, network.DefaultSubnet
		if g.DefaultBridge != "" {
			bridge = g.DefaultBridge
		}
		if g.DefaultSubnet != "" {
			if subnet, err = netip.ParsePrefix(g.DefaultSubnet); err != nil || !subnet.Addr().Is4() {
				return fmt.Errorf("default subnet %q: want an IPv4 CIDR such as 10.77.0.0/16", g.DefaultSubnet)
			}
		}
		g.netOpts = append(g.netOpts, network.WithDefaultNetwork(bridge, subnet))
	}
	g.inUse = containersUseImage(g.root)
	return nil
}

// store opens the image store under the root dir.
func (g *globals) store(opts ...images.Opt) (*images.Store, error) {
	opts = append([]images.Opt{images.WithLogger(g.log)}, opts...)
	if g.inUse != nil {
		opts = append(opts, images.WithInUse(g.inUse))
	}
	s, err := images.New(g.root, opts...)
	if err != nil {
		return nil, fmt.Errorf("open image store: %w", err)
	}
	return s, nil
}

func imagesCertDirs(dirs []string) []images.Opt {
	if len(dirs) == 0 {
		return nil
	}
	return []images.Opt{images.WithCertDirs(dirs...)}
}

func loginTLS(v bool) images.LoginOpt { return images.LoginWithTLSVerify(v) }
