package cubofile

import (
	"encoding/json"
	"fmt"
	"regexp"
	"strings"
	"unicode"
)

// directiveRe matches a parser directive ("# escape=`"), which only the lines at the very
// top of a file may hold.
var directiveRe = regexp.MustCompile(`^#\s*([a-zA-Z][a-zA-Z0-9_-]*)\s*=\s*(.*?)\s*$`)

// stageNameRe is what Docker accepts after AS.
var stageNameRe = regexp.MustCompile(`^[a-z][a-z0-9_.-]*$`)

// argNameRe is a valid ARG or ENV name.
var argNameRe = regexp.MustCompile(`^[a-zA-Z_][a-zA-Z0-9_]*$`)

// logicalLine is one instruction with its continuations joined.
type logicalLine struct {
	line int
	text string
}

// ParseCubofile parses the Dockerfile syntax: parser directives (escape), comments, line
// continuations, and the instructions FROM, RUN, COPY, ADD, WORKDIR, ENV, ARG, USER,
// LABEL, EXPOSE, ENTRYPOINT, CMD, STOPSIGNAL, SHELL, VOLUME and MAINTAINER (a label).
// name is the file name errors use.
func ParseCubofile(name string, data []byte) (*Plan, error) {
	p := &Plan{File: name, Escape: '\\'}
	lines, err := p.logicalLines(strings.Split(strings.ReplaceAll(string(data), "\r\n", "\n"), "\n"))
	if err != nil {
		return nil, err
	}
	for _, ll := range lines {
		if err := p.add(ll); err != nil {
			return nil, err
		}
	}
	if len(p.Stages) == 0 {
		return nil, posErr(Pos{name, max(1, len(lines))}, "no FROM instruction")
	}
	return p, nil
}

// logicalLines reads the directives at the top, drops comments and blank lines, and joins
// continuations; each logical line keeps the number of its first physical line.
func (p *Plan) logicalLines(phys []string) ([]logicalLine, error) {
	i := 0
	seen := map[string]bool{}
	for ; i < len(phys); i++ {
		m := directiveRe.FindStringSubmatch(strings.TrimSpace(phys[i]))
		if m == nil {
			break
		}
		key := strings.ToLower(m[1])
		if seen[key] {
			return nil, posErr(Pos{p.File, i + 1}, "directive %q given twice", key)
		}
		seen[key] = true
		if key == "escape" {
			switch m[2] {
			case `\`:
				p.Escape = '\\'
			case "`":
				p.Escape = '`'
			default:
				return nil, posErr(Pos{p.File, i + 1}, "invalid escape %q: must be ` or \\", m[2])
			}
		}
		// Other directives (syntax, check) select BuildKit frontends; Cubo has one.
	}
	esc := string(p.Escape)
	var out []logicalLine
	var cur *logicalLine
	for ; i < len(phys); i++ {
		raw := phys[i]
		trimmed := strings.TrimLeftFunc(raw, unicode.IsSpace)
		if trimmed == "" || strings.HasPrefix(trimmed, "#") {
			// Comments and blank lines may sit inside a continuation; they are skipped.
			continue
		}
		text := raw
		if cur == nil {
			text = trimmed
		}
		body := strings.TrimRightFunc(text, unicode.IsSpace)
		cont := strings.HasSuffix(body, esc)
		if cont {
			text = strings.TrimSuffix(body, esc)
		}
		if cur == nil {
			out = append(out, logicalLine{line: i + 1})
			cur = &out[len(out)-1]
		}
		cur.text += text
		if !cont {
			cur = nil
		}
	}
	return out, nil
}

// add parses one logical line.
func (p *Plan) add(ll logicalLine) error {
	pos := Pos{p.File, ll.line}
	kw, rest := ll.text, ""
	if i := strings.IndexFunc(ll.text, unicode.IsSpace); i >= 0 {
		kw, rest = ll.text[:i], ll.text[i:]
	}
	kw = strings.ToUpper(kw)
	rest = strings.TrimSpace(rest)
	text := kw
	if rest != "" {
		text += " " + rest
	}
	if kw == "FROM" {
		return p.addFrom(pos, text, rest)
	}
	in := Instruction{Kind: Kind(kw), Pos: pos, Text: text, Expand: true}
	var err error
	switch in.Kind {
	case Run, Cmd, Entrypoint, Shell:
		err = p.parseCommand(&in, rest)
	case Copy, Add:
		err = p.parseCopy(&in, rest)
	case Env, Label:
		in.Pairs, err = p.parsePairs(in.Kind, rest)
	case Arg:
		in.Pairs, err = p.parseArgs(rest)
	case Workdir, User, StopSignal:
		if rest == "" {
			err = posErr(pos, "%s requires an argument", kw)
		}
		in.Value = rest
	case Expose, Volume:
		err = p.parseList(&in, rest)
	case "MAINTAINER":
		// Deprecated in Docker; kept as the label it became.
		in.Kind, in.Expand = Label, false
		in.Pairs = []KeyValue{{Key: "maintainer", Value: rest, HasValue: true}}
	case "HEALTHCHECK", "ONBUILD":
		return posErr(pos, "%s is not supported by cubo build", kw)
	default:
		return posErr(pos, "unknown instruction %s", kw)
	}
	if err != nil {
		if strings.HasPrefix(err.Error(), pos.String()) {
			return err
		}
		return posErr(pos, "%s: %v", kw, err)
	}
	if len(p.Stages) == 0 {
		if in.Kind != Arg {
			return posErr(pos, "%s before the first FROM: only ARG may come first", kw)
		}
		p.Args = append(p.Args, in.Pairs...)
		return nil
	}
	st := &p.Stages[len(p.Stages)-1]
	st.Instructions = append(st.Instructions, in)
	return nil
}

// parseFlags takes the leading --name[=value] words of rest. allowed maps each accepted
// flag to whether it needs a value.
func parseFlags(rest string, allowed map[string]bool) (map[string]string, string, error) {
	flags := map[string]string{}
	for strings.HasPrefix(rest, "--") {
		word, after := rest, ""
		if i := strings.IndexFunc(rest, unicode.IsSpace); i >= 0 {
			word, after = rest[:i], rest[i:]
		}
		rest = strings.TrimSpace(after)
		name, val, hasVal := strings.Cut(strings.TrimPrefix(word, "--"), "=")
		needs, ok := allowed[name]
		if !ok {
			return nil, "", errorf("unknown flag --%s", name)
		}
		if needs && (!hasVal || val == "") {
			return nil, "", errorf("flag --%s needs a value", name)
		}
		if _, dup := flags[name]; dup {
			return nil, "", errorf("flag --%s given twice", name)
		}
		flags[name] = val
	}
	return flags, rest, nil
}

func (p *Plan) addFrom(pos Pos, text, rest string) error {
	flags, rest, err := parseFlags(rest, map[string]bool{"platform": true})
	if err != nil {
		return posErr(pos, "FROM: %v", err)
	}
	words := strings.Fields(rest)
	st := Stage{Pos: pos, Text: text, Platform: flags["platform"]}
	switch {
	case len(words) == 1:
	case len(words) == 3 && strings.EqualFold(words[1], "as"):
		st.Name = strings.ToLower(words[2])
		if !stageNameRe.MatchString(st.Name) {
			return posErr(pos, "FROM: invalid stage name %q", words[2])
		}
		if p.StageIndex(st.Name) >= 0 {
			return posErr(pos, "FROM: duplicate stage name %q", st.Name)
		}
	default:
		return posErr(pos, "FROM: want IMAGE [AS NAME], got %q", rest)
	}
	st.Base = words[0]
	p.Stages = append(p.Stages, st)
	return nil
}

// parseCommand reads the exec (JSON array) or shell form of RUN, CMD, ENTRYPOINT, SHELL.
func (p *Plan) parseCommand(in *Instruction, rest string) error {
	if in.Kind == Run {
		// --mount, --network and --security need BuildKit features Cubo does not have.
		var err error
		if _, rest, err = parseFlags(rest, map[string]bool{}); err != nil {
			return err
		}
	}
	if args, ok := jsonArray(rest); ok {
		in.Args = args
		if in.Kind == Shell && len(args) == 0 {
			return errorf("needs at least one element")
		}
		return nil
	}
	if in.Kind == Shell {
		return errorf("needs the JSON form, e.g. SHELL [\"/bin/sh\", \"-c\"]")
	}
	if rest == "" && in.Kind == Run {
		return errorf("needs a command")
	}
	in.Args, in.ShellForm = []string{rest}, true
	return nil
}

// jsonArray parses s as a JSON array of strings, reporting whether it is one.
func jsonArray(s string) ([]string, bool) {
	if !strings.HasPrefix(s, "[") {
		return nil, false
	}
	var a []string
	if err := json.Unmarshal([]byte(s), &a); err != nil {
		return nil, false
	}
	if a == nil {
		a = []string{}
	}
	return a, true
}

func (p *Plan) parseCopy(in *Instruction, rest string) error {
	allowed := map[string]bool{"chown": true, "chmod": true, "link": false}
	if in.Kind == Copy {
		allowed["from"] = true
	}
	flags, rest, err := parseFlags(rest, allowed)
	if err != nil {
		return err
	}
	in.From, in.Chown, in.Chmod = flags["from"], flags["chown"], flags["chmod"]
	words, ok := jsonArray(rest)
	if ok {
		// The JSON form holds literal names, but Docker still expands $VAR in them;
		// quote them so that ProcessWord leaves them intact apart from expansion.
		for i, w := range words {
			words[i] = quoteWord(w, p.Escape)
		}
	} else if words, err = splitWords(rest, p.Escape); err != nil {
		return err
	}
	if len(words) < 2 {
		return errorf("needs at least one source and a destination")
	}
	in.Sources, in.Dest = words[:len(words)-1], words[len(words)-1]
	return nil
}

// quoteWord makes w a double-quoted raw word that ProcessWord turns back into w (with
// $VAR still expanded).
func quoteWord(w string, esc rune) string {
	var b strings.Builder
	b.WriteByte('"')
	for _, c := range w {
		if c == '"' || c == esc {
			b.WriteRune(esc)
		}
		b.WriteRune(c)
	}
	b.WriteByte('"')
	return b.String()
}

// parsePairs reads ENV and LABEL: "KEY=VALUE ..." or the legacy "KEY VALUE WITH SPACES".
func (p *Plan) parsePairs(kind Kind, rest string) ([]KeyValue, error) {
	words, err := splitWords(rest, p.Escape)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, errorf("needs at least one KEY=VALUE")
	}
	if !strings.Contains(words[0], "=") {
		if len(words) < 2 {
			return nil, errorf("%q has no value: want KEY=VALUE or KEY VALUE", words[0])
		}
		key := words[0]
		val := strings.TrimSpace(strings.TrimPrefix(rest, key))
		if kind == Env && !argNameRe.MatchString(key) {
			return nil, errorf("invalid name %q", key)
		}
		return []KeyValue{{Key: key, Value: val, HasValue: true}}, nil
	}
	var out []KeyValue
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !ok {
			return nil, errorf("%q: want KEY=VALUE", w)
		}
		if k == "" || (kind == Env && !argNameRe.MatchString(k)) {
			return nil, errorf("invalid name %q", k)
		}
		out = append(out, KeyValue{Key: k, Value: v, HasValue: true})
	}
	return out, nil
}

func (p *Plan) parseArgs(rest string) ([]KeyValue, error) {
	words, err := splitWords(rest, p.Escape)
	if err != nil {
		return nil, err
	}
	if len(words) == 0 {
		return nil, errorf("needs a NAME[=DEFAULT]")
	}
	var out []KeyValue
	for _, w := range words {
		k, v, ok := strings.Cut(w, "=")
		if !argNameRe.MatchString(k) {
			return nil, errorf("invalid name %q", k)
		}
		out = append(out, KeyValue{Key: k, Value: v, HasValue: ok})
	}
	return out, nil
}

func (p *Plan) parseList(in *Instruction, rest string) error {
	if a, ok := jsonArray(rest); ok && in.Kind == Volume {
		for _, w := range a {
			in.Values = append(in.Values, quoteWord(w, p.Escape))
		}
	} else {
		words, err := splitWords(rest, p.Escape)
		if err != nil {
			return err
		}
		in.Values = words
	}
	if len(in.Values) == 0 {
		return errorf("needs at least one argument")
	}
	return nil
}

// errorf makes an error that add prefixes with the position and the instruction.
func errorf(format string, args ...any) error { return fmt.Errorf(format, args...) }
