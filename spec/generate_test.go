package spec

import (
	"errors"
	"slices"
	"testing"

	specs "github.com/opencontainers/runtime-spec/specs-go"
)

func TestGenerateImageConfigAndOverrides(t *testing.T) {
	s, err := Generate(
		WithImageConfig(ImageConfig{
			Entrypoint: []string{"/ep"},
			Cmd:        []string{"a", "b"},
			Env:        []string{"PATH=/img/bin", "A=1"},
			WorkingDir: "/work",
			Labels:     map[string]string{"l": "v"},
		}),
		WithEnv("A=2", "B=x=y"),
		WithHostname("box"),
		WithBind("/host", "/c/", true),
		WithTmpfs("/dev/shm", "size=1m"),
		WithMemoryLimit(64<<20),
		WithCPUs(1.5),
		WithPidsLimit(10),
		WithReadonlyRootfs(true),
	)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(s.Process.Args, []string{"/ep", "a", "b"}) || s.Process.Cwd != "/work" {
		t.Errorf("args %v cwd %s", s.Process.Args, s.Process.Cwd)
	}
	if !slices.Equal(s.Process.Env, []string{"PATH=/img/bin", "A=2", "B=x=y"}) {
		t.Errorf("env %v", s.Process.Env)
	}
	if s.Process.Terminal || !s.Root.Readonly || s.Hostname != "box" || s.Annotations["l"] != "v" {
		t.Errorf("terminal %v readonly %v hostname %q annotations %v", s.Process.Terminal, s.Root.Readonly, s.Hostname, s.Annotations)
	}
	var bind, shm *specs.Mount
	n := 0
	for i, m := range s.Mounts {
		switch m.Destination {
		case "/c":
			bind = &s.Mounts[i]
		case "/dev/shm":
			shm = &s.Mounts[i]
			n++
		}
	}
	if bind == nil || bind.Source != "/host" || !slices.Contains(bind.Options, "ro") || !slices.Contains(bind.Options, "rbind") {
		t.Errorf("bind %+v", bind)
	}
	if n != 1 || shm.Type != "tmpfs" || !slices.Contains(shm.Options, "size=1m") {
		t.Errorf("a user tmpfs must replace the default /dev/shm: %d %+v", n, shm)
	}
	r := s.Linux.Resources
	if *r.Memory.Limit != 64<<20 || *r.CPU.Quota != 150000 || *r.CPU.Period != 100000 || *r.Pids.Limit != 10 {
		t.Errorf("resources %+v", r)
	}
	if err := Validate(s, t.TempDir()); err != nil && !errors.Is(err, ErrInvalid) {
		t.Errorf("validate: %v", err)
	}
}

func TestGenerateNetwork(t *testing.T) {
	netns := func(s *specs.Spec) *specs.LinuxNamespace {
		for i, ns := range s.Linux.Namespaces {
			if ns.Type == specs.NetworkNamespace {
				return &s.Linux.Namespaces[i]
			}
		}
		return nil
	}
	s, _ := Generate(WithHostNetwork())
	if netns(s) != nil {
		t.Error("host network keeps a network namespace")
	}
	s, _ = Generate(WithHostNetwork(), WithNetNSPath("/run/netns/x"))
	if ns := netns(s); ns == nil || ns.Path != "/run/netns/x" {
		t.Errorf("netns path: %+v", ns)
	}
	s, _ = Generate(WithPrivateNetwork())
	if ns := netns(s); ns == nil || ns.Path != "" {
		t.Errorf("private: %+v", ns)
	}
}

func TestGenerateErrors(t *testing.T) {
	for name, o := range map[string]Opt{
		"env":      WithEnv("NOVALUE"),
		"emptykey": WithEnv("=v"),
		"cwd":      WithCwd("rel"),
		"args":     WithProcessArgs(),
		"bind":     WithBind("rel", "/x", false),
		"tmpfs":    WithTmpfs("x"),
		"memory":   WithMemoryLimit(-1),
		"cpus":     WithCPUs(0.001),
		"pids":     WithPidsLimit(-1),
		"hostname": WithHostname("a/b"),
		"netns":    WithNetNSPath("x"),
	} {
		if _, err := Generate(o); !errors.Is(err, ErrInvalid) {
			t.Errorf("%s: got %v, want ErrInvalid", name, err)
		}
	}
}

func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"1024": 1024, "1k": 1024, "64m": 64 << 20, "2g": 2 << 30, "3MB": 3 << 20} {
		if got, err := ParseBytes(in); err != nil || got != want {
			t.Errorf("%s: %d %v", in, got, err)
		}
	}
	for _, bad := range []string{"", "x", "-1", "1t", "1.5m", "m"} {
		if _, err := ParseBytes(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}
