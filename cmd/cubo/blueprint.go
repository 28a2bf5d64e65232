package main

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"text/tabwriter"
	"time"
)

type blueprintCmd struct {
	All    bool   `short:"a" help:"Show dangling (<none>) images too."`
	Format string `enum:"table,json" default:"table" help:"Output format: table or json."`
	Quiet  bool   `short:"q" help:"Print only image IDs."`
}

// blueprintJSON is one image in --format json output.
type blueprintJSON struct {
	ID         string    `json:"id"`
	Repository string    `json:"repository"`
	Tag        string    `json:"tag"`
	Name       string    `json:"name,omitempty"`
	Digest     string    `json:"digest"`
	Created    time.Time `json:"created"`
	Size       int64     `json:"size"`
}

// Run lists the images as REPOSITORY TAG IMAGE ID CREATED SIZE.
func (c *blueprintCmd) Run(g *globals) error {
	st, err := g.store()
	if err != nil {
		return err
	}
	ctx := context.Background()
	imgs, err := st.List(ctx)
	if err != nil {
		return fmt.Errorf("list images: %w", err)
	}
	var rows []blueprintJSON
	for _, img := range imgs {
		if img.Name == "" && !c.All {
			continue
		}
		rows = append(rows, blueprintJSON{
			ID: img.ID.String(), Repository: img.Repository(), Tag: img.Tag(), Name: img.Name,
			Digest: img.Descriptor.Digest.String(), Created: img.Created(), Size: st.UnpackedSize(img),
		})
	}
	if c.Format == "json" {
		if rows == nil {
			rows = []blueprintJSON{}
		}
		enc := json.NewEncoder(os.Stdout)
		enc.SetIndent("", "  ")
		return enc.Encode(rows)
	}
	if c.Quiet {
		for _, r := range rows {
			fmt.Println(shortID(r.ID))
		}
		return nil
	}
	tw := tabwriter.NewWriter(os.Stdout, 0, 0, 3, ' ', 0)
	fmt.Fprintln(tw, "REPOSITORY\tTAG\tIMAGE ID\tCREATED\tSIZE")
	for _, r := range rows {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", r.Repository, r.Tag, shortID(r.ID), ago(r.Created), humanSize(r.Size))
	}
	return tw.Flush()
}

func shortID(id string) string {
	if len(id) > 7+12 {
		return id[7 : 7+12]
	}
	return id
}

// ago renders a time the way docker's listings do ("3 hours ago").
func ago(t time.Time) string {
	if t.IsZero() {
		return "N/A"
	}
	d := time.Since(t)
	plural := func(n int, unit string) string {
		if n == 1 {
			return fmt.Sprintf("1 %s ago", unit)
		}
		return fmt.Sprintf("%d %ss ago", n, unit)
	}
	switch {
	case d < time.Minute:
		return "Less than a minute ago"
	case d < time.Hour:
		return plural(int(d.Minutes()), "minute")
	case d < 48*time.Hour:
		return plural(int(d.Hours()), "hour")
	case d < 14*24*time.Hour:
		return plural(int(d.Hours()/24), "day")
	case d < 60*24*time.Hour:
		return plural(int(d.Hours()/24/7), "week")
	case d < 2*365*24*time.Hour:
		return plural(int(d.Hours()/24/30), "month")
	}
	return plural(int(d.Hours()/24/365), "year")
}

// humanSize uses decimal units like docker (7.8MB).
func humanSize(n int64) string {
	units := []string{"B", "kB", "MB", "GB", "TB"}
	f := float64(n)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if i == 0 {
		return fmt.Sprintf("%dB", n)
	}
	return fmt.Sprintf("%.3g%s", f, units[i])
}
