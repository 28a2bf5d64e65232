package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"

	"github.com/cubo-dev/cubo/runtime/cgroups"
	"github.com/cubo-dev/cubo/runtime/nsenter"
)

type psCmd struct {
	Format string   `short:"f" default:"table" enum:"table,json" help:"Select one of: table or json."`
	ID     string   `arg:"" name:"container-id" optional:""`
	Args   []string `arg:"" optional:"" type:"raw" help:"Arguments for ps(1) (default -ef)."`
}

func (c *psCmd) Run(g *globals) error {
	ct, err := load(g, c.ID)
	if err != nil {
		return err
	}
	var pids []int
	if len(ct.CgroupPaths) > 0 {
		m, err := cgroups.Load(ct.CgroupPaths)
		if err != nil {
			return err
		}
		if pids, err = m.GetAllPids(); err != nil && !errors.Is(err, os.ErrNotExist) {
			return err
		}
	}
	if c.Format == "json" {
		if pids == nil {
			pids = []int{}
		}
		return json.NewEncoder(os.Stdout).Encode(pids)
	}
	args := c.Args
	if len(args) == 0 {
		args = []string{"-ef"}
	}
	// ps must not inherit the runtime threads' coarse timer slack.
	runtime.LockOSThread()
	nsenter.RestoreTimerSlack()
	out, err := exec.Command("ps", args...).Output()
	if err != nil {
		return fmt.Errorf("ps %s: %w", strings.Join(args, " "), err)
	}
	in := map[int]bool{}
	for _, p := range pids {
		in[p] = true
	}
	sc := bufio.NewScanner(bytes.NewReader(out))
	if !sc.Scan() {
		return nil
	}
	header := sc.Text()
	col := -1
	for i, f := range strings.Fields(header) {
		if f == "PID" {
			col = i
		}
	}
	if col < 0 {
		return errors.New("ps output has no PID column")
	}
	fmt.Println(header)
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) <= col {
			continue
		}
		if p, err := strconv.Atoi(fields[col]); err == nil && in[p] {
			fmt.Println(sc.Text())
		}
	}
	return nil
}
