package manager

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/moby/sys/mountinfo"
	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/images"
	"github.com/cubo-dev/cubo/manager/ociruntime"
	"github.com/cubo-dev/cubo/network"
)

// Finding is one thing Check found; see images.Finding.
type Finding = images.Finding

// stagingGrace is how old an unlocked creation dir must be before repair removes it:
// Create makes the dir a moment before it locks it.
const stagingGrace = 10 * time.Second

// Check verifies everything under the root dir: the image store (see images.Store.Check),
// every container record loadable and owning its name, no name claimed twice, no mount
// under the root dir that nothing owns, no runtime state without its container, and the
// leftovers of killed builds. Leftovers that break nothing (an unreferenced blob, a
// dangling name, an abandoned creation dir, the network of a gone container) are
// garbage; the rest is damage. With repair it removes what nobody owns: orphan mounts
// are unmounted, orphan runtime state deleted through the runtime (which kills what
// still runs in it), garbage collected; records are never removed. The error reports
// only failures to check.
func (m *Manager) Check(ctx context.Context, repair bool) ([]Finding, error) {
	var out []Finding
	if m.store != nil {
		found, err := m.store.Check(ctx, repair)
		if err != nil {
			return nil, err
		}
		out = append(out, found...)
	}
	add := func(f Finding) { out = append(out, f) }

	mounts, err := mountsUnder(m.root)
	if err != nil {
		return nil, err
	}
	mounted := map[string]bool{}
	for _, p := range mounts {
		mounted[p] = true
	}

	// Containers, creations and removals.
	ents, err := os.ReadDir(m.dir)
	if err != nil {
		return nil, fmt.Errorf("check containers: %w", err)
	}
	records := map[string]*Container{}
	creating := map[string]bool{}
	// repairedNew: abandoned creations removed above, whose mounts (listed
	// before) are gone with them.
	repairedNew := map[string]bool{}
	for _, e := range ents {
		name := e.Name()
		switch {
		case name == ".names":
		case strings.HasPrefix(name, ".new-") && idRe().MatchString(strings.TrimPrefix(name, ".new-")):
			id := strings.TrimPrefix(name, ".new-")
			dir := filepath.Join(m.dir, name)
			l, ok, err := tryLock(dir)
			if err != nil || !ok {
				creating[id] = true // its creator is alive (or it is going away)
				continue
			}
			f := Finding{Object: "container " + id, Problem: "creation interrupted before commit", Garbage: true}
			// Locked since before it had this name (see Create), so a free
			// lock is a dead creator: no grace period is needed.
			if repair {
				if c, err := loadMeta(dir); err == nil {
					f.Repaired = m.destroyFiles(c) == nil
				} else {
					_ = unix.Unmount(filepath.Join(dir, "rootfs"), 0)
					if !isMountPoint(filepath.Join(dir, "rootfs")) {
						f.Repaired = os.RemoveAll(dir) == nil
					}
				}
			} else {
				creating[id] = true
			}
			l.release()
			if f.Repaired {
				repairedNew[id] = true
			}
			add(f)
		case strings.HasPrefix(name, ".tmp-"):
			// cubo died between mkdir and lock of a new container's dir.
			dir := filepath.Join(m.dir, name)
			f := Finding{Object: "container " + strings.TrimPrefix(name, ".tmp-"), Problem: "creation interrupted before its dir was locked", Garbage: true}
			if fi, err := os.Stat(dir); repair && err == nil && time.Since(fi.ModTime()) >= stagingGrace {
				if l, ok, err := tryLock(dir); err == nil && ok {
					f.Repaired = os.RemoveAll(dir) == nil
					l.release()
				}
			}
			add(f)
		case strings.HasPrefix(name, ".rm-"):
			add(Finding{Object: "container " + strings.TrimPrefix(name, ".rm-"), Problem: "removal interrupted; the next listing finishes it", Garbage: true})
		case idRe().MatchString(name):
			c, err := loadMeta(filepath.Join(m.dir, name))
			if err != nil {
				if errors.Is(err, fs.ErrNotExist) {
					err = errors.New("meta.json is missing")
				}
				add(Finding{Object: "container " + name, Problem: "record unreadable: " + err.Error()})
				continue
			}
			if c.ID != name {
				add(Finding{Object: "container " + name, Problem: "record names ID " + c.ID})
				continue
			}
			records[name] = c
			if !slices.Contains([]string{StatusCreated, StatusRunning, StatusStopped}, c.Status) {
				add(Finding{Object: "container " + name, Problem: fmt.Sprintf("record has status %q", c.Status)})
			}
		default:
			add(Finding{Object: "containers/" + name, Problem: "not a container directory"})
		}
	}

	// Names: each record owns its name, and each name file names a container.
	owners := map[string]string{}
	nents, err := os.ReadDir(filepath.Join(m.dir, ".names"))
	if err != nil {
		return nil, fmt.Errorf("check names: %w", err)
	}
	for _, e := range nents {
		if id, ok := strings.CutPrefix(e.Name(), claimPrefix); ok {
			// reserveName holds its claim file for a link(2); an older one is
			// what a killed cubo left.
			f := Finding{Object: "container " + id, Problem: "name claim left by an interrupted creation", Garbage: true}
			path := filepath.Join(m.dir, ".names", e.Name())
			if fi, err := os.Stat(path); repair && err == nil && time.Since(fi.ModTime()) >= stagingGrace {
				f.Repaired = os.Remove(path) == nil
			}
			add(f)
			continue
		}
		b, err := os.ReadFile(m.nameFile(e.Name()))
		owner := strings.TrimSpace(string(b))
		if err != nil {
			continue // released meanwhile
		}
		owners[e.Name()] = owner
		if records[owner] != nil || creating[owner] || m.exists(owner) {
			continue
		}
		f := Finding{Object: "name " + e.Name(), Problem: "claimed by " + owner + ", which does not exist", Garbage: true}
		if repair {
			f.Repaired = m.releaseStaleName(e.Name(), owner)
		}
		add(f)
	}
	for id, c := range records {
		if c.Name == "" {
			continue
		}
		if o := owners[c.Name]; o != id {
			problem := "its name " + c.Name + " is not claimed"
			if o != "" {
				problem = "its name " + c.Name + " belongs to " + o
			}
			add(Finding{Object: "container " + id, Problem: problem})
		}
	}

	// Mounts under the root dir.
	buildQuiescent := false
	if m.store != nil {
		if release, ok, err := m.store.TryExclusive(); err == nil && ok {
			buildQuiescent = true
			defer release()
		}
	}
	buildDir := filepath.Join(m.root, "build") + "/"
	netnsDir := filepath.Join(m.root, "network", "netns") + "/"
	netGarbage := false
	for _, p := range mounts {
		rel := strings.TrimPrefix(p, m.root+"/")
		parts := strings.Split(rel, "/")
		switch {
		case strings.HasPrefix(p, buildDir):
			if !buildQuiescent {
				continue // a build runs: its mounts are live
			}
			f := Finding{Object: "mount " + p, Problem: "left by a killed build"}
			if repair {
				f.Repaired = unix.Unmount(p, unix.MNT_DETACH) == nil
			}
			add(f)
		case strings.HasPrefix(p, netnsDir) && len(parts) == 3:
			id := parts[2]
			c := records[id]
			if creating[id] || c != nil && c.Status != StatusStopped {
				continue
			}
			add(Finding{Object: "mount " + p, Problem: "network namespace of a container that no longer needs it", Garbage: true})
			netGarbage = true
		case len(parts) == 3 && parts[0] == "containers" && parts[2] == "rootfs" && records[parts[1]] != nil:
		case len(parts) == 3 && parts[0] == "containers" && parts[2] == "rootfs" && strings.HasPrefix(parts[1], ".new-") && (creating[strings.TrimPrefix(parts[1], ".new-")] || repairedNew[strings.TrimPrefix(parts[1], ".new-")]):
		default:
			add(Finding{Object: "mount " + p, Problem: "nothing under the root dir owns it"})
		}
	}
	if netGarbage && repair {
		if err := m.reconcileNetwork(ctx); err == nil {
			for i := range out {
				if out[i].Garbage && strings.HasPrefix(out[i].Object, "mount "+netnsDir) {
					out[i].Repaired = true
				}
			}
		}
	}

	// The networks' iptables rules: missing ones of this root's networks, and cubo
	// chains of bridges that are gone (anywhere on the machine).
	rules, err := m.checkNetworkRules(repair)
	if err != nil {
		return nil, err
	}
	out = append(out, rules...)

	// Runtime state: each belongs to a container.
	rtDirs, _ := os.ReadDir(filepath.Join(m.root, "runtime"))
	for _, rd := range rtDirs {
		root := filepath.Join(m.root, "runtime", rd.Name())
		ids, _ := os.ReadDir(root)
		for _, e := range ids {
			id := e.Name()
			if records[id] != nil || creating[id] || m.exists(id) {
				continue
			}
			if _, err := os.Stat(filepath.Join(m.root, "runonce", id)); err == nil {
				continue // a one-off run's
			}
			f := Finding{Object: "runtime state " + filepath.Join(root, id), Problem: "no container has this ID"}
			if repair {
				f.Repaired = m.deleteState(ctx, rd.Name(), root, id)
			}
			add(f)
		}
	}

	// What killed builds left: only judged while no build (or pull) holds the store.
	if buildQuiescent {
		out = append(out, m.checkBuilds(ctx, repair)...)
	}
	return out, nil
}

// CollectBuilds removes what killed builds left (runtime state and its processes, step
// mounts, temp dirs) when no build, pull or removal runs; otherwise it does nothing.
func (m *Manager) CollectBuilds(ctx context.Context) {
	if m.store == nil {
		return
	}
	release, ok, err := m.store.TryExclusive()
	if err != nil || !ok {
		return
	}
	defer release()
	m.checkBuilds(ctx, true)
}

// checkBuilds reports (and with repair removes) the runtime states and temp dirs of
// builds under ROOT/build.
// Preconditions: the caller holds the store's lock exclusively, so no build runs.
func (m *Manager) checkBuilds(ctx context.Context, repair bool) []Finding {
	var out []Finding
	root := filepath.Join(m.root, "build", "runtime")
	ids, _ := os.ReadDir(root)
	for _, e := range ids {
		f := Finding{Object: "runtime state " + filepath.Join(root, e.Name()), Problem: "left by a killed build"}
		if repair {
			f.Repaired = m.deleteState(ctx, "", root, e.Name())
		}
		out = append(out, f)
	}
	if repair {
		// The processes are gone with their state; now the step mounts can go.
		mounts, _ := mountsUnder(filepath.Join(m.root, "build"))
		for i := len(mounts) - 1; i >= 0; i-- {
			_ = unix.Unmount(mounts[i], unix.MNT_DETACH)
		}
	}
	tmp := filepath.Join(m.root, "build", "tmp")
	ents, _ := os.ReadDir(tmp)
	for _, e := range ents {
		p := filepath.Join(tmp, e.Name())
		f := Finding{Object: "build/tmp/" + e.Name(), Problem: "left by a killed build", Garbage: true}
		if repair {
			if ms, _ := mountsUnder(p); len(ms) == 0 {
				f.Repaired = os.RemoveAll(p) == nil
			}
		}
		out = append(out, f)
	}
	return out
}

// deleteState force-deletes runtime state id under root (killing its processes) with
// the runtime binary named rtName, or the manager's runtime when rtName is empty.
func (m *Manager) deleteState(ctx context.Context, rtName, root, id string) bool {
	bin, err := m.resolveRuntime()
	if err == nil && rtName != "" && filepath.Base(bin) != rtName {
		bin, err = lookPath(rtName)
	}
	if err != nil {
		return false
	}
	rt := &ociruntime.Runtime{Command: bin, Root: root}
	_ = rt.Delete(ctx, id, true)
	_, err = os.Stat(filepath.Join(root, id))
	return errors.Is(err, fs.ErrNotExist)
}

// releaseStaleName removes name's file if it still names owner and owner still does
// not exist.
func (m *Manager) releaseStaleName(name, owner string) bool {
	unlock, err := m.lockNames()
	if err != nil {
		return false
	}
	defer unlock()
	b, err := os.ReadFile(m.nameFile(name))
	if err != nil || strings.TrimSpace(string(b)) != owner || m.exists(owner) {
		return false
	}
	return os.Remove(m.nameFile(name)) == nil
}

// mountsUnder returns the mount points at or below dir in this mount namespace, deepest
// last as the mount table lists them.
func mountsUnder(dir string) ([]string, error) {
	ms, err := mountinfo.GetMounts(mountinfo.PrefixFilter(dir))
	if err != nil {
		return nil, fmt.Errorf("read mount table: %w", err)
	}
	out := make([]string, len(ms))
	for i, mi := range ms {
		out[i] = mi.Mountpoint
	}
	return out, nil
}

// checkNetworkRules is network.Controller.CheckRules for a root dir whose networks were
// used, network.SweepRules (no controller, no network dir made) for one never used.
func (m *Manager) checkNetworkRules(repair bool) ([]Finding, error) {
	if os.Geteuid() != 0 {
		return nil, nil // iptables needs root; so does every rule cubo makes
	}
	var found []network.RulesFinding
	var err error
	if _, serr := os.Stat(filepath.Join(m.root, "network")); serr == nil {
		nc, nerr := m.network()
		if nerr != nil {
			return nil, nerr
		}
		found, err = nc.CheckRules(repair)
	} else {
		found, err = network.SweepRules(repair)
	}
	if err != nil {
		return nil, fmt.Errorf("check network rules: %w", err)
	}
	out := make([]Finding, 0, len(found))
	for _, f := range found {
		out = append(out, Finding{Object: f.Object, Problem: f.Problem, Garbage: f.Garbage, Repaired: f.Repaired})
	}
	return out, nil
}
