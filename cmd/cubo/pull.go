package main

import (
	"context"
	"fmt"
	"io"
	"os"
	"os/signal"
	"sync"
	"syscall"

	"github.com/cubo-dev/cubo/images"
	"github.com/vbauerster/mpb/v8"
	"github.com/vbauerster/mpb/v8/decor"
	"golang.org/x/term"
)

type pullCmd struct {
	Image     string   `arg:"" help:"Image to pull: NAME[:TAG] or NAME@DIGEST (alpine, 127.0.0.1:5000/alpine:3.20)."`
	Platform  string   `help:"Platform of a multi-arch image, OS/ARCH[/VARIANT] (default: the host's)."`
	TLSVerify bool     `name:"tls-verify" default:"true" negatable:"" help:"Require HTTPS with a verified certificate; --tls-verify=false also allows plain HTTP."`
	CertDir   []string `name:"cert-dir" placeholder:"DIR" help:"Extra directories of registry CA certificates, laid out like /etc/docker/certs.d."`
	Quiet     bool     `short:"q" help:"Print only the image name."`
}

// Run pulls the image with one progress bar per layer on a terminal, plain lines otherwise.
func (c *pullCmd) Run(g *globals) error {
	st, err := g.store(images.WithCertDirs(c.CertDir...))
	if err != nil {
		return err
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	opts := []images.PullOpt{images.PullWithTLSVerify(c.TLSVerify)}
	if c.Platform != "" {
		opts = append(opts, images.PullWithPlatform(c.Platform))
	}
	var pr progressPrinter
	if !c.Quiet {
		if term.IsTerminal(int(os.Stdout.Fd())) {
			pr = newBarPrinter(os.Stdout)
		} else {
			pr = &linePrinter{w: os.Stdout, last: map[string]images.ProgressState{}}
		}
		fmt.Fprintf(os.Stdout, "Pulling %s\n", c.Image)
		opts = append(opts, images.PullWithProgress(pr.update))
	}
	img, err := st.Pull(ctx, c.Image, opts...)
	if pr != nil {
		pr.done()
	}
	if err != nil {
		return fmt.Errorf("pull %s: %w", c.Image, err)
	}
	if !c.Quiet {
		fmt.Fprintf(os.Stdout, "Digest: %s\n", img.Descriptor.Digest)
	}
	fmt.Fprintln(os.Stdout, img.FullName)
	return nil
}

type progressPrinter interface {
	update(images.Progress)
	done()
}

// linePrinter prints a line per state change, for logs and pipes.
type linePrinter struct {
	mu   sync.Mutex
	w    io.Writer
	last map[string]images.ProgressState
}

func (p *linePrinter) update(ev images.Progress) {
	p.mu.Lock()
	defer p.mu.Unlock()
	id := ev.ShortID()
	if st, ok := p.last[id]; ok && st == ev.State {
		return
	}
	p.last[id] = ev.State
	if ev.State == images.StateWaiting {
		fmt.Fprintf(p.w, "%s: Pulling fs layer\n", id)
		return
	}
	fmt.Fprintf(p.w, "%s: %s\n", id, ev.State)
}

func (p *linePrinter) done() {}

// barPrinter draws one bar per layer like docker pull. A bar spans download and
// extraction (total = 2×size) so it only completes when the layer is in place.
type barPrinter struct {
	mu    sync.Mutex
	p     *mpb.Progress
	bars  map[string]*mpb.Bar
	state map[string]images.ProgressState
}

func newBarPrinter(w io.Writer) *barPrinter {
	return &barPrinter{
		p:     mpb.New(mpb.WithOutput(w), mpb.WithWidth(40)),
		bars:  map[string]*mpb.Bar{},
		state: map[string]images.ProgressState{},
	}
}

func (b *barPrinter) update(ev images.Progress) {
	b.mu.Lock()
	defer b.mu.Unlock()
	id := ev.ShortID()
	bar, ok := b.bars[id]
	if !ok {
		total := 2*ev.Total + 1
		bar = b.p.AddBar(total,
			mpb.PrependDecorators(
				decor.Name(id+": "),
				decor.Any(func(decor.Statistics) string {
					b.mu.Lock()
					defer b.mu.Unlock()
					return fmt.Sprintf("%-14s", b.state[id])
				}),
			),
			mpb.AppendDecorators(decor.Any(func(s decor.Statistics) string {
				return humanSize(ev.Total)
			})),
		)
		b.bars[id] = bar
	}
	b.state[id] = ev.State
	switch ev.State {
	case images.StateDownloading:
		// A layer downloaded now is unpacked in the same pass (images reports no
		// separate extraction for it), so its download fills the whole bar.
		bar.SetCurrent(2 * ev.Current)
	case images.StateExtracting:
		bar.SetCurrent(ev.Total + ev.Current)
	case images.StateExists, images.StateDone:
		bar.SetTotal(-1, true)
	}
}

func (b *barPrinter) done() {
	b.mu.Lock()
	for id, bar := range b.bars {
		if st := b.state[id]; st != images.StateDone && st != images.StateExists {
			bar.Abort(false)
		}
	}
	b.mu.Unlock()
	b.p.Wait()
}
