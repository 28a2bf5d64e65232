package cubofile

import (
	"reflect"
	"strconv"
	"strings"
	"testing"
)

func TestParseCubofile(t *testing.T) {
	src := "# escape=\\\n" +
		"# a comment\n" +
		"ARG VER=3.20\n" +
		"FROM alpine:${VER} AS build\n" +
		"RUN mkdir /app && \\\n" +
		"    # comment inside a continuation\n" +
		"    echo hi > /app/x\n" +
		"RUN [\"/bin/sh\", \"-c\", \"echo exec\"]\n" +
		"ENV A=1 B=\"two words\"\n" +
		"ENV LEGACY some value\n" +
		"copy --from=other --chown=1:2 a b /dst/\n" +
		"LABEL \"com.example\"=\"x y\" plain=1\n" +
		"EXPOSE 80/tcp 443\n" +
		"WORKDIR /app\n" +
		"USER nobody:nogroup\n" +
		"ARG X Y=2\n" +
		"STOPSIGNAL SIGINT\n" +
		"ENTRYPOINT [\"/bin/app\"]\n" +
		"CMD echo $HOME\n" +
		"FROM scratch\n" +
		"ADD --chmod=755 t.tar /\n"
	p, err := ParseCubofile("Cubofile", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	if len(p.Args) != 1 || p.Args[0] != (KeyValue{"VER", "3.20", true}) {
		t.Errorf("global args = %+v", p.Args)
	}
	if len(p.Stages) != 2 || p.Stages[0].Name != "build" || p.Stages[0].Base != "alpine:${VER}" || p.Stages[1].Base != Scratch {
		t.Fatalf("stages = %+v", p.Stages)
	}
	ins := p.Stages[0].Instructions
	want := []struct {
		kind Kind
		line int
	}{{Run, 5}, {Run, 8}, {Env, 9}, {Env, 10}, {Copy, 11}, {Label, 12}, {Expose, 13}, {Workdir, 14}, {User, 15}, {Arg, 16}, {StopSignal, 17}, {Entrypoint, 18}, {Cmd, 19}}
	if len(ins) != len(want) {
		t.Fatalf("got %d instructions, want %d: %+v", len(ins), len(want), ins)
	}
	for i, w := range want {
		if ins[i].Kind != w.kind || ins[i].Pos.Line != w.line {
			t.Errorf("instruction %d = %s at %d, want %s at %d", i, ins[i].Kind, ins[i].Pos.Line, w.kind, w.line)
		}
	}
	if got := ins[0].Args; !ins[0].ShellForm || got[0] != "mkdir /app &&     echo hi > /app/x" {
		t.Errorf("RUN continuation = %q", got)
	}
	if got := ins[1].Args; ins[1].ShellForm || !reflect.DeepEqual(got, []string{"/bin/sh", "-c", "echo exec"}) {
		t.Errorf("RUN exec form = %q", got)
	}
	if got := ins[2].Pairs; len(got) != 2 || got[1].Value != `"two words"` {
		t.Errorf("ENV pairs = %+v", got)
	}
	if got := ins[3].Pairs; len(got) != 1 || got[0].Key != "LEGACY" || got[0].Value != "some value" {
		t.Errorf("legacy ENV = %+v", got)
	}
	if c := ins[4]; c.From != "other" || c.Chown != "1:2" || !reflect.DeepEqual(c.Sources, []string{"a", "b"}) || c.Dest != "/dst/" {
		t.Errorf("COPY = %+v", c)
	}
	if got := ins[9].Pairs; len(got) != 2 || got[0].HasValue || got[1].Value != "2" {
		t.Errorf("ARG = %+v", got)
	}
	if a := p.Stages[1].Instructions[0]; a.Kind != Add || a.Chmod != "755" {
		t.Errorf("ADD = %+v", a)
	}
}

func TestParseEscapeDirective(t *testing.T) {
	p, err := ParseCubofile("Cubofile", []byte("# escape=`\nFROM busybox\nRUN echo a `\n  b\nCOPY C:\\x\\y /z\n"))
	if err != nil {
		t.Fatal(err)
	}
	ins := p.Stages[0].Instructions
	if p.Escape != '`' || ins[0].Args[0] != "echo a   b" {
		t.Errorf("escape %q, RUN %q", p.Escape, ins[0].Args)
	}
	if ins[1].Sources[0] != `C:\x\y` {
		t.Errorf("backslash with ` escape: %q", ins[1].Sources)
	}
}

func TestParseErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"", "Cubofile:1: no FROM instruction"},
		{"RUN x\n", "Cubofile:1: RUN before the first FROM"},
		{"FROM a\n\nFOO bar\n", "Cubofile:3: unknown instruction FOO"},
		{"FROM a\nHEALTHCHECK NONE\n", "Cubofile:2: HEALTHCHECK is not supported"},
		{"FROM a AS x\nFROM b AS X\n", `Cubofile:2: FROM: duplicate stage name "x"`},
		{"FROM a AS 1x\n", `invalid stage name`},
		{"FROM a b\n", "Cubofile:1: FROM: want IMAGE [AS NAME]"},
		{"FROM a\nCOPY x\n", "Cubofile:2: COPY: needs at least one source and a destination"},
		{"FROM a\nCOPY --bogus=1 x y\n", "Cubofile:2: COPY: unknown flag --bogus"},
		{"FROM a\nADD --from=x a b\n", "unknown flag --from"},
		{"FROM a\nRUN --mount=type=cache x\n", "Cubofile:2: RUN: unknown flag --mount"},
		{"FROM a\nENV\n", "ENV: needs at least one"},
		{"FROM a\nENV x\n", "has no value"},
		{"FROM a\nENV a=1 b\n", `"b": want KEY=VALUE`},
		{"FROM a\nENV 1a=1\n", `invalid name "1a"`},
		{"FROM a\nENV a=\"x\n", "unterminated"},
		{"FROM a\nWORKDIR\n", "WORKDIR requires an argument"},
		{"FROM a\nSHELL sh -c\n", "SHELL: needs the JSON form"},
		{"FROM a\nARG a-b\n", `invalid name "a-b"`},
		{"# escape=x\nFROM a\n", "Cubofile:1: invalid escape"},
		{"FROM a\nEXPOSE\n", "EXPOSE: needs at least one"},
	} {
		_, err := ParseCubofile("Cubofile", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestProcessWord(t *testing.T) {
	env := map[string]string{"A": "a", "EMPTY": "", "P": "/x y"}
	look := func(k string) (string, bool) { v, ok := env[k]; return v, ok }
	for _, tc := range []struct{ in, want, err string }{
		{"plain", "plain", ""},
		{"$A-$B-${A}", "a--a", ""},
		{`"$A b"`, "a b", ""},
		{`'$A b'`, "$A b", ""},
		{`\$A`, "$A", ""},
		{`"\$A \"q\""`, `$A "q"`, ""},
		{"${B:-def}", "def", ""},
		{"${EMPTY:-def}|${EMPTY-def}", "def|", ""},
		{"${A:+alt}|${B:+alt}", "alt|", ""},
		{"${B:-${A}x}", "ax", ""},
		{"$", "$", ""},
		{"a$ b", "a$ b", ""},
		{"${P}", "/x y", ""},
		{"${B:?must be set}", "", "B: must be set"},
		{"${A", "", "missing '}'"},
		{"${}", "", "bad substitution"},
		{"${A/x/y}", "", "bad substitution"},
		{`"open`, "", "unterminated"},
	} {
		got, err := ProcessWord(tc.in, '\\', look)
		if tc.err != "" {
			if err == nil || !strings.Contains(err.Error(), tc.err) {
				t.Errorf("%q: err %v, want %q", tc.in, err, tc.err)
			}
			continue
		}
		if err != nil || got != tc.want {
			t.Errorf("%q = %q, %v; want %q", tc.in, got, err, tc.want)
		}
	}
}

func TestParseTOML(t *testing.T) {
	src := `[image]
base = "alpine:latest"

[config]
workdir = "/app"
expose = ["8080/tcp"]
user = "nobody"
entrypoint = ["/bin/sh", "-c"]

[config.env]
PORT = "8080"
APP_ENV = "production"

[config.labels]
"org.example" = "x"

[config.args]
VER = "1"

[[config.run]]
command = "mkdir -p /app"

[[config.copy]]
source = "app.py"
destination = "/app/"

[[config.run]]
command = ["/bin/echo", "hi"]

[[config.add]]
source = ["a.tar", "b"]
destination = "/"
chown = "1:1"

[config.cmd]
command = ["python3", "app.py"]
`
	p, err := ParseTOML("Cubofile.toml", []byte(src))
	if err != nil {
		t.Fatal(err)
	}
	st := p.Stages[0]
	if st.Base != "alpine:latest" {
		t.Errorf("base = %q", st.Base)
	}
	var kinds []string
	for _, in := range st.Instructions {
		kinds = append(kinds, string(in.Kind)+"@"+itoa(in.Pos.Line))
	}
	want := "ARG@17 ENV@10 WORKDIR@5 RUN@20 COPY@23 RUN@27 ADD@30 USER@7 LABEL@14 EXPOSE@6 ENTRYPOINT@8 CMD@35"
	if got := strings.Join(kinds, " "); got != want {
		t.Errorf("order:\n got %s\nwant %s", got, want)
	}
	if in := st.Instructions[3]; !in.ShellForm || in.Args[0] != "mkdir -p /app" || in.Text != "RUN mkdir -p /app" {
		t.Errorf("run = %+v", in)
	}
	if in := st.Instructions[5]; in.ShellForm || !reflect.DeepEqual(in.Args, []string{"/bin/echo", "hi"}) {
		t.Errorf("exec run = %+v", in)
	}
	if in := st.Instructions[6]; in.Chown != "1:1" || len(in.Sources) != 2 {
		t.Errorf("add = %+v", in)
	}
	if in := st.Instructions[1]; in.Pairs[0].Key != "APP_ENV" || in.Expand {
		t.Errorf("env = %+v", in)
	}
	if in := st.Instructions[11]; !reflect.DeepEqual(in.Args, []string{"python3", "app.py"}) {
		t.Errorf("cmd = %+v", in)
	}
}

func TestParseTOMLErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{"[config]\nworkdir = \"/\"\n", "Cubofile.toml:1: [image] base is required"},
		{"[image]\nbase = \"a\"\nbogus = 1\n", "Cubofile.toml:3: unknown key image.bogus"},
		{"[image]\nbase = \"a\"\n[config]\nworkdir = \"/\"\n\n[[config.run]]\ncommand = \"x\"\nshell = true\n", "Cubofile.toml:8: unknown key config.run.shell"},
		{"[image]\nbase = \"a\"\n[[config.run]]\ncommand = 3\n", "Cubofile.toml:3: config.run: command must be"},
		{"[image]\nbase = \"a\"\n[[config.copy]]\nsource = \"x\"\n", "Cubofile.toml:3: config.copy: needs source"},
		{"[image]\nbase = \"a\"\n[config]\ncmd = 3\n", "Cubofile.toml:4: config.cmd: must be"},
		{"[image]\nbase = \"a\"\n[config.env]\n\"a b\" = \"x\"\n", "Cubofile.toml:3: config.env: invalid name"},
		{"[image\n", "to end table name"},
	} {
		_, err := ParseTOML("Cubofile.toml", []byte(tc.src))
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.src, err, tc.want)
		}
	}
}

func TestStageIndex(t *testing.T) {
	p := &Plan{Stages: []Stage{{Name: "a"}, {}, {Name: "c"}}}
	for ref, want := range map[string]int{"a": 0, "A": 0, "1": 1, "c": 2, "3": -1, "x": -1} {
		if got := p.StageIndex(ref); got != want {
			t.Errorf("StageIndex(%q) = %d, want %d", ref, got, want)
		}
	}
}

// FuzzParse checks that no input makes the parsers panic and that every error carries
// the file name and a line.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"FROM a\nRUN x \\\n y\n", "# escape=`\nFROM a\nENV a=\"b c\" d=e\n", "[image]\nbase=\"a\"\n[[config.run]]\ncommand=\"x\"\n"} {
		f.Add(s, false)
	}
	f.Fuzz(func(t *testing.T, src string, isTOML bool) {
		name := "Cubofile"
		if isTOML {
			name = "Cubofile.toml"
		}
		p, err := Parse(name, []byte(src))
		if err != nil {
			if !strings.HasPrefix(err.Error(), name+":") {
				t.Fatalf("error without position: %v", err)
			}
			return
		}
		if len(p.Stages) == 0 {
			t.Fatal("plan without stages")
		}
		for _, st := range p.Stages {
			for _, in := range st.Instructions {
				for _, w := range append(append([]string{in.Dest, in.Value}, in.Sources...), in.Values...) {
					_, _ = ProcessWord(w, p.Escape, func(string) (string, bool) { return "", false })
				}
			}
		}
	})
}

func itoa(n int) string { return strconv.Itoa(n) }
