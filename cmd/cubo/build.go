package main

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"os/signal"
	"path/filepath"
	"strings"

	"golang.org/x/sys/unix"

	"github.com/cubo-dev/cubo/build"
	"github.com/cubo-dev/cubo/build/cubofile"
	"github.com/cubo-dev/cubo/images"
)

type buildCmd struct {
	Path     string   `arg:"" default:"." help:"Build context directory."`
	Tag      string   `short:"t" placeholder:"NAME[:TAG]" help:"Name of the image (default <dir-name>:latest)."`
	File     string   `short:"f" placeholder:"FILE" help:"Build file (default PATH/Cubofile.toml, then PATH/Cubofile)."`
	NoCache  bool     `name:"no-cache" help:"Do not use the build cache."`
	BuildArg []string `name:"build-arg" sep:"none" placeholder:"KEY=VALUE" help:"Set a build argument (repeatable)."`
	Target   string   `placeholder:"STAGE" help:"Build this stage (name or index) instead of the last."`
	Quiet    bool     `short:"q" help:"Print only the image ID."`
	NoPull   bool     `name:"no-pull" help:"Fail instead of pulling a base image missing from the store."`
}

// Run builds the image and prints its ID last.
func (c *buildCmd) Run(g *globals) error {
	file, err := findBuildFile(c.Path, c.File)
	if err != nil {
		return err
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return fmt.Errorf("read build file: %w", err)
	}
	plan, err := cubofile.Parse(filepath.Base(file), data)
	if err != nil {
		return err
	}
	tag := c.Tag
	if tag == "" {
		abs, err := filepath.Abs(c.Path)
		if err != nil {
			return fmt.Errorf("build context %s: %w", c.Path, err)
		}
		tag = strings.ToLower(filepath.Base(abs)) + ":latest"
	}
	args := map[string]string{}
	for _, kv := range c.BuildArg {
		k, v, ok := strings.Cut(kv, "=")
		if !ok {
			// Docker takes a bare KEY from the environment.
			if v, ok = os.LookupEnv(k); !ok {
				continue
			}
		}
		args[k] = v
	}
	st, err := g.store()
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, unix.SIGTERM)
	defer stop()
	out := os.Stdout
	if c.Quiet {
		out = nil
	}
	opts := build.Options{
		Context: c.Path, Tag: tag, NoCache: c.NoCache, BuildArgs: args, Target: c.Target,
		Runner: &build.BundleRunner{
			Runtime:   g.Runtime,
			StateRoot: filepath.Join(g.root, "build", "runtime"),
			BundleDir: filepath.Join(g.root, "build", "tmp"),
		},
		Log: g.log,
	}
	if out != nil {
		opts.Out = out
	}
	if !c.NoPull {
		opts.Pull = func(ctx context.Context, ref string) (*images.Image, error) { return st.Pull(ctx, ref) }
	}
	// What a killed build left (its RUN step still running, step mounts) goes first,
	// when no other build or pull runs.
	if m, err := g.manager(); err == nil {
		m.CollectBuilds(ctx)
	}
	res, err := build.Build(ctx, st, plan, opts)
	if err != nil {
		return fmt.Errorf("build %s: %w", tag, err)
	}
	fmt.Println(res.Image.ID)
	return nil
}

// findBuildFile returns --file (relative to the working dir, as Docker takes it), or
// Cubofile.toml, then Cubofile, in the context.
func findBuildFile(dir, file string) (string, error) {
	if file != "" {
		return file, nil
	}
	for _, n := range []string{"Cubofile.toml", "Cubofile"} {
		p := filepath.Join(dir, n)
		if _, err := os.Stat(p); err == nil {
			return p, nil
		} else if !errors.Is(err, fs.ErrNotExist) {
			return "", fmt.Errorf("find build file: %w", err)
		}
	}
	return "", fmt.Errorf("no Cubofile.toml or Cubofile in %s (use --file)", dir)
}
