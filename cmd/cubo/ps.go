package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/cubo-dev/cubo/manager"
)

type psCmd struct {
	All    bool   `short:"a" help:"Show stopped containers too."`
	Format string `enum:"table,json" default:"table" help:"Output format: table or json."`
	Quiet  bool   `short:"q" help:"Print only container IDs."`
}

// Run lists containers as CONTAINER ID, NAME, IMAGE, COMMAND, CREATED, STATUS, PORTS.
func (c *psCmd) Run(g *globals) error {
	m, err := g.manager()
	if err != nil {
		return err
	}
	all, err := m.List(context.Background())
	if err != nil {
		return err
	}
	rows := []*manager.Container{}
	for _, ct := range all {
		if c.All || ct.Status != manager.StatusStopped {
			rows = append(rows, ct)
		}
	}
	if c.Format == "json" {
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	if c.Quiet {
		for _, r := range rows {
			fmt.Println(r.ID)
		}
		return nil
	}
	now := time.Now()
	tw := tabwriter.NewWriter(os.Stdout, 0, 8, 3, ' ', 0)
	fmt.Fprintln(tw, "CONTAINER ID\tNAME\tIMAGE\tCOMMAND\tCREATED\tSTATUS\tPORTS")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", r.ShortID(), r.Name, r.Image,
			truncate(strings.Join(r.Command, " "), 20), span(now.Sub(r.Created))+" ago", statusText(r, now), portsText(r))
	}
	return tw.Flush()
}

// portsText is docker's PORTS column, "0.0.0.0:8080->80/tcp, 127.0.0.1:53->53/udp", for
// a container that is not stopped (a stopped one has published nothing).
func portsText(c *manager.Container) string {
	if c.Status == manager.StatusStopped {
		return ""
	}
	var out []string
	for _, p := range c.Ports {
		ip := p.HostIP
		if ip == "" {
			ip = "0.0.0.0"
		}
		out = append(out, fmt.Sprintf("%s:%d->%d/%s", ip, p.Host, p.Cont, p.Protocol))
	}
	return strings.Join(out, ", ")
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n-3] + "..."
}

// statusText is docker's wording: "Up 5 minutes", "Exited (0) 2 seconds ago", "Created".
func statusText(c *manager.Container, now time.Time) string {
	switch c.Status {
	case manager.StatusRunning:
		s := "Up " + span(now.Sub(c.Started))
		if c.Error != "" {
			s += " (no monitor)"
		}
		return s
	case manager.StatusStopped:
		return fmt.Sprintf("Exited (%d) %s ago", c.ExitCode, span(now.Sub(c.Finished)))
	}
	return "Created"
}

// span renders a duration the way listings do: "3 seconds", "2 hours", "5 days".
func span(d time.Duration) string {
	unit := func(n int, u string) string {
		if n == 1 {
			return "1 " + u
		}
		return fmt.Sprintf("%d %ss", n, u)
	}
	switch {
	case d < time.Second:
		return "Less than a second"
	case d < time.Minute:
		return unit(int(d.Seconds()), "second")
	case d < time.Hour:
		return unit(int(d.Minutes()), "minute")
	case d < 48*time.Hour:
		return unit(int(d.Hours()), "hour")
	case d < 14*24*time.Hour:
		return unit(int(d.Hours()/24), "day")
	case d < 60*24*time.Hour:
		return unit(int(d.Hours()/24/7), "week")
	}
	return unit(int(d.Hours()/24/30), "month")
}
