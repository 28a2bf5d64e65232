package main

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"golang.org/x/sys/unix"
)

// hasVerb reports whether the cubo binary lists verb as a command in its help.
func hasVerb(cubo, verb string) bool {
	if _, err := os.Stat(cubo); err != nil {
		return false
	}
	out, _ := exec.Command(cubo, "--help").CombinedOutput()
	return regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(verb) + `(\s|$)`).Match(out)
}

// managerHalf compares cubo with podman and skopeo, each part only when
// bin/cubo has the verb it needs; -only picks figures, so a change to one
// path can be measured alone.
func (b *bench) managerHalf(cubo, cuboRunc string, install bool) {
	b.printf("### Manager\n\n")
	cubo, _ = filepath.Abs(cubo)
	hasRun, hasPull, hasBuild := hasVerb(cubo, "run"), hasVerb(cubo, "pull"), hasVerb(cubo, "build")
	wantRun := b.want("run") || b.want("bridge")
	if !hasRun {
		b.printf("skipped: cubo run not available (`cubo run --rm` vs `podman run --rm`, 5 MB vs 500 MB image)\n\n")
	}
	if !hasPull {
		b.printf("skipped: cubo pull not available (`cubo pull` vs `skopeo copy`)\n\n")
	}
	if !hasBuild {
		b.printf("skipped: cubo build not available (no-change rebuild of a 10-step Cubofile)\n\n")
	}
	if !hasRun && !hasPull && !hasBuild {
		return
	}
	if install {
		want := map[string]string{"/usr/bin/skopeo": "skopeo", "/usr/bin/docker-registry": "docker-registry"}
		if hasRun {
			want["/usr/bin/podman"] = "podman"
		}
		installDebs(want)
	}
	m, err := startManagerEnv(b.work)
	if err != nil {
		b.printf("skipped: manager benchmarks: %v\n\n", err)
		return
	}
	defer m.stop()
	// cubo's containers share a /cubo parent cgroup that outlives them (as
	// docker's /docker does); remove it at the end if this run made it.
	cuboBefore, _ := filepath.Glob("/sys/fs/cgroup/*/cubo")
	defer func() {
		cuboAfter, _ := filepath.Glob("/sys/fs/cgroup/*/cubo")
		for _, d := range cuboAfter {
			if !slices.Contains(cuboBefore, d) {
				os.Remove(d) // rmdir: refused while any container uses it
			}
		}
	}()
	if hasPull && b.want("pull") {
		if err := b.pullBench(m, cubo); err != nil {
			b.printf("pull benchmark failed: %v\n\n", err)
		}
	}
	if hasRun && wantRun {
		if err := b.runBench(m, cubo, cuboRunc); err != nil {
			b.printf("run benchmark failed: %v\n\n", err)
		}
	}
	if hasBuild && b.want("build") {
		if err := b.buildBench(m, cubo, cuboRunc); err != nil {
			b.printf("build benchmark failed: %v\n\n", err)
		}
	}
}

// managerEnv is a local docker-registry (Debian's distribution registry)
// the images are pushed to with skopeo.
type managerEnv struct {
	dir    string
	addr   string
	regPid int
}

func startManagerEnv(work string) (*managerEnv, error) {
	reg, err := exec.LookPath("docker-registry")
	if err != nil {
		return nil, fmt.Errorf("docker-registry not installed (Debian package docker-registry)")
	}
	if _, err := exec.LookPath("skopeo"); err != nil {
		return nil, fmt.Errorf("skopeo not installed")
	}
	m := &managerEnv{dir: filepath.Join(work, "manager")}
	if err := os.MkdirAll(m.dir, 0o755); err != nil {
		return nil, err
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		return nil, err
	}
	m.addr = l.Addr().String()
	l.Close()
	cfg := filepath.Join(m.dir, "registry.yml")
	if err := os.WriteFile(cfg, []byte(fmt.Sprintf("version: 0.1\nlog:\n  level: error\n  accesslog:\n    disabled: true\n"+
		"storage:\n  filesystem:\n    rootdirectory: %s\nhttp:\n  addr: %s\n", filepath.Join(m.dir, "registry"), m.addr)), 0o600); err != nil {
		return nil, err
	}
	logf, err := os.Create(filepath.Join(m.dir, "registry.log"))
	if err != nil {
		return nil, err
	}
	defer logf.Close()
	// The registry must not be our child (measureTree waits for all of
	// them): start it detached with the subreaper bit off, so it ends up
	// under pid 1, and kill it by PID at the end.
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 0, 0, 0, 0)
	out, err := exec.Command("sh", "-c", `"$0" serve "$1" >"$2" 2>&1 </dev/null & echo $!`, reg, cfg, logf.Name()).Output()
	unix.Prctl(unix.PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0)
	if err != nil {
		return nil, fmt.Errorf("start docker-registry: %w", err)
	}
	fmt.Sscanf(strings.TrimSpace(string(out)), "%d", &m.regPid)
	for deadline := time.Now().Add(30 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		resp, err := http.Get("http://" + m.addr + "/v2/")
		if err == nil {
			resp.Body.Close()
			return m, nil
		}
		if time.Now().After(deadline) {
			m.stop()
			return nil, fmt.Errorf("docker-registry did not answer on %s", m.addr)
		}
	}
}

func (m *managerEnv) stop() {
	if m.regPid > 0 {
		unix.Kill(m.regPid, unix.SIGKILL)
		m.regPid = 0
	}
}

// pushImage builds an OCI layout with the busybox rootfs as the first layer
// plus random (incompressible) layers of the given sizes, and pushes it to
// the registry as bench/NAME:latest. It returns the reference.
func (m *managerEnv) pushImage(name string, extra ...int64) (string, error) {
	ref := m.addr + "/bench/" + name + ":latest"
	layout := filepath.Join(m.dir, "layout-"+name)
	if err := os.MkdirAll(filepath.Join(layout, "blobs", "sha256"), 0o755); err != nil {
		return "", err
	}
	writeBlob := func(b []byte) (string, error) {
		sum := sha256.Sum256(b)
		d := hex.EncodeToString(sum[:])
		return "sha256:" + d, os.WriteFile(filepath.Join(layout, "blobs", "sha256", d), b, 0o644)
	}
	type desc struct {
		MediaType string `json:"mediaType"`
		Digest    string `json:"digest"`
		Size      int64  `json:"size"`
	}
	var layers []desc
	var diffIDs []string
	addLayer := func(tarball []byte) error {
		sum := sha256.Sum256(tarball)
		diffIDs = append(diffIDs, "sha256:"+hex.EncodeToString(sum[:]))
		var gz bytes.Buffer
		zw, _ := gzip.NewWriterLevel(&gz, gzip.BestSpeed)
		zw.Write(tarball)
		zw.Close()
		d, err := writeBlob(gz.Bytes())
		layers = append(layers, desc{"application/vnd.oci.image.layer.v1.tar+gzip", d, int64(gz.Len())})
		return err
	}
	bb, err := os.ReadFile(busyboxTarball)
	if err != nil {
		return "", err
	}
	zr, err := gzip.NewReader(bytes.NewReader(bb))
	if err != nil {
		return "", err
	}
	base, err := io.ReadAll(zr)
	if err != nil {
		return "", err
	}
	if err := addLayer(base); err != nil {
		return "", err
	}
	for i, size := range extra {
		var tb bytes.Buffer
		tw := tar.NewWriter(&tb)
		data := make([]byte, size)
		rand.Read(data)
		tw.WriteHeader(&tar.Header{Name: fmt.Sprintf("data/%s-%d.bin", name, i), Mode: 0o644, Size: size, Typeflag: tar.TypeReg})
		tw.Write(data)
		tw.Close()
		if err := addLayer(tb.Bytes()); err != nil {
			return "", err
		}
	}
	cfg, _ := json.Marshal(map[string]any{
		"architecture": "amd64", "os": "linux",
		"config": map[string]any{"Cmd": []string{"/bin/sh"}, "Env": []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin"}},
		"rootfs": map[string]any{"type": "layers", "diff_ids": diffIDs},
	})
	cd, err := writeBlob(cfg)
	if err != nil {
		return "", err
	}
	man, _ := json.Marshal(map[string]any{
		"schemaVersion": 2, "mediaType": "application/vnd.oci.image.manifest.v1+json",
		"config": desc{"application/vnd.oci.image.config.v1+json", cd, int64(len(cfg))}, "layers": layers,
	})
	md, err := writeBlob(man)
	if err != nil {
		return "", err
	}
	idx, _ := json.Marshal(map[string]any{"schemaVersion": 2, "manifests": []any{map[string]any{
		"mediaType": "application/vnd.oci.image.manifest.v1+json", "digest": md, "size": len(man),
		"annotations": map[string]string{"org.opencontainers.image.ref.name": "latest"}}}})
	if err := os.WriteFile(filepath.Join(layout, "index.json"), idx, 0o644); err != nil {
		return "", err
	}
	if err := os.WriteFile(filepath.Join(layout, "oci-layout"), []byte(`{"imageLayoutVersion":"1.0.0"}`), 0o644); err != nil {
		return "", err
	}
	if out, err := exec.Command("skopeo", "copy", "--dest-tls-verify=false", "oci:"+layout+":latest", "docker://"+ref).CombinedOutput(); err != nil {
		return "", fmt.Errorf("skopeo push %s: %v: %s", ref, err, out)
	}
	os.RemoveAll(layout)
	return ref, nil
}

func (b *bench) managerRow(t *table, label string, a, c series, unit string) {
	cell := func(s series) string {
		q1, q3 := s.quartiles()
		return fmt.Sprintf("%.1f %s (%.1f-%.1f)", s.median(), unit, q1, q3)
	}
	t.row(label, cell(a), cell(c), ratio(a.median(), c.median()))
}

// pullBench alternates `cubo pull` and `skopeo copy` of a 200 MB image of
// five layers into fresh stores.
func (b *bench) pullBench(m *managerEnv, cubo string) error {
	b.progress("manager: pushing a 200 MB image\n")
	ref, err := m.pushImage("pull200", 50<<20, 50<<20, 50<<20, 50<<20)
	if err != nil {
		return err
	}
	var cw, cc, sw, sc series
	for i := 0; i < b.n; i++ {
		b.progress("\rmanager: pull %d/%d", i+1, b.n)
		dir := filepath.Join(m.dir, "pull")
		runCubo := func() error {
			s, err := measureTree([]string{cubo, "--root-dir", dir, "pull", "--tls-verify=false", "-q", ref}, nil)
			cw, cc = append(cw, ms(s.wall)), append(cc, ms(s.cpu))
			return err
		}
		runSkopeo := func() error {
			s, err := measureTree([]string{"/usr/bin/skopeo", "copy", "-q", "--src-tls-verify=false", "docker://" + ref, "oci:" + dir + ":latest"}, nil)
			sw, sc = append(sw, ms(s.wall)), append(sc, ms(s.cpu))
			return err
		}
		steps := []func() error{runCubo, runSkopeo}
		if i%2 == 1 {
			steps[0], steps[1] = steps[1], steps[0]
		}
		for _, f := range steps {
			os.RemoveAll(dir)
			if err := f(); err != nil {
				return err
			}
		}
		os.RemoveAll(dir)
	}
	b.progress("\n")
	t := &table{head: []string{"200 MB, 5 layers, local registry", "cubo pull", "skopeo copy", "cubo/skopeo"}}
	b.managerRow(t, "wall", cw, sw, "ms")
	b.managerRow(t, "CPU", cc, sc, "ms")
	b.printf("`cubo pull` (into an empty store; what it unpacks at pull time is included) vs `skopeo copy docker://... oci:DIR` (blobs only), medians of %d alternated runs:\n\n%s\n", b.n, t)
	return nil
}

// runBench alternates `cubo run --rm --network none IMAGE true` and
// `podman run --rm --network none IMAGE true`, both with cubo-runc, then
// compares cubo run on a 5 MB and a 500 MB image.
func (b *bench) runBench(m *managerEnv, cubo, cuboRunc string) error {
	podman, err := exec.LookPath("podman")
	if err != nil {
		return fmt.Errorf("podman not installed")
	}
	b.progress("manager: pushing 5 MB and 500 MB images\n")
	small, err := m.pushImage("small", 4<<20)
	if err != nil {
		return err
	}
	big := small
	if b.want("run") {
		big, err = m.pushImage("big", 100<<20, 100<<20, 100<<20, 100<<20, 100<<20)
		if err != nil {
			return err
		}
	}
	root := filepath.Join(m.dir, "cubo-root")
	pstore := filepath.Join(m.dir, "podman")
	runtime := cuboRunc
	cuboArgv := func(args ...string) []string {
		return append([]string{cubo, "--root-dir", root, "--runtime", runtime}, args...)
	}
	podmanArgv := func(args ...string) []string {
		return append([]string{podman, "--root", pstore + "/root", "--runroot", pstore + "/run",
			"--runtime", runtime, "--cgroup-manager", "cgroupfs", "--events-backend", "file"}, args...)
	}
	for _, ref := range []string{small, big} {
		if err := run(cuboArgv("pull", "--tls-verify=false", "-q", ref)...); err != nil {
			return err
		}
		if err := run(podmanArgv("pull", "-q", "--tls-verify=false", ref)...); err != nil {
			return err
		}
	}
	// podman (cgroupfs) leaves empty libpod_parent cgroups behind; remove
	// those that were not there before (rmdir fails if anything uses them).
	before, _ := filepath.Glob("/sys/fs/cgroup/*/libpod_parent")
	defer func() {
		run(podmanArgv("system", "reset", "--force")...)
		after, _ := filepath.Glob("/sys/fs/cgroup/*/libpod_parent")
		for _, d := range after {
			if !slices.Contains(before, d) {
				rmdirTree(d)
			}
		}
	}()
	// cubo run detaches by default; -i makes it wait for the exit as
	// podman run does, so both figures cover create, run, wait and --rm.
	cuboRun := func(ref string) []string { return cuboArgv("run", "--rm", "-i", "--network", "none", ref, "true") }
	// podman would raise RLIMIT_NOFILE and RLIMIT_NPROC to 1048576 (and
	// fails where the bounding set lacks CAP_SYS_RESOURCE, as on this VM):
	// ask for low limits that any runtime may set.
	podmanRun := func(ref string) []string {
		return podmanArgv("run", "--rm", "--network", "none", "--ulimit", "nofile=1024:1024",
			"--ulimit", "nproc=1024:1024", ref, "true")
	}
	if _, err := measureTree(podmanRun(small), nil); err != nil {
		b.printf("podman with %s failed (%v); both use /usr/sbin/runc instead.\n\n", cuboRunc, err)
		runtime = "/usr/sbin/runc"
	}
	for i := 0; i < 2; i++ {
		if _, err := measureTree(cuboRun(small), nil); err != nil {
			return err
		}
		if _, err := measureTree(podmanRun(small), nil); err != nil {
			return err
		}
	}
	var cw, cc, pw, pc, bw series
	if b.want("run") {
		if err := b.alternate("run",
			func() error { return timedTree(cuboRun(small), nil, &cw, &cc) },
			func() error { return timedTree(podmanRun(small), nil, &pw, &pc) },
			func() error { return timedTree(cuboRun(big), nil, &bw, nil) },
		); err != nil {
			return err
		}
		t := &table{head: []string{"`run --rm --network none IMAGE true` (5 MB image)", "cubo (-i)", "podman", "cubo/podman"}}
		b.managerRow(t, "wall", cw, pw, "ms")
		b.managerRow(t, "CPU", cc, pc, "ms")
		b.printf("Both with --runtime %s; wall and CPU until every process of the tree (monitor, conmon) has exited; medians of %d alternated runs:\n\n%s\n", runtime, b.n, t)
		t2 := &table{head: []string{"cubo run --rm, wall", "5 MB image", "500 MB image", "500 MB/5 MB"}}
		b.managerRow(t2, "container creation and run", cw, bw, "ms")
		b.printf("%s\n", t2)
	}
	if !b.want("bridge") {
		return nil
	}
	return b.bridgeBench(m, cuboArgv, podmanArgv, small, cw, pw)
}

// bridgeBench is runBench's `run --rm` on a CNI bridge network each (see bridge.go);
// cw and pw are the --network none figures when they were measured.
func (b *bench) bridgeBench(m *managerEnv, cuboArgv, podmanArgv func(...string) []string, small string, cw, pw series) error {
	netBefore := takeNetState()
	defer func() {
		if done := restoreNetState(netBefore); len(done) > 0 {
			b.progress("manager: removed %d bridge-run leftovers (bridges, CNI chains)\n", len(done))
		}
	}()
	penv, err := podmanBridgeEnv(filepath.Join(m.dir, "podman-net"))
	if err != nil {
		return err
	}
	cenv := append(os.Environ(), "CUBO_DEFAULT_BRIDGE="+cuboBenchBridge, "CUBO_DEFAULT_SUBNET="+cuboBenchSubnet)
	cuboBridge := cuboArgv("run", "--rm", "-i", "--network", "bridge", small, "true")
	podmanBridge := podmanArgv("run", "--rm", "--ulimit", "nofile=1024:1024", "--ulimit", "nproc=1024:1024", small, "true")
	for i := 0; i < 2; i++ {
		if _, err := measureTree(cuboBridge, cenv); err != nil {
			return fmt.Errorf("cubo run on a bridge: %w", err)
		}
		if _, err := measureTree(podmanBridge, penv); err != nil {
			return fmt.Errorf("podman run on a bridge: %w", err)
		}
	}
	var nw, nc, qw, qc series
	if err := b.alternate("bridge run",
		func() error { return timedTree(cuboBridge, cenv, &nw, &nc) },
		func() error { return timedTree(podmanBridge, penv, &qw, &qc) },
	); err != nil {
		return err
	}
	t3 := &table{head: []string{"`run --rm IMAGE true` on a CNI bridge (5 MB image)", "cubo (-i)", "podman", "cubo/podman"}}
	b.managerRow(t3, "wall", nw, qw, "ms")
	b.managerRow(t3, "CPU", nc, qc, "ms")
	b.printf("Each on a bridge of its own (cubo: %s %s, CNI bridge with the network's own masquerade and FORWARD rules made once; podman: %s %s, CNI bridge with ipMasq+portmap+firewall, rules per container), same runtime; medians of %d alternated runs:\n\n%s\n",
		cuboBenchBridge, cuboBenchSubnet, podmanBenchBridge, podmanBenchSubnet, b.n, t3)

	b.printf("| target | measured | met |\n| --- | --- | --- |\n")
	if len(cw) > 0 {
		b.printf("| cubo run --rm <= 0.5x podman run --rm, --network none (wall) | %s | %v |\n",
			ratio(cw.median(), pw.median()), yesNo(cw.median() <= 0.5*pw.median()))
	}
	b.printf("| cubo run --rm <= 0.5x podman run --rm, bridge (wall) | %s | %v |\n\n",
		ratio(nw.median(), qw.median()), yesNo(nw.median() <= 0.5*qw.median()))
	return nil
}

// alternate runs steps b.n times, rotating which goes first.
func (b *bench) alternate(what string, steps ...func() error) error {
	for i := 0; i < b.n; i++ {
		b.progress("\rmanager: %s %d/%d", what, i+1, b.n)
		for j := range steps {
			if err := steps[(i+j)%len(steps)](); err != nil {
				return err
			}
		}
	}
	b.progress("\n")
	return nil
}

// timedTree measures argv's tree and appends its wall time, and its CPU when cpu
// is not nil, in ms.
func timedTree(argv, env []string, wall, cpu *series) error {
	s, err := measureTree(argv, env)
	*wall = append(*wall, ms(s.wall))
	if cpu != nil {
		*cpu = append(*cpu, ms(s.cpu))
	}
	return err
}

// buildBench times a no-change rebuild of a 10-step Cubofile.
func (b *bench) buildBench(m *managerEnv, cubo, cuboRunc string) error {
	small, err := m.pushImage("buildbase", 1<<20)
	if err != nil {
		return err
	}
	root := filepath.Join(m.dir, "cubo-build-root")
	// The base comes from a plain-HTTP registry: pull it first so the build
	// finds it in the store.
	if err := run(cubo, "--root-dir", root, "pull", "--tls-verify=false", "-q", small); err != nil {
		return err
	}
	ctx := filepath.Join(m.dir, "build-ctx")
	if err := os.MkdirAll(ctx, 0o755); err != nil {
		return err
	}
	os.WriteFile(filepath.Join(ctx, "hello.txt"), []byte("hello\n"), 0o644)
	cubofile := "FROM " + small + "\n" +
		"ARG V=1\nENV A=1\nWORKDIR /app\nCOPY hello.txt /app/hello.txt\nRUN echo one > /app/one\n" +
		"RUN echo two > /app/two\nLABEL bench=yes\nUSER root\nCMD [\"/bin/sh\"]\n"
	os.WriteFile(filepath.Join(ctx, "Cubofile"), []byte(cubofile), 0o644)
	argv := []string{cubo, "--root-dir", root, "--runtime", cuboRunc, "build", "-t", "bench/rebuild", ctx}
	if _, err := measureTree(argv, nil); err != nil {
		return fmt.Errorf("first build: %w", err)
	}
	var w, c series
	for i := 0; i < b.n; i++ {
		s, err := measureTree(argv, nil)
		if err != nil {
			return err
		}
		w, c = append(w, ms(s.wall)), append(c, ms(s.cpu))
	}
	q1, q3 := w.quartiles()
	b.printf("No-change rebuild of a 10-step Cubofile (`cubo build -t bench/rebuild CTX`, after a first build): "+
		"wall %.1f ms (%.1f-%.1f), CPU %.1f ms (medians of %d).\n\n", w.median(), q1, q3, c.median(), b.n)
	return nil
}

// rmdirTree removes a cgroup directory and its (empty) children.
func rmdirTree(dir string) {
	ents, _ := os.ReadDir(dir)
	for _, e := range ents {
		if e.IsDir() {
			rmdirTree(filepath.Join(dir, e.Name()))
		}
	}
	os.Remove(dir)
}

func yesNo(ok bool) string {
	if ok {
		return "yes"
	}
	return "no"
}
