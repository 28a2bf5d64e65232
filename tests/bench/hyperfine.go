package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
)

// hyperfineCheck measures figure (a) a second way, with hyperfine, so that
// the harness's own measuring (launch.c, alternation, its percentiles) is not
// the only witness of the headline ratio. hyperfine runs each command's
// series back to back rather than alternating, and, not being a subreaper,
// its CPU figure misses any process orphaned on the way, so its ratios are a
// cross-check, not the targets' figures. Each run uses one container ID per runtime: `run`
// deletes the container when it exits.
func (b *bench) hyperfineCheck(runs int) error {
	hf, err := exec.LookPath("hyperfine")
	if err != nil {
		b.printf("### Cross-check with hyperfine\n\nhyperfine not installed; skipped.\n\n")
		return nil
	}
	if strings.ContainsAny(b.bundleNet+b.work, " \t'\"") {
		return fmt.Errorf("hyperfine: paths with spaces or quotes are not supported: %s", b.work)
	}
	out := filepath.Join(b.work, "hyperfine.json")
	args := []string{"-N", "--style", "basic", "--warmup", "3", "--runs", strconv.Itoa(runs), "--export-json", out}
	var names []string
	for _, r := range b.rts {
		if len(r.env) > 0 {
			continue // hyperfine -N has no per-command environment
		}
		id := fmt.Sprintf("cubobench-%d-%s-hf", os.Getpid(), r.name)
		args = append(args, "-n", r.name, strings.Join(r.argv("run", "--bundle", b.bundleNet, id), " "))
		names = append(names, r.name)
	}
	cmd := exec.Command(hf, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("hyperfine: %w", err)
	}
	raw, err := os.ReadFile(out)
	if err != nil {
		return err
	}
	var res struct {
		Results []struct {
			Command string    `json:"command"`
			Median  float64   `json:"median"`
			User    float64   `json:"user"`
			System  float64   `json:"system"`
			Times   []float64 `json:"times"`
		} `json:"results"`
	}
	if err := json.Unmarshal(raw, &res); err != nil {
		return fmt.Errorf("hyperfine's export: %w", err)
	}
	wall, cpu := map[string]float64{}, map[string]float64{}
	for _, r := range res.Results {
		wall[r.Command] = r.Median * 1000
		cpu[r.Command] = (r.User + r.System) * 1000
	}
	b.printf("### Cross-check with hyperfine\n\n")
	b.printf("`hyperfine -N --warmup 3 --runs %d` of `run /bin/true` on the same bundle (series back to back, not alternated; CPU is hyperfine's mean user+sys).\n\n", runs)
	t := &table{head: []string{"runtime", "wall median", "CPU mean", "wall / crun", "CPU / crun", "wall / runc", "CPU / runc"}}
	for _, n := range names {
		t.row(n, fmt.Sprintf("%.2f ms", wall[n]), fmt.Sprintf("%.2f ms", cpu[n]),
			ratio(wall[n], wall["crun"]), ratio(cpu[n], cpu["crun"]),
			ratio(wall[n], wall["runc"]), ratio(cpu[n], cpu["runc"]))
	}
	b.printf("%s\n", t)
	return nil
}
