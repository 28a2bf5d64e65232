package manager_test

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cubo-dev/cubo/tests/internal/hostenv"
)

// attachment is the "network" object of cubo inspect.
type attachment struct {
	Mode struct {
		Kind string `json:"kind"`
	} `json:"mode"`
	Network string `json:"network"`
	NetNS   string `json:"netns"`
	IP      string `json:"ip"`
	Gateway string `json:"gateway"`
	MAC     string `json:"mac"`
	Ports   []struct {
		HostPort      int `json:"hostPort"`
		ContainerPort int `json:"containerPort"`
	} `json:"ports"`
}

func (e *env) attachment(ref string) *attachment {
	e.t.Helper()
	var cs []struct {
		NetworkMode string      `json:"network_mode"`
		Network     *attachment `json:"network"`
	}
	if err := json.Unmarshal([]byte(e.ok("inspect", ref)), &cs); err != nil || len(cs) != 1 {
		e.t.Fatalf("inspect %s: %v", ref, err)
	}
	return cs[0].Network
}

// webRoot is a directory with index.html holding body, for busybox httpd -h.
func webRoot(t *testing.T, body string) string {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "index.html"), []byte(body), 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// get fetches url until it answers: httpd binds its port some time after `run -d`
// returns, which nothing reports.
func get(t *testing.T, url string) string {
	t.Helper()
	client := &http.Client{Timeout: 2 * time.Second}
	var body string
	var last error
	hostenv.Eventually(t, "GET "+url, func() bool {
		resp, err := client.Get(url)
		if err != nil {
			last = err
			return false
		}
		defer resp.Body.Close()
		b, err := io.ReadAll(resp.Body)
		if err != nil || resp.StatusCode != 200 {
			last = fmt.Errorf("status %d, %v", resp.StatusCode, err)
			return false
		}
		body = string(b)
		return true
	})
	_ = last
	return body
}

// hostAddr returns an IPv4 address of the host that is neither loopback nor on a
// container bridge.
func hostAddr(t *testing.T) string {
	t.Helper()
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback != 0 || i.Flags&net.FlagUp == 0 || strings.HasPrefix(i.Name, "cubo") || strings.HasPrefix(i.Name, "veth") {
			continue
		}
		if _, err := os.Stat("/sys/class/net/" + i.Name + "/bridge"); err == nil {
			continue
		}
		addrs, _ := i.Addrs()
		for _, a := range addrs {
			if ipn, ok := a.(*net.IPNet); ok && ipn.IP.To4() != nil {
				return ipn.IP.String()
			}
		}
	}
	t.Skip("the host has no non-loopback IPv4 address")
	return ""
}

// freePort returns want when nothing on the host listens there, else a free port.
func freePort(t *testing.T, want int) int {
	if l, err := net.Listen("tcp4", ":"+strconv.Itoa(want)); err == nil {
		l.Close()
		return want
	}
	l, err := net.Listen("tcp4", ":0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	t.Logf("port %d is taken on this host; using %d", want, l.Addr().(*net.TCPAddr).Port)
	return l.Addr().(*net.TCPAddr).Port
}

// TestPublish runs busybox httpd with a published port and fetches its page through
// 127.0.0.1 and the host's own address; ps shows the port, inspect the attachment; a
// taken port is a one-line error that leaves no container; rm frees the port.
func TestPublish(t *testing.T) {
	forRuntimes(t, func(t *testing.T, e *env) {
		www := webRoot(t, "hello from cubo\n")
		e.ok("run", "-d", "--name", "web", "-p", "18080:80", "-v", www+":/www", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
		if got := get(t, "http://127.0.0.1:18080/"); got != "hello from cubo\n" {
			t.Errorf("GET 127.0.0.1:18080: %q", got)
		}
		if got := get(t, "http://"+hostAddr(t)+":18080/"); got != "hello from cubo\n" {
			t.Errorf("GET host address: %q", got)
		}
		ps := e.ok("ps")
		if !strings.Contains(ps, "PORTS") || !strings.Contains(ps, "0.0.0.0:18080->80/tcp") {
			t.Errorf("ps shows no port:\n%s", ps)
		}
		a := e.attachment("web")
		if a == nil || a.Mode.Kind != "bridge" || !strings.HasPrefix(a.IP, "10.73.0.") || a.Gateway != "10.73.0.1" || a.MAC == "" ||
			len(a.Ports) != 1 || a.Ports[0].HostPort != 18080 || a.Ports[0].ContainerPort != 80 {
			t.Errorf("inspect network: %+v", a)
		}

		// The port is taken: refused before anything starts, and nothing is left.
		e.fails("18080", "run", "-d", "--name", "web2", "-p", "18080:80", "busybox", "sleep", "60")
		if cs := e.ps(); len(cs) != 1 {
			t.Errorf("a refused run left a container: %+v", cs)
		}
		// A host process holding a port is refused the same way.
		l, err := net.Listen("tcp4", ":18083")
		if err != nil {
			t.Fatal(err)
		}
		e.fails("port is already in use", "run", "-d", "-p", "18083:80", "busybox", "sleep", "60")
		l.Close()
		// Bad --publish values: one line, no container.
		e.fails(`publish "80"`, "run", "-d", "-p", "80", "busybox", "true")
		e.fails("bridge network", "run", "-d", "--network", "none", "-p", "18084:80", "busybox", "true")
		if cs := e.ps(); len(cs) != 1 {
			t.Errorf("refused runs left containers: %+v", cs)
		}

		// The seed README's example, busybox httpd serving its working directory.
		port := freePort(t, 8080)
		e.ok("run", "--name", "my-web-server", "--publish", fmt.Sprintf("%d:80", port), "--workdir", "/www", "-v", www+":/www", "busybox", "httpd", "-f", "-p", "80")
		if got := get(t, fmt.Sprintf("http://127.0.0.1:%d/", port)); got != "hello from cubo\n" {
			t.Errorf("README example: %q", got)
		}

		// rm frees the port: another container can publish it at once.
		e.ok("rm", "-f", "web")
		if _, err := (&http.Client{Timeout: 2 * time.Second}).Get("http://127.0.0.1:18080/"); err == nil {
			t.Error("port 18080 still answers after rm -f")
		}
		e.ok("run", "-d", "--name", "web3", "-p", "18080:80", "-v", www+":/www", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
		get(t, "http://127.0.0.1:18080/")

		// --rm releases the network when the container exits.
		e.ok("run", "-i", "--rm", "-p", "18085:80", "busybox", "true")
		e.ok("stop", "-t", "1", "web3")
		if a := e.attachment("web3"); a != nil {
			t.Errorf("a stopped container keeps its network: %+v", a)
		}
		for _, l := range strings.Split(e.ok("ps", "-a"), "\n") {
			if strings.Contains(l, "web3") && strings.Contains(l, "->") {
				t.Errorf("ps shows ports of a stopped container: %s", l)
			}
		}
	})
}

// TestUserNetwork puts two containers on a user network: they reach each other by
// name (the one started first too, through its hosts file rewritten in place), and
// the network cannot be removed while they use it.
func TestUserNetwork(t *testing.T) {
	e := newEnv(t, "cubo-runc")
	e.ok("network", "create", "n1", "--subnet", "10.73.1.0/24", "--bridge", "cubom1")
	www := webRoot(t, "from a\n")
	e.ok("run", "-d", "--name", "a", "--network", "n1", "-v", www+":/www", "busybox", "httpd", "-f", "-p", "80", "-h", "/www")
	e.ok("run", "-d", "--name", "b", "--network", "n1", "busybox", "sleep", "300")
	var out string
	hostenv.Eventually(t, "b fetching http://a/", func() bool {
		var code int
		out, _, code = e.run("exec", "b", "wget", "-q", "-T", "2", "-O-", "http://a/")
		return code == 0
	})
	if out != "from a\n" {
		t.Errorf("b: wget http://a/: %q", out)
	}
	for _, c := range [][2]string{{"b", "a"}, {"a", "b"}} {
		if out := e.ok("exec", c[0], "ping", "-c", "1", "-W", "5", c[1]); !strings.Contains(out, "1 packets received") {
			t.Errorf("%s: ping %s: %s", c[0], c[1], out)
		}
	}
	if a := e.attachment("b"); a == nil || a.Network != "n1" || !strings.HasPrefix(a.IP, "10.73.1.") {
		t.Errorf("inspect b: %+v", a)
	}
	e.fails("in use", "network", "rm", "n1")
	e.ok("rm", "-f", "a", "b")
	e.ok("network", "rm", "n1")
	if _, err := net.InterfaceByName("cubom1"); err == nil {
		t.Error("network rm left bridge cubom1")
	}
}

// TestNetworkModes checks none (loopback only), host (the host's interfaces) and
// container:NAME (NAME's namespace, its address and MAC).
func TestNetworkModes(t *testing.T) {
	e := newEnv(t, "cubo-runc")
	if out := e.ok("run", "-i", "--rm", "--network", "none", "busybox", "ls", "/sys/class/net"); strings.Fields(out)[0] != "lo" || len(strings.Fields(out)) != 1 {
		t.Errorf("--network none: %q", out)
	}
	host := hostIface(t)
	if out := e.ok("run", "-i", "--rm", "--network", "host", "busybox", "ls", "/sys/class/net"); !strings.Contains(" "+strings.Join(strings.Fields(out), " ")+" ", " "+host+" ") {
		t.Errorf("--network host: no %s in %q", host, out)
	}
	e.ok("run", "-d", "--name", "base", "busybox", "sleep", "300")
	a := e.attachment("base")
	if a == nil {
		t.Fatal("base has no network")
	}
	nsBase := strings.TrimSpace(e.ok("exec", "base", "readlink", "/proc/self/ns/net"))
	out := e.ok("run", "-i", "--rm", "--network", "container:base", "busybox", "sh", "-c", "readlink /proc/self/ns/net; cat /sys/class/net/eth0/address")
	if f := strings.Fields(out); len(f) != 2 || f[0] != nsBase || f[1] != a.MAC {
		t.Errorf("container:base: %q, want %s %s", out, nsBase, a.MAC)
	}
	e.ok("run", "-d", "--name", "side", "--network", "container:base", "busybox", "sleep", "300")
	if got := e.inspect("side"); got.Status != "running" {
		t.Errorf("side: %+v", got)
	}
	// Removing the sharer leaves the shared namespace alone.
	e.ok("rm", "-f", "side")
	if out := e.ok("exec", "base", "cat", "/sys/class/net/eth0/address"); strings.TrimSpace(out) != a.MAC {
		t.Errorf("base lost eth0 when its sharer went: %q", out)
	}
	e.fails("no such container", "run", "-d", "--network", "container:missing", "busybox", "true")
	e.fails("want bridge, host, none", "run", "-d", "--network", "bad name", "busybox", "true")
	e.fails(`network "nope"`, "run", "-d", "--network", "nope", "busybox", "true")
	if cs := e.ps(); len(cs) != 1 {
		t.Errorf("refused runs left containers: %+v", cs)
	}
}

// hostIface is the interface of the host's default route, or any non-loopback one.
func hostIface(t *testing.T) string {
	b, _ := os.ReadFile("/proc/net/route")
	for _, l := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(l); len(f) > 2 && f[1] == "00000000" {
			return f[0]
		}
	}
	ifs, _ := net.Interfaces()
	for _, i := range ifs {
		if i.Flags&net.FlagLoopback == 0 {
			return i.Name
		}
	}
	t.Skip("the host has only loopback")
	return ""
}

// TestNetworkCrashRecovery kills a container's monitor and its process: the next
// listing reconciles the record and releases the network the monitor could not.
func TestNetworkCrashRecovery(t *testing.T) {
	e := newEnv(t, "cubo-runc")
	e.ok("run", "-d", "--name", "victim", "-p", "18086:80", "busybox", "sleep", "300")
	c := e.inspect("victim")
	for _, pid := range []int{c.Monitor, c.Pid} {
		p, err := os.FindProcess(pid)
		if err != nil {
			t.Fatal(err)
		}
		_ = p.Kill()
	}
	hostenv.Eventually(t, "the container's init to die", func() bool {
		_, err := os.Stat(fmt.Sprintf("/proc/%d/stat", c.Pid))
		if err != nil {
			return true
		}
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", c.Pid))
		return strings.Contains(string(b), ") Z ")
	})
	e.ok("ps", "-a")
	if a := e.attachment("victim"); a != nil {
		t.Errorf("network of a dead container kept: %+v", a)
	}
	// The port is free again.
	e.ok("run", "-d", "-p", "18086:80", "busybox", "sleep", "300")
}

// TestNetworkLeak starts many containers (half with a published port) a few at a
// time, so that they all run at once, then removes them the same way; cleanup then
// checks links, iptables, leases, namespaces and records. CUBO_NET_LEAK_N sets how
// many (default 100).
func TestNetworkLeak(t *testing.T) {
	n := 100
	if v, err := strconv.Atoi(os.Getenv("CUBO_NET_LEAK_N")); err == nil && v > 0 {
		n = v
	}
	e := newEnv(t, "cubo-runc")
	const workers = 4
	parallel := func(what string, args func(i int) []string) {
		start := time.Now()
		var wg sync.WaitGroup
		errs := make(chan string, n)
		for w := range workers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := w; i < n; i += workers {
					a := args(i)
					cmd := e.cmd(a...)
					if out, err := cmd.CombinedOutput(); err != nil {
						errs <- fmt.Sprintf("cubo %s: %v: %s", strings.Join(a, " "), err, out)
					}
				}
			}()
		}
		wg.Wait()
		close(errs)
		for m := range errs {
			t.Error(m)
		}
		t.Logf("%s %d containers, %d at a time: %v", what, n, workers, time.Since(start).Round(time.Millisecond))
	}
	parallel("started", func(i int) []string {
		if i%2 == 0 {
			return []string{"run", "-d", "--name", fmt.Sprintf("leak%d", i), "-p", strconv.Itoa(19000+i) + ":80", "busybox", "sleep", "300"}
		}
		return []string{"run", "-d", "--name", fmt.Sprintf("leak%d", i), "busybox", "sleep", "300"}
	})
	running := 0
	for _, c := range e.ps() {
		if c.Status == "running" {
			running++
		}
	}
	if running != n {
		t.Errorf("%d of %d containers running", running, n)
	}
	// Every container has its own address.
	ips := map[string]bool{}
	atts, _ := filepath.Glob(filepath.Join(e.root, "network", "attach", "*.json"))
	for _, p := range atts {
		var a attachment
		if b, err := os.ReadFile(p); err == nil && json.Unmarshal(b, &a) == nil {
			if ips[a.IP] {
				t.Errorf("address %s given twice", a.IP)
			}
			ips[a.IP] = true
		}
	}
	if len(ips) != n {
		t.Errorf("%d addresses for %d containers", len(ips), n)
	}
	parallel("removed", func(i int) []string { return []string{"rm", "-f", fmt.Sprintf("leak%d", i)} })
}
