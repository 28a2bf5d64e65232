package main

import "fmt"

func (b *bench) med(fig, rt string) float64 { return b.figs[fig][rt].median() }

// row prints one figure: median (and quartiles) per runtime, then the ratios.
func (b *bench) figRow(t *table, label, fig, unit string) {
	cells := []string{label}
	for _, name := range b.names() {
		s := b.figs[fig][name]
		if len(s) == 0 {
			cells = append(cells, "-")
			continue
		}
		q1, q3 := s.quartiles()
		cells = append(cells, fmt.Sprintf("%.2f %s (%.2f-%.2f)", s.median(), unit, q1, q3))
	}
	c := b.med(fig, "cubo-runc")
	cells = append(cells, ratio(c, b.med(fig, "runc")), ratio(c, b.med(fig, "crun")))
	for _, r := range b.rts {
		if r.variant {
			cells = append(cells, ratio(b.med(fig, r.name), c))
		}
	}
	t.row(cells...)
}

func (b *bench) names() []string {
	names := []string{"cubo-runc", "runc", "crun"}
	for _, r := range b.rts {
		if r.variant {
			names = append(names, r.name)
		}
	}
	return names
}

func (b *bench) newFigTable() *table {
	head := append([]string{"figure"}, b.names()...)
	head = append(head, "cubo-runc/runc", "cubo-runc/crun")
	for _, r := range b.rts {
		if r.variant {
			head = append(head, r.name+"/cubo-runc")
		}
	}
	return &table{head: head}
}

func (b *bench) reportRuntime() {
	b.printf("### Runtime: medians (25th-75th percentile)\n\n")
	t := b.newFigTable()
	b.figRow(t, "(a) run /bin/true, wall", "run.wall", "ms")
	b.figRow(t, "(a) run /bin/true, CPU", "run.cpu", "ms")
	b.figRow(t, "(e) run, no netns, wall", "nonet.wall", "ms")
	b.figRow(t, "(e) run, no netns, CPU", "nonet.cpu", "ms")
	b.figRow(t, "(b) create, wall", "lc.create.wall", "ms")
	b.figRow(t, "(b) create, CPU", "lc.create.cpu", "ms")
	b.figRow(t, "(b) start, wall", "lc.start.wall", "ms")
	b.figRow(t, "(b) start, CPU", "lc.start.cpu", "ms")
	b.figRow(t, "(b) wait for exit, wall", "lc.wait.wall", "ms")
	b.figRow(t, "(b) container init, CPU", "lc.init.cpu", "ms")
	b.figRow(t, "(b) delete, wall", "lc.delete.wall", "ms")
	b.figRow(t, "(b) delete, CPU", "lc.delete.cpu", "ms")
	b.figRow(t, "(b) create+start+wait+delete, wall", "lc.total.wall", "ms")
	b.figRow(t, "(b) create+start+wait+delete, CPU", "lc.total.cpu", "ms")
	b.figRow(t, "(c) peak RSS, run (max over tree)", "run.rss", "MiB")
	b.figRow(t, "(c) peak RSS, create without init", "rss.parent", "MiB")
	b.figRow(t, "(c) peak RSS, init before start", "rss.init", "MiB")
	b.figRow(t, "(c) peak RSS, init incl. exec (ru_maxrss: >= parent at clone)", "rss.initexec", "MiB")
	for _, p := range b.par {
		b.figRow(t, fmt.Sprintf("(d) %d x run, %d parallel, containers/s", b.containers, p), fmt.Sprintf("tput%d", p), "/s")
		b.figRow(t, fmt.Sprintf("(d) %d parallel, CPU per container", p), fmt.Sprintf("tput%d.cpu", p), "ms")
	}
	b.printf("%s\n", t)
	b.printf("Network namespace cost (median with minus median without): ")
	for _, name := range b.names() {
		if _, ok := b.figs["run.wall"][name]; !ok {
			continue
		}
		b.printf("%s %+.2f ms wall %+.2f ms CPU; ", name,
			b.med("run.wall", name)-b.med("nonet.wall", name), b.med("run.cpu", name)-b.med("nonet.cpu", name))
	}
	b.printf("\n\n")

	b.printf("### Runtime targets (ratios from this run)\n\n")
	tt := &table{head: []string{"target", "measured", "met"}}
	target := func(name, measured string, ok bool, have bool) {
		v := "no"
		if !have {
			v = "n/a"
		} else if ok {
			v = "yes"
		}
		tt.row(name, measured, v)
	}
	c, r, k := b.med("run.cpu", "cubo-runc"), b.med("run.cpu", "runc"), b.med("run.cpu", "crun")
	target("run CPU <= 1.0x crun", ratio(c, k), k > 0 && c <= k, k > 0)
	target("run CPU <= 0.4x runc", ratio(c, r), r > 0 && c <= 0.4*r, r > 0)
	c, k = b.med("run.wall", "cubo-runc"), b.med("run.wall", "crun")
	target("run wall <= 1.0x crun", ratio(c, k), k > 0 && c <= k, k > 0)
	rss := b.med("run.rss", "cubo-runc")
	target("peak RSS <= 3.5 MiB", fmt.Sprintf("%.2f MiB", rss), rss <= 3.5, true)
	if len(b.par) > 0 {
		p := b.par[len(b.par)-1]
		fig := fmt.Sprintf("tput%d", p)
		c, k = b.med(fig, "cubo-runc"), b.med(fig, "crun")
		target(fmt.Sprintf("throughput, %d parallel >= crun", p), ratio(c, k), k > 0 && c >= k, k > 0)
	}
	b.printf("%s\n", tt)
}
