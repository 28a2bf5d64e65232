// Package build executes a cubofile.Plan into the image store: each RUN in a container
// (through a Runner) whose rootfs is an overlay over the parent layers, each COPY/ADD
// written into such an overlay; the overlay's upper dir becomes the step's layer.
// Metadata instructions change only the image config. A cache keyed by the parent, the
// instruction, build args and the content of copied files makes a rebuild without change
// skip every step.
//
// On-disk state under the root dir, beside the image store:
//
//	ROOT/build/cache/<key>.json   the layer a RUN/COPY/ADD step produced for that key
//	ROOT/build/tmp/               per-build overlay mounts and layer blobs, removed after
//	ROOT/build/runtime/           the default runner's runtime --root
package build

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/containerd/errdefs"
	"github.com/opencontainers/go-digest"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/rs/zerolog"

	"github.com/cubo-dev/cubo/build/cubofile"
	"github.com/cubo-dev/cubo/images"
	"github.com/cubo-dev/cubo/spec"
)

// Options configure Build.
type Options struct {
	// Context is the build context dir COPY and ADD read from.
	Context string
	// Tag names the image (NAME[:TAG]); empty leaves it dangling.
	Tag string
	// NoCache rebuilds every step (results are still recorded for later builds).
	NoCache bool
	// BuildArgs override ARG defaults.
	BuildArgs map[string]string
	// Target is the stage to build (name or index); empty means the last one.
	Target string
	// Runner runs RUN steps; nil uses a BundleRunner with cubo-runc.
	Runner Runner
	// Out receives the step lines and the output of RUN commands; nil discards them.
	Out io.Writer
	// Log receives debug details; nothing by default.
	Log zerolog.Logger
	// Pull fetches a base image missing from the store; nil makes it an error.
	Pull func(ctx context.Context, ref string) (*images.Image, error)
}

// Result reports a finished build.
type Result struct {
	Image *images.Image
	// Steps counts the executed instructions of the built stages (FROM included), Cached
	// the RUN/COPY/ADD steps taken from the cache, Built those that ran.
	Steps, Cached, Built int
}

// Build runs plan in store. It returns an error naming the instruction (file:line) that
// failed; a failed build leaves no mounts or temp dirs behind, and the steps before the
// failure stay cached.
func Build(ctx context.Context, store *images.Store, plan *cubofile.Plan, o Options) (*Result, error) {
	if o.Out == nil {
		o.Out = io.Discard
	}
	bctx, err := openContext(o.Context)
	if err != nil {
		return nil, err
	}
	base := filepath.Join(store.Root(), "build")
	if o.Runner == nil {
		o.Runner = &BundleRunner{StateRoot: filepath.Join(base, "runtime"), BundleDir: filepath.Join(base, "tmp")}
	}
	b := &builder{store: store, plan: plan, o: o, bctx: bctx, cacheDir: filepath.Join(base, "cache"),
		stages: make([]*stageState, len(plan.Stages)), globalArgs: map[string]string{}, used: map[string]bool{}}
	for _, d := range []string{b.cacheDir, filepath.Join(base, "tmp")} {
		if err := os.MkdirAll(d, 0o700); err != nil {
			return nil, fmt.Errorf("create build dir: %w", err)
		}
	}
	if b.tmp, err = os.MkdirTemp(filepath.Join(base, "tmp"), "build-"); err != nil {
		return nil, fmt.Errorf("create build dir: %w", err)
	}
	defer os.RemoveAll(b.tmp)
	release, err := store.Hold()
	if err != nil {
		return nil, err
	}
	defer release()

	for _, kv := range plan.Args {
		if v, ok := o.BuildArgs[kv.Key]; ok {
			b.globalArgs[kv.Key], b.used[kv.Key] = v, true
		} else if kv.HasValue {
			v, err := cubofile.ProcessWord(kv.Value, plan.Escape, b.lookupGlobal)
			if err != nil {
				return nil, fmt.Errorf("%s:%d: ARG %s: %w", plan.File, 1, kv.Key, err)
			}
			b.globalArgs[kv.Key] = v
		}
	}
	target := len(plan.Stages) - 1
	if o.Target != "" {
		if target = plan.StageIndex(o.Target); target < 0 {
			return nil, fmt.Errorf("target stage %q: %w", o.Target, errdefs.ErrNotFound)
		}
	}
	need := map[int]bool{}
	b.needs(target, need)
	for i := range plan.Stages {
		if need[i] {
			b.total += 1 + len(plan.Stages[i].Instructions)
		}
	}
	for i := range plan.Stages {
		if !need[i] {
			continue
		}
		if err := b.buildStage(ctx, i); err != nil {
			return nil, err
		}
	}
	for k := range o.BuildArgs {
		if !b.used[k] {
			fmt.Fprintf(o.Out, "warning: build arg %s was not consumed\n", k)
		}
	}
	st := b.stages[target]
	cfg := st.img
	cfg.Created = &st.created
	cfg.RootFS = ocispec.RootFS{Type: "layers", DiffIDs: st.diffIDs}
	if cfg.OS == "" {
		cfg.OS, cfg.Architecture = "linux", runtime.GOARCH
	}
	img, err := store.Commit(ctx, &cfg, st.layers, o.Tag)
	if err != nil {
		return nil, fmt.Errorf("commit image: %w", err)
	}
	b.res.Image = img
	name := o.Tag
	if name == "" {
		name = "<none>"
	}
	fmt.Fprintf(o.Out, "built %s %s (%d steps, %d cached)\n", name, img.ID, b.res.Steps, b.res.Cached)
	return &b.res, nil
}

type builder struct {
	store      *images.Store
	plan       *cubofile.Plan
	o          Options
	bctx       *buildContext
	cacheDir   string
	tmp        string
	stages     []*stageState
	globalArgs map[string]string
	used       map[string]bool
	stepNo     int
	total      int
	res        Result
}

// stageState is a stage's image as its instructions build it.
type stageState struct {
	img      ocispec.Image
	layers   []ocispec.Descriptor
	diffIDs  []digest.Digest
	key      string // cache chain: hash of the base and every instruction so far
	args     map[string]string
	argNames []string // declared ARGs in order; a declared ARG without value is unset
	shell    []string
	cmdSet   bool
	created  time.Time
}

func (b *builder) lookupGlobal(k string) (string, bool) {
	v, ok := b.globalArgs[k]
	return v, ok
}

// needs marks stage i and the stages it reads from (FROM and COPY --from).
func (b *builder) needs(i int, need map[int]bool) {
	if need[i] {
		return
	}
	need[i] = true
	st := b.plan.Stages[i]
	refs := []string{st.Base}
	for _, in := range st.Instructions {
		if in.From != "" {
			refs = append(refs, in.From)
		}
	}
	for _, r := range refs {
		if v, err := cubofile.ProcessWord(r, b.plan.Escape, b.lookupGlobal); err == nil {
			r = v
		}
		if j := b.plan.StageIndex(r); j >= 0 && j < i {
			b.needs(j, need)
		}
	}
}

func hashKey(parts ...string) string {
	h := sha256.New()
	for _, p := range parts {
		fmt.Fprintf(h, "%d:%s;", len(p), p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (b *builder) printStep(text string) {
	b.stepNo++
	b.res.Steps++
	fmt.Fprintf(b.o.Out, "STEP %d/%d: %s\n", b.stepNo, b.total, text)
}

// buildStage runs stage i's FROM and instructions into b.stages[i].
func (b *builder) buildStage(ctx context.Context, i int) error {
	stg := b.plan.Stages[i]
	b.printStep(stg.Text)
	base, err := cubofile.ProcessWord(stg.Base, b.plan.Escape, b.lookupGlobal)
	if err != nil || base == "" {
		return fmt.Errorf("%s: FROM %s: invalid base %v", stg.Pos, stg.Base, err)
	}
	st := &stageState{args: map[string]string{}, shell: []string{"/bin/sh", "-c"}}
	switch j := b.plan.StageIndex(base); {
	case strings.EqualFold(base, cubofile.Scratch):
		st.key = hashKey("scratch")
	case j >= 0 && j < i:
		p := b.stages[j]
		st.img, st.key, st.created = cloneImage(p.img), p.key, p.created
		st.layers, st.diffIDs = slices.Clone(p.layers), slices.Clone(p.diffIDs)
	default:
		img, err := b.image(ctx, base)
		if err != nil {
			return fmt.Errorf("%s: FROM %s: %w", stg.Pos, base, err)
		}
		st.img, st.key = cloneImage(img.Config), hashKey("image", img.Descriptor.Digest.String())
		st.layers, st.diffIDs = slices.Clone(img.Manifest.Layers), slices.Clone(img.Config.RootFS.DiffIDs)
		st.created = img.Created()
	}
	b.stages[i] = st
	for _, in := range stg.Instructions {
		if err := ctx.Err(); err != nil {
			return err
		}
		b.printStep(in.Text)
		if err := b.apply(ctx, i, st, in); err != nil {
			return fmt.Errorf("%s: %s: %w", in.Pos, in.Kind, err)
		}
	}
	return nil
}

func cloneImage(img ocispec.Image) ocispec.Image {
	data, _ := json.Marshal(img)
	var out ocispec.Image
	_ = json.Unmarshal(data, &out)
	return out
}

// image finds a base image in the store, pulling it when allowed.
func (b *builder) image(ctx context.Context, ref string) (*images.Image, error) {
	img, err := b.store.Get(ctx, ref)
	if errors.Is(err, errdefs.ErrNotFound) && b.o.Pull != nil {
		return b.o.Pull(ctx, ref)
	}
	return img, err
}

// lookup resolves $VAR in a stage: the image's ENV first, then ARGs, as Docker does.
func (st *stageState) lookup(k string) (string, bool) {
	for i := len(st.img.Config.Env) - 1; i >= 0; i-- {
		if n, v, _ := strings.Cut(st.img.Config.Env[i], "="); n == k {
			return v, true
		}
	}
	v, ok := st.args[k]
	return v, ok
}

func (b *builder) word(st *stageState, in cubofile.Instruction, w string) (string, error) {
	if !in.Expand {
		return w, nil
	}
	return cubofile.ProcessWord(w, b.plan.Escape, st.lookup)
}

func setEnv(env []string, k, v string) []string {
	env = slices.DeleteFunc(env, func(e string) bool { n, _, _ := strings.Cut(e, "="); return n == k })
	return append(env, k+"="+v)
}

// runEnv is the environment of a RUN: the image's plus the ARGs it does not override.
func (st *stageState) runEnv() []string {
	env := slices.Clone(st.img.Config.Env)
	for _, k := range st.argNames {
		v, ok := st.args[k]
		if _, set := st.lookupEnv(k); ok && !set {
			env = append(env, k+"="+v)
		}
	}
	return env
}

func (st *stageState) lookupEnv(k string) (string, bool) {
	for _, e := range st.img.Config.Env {
		if n, v, _ := strings.Cut(e, "="); n == k {
			return v, true
		}
	}
	return "", false
}

// apply runs one instruction on st.
func (b *builder) apply(ctx context.Context, idx int, st *stageState, in cubofile.Instruction) error {
	c := &st.img.Config
	extra := ""
	switch in.Kind {
	case cubofile.Env:
		// Every pair sees the environment from before the instruction.
		vals := make([]string, len(in.Pairs))
		for i, kv := range in.Pairs {
			v, err := b.word(st, in, kv.Value)
			if err != nil {
				return err
			}
			vals[i] = v
		}
		for i, kv := range in.Pairs {
			c.Env = setEnv(c.Env, kv.Key, vals[i])
		}
		extra = strings.Join(vals, "\x00")
	case cubofile.Arg:
		for _, kv := range in.Pairs {
			v, ok := b.o.BuildArgs[kv.Key]
			switch {
			case ok:
				b.used[kv.Key] = true
			case kv.HasValue:
				var err error
				if v, err = b.word(st, in, kv.Value); err != nil {
					return err
				}
				ok = true
			default:
				v, ok = b.globalArgs[kv.Key]
			}
			if !slices.Contains(st.argNames, kv.Key) {
				st.argNames = append(st.argNames, kv.Key)
			}
			if ok {
				st.args[kv.Key] = v
				extra += kv.Key + "=" + v + "\x00"
			} else {
				delete(st.args, kv.Key)
			}
		}
	case cubofile.Label:
		if c.Labels == nil {
			c.Labels = map[string]string{}
		}
		for _, kv := range in.Pairs {
			k, err := b.word(st, in, kv.Key)
			if err != nil {
				return err
			}
			v, err := b.word(st, in, kv.Value)
			if err != nil {
				return err
			}
			c.Labels[k] = v
			extra += k + "=" + v + "\x00"
		}
	case cubofile.Workdir:
		v, err := b.word(st, in, in.Value)
		if err != nil {
			return err
		}
		if !path.IsAbs(v) {
			v = path.Join("/", c.WorkingDir, v)
		}
		c.WorkingDir = path.Clean(v)
		extra = c.WorkingDir
	case cubofile.User:
		v, err := b.word(st, in, in.Value)
		if err != nil {
			return err
		}
		c.User, extra = v, v
	case cubofile.StopSignal:
		v, err := b.word(st, in, in.Value)
		if err != nil {
			return err
		}
		c.StopSignal, extra = v, v
	case cubofile.Expose, cubofile.Volume:
		for _, w := range in.Values {
			v, err := b.word(st, in, w)
			if err != nil {
				return err
			}
			if in.Kind == cubofile.Volume {
				if c.Volumes == nil {
					c.Volumes = map[string]struct{}{}
				}
				c.Volumes[v] = struct{}{}
			} else {
				port, proto, _ := strings.Cut(v, "/")
				if proto == "" {
					proto = "tcp"
				}
				if _, err := strconv.ParseUint(strings.Split(port, "-")[0], 10, 16); err != nil || (proto != "tcp" && proto != "udp" && proto != "sctp") {
					return fmt.Errorf("invalid port %q", v)
				}
				if c.ExposedPorts == nil {
					c.ExposedPorts = map[string]struct{}{}
				}
				c.ExposedPorts[port+"/"+strings.ToLower(proto)] = struct{}{}
			}
			extra += v + "\x00"
		}
	case cubofile.Shell:
		st.shell = slices.Clone(in.Args)
	case cubofile.Entrypoint:
		c.Entrypoint = st.command(in)
		if !st.cmdSet {
			// Docker: an ENTRYPOINT resets a CMD inherited from the base image.
			c.Cmd = nil
		}
	case cubofile.Cmd:
		c.Cmd, st.cmdSet = st.command(in), true
	case cubofile.Run:
		return b.run(ctx, st, in)
	case cubofile.Copy, cubofile.Add:
		return b.copy(ctx, idx, st, in)
	default:
		return fmt.Errorf("instruction not supported: %w", errdefs.ErrNotImplemented)
	}
	st.key = hashKey(st.key, in.Text, extra)
	st.history(in.Text, true)
	return nil
}

func (st *stageState) command(in cubofile.Instruction) []string {
	if in.ShellForm {
		return append(slices.Clone(st.shell), in.Args[0])
	}
	return slices.Clone(in.Args)
}

func (st *stageState) history(text string, empty bool) {
	t := st.created
	st.img.History = append(st.img.History, ocispec.History{Created: &t, CreatedBy: text, Comment: "cubo build", EmptyLayer: empty})
}

// cacheRecord is what a RUN/COPY/ADD step left: its layer (none for a step that changed
// nothing) and when it was made.
type cacheRecord struct {
	Layer   *ocispec.Descriptor `json:"layer,omitempty"`
	DiffID  digest.Digest       `json:"diff_id,omitempty"`
	Created time.Time           `json:"created"`
}

func (b *builder) cachePath(key string) string { return filepath.Join(b.cacheDir, key+".json") }

// cached returns the record for key when it and its layer blob are still there.
func (b *builder) cached(key string) (*cacheRecord, bool) {
	if b.o.NoCache {
		return nil, false
	}
	data, err := os.ReadFile(b.cachePath(key))
	if err != nil {
		return nil, false
	}
	var r cacheRecord
	if json.Unmarshal(data, &r) != nil {
		return nil, false
	}
	if r.Layer != nil && (!b.store.HasLayer(*r.Layer) || r.DiffID.Validate() != nil) {
		return nil, false
	}
	return &r, true
}

func (b *builder) saveCache(key string, r *cacheRecord) error {
	data, err := json.Marshal(r)
	if err != nil {
		return err
	}
	f, err := os.CreateTemp(b.cacheDir, ".tmp-")
	if err != nil {
		return fmt.Errorf("write cache: %w", err)
	}
	defer os.Remove(f.Name())
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("write cache: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write cache: %w", err)
	}
	if err := os.Rename(f.Name(), b.cachePath(key)); err != nil {
		return fmt.Errorf("write cache: %w", err)
	}
	return nil
}

// step looks key up in the cache, or runs fn to make the layer; either way the layer is
// added to st.
func (b *builder) step(ctx context.Context, st *stageState, text, key string, fn func(rootfs string) error, stubs []string) error {
	if r, ok := b.cached(key); ok {
		fmt.Fprintln(b.o.Out, " ---> cached")
		b.res.Cached++
		b.addLayer(st, text, key, r)
		return nil
	}
	start := time.Now()
	desc, diffID, ok, err := b.inOverlay(ctx, st, fn, stubs)
	if err != nil {
		return err
	}
	r := &cacheRecord{Created: time.Now().UTC().Truncate(time.Second)}
	if ok {
		r.Layer, r.DiffID = &desc, diffID
	}
	if err := b.saveCache(key, r); err != nil {
		return err
	}
	b.res.Built++
	fmt.Fprintf(b.o.Out, " ---> done in %.2fs\n", time.Since(start).Seconds())
	b.addLayer(st, text, key, r)
	return nil
}

func (b *builder) addLayer(st *stageState, text, key string, r *cacheRecord) {
	st.key = key
	if r.Created.After(st.created) {
		// The image's time is its newest layer's, so a rebuild from cache gives the same
		// config and the same image ID.
		st.created = r.Created
	}
	if r.Layer != nil {
		st.layers = append(st.layers, *r.Layer)
		st.diffIDs = append(st.diffIDs, r.DiffID)
	}
	st.history(text, r.Layer == nil)
}

// mountStubs are the mount points a runtime creates when the image lacks them; they are
// removed from the layer then, as BuildKit does.
var mountStubs = []string{"proc", "sys", "dev", "etc/resolv.conf"}

// run executes a RUN step.
func (b *builder) run(ctx context.Context, st *stageState, in cubofile.Instruction) error {
	args := st.command(in)
	if len(args) == 0 {
		return fmt.Errorf("empty command: %w", errdefs.ErrInvalidArgument)
	}
	env := st.runEnv()
	c := st.img.Config
	key := hashKey(st.key, "RUN", strings.Join(args, "\x00"), strings.Join(env, "\x00"), c.WorkingDir, c.User)
	cwd := c.WorkingDir
	if cwd == "" {
		cwd = "/"
	}
	return b.step(ctx, st, in.Text, key, func(rootfs string) error {
		if _, err := (&copier{rootfs: rootfs}).mkdirAll(cwd); err != nil {
			return err
		}
		uid, gid, groups, err := spec.ResolveUser(rootfs, c.User)
		if err != nil {
			return err
		}
		return b.o.Runner.Run(ctx, RunSpec{
			ID: "cubo-build-" + randomID(), Rootfs: rootfs, Args: args, Env: env, Cwd: cwd,
			User: c.User, UID: uid, GID: gid, AdditionalGIDs: groups,
			Stdout: b.o.Out, Stderr: b.o.Out,
		})
	}, mountStubs)
}
