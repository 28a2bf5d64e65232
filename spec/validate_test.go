package spec

import (
	"errors"
	"fmt"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func intp(i int) *int { return &i }

// withNS replaces the namespace list.
func withNS(types ...specs.LinuxNamespaceType) func(*specs.Spec) {
	return func(s *specs.Spec) {
		s.Linux.Namespaces = nil
		for _, t := range types {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: t})
		}
	}
}

func TestValidateErrors(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*specs.Spec)
		want   string
	}{
		{"version empty", func(s *specs.Spec) { s.Version = "" }, "ociVersion must not be empty"},
		{"version 2", func(s *specs.Spec) { s.Version = "2.0.0" }, `ociVersion "2.0.0" is not supported: want 1.x.y (up to 1.3.0)`},
		{"version 0", func(s *specs.Spec) { s.Version = "0.6.0-rc1" }, `ociVersion "0.6.0-rc1" is not supported: want 1.x.y (up to 1.3.0)`},
		{"version junk", func(s *specs.Spec) { s.Version = "1.x" }, `ociVersion "1.x" is not a semantic version`},
		{"no root", func(s *specs.Spec) { s.Root = nil }, "root.path must not be empty"},
		{"empty root", func(s *specs.Spec) { s.Root.Path = "" }, "root.path must not be empty"},
		{"no cwd", func(s *specs.Spec) { s.Process.Cwd = "" }, "Cwd property must not be empty"},
		{"relative cwd", func(s *specs.Spec) { s.Process.Cwd = "home" }, "Cwd must be an absolute path"},
		{"no args", func(s *specs.Spec) { s.Process.Args = nil }, "args must not be empty"},
		{"env nul", func(s *specs.Spec) { s.Process.Env = append(s.Process.Env, "A=b\x00c") }, `process.env[2]: "A=b\x00c" contains a NUL byte`},
		{"rlimit type", func(s *specs.Spec) {
			s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_TEST", Hard: 1, Soft: 1})
		}, `process.rlimits[1]: unknown rlimit type "RLIMIT_TEST"`},
		{"rlimit dup", func(s *specs.Spec) {
			s.Process.Rlimits = append(s.Process.Rlimits, specs.POSIXRlimit{Type: "RLIMIT_NOFILE", Hard: 1, Soft: 1})
		}, `process.rlimits[1]: duplicate rlimit type "RLIMIT_NOFILE"`},
		{"rlimit soft>hard", func(s *specs.Spec) { s.Process.Rlimits[0].Soft = 2048 },
			"process.rlimits[0]: RLIMIT_NOFILE soft limit 2048 exceeds hard limit 1024"},
		{"cap", func(s *specs.Spec) { s.Process.Capabilities.Permitted[2] = "CAP_FOO" },
			`process.capabilities.permitted[2]: unknown capability "CAP_FOO"`},
		{"cap lowercase", func(s *specs.Spec) { s.Process.Capabilities.Ambient[0] = "cap_kill" },
			`process.capabilities.ambient[0]: unknown capability "cap_kill"`},
		{"cap inheritable", func(s *specs.Spec) { s.Process.Capabilities.Inheritable = []string{"KILL"} },
			`process.capabilities.inheritable[0]: unknown capability "KILL"`},
		{"oom", func(s *specs.Spec) { s.Process.OOMScoreAdj = intp(1001) }, "process.oomScoreAdj: 1001 is outside [-1000, 1000]"},
		{"sched no policy", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{} }, "process.scheduler.policy must not be empty"},
		{"sched policy", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Policy: "SCHED_FAST"} },
			`process.scheduler.policy: unknown policy "SCHED_FAST"`},
		{"sched nice", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedOther, Nice: 20} },
			"process.scheduler.nice: 20 is outside [-20, 19]"},
		{"sched prio", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedOther, Priority: 3} },
			"process.scheduler.priority can only be specified for SCHED_FIFO or SCHED_RR"},
		{"sched deadline", func(s *specs.Spec) { s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedRR, Runtime: 5} },
			"process.scheduler runtime/deadline/period can only be specified for SCHED_DEADLINE"},
		{"sched flag", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedOther, Flags: []specs.LinuxSchedulerFlag{"SCHED_FLAG_X"}}
		}, `process.scheduler.flags[0]: unknown flag "SCHED_FLAG_X"`},
		{"ioprio class", func(s *specs.Spec) { s.Process.IOPriority = &specs.LinuxIOPriority{Class: "IOPRIO_CLASS_NONE"} },
			`process.ioPriority.class: unknown class "IOPRIO_CLASS_NONE"`},
		{"ioprio level", func(s *specs.Spec) {
			s.Process.IOPriority = &specs.LinuxIOPriority{Class: specs.IOPRIO_CLASS_BE, Priority: 8}
		},
			"process.ioPriority.priority: 8 is outside [0, 7]"},
		{"mount no destination", func(s *specs.Spec) { s.Mounts[3].Destination = "" }, "mounts[3].destination must not be empty"},
		{"mount idmap half", func(s *specs.Spec) {
			s.Mounts[0].UIDMappings = []specs.LinuxIDMapping{{Size: 1}}
		}, "mounts[0]: uidMappings and gidMappings must be set together"},
		{"hook relative", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{Poststop: []specs.Hook{{Path: "/bin/true"}, {Path: "true"}}}
		}, `hooks.poststop[1].path "true" must be an absolute path`},
		{"hook timeout", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{CreateRuntime: []specs.Hook{{Path: "/bin/true", Timeout: intp(0)}}}
		}, "hooks.createRuntime[0].timeout must be positive, got 0"},
		{"annotation key", func(s *specs.Spec) { s.Annotations = map[string]string{"": "x"} }, "annotations: keys must not be empty"},
		{"ns type", func(s *specs.Spec) { s.Linux.Namespaces[1].Type = "net" }, `linux.namespaces[1]: unknown namespace type "net"`},
		{"ns dup", withNS(specs.PIDNamespace, specs.UTSNamespace, specs.PIDNamespace), `linux.namespaces[2]: duplicated namespace type "pid"`},
		{"ns path", func(s *specs.Spec) { s.Linux.Namespaces[0].Path = "proc/1/ns/pid" },
			`linux.namespaces[0].path "proc/1/ns/pid" must be an absolute path`},
		{"hostname no uts", withNS(specs.PIDNamespace, specs.MountNamespace), "unable to set hostname without a private UTS namespace"},
		{"hostname no linux", func(s *specs.Spec) { s.Linux = nil }, "unable to set hostname without a private UTS namespace"},
		{"domainname no uts", func(s *specs.Spec) {
			withNS(specs.MountNamespace)(s)
			s.Hostname = ""
			s.Domainname = "example.org"
		}, "unable to set domainname without a private UTS namespace"},
		{"mappings without userns", func(s *specs.Spec) {
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: 1000, Size: 1}}
		}, "User namespace mappings specified, but USER namespace isn't enabled in the config"},
		{"userns without mappings", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: 1000, Size: 1}}
		}, "linux.uidMappings and linux.gidMappings are required for a new user namespace"},
		{"mapping size", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace})
			s.Linux.UIDMappings = []specs.LinuxIDMapping{{HostID: 1000, Size: 1}}
			s.Linux.GIDMappings = []specs.LinuxIDMapping{{HostID: 1000, Size: 1}, {ContainerID: 1, HostID: 2000}}
		}, "linux.gidMappings[1].size must not be 0"},
		{"time offsets", func(s *specs.Spec) { s.Linux.TimeOffsets = map[string]specs.LinuxTimeOffset{"monotonic": {Secs: 1}} },
			"time namespace offsets specified, but time namespace isn't enabled in the config"},
		{"masked without mntns", func(s *specs.Spec) {
			withNS(specs.PIDNamespace, specs.UTSNamespace)(s)
			s.Mounts = nil
		}, "unable to restrict sys entries without a private MNT namespace"},
		{"masked relative", func(s *specs.Spec) { s.Linux.MaskedPaths[4] = "proc/timer_list" },
			`linux.maskedPaths[4] "proc/timer_list" must be an absolute path`},
		{"readonly relative", func(s *specs.Spec) { s.Linux.ReadonlyPaths[0] = "" },
			`linux.readonlyPaths[0] "" must be an absolute path`},
		{"sysctl net host", func(s *specs.Spec) {
			withNS(specs.UTSNamespace, specs.MountNamespace)(s)
			s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"}
		}, `sysctl "net.ipv4.ip_forward" not allowed in host network namespace`},
		{"sysctl net slash", func(s *specs.Spec) {
			withNS(specs.UTSNamespace, specs.MountNamespace)(s)
			s.Linux.Sysctl = map[string]string{"net/ipv4/conf/eth0.100/rp_filter": "1"}
		}, `sysctl "net.ipv4.conf.eth0/100.rp_filter" not allowed in host network namespace`},
		{"sysctl net host path", func(s *specs.Spec) {
			s.Linux.Namespaces[1].Path = "/proc/self/ns/net"
			s.Linux.Sysctl = map[string]string{"net.core.somaxconn": "1"}
		}, `sysctl "net.core.somaxconn" not allowed in host network namespace`},
		{"sysctl ipc host", func(s *specs.Spec) {
			withNS(specs.UTSNamespace, specs.MountNamespace)(s)
			s.Linux.Sysctl = map[string]string{"kernel.shmmax": "1"}
		}, `sysctl "kernel.shmmax" is not allowed in the hosts ipc namespace`},
		{"sysctl mqueue host", func(s *specs.Spec) {
			withNS(specs.UTSNamespace, specs.MountNamespace)(s)
			s.Linux.Sysctl = map[string]string{"fs.mqueue.msg_max": "1"}
		}, `sysctl "fs.mqueue.msg_max" is not allowed in the hosts ipc namespace`},
		{"sysctl hostname", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"kernel.hostname": "x"} },
			`sysctl "kernel.hostname" is not allowed as it conflicts with the OCI "hostname" field`},
		{"sysctl domainname host", func(s *specs.Spec) {
			withNS(specs.MountNamespace)(s)
			s.Hostname = ""
			s.Linux.Sysctl = map[string]string{"kernel.domainname": "x"}
		}, `sysctl "kernel.domainname" is not in a separate kernel namespace`},
		{"sysctl global", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"vm.swappiness": "1"} },
			`sysctl "vm.swappiness" is not in a separate kernel namespace`},
		{"sysctl first sorted", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"vm.b": "1", "vm.a": "1", "vm.c": "1"} },
			`sysctl "vm.a" is not in a separate kernel namespace`},
		{"cgroups dotdot", func(s *specs.Spec) { s.Linux.CgroupsPath = "/a/../../b" }, `linux.cgroupsPath "/a/../../b" must not contain ".."`},
		{"cgroups systemd dotdot", func(s *specs.Spec) { s.Linux.CgroupsPath = "system.slice:..:x" }, `linux.cgroupsPath "system.slice:..:x" must not contain ".."`},
		{"cgroups colons", func(s *specs.Spec) { s.Linux.CgroupsPath = "a:b" }, `linux.cgroupsPath "a:b": want a path or slice:prefix:name`},
		{"propagation", func(s *specs.Spec) { s.Linux.RootfsPropagation = "rmaster" }, `linux.rootfsPropagation "rmaster" is not supported`},
		{"device path", func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{Path: "dev/fuse", Type: "c"}} },
			`linux.devices[0].path "dev/fuse" must be an absolute path`},
		{"device type", func(s *specs.Spec) { s.Linux.Devices = []specs.LinuxDevice{{Path: "/dev/fuse", Type: "x"}} },
			`linux.devices[0].type "x" is not one of c, b, u, p`},
		{"cgroup device type", func(s *specs.Spec) { s.Linux.Resources.Devices[0].Type = "u" },
			`linux.resources.devices[0].type "u" is not one of a, c, b`},
		{"cgroup device access", func(s *specs.Spec) { s.Linux.Resources.Devices[0].Access = "rwx" },
			`linux.resources.devices[0].access "rwx" is not a combination of r, w, m`},
		{"seccomp default", func(s *specs.Spec) { s.Linux.Seccomp = &specs.LinuxSeccomp{} }, `linux.seccomp.defaultAction: unknown action ""`},
		{"seccomp arch", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Architectures: []specs.Arch{"x86_64"}}
		}, `linux.seccomp.architectures[0]: unknown architecture "x86_64"`},
		{"seccomp flag", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Flags: []specs.LinuxSeccompFlag{"LOG"}}
		}, `linux.seccomp.flags[0]: unknown flag "LOG"`},
		{"seccomp names", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Action: specs.ActErrno}}}
		}, "linux.seccomp.syscalls[0].names must not be empty"},
		{"seccomp action", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{Names: []string{"mount"}, Action: "SCMP_ACT_NOPE"}}}
		}, `linux.seccomp.syscalls[0].action: unknown action "SCMP_ACT_NOPE"`},
		{"seccomp arg index", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{
				Names: []string{"mount"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 6, Op: specs.OpEqualTo}},
			}}}
		}, "linux.seccomp.syscalls[0].args[0].index 6 is outside [0, 5]"},
		{"seccomp arg op", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActAllow, Syscalls: []specs.LinuxSyscall{{
				Names: []string{"mount"}, Action: specs.ActErrno, Args: []specs.LinuxSeccompArg{{Index: 1, Op: "=="}},
			}}}
		}, `linux.seccomp.syscalls[0].args[0].op: unknown operator "=="`},
		{"seccomp notify", func(s *specs.Spec) { s.Linux.Seccomp = &specs.LinuxSeccomp{DefaultAction: specs.ActNotify} },
			"linux.seccomp.listenerPath must be set when an action is SCMP_ACT_NOTIFY"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Default()
			tt.modify(s)
			err := Validate(s, "")
			if err == nil {
				t.Fatalf("Validate accepted the config, want %q", tt.want)
			}
			if err.Error() != tt.want {
				t.Fatalf("err  = %s\nwant = %s", err, tt.want)
			}
			if !errors.Is(err, ErrInvalid) {
				t.Fatal("error does not wrap ErrInvalid")
			}
		})
	}
}

func TestValidateAccepts(t *testing.T) {
	tests := []struct {
		name   string
		modify func(*specs.Spec)
	}{
		{"terminal", func(s *specs.Spec) { s.Process.Terminal = true }},
		{"no process", func(s *specs.Spec) { s.Process = nil }},
		{"no linux, no hostname", func(s *specs.Spec) { s.Linux = nil; s.Hostname = ""; s.Mounts = nil }},
		{"relative mount destination", func(s *specs.Spec) { s.Mounts[0].Destination = "proc" }},
		{"any 1.x", func(s *specs.Spec) { s.Version = "1.9.0" }},
		{"net sysctl own netns", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"net.ipv4.ip_forward": "1"} }},
		{"ipc sysctl own ipcns", func(s *specs.Spec) {
			s.Linux.Sysctl = map[string]string{"kernel.msgmax": "8192", "fs.mqueue.queues_max": "1"}
		}},
		{"domainname sysctl", func(s *specs.Spec) { s.Linux.Sysctl = map[string]string{"kernel.domainname": "x"} }},
		{"userns by path", func(s *specs.Spec) {
			s.Linux.Namespaces = append(s.Linux.Namespaces, specs.LinuxNamespace{Type: specs.UserNamespace, Path: "/proc/1/ns/user"})
		}},
		{"all caps", func(s *specs.Spec) { s.Process.Capabilities.Bounding = Capabilities }},
		{"cgroups paths", func(s *specs.Spec) { s.Linux.CgroupsPath = "machine.slice:cubo:abc" }},
		{"cgroups relative", func(s *specs.Spec) { s.Linux.CgroupsPath = "testdir/cgrouptest/container" }},
		{"deadline", func(s *specs.Spec) {
			s.Process.Scheduler = &specs.Scheduler{Policy: specs.SchedDeadline, Runtime: 1, Deadline: 2, Period: 3}
		}},
		{"seccomp", func(s *specs.Spec) {
			s.Linux.Seccomp = &specs.LinuxSeccomp{
				DefaultAction: specs.ActErrno, Architectures: []specs.Arch{specs.ArchX86_64, specs.ArchX32},
				Syscalls: []specs.LinuxSyscall{{Names: []string{"read"}, Action: specs.ActAllow}},
			}
		}},
		{"hooks", func(s *specs.Spec) {
			s.Hooks = &specs.Hooks{Prestart: []specs.Hook{{Path: "/bin/true", Timeout: intp(5)}}}
		}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := Default()
			tt.modify(s)
			if err := Validate(s, ""); err != nil {
				t.Fatal(err)
			}
		})
	}
}

func TestValidateNil(t *testing.T) {
	if err := Validate(nil, ""); err == nil || err.Error() != "config must not be empty" {
		t.Fatalf("err = %v", err)
	}
}

func TestValidateProcess(t *testing.T) {
	tests := []struct {
		p    *specs.Process
		want string
	}{
		{nil, "process property must not be empty"},
		{&specs.Process{Args: []string{"ls"}}, "Cwd property must not be empty"},
		// runc's order: cwd before args.
		{&specs.Process{Cwd: "tmp"}, "Cwd must be an absolute path"},
		{&specs.Process{Cwd: "/"}, "args must not be empty"},
		{&specs.Process{Cwd: "/", Args: []string{"ls"}, Rlimits: []specs.POSIXRlimit{{Type: "NOFILE"}}},
			`process.rlimits[0]: unknown rlimit type "NOFILE"`},
		{&specs.Process{Cwd: "/", Args: []string{"ls"}}, ""},
		{&specs.Process{Cwd: "/", Args: []string{"ls"}, Terminal: true, ConsoleSize: &specs.Box{Height: 1, Width: 1}}, ""},
	}
	for i, tt := range tests {
		t.Run(fmt.Sprint(i), func(t *testing.T) {
			err := ValidateProcess(tt.p)
			got := ""
			if err != nil {
				got = err.Error()
			}
			if got != tt.want {
				t.Fatalf("err = %q, want %q", got, tt.want)
			}
		})
	}
}

func TestMountDestination(t *testing.T) {
	for in, want := range map[string]string{"/proc": "/proc", "proc": "/proc", "a/../b/": "/b", "../../etc": "/etc"} {
		if got := MountDestination(in); got != want {
			t.Errorf("MountDestination(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestCapabilityNumber(t *testing.T) {
	for name, want := range map[string]int{"CAP_CHOWN": 0, "CAP_KILL": 5, "CAP_SYS_ADMIN": 21, "CAP_CHECKPOINT_RESTORE": 40} {
		if n, ok := CapabilityNumber(name); !ok || n != want {
			t.Errorf("CapabilityNumber(%s) = %d, %v", name, n, ok)
		}
	}
	if _, ok := CapabilityNumber("CAP_NOPE"); ok {
		t.Error("CAP_NOPE accepted")
	}
}
