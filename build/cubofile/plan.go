// Package cubofile parses the two build-file syntaxes Cubo accepts, the Dockerfile-like
// Cubofile and the declarative Cubofile.toml, into one Plan: a list of stages, each a
// base and an ordered list of instructions. It is pure: it reads no files and expands no
// variables, since build arguments and the environment are only known while building.
//
// Every error names the file and line ("Cubofile:7: unknown instruction FOO").
package cubofile

import (
	"fmt"
	"strconv"
	"strings"
)

// Kind is an instruction keyword, upper case as written in a Cubofile.
type Kind string

// The instructions a stage can hold (FROM starts a stage and is not one of them).
const (
	Run        Kind = "RUN"
	Copy       Kind = "COPY"
	Add        Kind = "ADD"
	Workdir    Kind = "WORKDIR"
	Env        Kind = "ENV"
	Arg        Kind = "ARG"
	User       Kind = "USER"
	Label      Kind = "LABEL"
	Expose     Kind = "EXPOSE"
	Entrypoint Kind = "ENTRYPOINT"
	Cmd        Kind = "CMD"
	StopSignal Kind = "STOPSIGNAL"
	Shell      Kind = "SHELL"
	Volume     Kind = "VOLUME"
)

// Scratch is the base name of a stage that starts from an empty filesystem.
const Scratch = "scratch"

// Pos is where an instruction starts.
type Pos struct {
	File string
	Line int
}

func (p Pos) String() string { return p.File + ":" + strconv.Itoa(p.Line) }

// KeyValue is one pair of ENV, LABEL or ARG. HasValue is false for an ARG without a
// default.
type KeyValue struct {
	Key      string
	Value    string
	HasValue bool
}

// Instruction is one build step. Which fields are set depends on Kind.
type Instruction struct {
	Kind Kind
	Pos  Pos
	// Text is the instruction as written, continuations joined into one line; builds
	// print it and it is part of the cache key.
	Text string
	// Expand is true when the words below are raw shell words (Cubofile): the builder
	// removes quotes and expands $VAR in them where Docker does. TOML values are literal.
	Expand bool

	// Args is the command of RUN, CMD, ENTRYPOINT and SHELL: the JSON array of the exec
	// form, or one element holding the command line when ShellForm is set.
	Args      []string
	ShellForm bool

	// Sources, Dest and the flags belong to COPY and ADD. From names a stage (by name or
	// index) or an image; Chown is USER[:GROUP]; Chmod an octal mode.
	Sources []string
	Dest    string
	From    string
	Chown   string
	Chmod   string

	// Pairs holds ENV, LABEL and ARG.
	Pairs []KeyValue
	// Value holds WORKDIR, USER and STOPSIGNAL.
	Value string
	// Values holds the ports of EXPOSE and the paths of VOLUME.
	Values []string
}

// Stage is a FROM and the instructions up to the next one.
type Stage struct {
	// Name is the AS name, lower case; empty when the stage has none.
	Name string
	// Base is an image reference, an earlier stage's name, or Scratch; it may hold $ARGs
	// declared before the first FROM.
	Base string
	// Platform is the --platform flag, empty when absent.
	Platform string
	Pos      Pos
	// Text is the FROM line as written.
	Text         string
	Instructions []Instruction
}

// Plan is a parsed build file.
type Plan struct {
	// File is the name errors use.
	File string
	// Escape is the escape character (`\` unless the "# escape=" directive says "`").
	Escape rune
	// Args are the ARGs declared before the first FROM, usable in FROM lines.
	Args   []KeyValue
	Stages []Stage
}

// StageIndex finds a stage by AS name (case-insensitive) or by its index in the file,
// as COPY --from and --target accept both. It returns -1 when none matches.
func (p *Plan) StageIndex(ref string) int {
	l := strings.ToLower(ref)
	for i, s := range p.Stages {
		if s.Name != "" && s.Name == l {
			return i
		}
	}
	if n, err := strconv.Atoi(ref); err == nil && n >= 0 && n < len(p.Stages) {
		return n
	}
	return -1
}

// Parse parses a build file, choosing the syntax by name: Cubofile.toml (any name ending
// in .toml) or a Cubofile. name is used in error messages.
func Parse(name string, data []byte) (*Plan, error) {
	if strings.HasSuffix(strings.ToLower(name), ".toml") {
		return ParseTOML(name, data)
	}
	return ParseCubofile(name, data)
}

// posErr makes the "file:line: message" errors of this package.
func posErr(p Pos, format string, args ...any) error {
	return fmt.Errorf("%s: %s", p, fmt.Sprintf(format, args...))
}
