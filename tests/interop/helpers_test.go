package interop

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/moby/sys/mountinfo"
)

// Generous deadlines: they bound a hang, they never pace the test.
const (
	cmdTimeout    = 2 * time.Minute
	daemonTimeout = 90 * time.Second
)

type cmdResult struct {
	argv   string
	stdout string
	stderr string
	code   int
	err    error
}

func (r cmdResult) String() string {
	return fmt.Sprintf("$ %s\nexit %d (%v)\nstdout:\n%s\nstderr:\n%s", r.argv, r.code, r.err, r.stdout, r.stderr)
}

// runCmd runs a command to completion with a deadline. stdin may be nil.
func runCmd(env []string, stdin io.Reader, name string, args ...string) cmdResult {
	ctx, cancel := context.WithTimeout(context.Background(), cmdTimeout)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdin = stdin
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	// A detached child may inherit our pipes; don't wait for it.
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	r := cmdResult{argv: name + " " + strings.Join(args, " "), stdout: out.String(), stderr: errb.String(), err: err}
	if ee, ok := err.(*exec.ExitError); ok {
		r.code = ee.ExitCode()
	} else if err != nil {
		r.code = -1
	}
	return r
}

// must runs the command and fails the check unless it exits 0.
func must(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	r := runCmd(env, nil, name, args...)
	if r.err != nil {
		t.Fatalf("%s", r)
	}
	t.Logf("$ %s", r.argv)
	return r.stdout
}

// stopWaiting wraps an error that no amount of waiting will fix.
type stopWaiting struct{ error }

// waitFor polls cond until it returns nil or the deadline passes, or cond
// returns a stopWaiting error.
func waitFor(what string, deadline time.Duration, cond func() error) error {
	end := time.Now().Add(deadline)
	var err error
	for {
		if err = cond(); err == nil {
			return nil
		}
		if sw, ok := err.(stopWaiting); ok {
			return fmt.Errorf("%s: %w", what, sw.error)
		}
		if time.Now().After(end) {
			return fmt.Errorf("%s: still not true after %v: %w", what, deadline, err)
		}
		time.Sleep(200 * time.Millisecond)
	}
}

// daemon is an engine process we started; it is stopped by its PID only.
type daemon struct {
	name string
	cmd  *exec.Cmd
	log  string
	done chan struct{}
	err  error
}

func startDaemon(name, logPath string, env []string, argv ...string) (*daemon, error) {
	lf, err := os.OpenFile(logPath, os.O_WRONLY|os.O_CREATE|os.O_APPEND, 0o644)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), env...)
	cmd.Stdout, cmd.Stderr = lf, lf
	// Own process group: a terminal ^C to the test does not reach it first.
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		lf.Close()
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	d := &daemon{name: name, cmd: cmd, log: logPath, done: make(chan struct{})}
	go func() {
		d.err = cmd.Wait()
		lf.Close()
		close(d.done)
	}()
	return d, nil
}

func (d *daemon) exited() bool {
	select {
	case <-d.done:
		return true
	default:
		return false
	}
}

func (d *daemon) logTail() string {
	b, _ := os.ReadFile(d.log)
	if len(b) > 6000 {
		b = b[len(b)-6000:]
	}
	return string(b)
}

// waitReady polls probe until it succeeds, failing early if the daemon died.
func (d *daemon) waitReady(probe func() error) error {
	return waitFor(d.name+" ready", daemonTimeout, func() error {
		if d.exited() {
			return stopWaiting{fmt.Errorf("%s exited (%v); log:\n%s", d.name, d.err, d.logTail())}
		}
		return probe()
	})
}

// stop sends SIGTERM to the daemon's PID, then SIGKILL after a deadline.
func (d *daemon) stop() {
	if d == nil || d.exited() {
		return
	}
	d.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-d.done:
	case <-time.After(30 * time.Second):
		d.cmd.Process.Kill()
		<-d.done
	}
}

// killByCmdline kills, by PID, processes whose command line contains marker
// (a unique temp dir path): shims, conmon and the like left by an engine.
func killByCmdline(marker string) []string {
	var killed []string
	ents, _ := os.ReadDir("/proc")
	self := os.Getpid()
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil || pid == self {
			continue
		}
		b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline"))
		if err != nil || !bytes.Contains(b, []byte(marker)) {
			continue
		}
		if syscall.Kill(pid, syscall.SIGKILL) == nil {
			killed = append(killed, fmt.Sprintf("%d %s", pid, strings.ReplaceAll(string(b), "\x00", " ")))
		}
	}
	return killed
}

// cgroupRoots lists the mounted cgroup hierarchies.
func cgroupRoots() []string {
	var roots []string
	ents, _ := os.ReadDir("/sys/fs/cgroup")
	for _, e := range ents {
		p := filepath.Join("/sys/fs/cgroup", e.Name())
		if fi, err := os.Lstat(p); err == nil && fi.IsDir() {
			if _, err := os.Stat(filepath.Join(p, "cgroup.procs")); err == nil {
				roots = append(roots, p)
			}
		}
	}
	return roots
}

// removeCgroups kills what is left in /<parent> in every hierarchy and
// removes the directories bottom-up.
// engineState returns, for a docker-compatible CLI (docker, podman), a field of a
// container's `inspect` and a wait until the container reaches a status.
func engineState(env []string, cli string) (inspect func(name, format string) string, waitState func(t *testing.T, name, want string)) {
	inspect = func(name, format string) string {
		return strings.TrimSpace(runCmd(env, nil, cli, "inspect", "--format", format, name).stdout)
	}
	waitState = func(t *testing.T, name, want string) {
		t.Helper()
		if err := waitFor(name+" "+want, 60*time.Second, func() error {
			if s := inspect(name, "{{.State.Status}}"); s != want {
				return fmt.Errorf("status %q", s)
			}
			return nil
		}); err != nil {
			t.Fatal(err)
		}
	}
	return inspect, waitState
}

// removeEngineLeftovers undoes what an engine's test may leave behind: processes
// naming dir, the cgroups under cgParent, the engine's network state (see
// restoreNet) and dir itself.
func removeEngineLeftovers(t *testing.T, dir, cgParent string, before snapshot, sc scope, bridge string) {
	if k := killByCmdline(dir); len(k) > 0 {
		t.Logf("killed leftover processes: %v", k)
	}
	removeCgroups(cgParent)
	if done := restoreNet(before, sc, bridge); len(done) > 0 {
		t.Logf("engine network state removed: %v", done)
	}
	removeTemp(dir)
}

// cniBridgeConflist is a CNI network list with a bridge (masquerade, hairpin,
// host-local addresses from subnet kept in ipamDir) and portmap, as the engines'
// default networks have.
func cniBridgeConflist(name, bridge, ipamDir, subnet string) string {
	return fmt.Sprintf(`{
  "cniVersion": "0.4.0",
  "name": %q,
  "plugins": [
    {
      "type": "bridge",
      "bridge": %q,
      "isGateway": true,
      "ipMasq": true,
      "hairpinMode": true,
      "ipam": {
        "type": "host-local",
        "dataDir": %q,
        "routes": [{"dst": "0.0.0.0/0"}],
        "ranges": [[{"subnet": %q}]]
      }
    },
    {"type": "portmap", "capabilities": {"portMappings": true}}
  ]
}
`, name, bridge, ipamDir, subnet)
}

// removeEmptyCgroups removes the named cgroups, in order, from every hierarchy
// where they are empty; a cgroup still holding processes (someone else's) stays.
func removeEmptyCgroups(names ...string) {
	for _, root := range cgroupRoots() {
		for _, n := range names {
			_ = syscall.Rmdir(filepath.Join(root, n))
		}
	}
}

func removeCgroups(parent string) {
	for _, root := range cgroupRoots() {
		dir := filepath.Join(root, parent)
		if _, err := os.Stat(dir); err != nil {
			continue
		}
		var dirs []string
		filepath.WalkDir(dir, func(p string, d os.DirEntry, err error) error {
			if err == nil && d.IsDir() {
				dirs = append(dirs, p)
			}
			return nil
		})
		for i := len(dirs) - 1; i >= 0; i-- {
			if b, err := os.ReadFile(filepath.Join(dirs[i], "cgroup.procs")); err == nil {
				for _, f := range strings.Fields(string(b)) {
					if pid, err := strconv.Atoi(f); err == nil {
						syscall.Kill(pid, syscall.SIGKILL)
					}
				}
			}
			if strings.HasSuffix(root, "freezer") {
				os.WriteFile(filepath.Join(dirs[i], "freezer.state"), []byte("THAWED"), 0)
			}
			waitFor("rmdir "+dirs[i], 10*time.Second, func() error {
				err := syscall.Rmdir(dirs[i])
				if err == syscall.ENOENT {
					return nil
				}
				return err
			})
		}
	}
}

// snapshot is the host state an engine must leave as it found it.
type snapshot struct {
	mounts  []string
	links   []string
	ipt     []string
	netns   []string
	cgroups []string
	procs   []string
	ipfwd   string
}

// takeSnapshot records the state related to engines: mounts under the temp
// dir or engine run dirs, network links, iptables rules (without counters),
// named netns, cgroup dirs under cgParent and processes naming tmp.
func takeSnapshot(tmp, cgParent string) snapshot {
	var s snapshot
	if ms, err := mountinfo.GetMounts(nil); err == nil {
		for _, m := range ms {
			mp := m.Mountpoint
			if strings.HasPrefix(mp, tmp) || strings.HasPrefix(mp, "/run/netns/") || strings.HasPrefix(mp, "/var/run/netns/") ||
				strings.HasPrefix(mp, "/run/containerd") || strings.HasPrefix(mp, "/run/docker") ||
				strings.HasPrefix(mp, "/var/lib/docker") || strings.HasPrefix(mp, "/var/lib/containers") ||
				strings.HasPrefix(mp, "/run/containers") || strings.HasPrefix(mp, "/run/libpod") {
				s.mounts = append(s.mounts, mp)
			}
		}
	}
	if out, err := exec.Command("ip", "-o", "link", "show").Output(); err == nil {
		for _, l := range strings.Split(string(out), "\n") {
			f := strings.Fields(l)
			if len(f) >= 2 {
				s.links = append(s.links, strings.TrimSuffix(strings.SplitN(f[1], "@", 2)[0], ":"))
			}
		}
	}
	if out, err := exec.Command("iptables-save").Output(); err == nil {
		table := ""
		for _, l := range strings.Split(string(out), "\n") {
			switch {
			case l == "" || strings.HasPrefix(l, "#") || l == "COMMIT":
			case strings.HasPrefix(l, "*"):
				table = l
			case strings.HasPrefix(l, ":"):
				f := strings.Fields(l)
				// Built-in chains with policy ACCEPT are the empty state.
				if len(f) >= 2 && f[1] == "ACCEPT" {
					continue
				}
				if len(f) >= 2 {
					s.ipt = append(s.ipt, table+" "+f[0]+" "+f[1])
				}
			default:
				s.ipt = append(s.ipt, table+" "+l)
			}
		}
	}
	if ents, err := os.ReadDir("/run/netns"); err == nil {
		for _, e := range ents {
			s.netns = append(s.netns, e.Name())
		}
	}
	if cgParent != "" {
		for _, root := range cgroupRoots() {
			if _, err := os.Stat(filepath.Join(root, cgParent)); err == nil {
				s.cgroups = append(s.cgroups, filepath.Join(root, cgParent))
			}
		}
	}
	ents, _ := os.ReadDir("/proc")
	for _, e := range ents {
		if _, err := strconv.Atoi(e.Name()); err != nil || e.Name() == strconv.Itoa(os.Getpid()) {
			continue
		}
		if b, err := os.ReadFile(filepath.Join("/proc", e.Name(), "cmdline")); err == nil && bytes.Contains(b, []byte(tmp)) {
			s.procs = append(s.procs, e.Name()+" "+strings.ReplaceAll(string(b), "\x00", " "))
		}
	}
	b, _ := os.ReadFile("/proc/sys/net/ipv4/ip_forward")
	s.ipfwd = strings.TrimSpace(string(b))
	return s
}

// added returns the entries of after that are not in before (multiset).
func added(before, after []string) []string {
	n := map[string]int{}
	for _, b := range before {
		n[b]++
	}
	var out []string
	for _, a := range after {
		if n[a] > 0 {
			n[a]--
			continue
		}
		out = append(out, a)
	}
	return out
}

// scope names what belongs to one engine run, so that concurrent work on
// the machine (other tests creating links or iptables rules) is not blamed
// on it, nor touched by its cleanup.
type scope struct {
	markers []string // bridge names, subnets, CNI network names
	// shared chains (CNI portmap's CNI-HOSTPORT-*): their declarations,
	// the jumps to them from built-in chains and their static rules are
	// ours when they appear, but per-container rules in them are not.
	sharedChains []string
}

var builtinChains = []string{"PREROUTING", "INPUT", "FORWARD", "OUTPUT", "POSTROUTING"}

// ownsRule tells whether an iptables-save line ("*table -A ...") is ours.
func (sc scope) ownsRule(l string) bool {
	if sc.owns(l) {
		return true
	}
	for _, p := range sc.sharedChains {
		if strings.Contains(l, " -A "+p) && !strings.Contains(l, "-j CNI-DN-") {
			return true
		}
		for _, b := range builtinChains {
			if strings.Contains(l, " -A "+b+" ") && strings.Contains(l, "-j "+p) {
				return true
			}
		}
	}
	return false
}

func (sc scope) ownsChain(name string) bool {
	for _, p := range sc.sharedChains {
		if strings.HasPrefix(name, p) {
			return true
		}
	}
	return sc.owns(name)
}

func (sc scope) owns(s string) bool {
	for _, m := range sc.markers {
		if strings.Contains(s, m) {
			return true
		}
	}
	return false
}

// enslavedVeths holds the links that were attached to one of our bridges
// when restoreNet deleted it: those are ours, other veths on the host are
// not (concurrent work creates many).
var (
	enslavedMu    sync.Mutex
	enslavedVeths = map[string]bool{}
)

func (sc scope) ownsLink(name string) bool {
	enslavedMu.Lock()
	defer enslavedMu.Unlock()
	return enslavedVeths[name] || sc.owns(name)
}

// iptChanges returns the added and removed iptables lines of this scope:
// rules naming a marker, chains named by a marker or holding/targeted by
// such a rule, and built-in chains whose policy changed.
func (sc scope) iptChanges(before, after []string) (plus, minus []string) {
	filter := func(lines []string) []string {
		chains := map[string]bool{}
		for _, l := range lines {
			if sc.ownsRule(l) {
				f := strings.Fields(l)
				for i, w := range f {
					if (w == "-A" || w == "-j" || w == "-g") && i+1 < len(f) {
						chains[f[i+1]] = true
					}
				}
			}
		}
		var out []string
		for _, l := range lines {
			f := strings.Fields(l)
			switch {
			case len(f) == 3 && strings.HasPrefix(f[1], ":"):
				name := strings.TrimPrefix(f[1], ":")
				if f[2] != "-" || sc.ownsChain(name) || chains[name] {
					out = append(out, l)
				}
			case sc.ownsRule(l):
				out = append(out, l)
			}
		}
		return out
	}
	return filter(added(before, after)), filter(added(after, before))
}

// leaks compares two snapshots within a scope.
func leaks(before, after snapshot, sc scope) []string {
	var out []string
	for _, m := range added(before.mounts, after.mounts) {
		out = append(out, "mount "+m)
	}
	for _, l := range added(before.links, after.links) {
		if sc.ownsLink(l) {
			out = append(out, "link "+l)
		}
	}
	plus, minus := sc.iptChanges(before.ipt, after.ipt)
	for _, r := range plus {
		out = append(out, "iptables +"+r)
	}
	for _, r := range minus {
		out = append(out, "iptables -"+r)
	}
	for _, n := range added(before.netns, after.netns) {
		out = append(out, "netns "+n)
	}
	for _, c := range added(before.cgroups, after.cgroups) {
		out = append(out, "cgroup "+c)
	}
	for _, p := range added(before.procs, after.procs) {
		out = append(out, "process "+p)
	}
	if before.ipfwd != after.ipfwd {
		out = append(out, fmt.Sprintf("net.ipv4.ip_forward %s -> %s", before.ipfwd, after.ipfwd))
	}
	return out
}

// leakCheck is the closing check of every engine: it runs after teardown.
func leakCheck(t *testing.T, name string, before snapshot, tmp, cgParent string, sc scope) {
	check(t, name, func(t *testing.T) {
		var l []string
		// Veths and netns vanish asynchronously after their namespace dies.
		err := waitFor("host state restored", 30*time.Second, func() error {
			l = leaks(before, takeSnapshot(tmp, cgParent), sc)
			if len(l) > 0 {
				return fmt.Errorf("%d leaks", len(l))
			}
			return nil
		})
		if err != nil {
			t.Errorf("left behind:\n  %s", strings.Join(l, "\n  "))
		}
	})
}

// unmountUnder lazily unmounts every mount point under dir, deepest first.
func unmountUnder(dir string) {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return
	}
	for i := len(ms) - 1; i >= 0; i-- {
		syscall.Unmount(ms[i].Mountpoint, syscall.MNT_DETACH)
	}
}

// mkTemp makes a short temp dir (socket paths must stay < 108 bytes).
func mkTemp(t *testing.T, prefix string) string {
	t.Helper()
	d, err := os.MkdirTemp("/tmp", prefix)
	if err != nil {
		t.Fatal(err)
	}
	return d
}

func removeTemp(dir string) {
	unmountUnder(dir)
	if os.Getenv(envKeepLogs) != "" {
		fmt.Printf("# kept %s\n", dir)
		return
	}
	if err := os.RemoveAll(dir); err != nil {
		fmt.Printf("# remove %s: %v\n", dir, err)
	}
}

// freePort returns a TCP port that is free on 127.0.0.1 right now.
func freePort(t *testing.T) int {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().(*net.TCPAddr).Port
}

// httpGetEventually GETs url until it answers with want in the body.
func httpGetEventually(url, want string) error {
	c := &http.Client{Timeout: 5 * time.Second}
	return waitFor("GET "+url, 60*time.Second, func() error {
		resp, err := c.Get(url)
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		if resp.StatusCode != 200 || !strings.Contains(string(b), want) {
			return fmt.Errorf("status %d body %q", resp.StatusCode, b)
		}
		return nil
	})
}

var (
	fixtureOnce sync.Once
	fixtureErr  error
)

// imageArchives returns docker-archive tarballs of busybox and of a
// pause-like image (busybox whose entrypoint sleeps forever), made from the
// shared OCI layout with skopeo.
func imageArchives() (busybox, pause string, err error) {
	busybox = filepath.Join(fixturesDir, "busybox.tar")
	pause = filepath.Join(fixturesDir, "pause.tar")
	fixtureOnce.Do(func() { fixtureErr = makeArchives(busybox, pause) })
	return busybox, pause, fixtureErr
}

func makeArchives(busybox, pause string) error {
	if r := runCmd(nil, nil, "skopeo", "copy", "--quiet", "oci:"+busyboxOCI+":"+ociRefName, "docker-archive:"+busybox+":"+busyboxRef); r.err != nil {
		return fmt.Errorf("%s", r)
	}
	// The pause-like image: same layer, config with a sleeping entrypoint.
	lay := filepath.Join(fixturesDir, "pause.oci")
	if err := os.MkdirAll(filepath.Join(lay, "blobs", "sha256"), 0o755); err != nil {
		return err
	}
	var idx struct {
		Manifests []struct {
			Digest string `json:"digest"`
		} `json:"manifests"`
	}
	if err := readJSON(filepath.Join(busyboxOCI, "index.json"), &idx); err != nil {
		return err
	}
	if len(idx.Manifests) == 0 {
		return fmt.Errorf("%s: empty index", busyboxOCI)
	}
	var man map[string]any
	if err := readJSON(blobPath(busyboxOCI, idx.Manifests[0].Digest), &man); err != nil {
		return err
	}
	cfgDesc := man["config"].(map[string]any)
	var cfg map[string]any
	if err := readJSON(blobPath(busyboxOCI, cfgDesc["digest"].(string)), &cfg); err != nil {
		return err
	}
	cc := cfg["config"].(map[string]any)
	cc["Entrypoint"] = []string{"/bin/sleep", "2147483647"}
	delete(cc, "Cmd")
	for _, l := range man["layers"].([]any) {
		d := l.(map[string]any)["digest"].(string)
		if err := copyFile(blobPath(busyboxOCI, d), blobPath(lay, d)); err != nil {
			return err
		}
	}
	cfgDigest, cfgSize, err := writeBlob(lay, cfg)
	if err != nil {
		return err
	}
	cfgDesc["digest"], cfgDesc["size"] = cfgDigest, cfgSize
	delete(man, "annotations")
	manDigest, manSize, err := writeBlob(lay, man)
	if err != nil {
		return err
	}
	index := map[string]any{
		"schemaVersion": 2,
		"mediaType":     "application/vnd.oci.image.index.v1+json",
		"manifests": []any{map[string]any{
			"mediaType":   "application/vnd.oci.image.manifest.v1+json",
			"digest":      manDigest,
			"size":        manSize,
			"annotations": map[string]string{"org.opencontainers.image.ref.name": "pause"},
		}},
	}
	if err := writeJSON(filepath.Join(lay, "index.json"), index); err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(lay, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return err
	}
	if r := runCmd(nil, nil, "skopeo", "copy", "--quiet", "oci:"+lay+":pause", "docker-archive:"+pause+":"+pauseRef); r.err != nil {
		return fmt.Errorf("%s", r)
	}
	return nil
}

func blobPath(layout, digest string) string {
	return filepath.Join(layout, "blobs", strings.Replace(digest, ":", "/", 1))
}

func readJSON(path string, v any) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	return json.Unmarshal(b, v)
}

func writeJSON(path string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return err
	}
	return os.WriteFile(path, b, 0o644)
}

func writeBlob(layout string, v any) (string, int, error) {
	b, err := json.Marshal(v)
	if err != nil {
		return "", 0, err
	}
	d := fmt.Sprintf("sha256:%x", sha256.Sum256(b))
	return d, len(b), os.WriteFile(blobPath(layout, d), b, 0o644)
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o644)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return err
	}
	return out.Close()
}
