package main

import (
	"encoding/json"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
	"text/tabwriter"
	"time"

	"github.com/cubo-dev/cubo/runtime/container"
)

type listCmd struct {
	Format string `short:"f" default:"table" enum:"table,json" help:"Select one of: table or json."`
	Quiet  bool   `short:"q" help:"Display only container IDs."`
}

func (c *listCmd) Run(g *globals) error {
	root, err := g.root()
	if err != nil {
		return err
	}
	ids, err := container.List(root)
	if err != nil {
		return err
	}
	var states []stateJSON
	for _, id := range ids {
		ct, err := container.Load(root, id)
		if err != nil {
			fmt.Fprintf(os.Stderr, "load container %s: %v\n", id, err)
			continue
		}
		s := stateOf(ct)
		s.Owner = owner(ct.Dir())
		states = append(states, s)
	}
	if c.Quiet {
		for _, s := range states {
			fmt.Println(s.ID)
		}
		return nil
	}
	if c.Format == "json" {
		return json.NewEncoder(os.Stdout).Encode(states)
	}
	w := tabwriter.NewWriter(os.Stdout, 12, 1, 3, ' ', 0)
	fmt.Fprint(w, "ID\tPID\tSTATUS\tBUNDLE\tCREATED\tOWNER\n")
	for _, s := range states {
		fmt.Fprintf(w, "%s\t%d\t%s\t%s\t%s\t%s\n", s.ID, s.Pid, s.Status, s.Bundle, s.Created.Format(time.RFC3339Nano), s.Owner)
	}
	return w.Flush()
}

// owner names the user owning the state dir, "#uid" when unknown, as runc.
func owner(dir string) string {
	fi, err := os.Stat(dir)
	if err != nil {
		return ""
	}
	uid := fi.Sys().(*syscall.Stat_t).Uid
	if u, err := user.LookupId(strconv.Itoa(int(uid))); err == nil {
		return u.Username
	}
	return "#" + strconv.Itoa(int(uid))
}
