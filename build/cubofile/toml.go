package cubofile

import (
	"errors"
	"regexp"
	"sort"
	"strconv"
	"strings"

	"github.com/BurntSushi/toml"
)

// The Cubofile.toml schema (the seed README's, plus entrypoint, user, labels, args,
// stopsignal, volumes, [[config.add]] and copy's from/chown/chmod):
//
//	[image]
//	base = "alpine:latest"          # required; "scratch" for an empty base
//	platform = "linux/amd64"        # optional
//
//	[config]
//	workdir = "/app"
//	user = "app"
//	expose = ["8080/tcp"]
//	volumes = ["/data"]
//	stopsignal = "SIGINT"
//	entrypoint = ["/bin/app"]       # or a string (shell form), or [config.entrypoint] command = ...
//	[config.env]    KEY = "value"
//	[config.labels] KEY = "value"
//	[config.args]   NAME = "default"  # build args, overridable with --build-arg
//	[[config.run]]  command = "mkdir -p /app"      # or an array (exec form)
//	[[config.copy]] source = "app.py" (or an array), destination = "/app/", from, chown, chmod
//	[[config.add]]  like copy, tar archives are extracted
//	[config.cmd]    command = ["python3", "app.py"] # or cmd = [...] directly
//
// The build order: args, env and workdir first (so RUN steps see them), then the run,
// copy and add steps in the order they appear in the file, then user, labels, expose,
// volumes, stopsignal, entrypoint and cmd. Values are literal: no $VAR expansion.
type tomlFile struct {
	Image struct {
		Base     string `toml:"base"`
		Platform string `toml:"platform"`
	} `toml:"image"`
	Config struct {
		Workdir    string            `toml:"workdir"`
		User       string            `toml:"user"`
		Expose     []string          `toml:"expose"`
		Volumes    []string          `toml:"volumes"`
		StopSignal string            `toml:"stopsignal"`
		Env        map[string]string `toml:"env"`
		Labels     map[string]string `toml:"labels"`
		Args       map[string]string `toml:"args"`
		Run        []struct {
			Command toml.Primitive `toml:"command"`
		} `toml:"run"`
		Copy       []tomlCopy     `toml:"copy"`
		Add        []tomlCopy     `toml:"add"`
		Cmd        toml.Primitive `toml:"cmd"`
		Entrypoint toml.Primitive `toml:"entrypoint"`
	} `toml:"config"`
}

type tomlCopy struct {
	Source      toml.Primitive `toml:"source"`
	Destination string         `toml:"destination"`
	From        string         `toml:"from"`
	Chown       string         `toml:"chown"`
	Chmod       string         `toml:"chmod"`
}

// ParseTOML parses the Cubofile.toml syntax (see tomlFile) into a one-stage Plan.
// Unknown keys are errors naming the file and line.
func ParseTOML(name string, data []byte) (*Plan, error) {
	var f tomlFile
	md, err := toml.Decode(string(data), &f)
	if err != nil {
		var pe toml.ParseError
		if errors.As(err, &pe) {
			return nil, posErr(Pos{name, pe.Position.Line}, "%s", pe.Message)
		}
		return nil, posErr(Pos{name, 1}, "%v", err)
	}
	lines := scanTOML(data)
	pos := func(key string) Pos { return Pos{name, lines.line(key)} }
	t := &tomlPlan{md: &md, plan: &Plan{File: name, Escape: '\\'}}

	if f.Image.Base == "" {
		return nil, posErr(pos("image"), "[image] base is required")
	}
	st := Stage{Base: f.Image.Base, Platform: f.Image.Platform, Pos: pos("image.base"), Text: "FROM " + f.Image.Base}
	add := func(in Instruction) { st.Instructions = append(st.Instructions, in) }
	c := &f.Config
	if len(c.Args) > 0 {
		in := Instruction{Kind: Arg, Pos: pos("config.args"), Pairs: sortedPairs(c.Args)}
		in.Text = "ARG " + pairsText(in.Pairs)
		for _, kv := range in.Pairs {
			if !argNameRe.MatchString(kv.Key) {
				return nil, posErr(in.Pos, "config.args: invalid name %q", kv.Key)
			}
		}
		add(in)
	}
	if len(c.Env) > 0 {
		in := Instruction{Kind: Env, Pos: pos("config.env"), Pairs: sortedPairs(c.Env)}
		in.Text = "ENV " + pairsText(in.Pairs)
		for _, kv := range in.Pairs {
			if !argNameRe.MatchString(kv.Key) {
				return nil, posErr(in.Pos, "config.env: invalid name %q", kv.Key)
			}
		}
		add(in)
	}
	if c.Workdir != "" {
		add(Instruction{Kind: Workdir, Pos: pos("config.workdir"), Value: c.Workdir, Text: "WORKDIR " + c.Workdir})
	}

	// Steps keep the order of their [[config.run]]/[[config.copy]]/[[config.add]] headers.
	type step struct {
		line int
		in   Instruction
	}
	var steps []step
	for i, r := range c.Run {
		p := Pos{name, lines.nth("config.run", i)}
		args, shell, err := t.command(r.Command)
		if err != nil || len(args) == 0 || (shell && args[0] == "") {
			return nil, posErr(p, "config.run: command must be a non-empty string or array of strings")
		}
		in := Instruction{Kind: Run, Pos: p, Args: args, ShellForm: shell}
		in.Text = "RUN " + commandText(args, shell)
		steps = append(steps, step{p.Line, in})
	}
	for _, k := range []struct {
		kind  Kind
		key   string
		items []tomlCopy
	}{{Copy, "config.copy", c.Copy}, {Add, "config.add", c.Add}} {
		for i, cp := range k.items {
			p := Pos{name, lines.nth(k.key, i)}
			srcs, _, err := t.command(cp.Source)
			if err != nil || len(srcs) == 0 || srcs[0] == "" || cp.Destination == "" {
				return nil, posErr(p, "%s: needs source (a string or array of strings) and destination", k.key)
			}
			in := Instruction{Kind: k.kind, Pos: p, Sources: srcs, Dest: cp.Destination, From: cp.From, Chown: cp.Chown, Chmod: cp.Chmod}
			if k.kind == Add && cp.From != "" {
				return nil, posErr(p, "config.add: from is only for copy")
			}
			in.Text = string(k.kind) + copyFlags(in) + " " + strings.Join(srcs, " ") + " " + cp.Destination
			steps = append(steps, step{p.Line, in})
		}
	}
	sort.SliceStable(steps, func(i, j int) bool { return steps[i].line < steps[j].line })
	for _, s := range steps {
		add(s.in)
	}

	if c.User != "" {
		add(Instruction{Kind: User, Pos: pos("config.user"), Value: c.User, Text: "USER " + c.User})
	}
	if len(c.Labels) > 0 {
		in := Instruction{Kind: Label, Pos: pos("config.labels"), Pairs: sortedPairs(c.Labels)}
		in.Text = "LABEL " + pairsText(in.Pairs)
		add(in)
	}
	if len(c.Expose) > 0 {
		add(Instruction{Kind: Expose, Pos: pos("config.expose"), Values: c.Expose, Text: "EXPOSE " + strings.Join(c.Expose, " ")})
	}
	if len(c.Volumes) > 0 {
		add(Instruction{Kind: Volume, Pos: pos("config.volumes"), Values: c.Volumes, Text: "VOLUME " + strings.Join(c.Volumes, " ")})
	}
	if c.StopSignal != "" {
		add(Instruction{Kind: StopSignal, Pos: pos("config.stopsignal"), Value: c.StopSignal, Text: "STOPSIGNAL " + c.StopSignal})
	}
	for _, k := range []struct {
		kind Kind
		key  string
		prim toml.Primitive
	}{{Entrypoint, "config.entrypoint", c.Entrypoint}, {Cmd, "config.cmd", c.Cmd}} {
		if !md.IsDefined(strings.Split(k.key, ".")...) {
			continue
		}
		p := pos(k.key)
		args, shell, err := t.commandOrTable(k.prim)
		if err != nil {
			return nil, posErr(p, "%s: %v", k.key, err)
		}
		add(Instruction{Kind: k.kind, Pos: p, Args: args, ShellForm: shell, Text: string(k.kind) + " " + commandText(args, shell)})
	}
	if u := md.Undecoded(); len(u) > 0 {
		return nil, posErr(Pos{name, lines.line(u[0].String())}, "unknown key %s", u[0])
	}
	t.plan.Stages = []Stage{st}
	return t.plan, nil
}

type tomlPlan struct {
	md   *toml.MetaData
	plan *Plan
}

// command decodes a string (shell form) or an array of strings (exec form).
func (t *tomlPlan) command(p toml.Primitive) ([]string, bool, error) {
	var s string
	if err := t.md.PrimitiveDecode(p, &s); err == nil {
		return []string{s}, true, nil
	}
	var a []string
	if err := t.md.PrimitiveDecode(p, &a); err == nil {
		return a, false, nil
	}
	return nil, false, errors.New("must be a string or an array of strings")
}

// commandOrTable decodes cmd/entrypoint: a command, or a table holding one as "command".
func (t *tomlPlan) commandOrTable(p toml.Primitive) ([]string, bool, error) {
	if args, shell, err := t.command(p); err == nil {
		return args, shell, nil
	}
	var tbl struct {
		Command toml.Primitive `toml:"command"`
	}
	if err := t.md.PrimitiveDecode(p, &tbl); err != nil {
		return nil, false, errors.New("must be a string, an array of strings or a table with command")
	}
	return t.command(tbl.Command)
}

func sortedPairs(m map[string]string) []KeyValue {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	out := make([]KeyValue, 0, len(keys))
	for _, k := range keys {
		out = append(out, KeyValue{Key: k, Value: m[k], HasValue: true})
	}
	return out
}

func pairsText(kvs []KeyValue) string {
	var parts []string
	for _, kv := range kvs {
		parts = append(parts, kv.Key+"="+strconv.Quote(kv.Value))
	}
	return strings.Join(parts, " ")
}

func commandText(args []string, shell bool) string {
	if shell {
		return args[0]
	}
	q := make([]string, len(args))
	for i, a := range args {
		q[i] = strconv.Quote(a)
	}
	return "[" + strings.Join(q, ", ") + "]"
}

func copyFlags(in Instruction) string {
	var s string
	for _, f := range [][2]string{{"from", in.From}, {"chown", in.Chown}, {"chmod", in.Chmod}} {
		if f[1] != "" {
			s += " --" + f[0] + "=" + f[1]
		}
	}
	return s
}

// tomlLines maps keys to the line they are written on, for error messages: BurntSushi's
// MetaData keeps positions to itself.
type tomlLines struct {
	keys    map[string]int
	headers map[string][]int // [[array]] header lines, in order
}

var (
	tomlHeaderRe = regexp.MustCompile(`^\s*(\[\[?)\s*([^\]]+?)\s*\]\]?`)
	tomlKeyRe    = regexp.MustCompile(`^\s*([A-Za-z0-9_-]+(?:\s*\.\s*[A-Za-z0-9_-]+)*|"[^"]*")\s*=`)
)

func scanTOML(data []byte) *tomlLines {
	l := &tomlLines{keys: map[string]int{}, headers: map[string][]int{}}
	table := ""
	for i, line := range strings.Split(string(data), "\n") {
		n := i + 1
		if m := tomlHeaderRe.FindStringSubmatch(line); m != nil {
			table = normKey(m[2])
			if m[1] == "[[" {
				l.headers[table] = append(l.headers[table], n)
			}
			l.set(table, n)
			continue
		}
		if m := tomlKeyRe.FindStringSubmatch(line); m != nil {
			k := normKey(m[1])
			if table != "" {
				k = table + "." + k
			}
			l.set(k, n)
		}
	}
	return l
}

func normKey(k string) string {
	parts := strings.Split(k, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return strings.Join(parts, ".")
}

func (l *tomlLines) set(k string, n int) {
	if _, ok := l.keys[k]; !ok {
		l.keys[k] = n
	}
}

// line returns the line of key, else of its closest enclosing table, else 1.
func (l *tomlLines) line(key string) int {
	for k := normKey(key); k != ""; {
		if n, ok := l.keys[k]; ok {
			return n
		}
		i := strings.LastIndex(k, ".")
		if i < 0 {
			break
		}
		k = k[:i]
	}
	return 1
}

// nth returns the header line of the i-th [[key]] table (an inline array falls back to
// the key's line).
func (l *tomlLines) nth(key string, i int) int {
	if h := l.headers[key]; i < len(h) {
		return h[i]
	}
	return l.line(key)
}
