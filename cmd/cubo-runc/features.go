package main

import (
	"encoding/json"
	"os"

	"strings"

	"github.com/moby/sys/capability"
	"github.com/opencontainers/runtime-spec/specs-go/features"
)

type featuresCmd struct{}

// Run prints what this build really supports; callers (containerd CRI,
// dockerd) enable features from it, so nothing unimplemented is listed.
func (c *featuresCmd) Run(g *globals) error {
	t := true
	f := features.Features{
		OCIVersionMin: "1.0.0",
		OCIVersionMax: specVersion,
		Hooks:         []string{"prestart", "createRuntime", "createContainer", "startContainer", "poststart", "poststop"},
		MountOptions:  mountOptions,
		Linux: &features.Linux{
			Namespaces:   []string{"cgroup", "ipc", "mount", "network", "pid", "time", "user", "uts"},
			Capabilities: capabilityNames(),
			Cgroup: &features.Cgroup{
				V1: &t,
				V2: &t,
			},
			Seccomp: &features.Seccomp{
				Enabled: &t,
			},
		},
		Annotations: map[string]string{
			"org.opencontainers.runc.checkpoint.enabled": "false",
		},
	}
	enc := json.NewEncoder(os.Stdout)
	enc.SetIndent("", "    ")
	return enc.Encode(f)
}

// mountOptions are the options spec.ParseMountOptions understands.
var mountOptions = []string{
	"async", "atime", "bind", "defaults", "dev", "diratime", "dirsync", "exec",
	"mand", "noatime", "nodev", "nodiratime", "noexec", "nomand", "norelatime",
	"nostrictatime", "nosuid", "private", "rbind", "relatime", "remount", "ro",
	"rprivate", "rshared", "rslave", "runbindable", "rw", "shared", "slave",
	"strictatime", "suid", "sync", "unbindable",
	"rro", "rrw", "rnosuid", "rsuid", "rnodev", "rdev", "rnoexec", "rexec",
	"rnodiratime", "rdiratime", "rrelatime", "rnorelatime", "rnoatime", "ratime",
	"rstrictatime", "rnostrictatime", "rnosymfollow", "rsymfollow",
}

func capabilityNames() []string {
	var out []string
	for _, c := range capability.ListKnown() {
		out = append(out, "CAP_"+strings.ToUpper(c.String()))
	}
	return out
}
