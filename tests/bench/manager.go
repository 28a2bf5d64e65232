package main

import (
	"os"
	"os/exec"
	"regexp"
)

// hasVerb reports whether the cubo binary lists verb as a command in its help.
func hasVerb(cubo, verb string) bool {
	if _, err := os.Stat(cubo); err != nil {
		return false
	}
	out, _ := exec.Command(cubo, "--help").CombinedOutput()
	return regexp.MustCompile(`(?m)^\s+` + regexp.QuoteMeta(verb) + `(\s|$)`).Match(out)
}

func (b *bench) managerHalf(cubo, cuboRunc string, install bool) {
	b.printf("### Manager\n\n")
	if !hasVerb(cubo, "run") {
		b.printf("skipped: cubo run not available\n\n")
	}
}
