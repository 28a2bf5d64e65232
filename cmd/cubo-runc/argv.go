package main

import (
	"strings"

	"github.com/alecthomas/kong"
)

// normalizeArgs adapts runc's Go-flag argv grammar to kong: a long flag
// with one dash ("-no-subreaper", sent by go-runc) becomes "--no-subreaper".
// For kill, exec and ps everything after the container ID is positional and
// left untouched, so `exec ID ls -la` keeps "-la" for ls; create's no-op
// --detach (go-runc may send it) is dropped.
func normalizeArgs(p *kong.Kong, args []string) []string {
	globals := flagSet(p.Model.Node)
	out := make([]string, 0, len(args))
	var cmd *kong.Node
	flags := globals
	positionals := 0
	stopAfterID := false
	for i := 0; i < len(args); i++ {
		a := args[i]
		if a == "--" {
			out = append(out, args[i:]...)
			break
		}
		if stopAfterID && positionals >= 1 {
			// Everything from here is the container's argv.
			if a != "--" {
				out = append(out, "--")
			}
			out = append(out, args[i:]...)
			break
		}
		if strings.HasPrefix(a, "-") && len(a) > 1 {
			name := strings.TrimLeft(a, "-")
			eq := strings.IndexByte(name, '=')
			base := name
			if eq >= 0 {
				base = name[:eq]
			}
			f, known := flags[base]
			if !known && cmd != nil {
				f, known = globals[base]
			}
			if known && !strings.HasPrefix(a, "--") && len(base) > 1 {
				a = "--" + name
			}
			if cmd != nil && cmd.Name == "create" && (base == "detach" || base == "d") {
				continue
			}
			if cmd != nil && cmd.Name == "spec" && base == "rootless" && eq < 0 {
				out = append(out, "--rootless=true")
				continue
			}
			// A flag that takes its value as the next word: join them, so
			// a value starting with "-" (`--memory -1`, runc's way to say
			// unlimited) is not taken for a flag.
			if known && eq < 0 && !f.IsBool() && !f.IsCounter() && i+1 < len(args) {
				i++
				if !strings.HasPrefix(a, "--") {
					a = "--" + f.Name // a short flag: -e VALUE -> --env=VALUE
				}
				out = append(out, a+"="+args[i])
				continue
			}
			out = append(out, a)
			continue
		}
		out = append(out, a)
		if cmd == nil {
			for _, c := range p.Model.Node.Children {
				if c.Name == a || contains(c.Aliases, a) {
					cmd = c
					flags = flagSet(c)
					stopAfterID = c.Name == "kill" || c.Name == "exec" || c.Name == "ps"
					break
				}
			}
			continue
		}
		positionals++
	}
	return out
}

func flagSet(n *kong.Node) map[string]*kong.Flag {
	m := map[string]*kong.Flag{}
	for _, f := range n.Flags {
		m[f.Name] = f
		if f.Short != 0 {
			m[string(f.Short)] = f
		}
	}
	return m
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}
