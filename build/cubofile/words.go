package cubofile

import (
	"errors"
	"fmt"
	"strings"
	"unicode"
)

// splitWords splits s on whitespace outside quotes, keeping quotes and escapes in the
// words: the builder removes them later with ProcessWord, together with expansion, as
// Docker's shell lexer does.
func splitWords(s string, esc rune) ([]string, error) {
	var words []string
	var cur strings.Builder
	in := false // inside a word
	var quote rune
	rs := []rune(s)
	for i := 0; i < len(rs); i++ {
		c := rs[i]
		switch {
		case quote == 0 && unicode.IsSpace(c):
			if in {
				words = append(words, cur.String())
				cur.Reset()
				in = false
			}
			continue
		case c == esc && quote != '\'':
			cur.WriteRune(c)
			if i+1 < len(rs) {
				i++
				cur.WriteRune(rs[i])
			}
		case quote == 0 && (c == '"' || c == '\''):
			quote = c
			cur.WriteRune(c)
		case c == quote:
			quote = 0
			cur.WriteRune(c)
		default:
			cur.WriteRune(c)
		}
		in = true
	}
	if quote != 0 {
		return nil, fmt.Errorf("unterminated %c quote", quote)
	}
	if in {
		words = append(words, cur.String())
	}
	return words, nil
}

// ProcessWord removes the quotes and escapes of a raw shell word and expands $VAR,
// ${VAR}, ${VAR:-default}, ${VAR-default}, ${VAR:+alt}, ${VAR+alt}, ${VAR:?msg} and
// ${VAR?msg} with lookup, like Docker does for ENV, COPY, WORKDIR and friends. Single
// quotes prevent expansion; esc escapes the next character. An unset variable expands
// to nothing. It returns an error for a malformed ${...} or a failed :? check.
func ProcessWord(word string, esc rune, lookup func(string) (string, bool)) (string, error) {
	l := &lexer{rs: []rune(word), esc: esc, lookup: lookup}
	return l.process(0)
}

type lexer struct {
	rs     []rune
	i      int
	esc    rune
	lookup func(string) (string, bool)
}

// process reads until the end, or until an unmatched '}' when nested > 0 (the word of a
// ${VAR:-word}).
func (l *lexer) process(nested int) (string, error) {
	var b strings.Builder
	for l.i < len(l.rs) {
		c := l.rs[l.i]
		switch {
		case nested > 0 && c == '}':
			return b.String(), nil
		case c == l.esc:
			l.i++
			if l.i < len(l.rs) {
				b.WriteRune(l.rs[l.i])
				l.i++
			} else {
				b.WriteRune(c)
			}
		case c == '\'':
			l.i++
			j := l.i
			for j < len(l.rs) && l.rs[j] != '\'' {
				j++
			}
			if j == len(l.rs) {
				return "", errors.New("unterminated ' quote")
			}
			b.WriteString(string(l.rs[l.i:j]))
			l.i = j + 1
		case c == '"':
			l.i++
			closed := false
			for l.i < len(l.rs) {
				d := l.rs[l.i]
				if d == '"' {
					l.i++
					closed = true
					break
				}
				if d == l.esc && l.i+1 < len(l.rs) {
					n := l.rs[l.i+1]
					if n == '"' || n == '$' || n == l.esc {
						b.WriteRune(n)
						l.i += 2
						continue
					}
					b.WriteRune(d)
					l.i++
					continue
				}
				if d == '$' {
					s, err := l.variable()
					if err != nil {
						return "", err
					}
					b.WriteString(s)
					continue
				}
				b.WriteRune(d)
				l.i++
			}
			if !closed {
				return "", errors.New(`unterminated " quote`)
			}
		case c == '$':
			s, err := l.variable()
			if err != nil {
				return "", err
			}
			b.WriteString(s)
		default:
			b.WriteRune(c)
			l.i++
		}
	}
	if nested > 0 {
		return "", errors.New("missing '}'")
	}
	return b.String(), nil
}

func isNameRune(c rune, first bool) bool {
	return c == '_' || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (!first && c >= '0' && c <= '9')
}

// variable expands the $... at l.i.
func (l *lexer) variable() (string, error) {
	l.i++ // '$'
	if l.i >= len(l.rs) {
		return "$", nil
	}
	if l.rs[l.i] != '{' {
		j := l.i
		for j < len(l.rs) && isNameRune(l.rs[j], j == l.i) {
			j++
		}
		if j == l.i {
			return "$", nil
		}
		name := string(l.rs[l.i:j])
		l.i = j
		v, _ := l.lookup(name)
		return v, nil
	}
	l.i++ // '{'
	j := l.i
	for j < len(l.rs) && isNameRune(l.rs[j], j == l.i) {
		j++
	}
	name := string(l.rs[l.i:j])
	if name == "" {
		return "", errors.New("bad substitution: missing variable name after ${")
	}
	l.i = j
	if l.i >= len(l.rs) {
		return "", errors.New("missing '}'")
	}
	if l.rs[l.i] == '}' {
		l.i++
		v, _ := l.lookup(name)
		return v, nil
	}
	colon := false
	if l.rs[l.i] == ':' {
		colon = true
		l.i++
		if l.i >= len(l.rs) {
			return "", errors.New("missing '}'")
		}
	}
	op := l.rs[l.i]
	if op != '-' && op != '+' && op != '?' {
		return "", fmt.Errorf("bad substitution ${%s%c...}: only :-, :+, :?, -, + and ? are supported", name, op)
	}
	l.i++
	word, err := l.process(1)
	if err != nil {
		return "", err
	}
	l.i++ // '}'
	v, set := l.lookup(name)
	present := set && (!colon || v != "")
	switch op {
	case '-':
		if present {
			return v, nil
		}
		return word, nil
	case '+':
		if present {
			return word, nil
		}
		return "", nil
	default: // '?'
		if present {
			return v, nil
		}
		if word == "" {
			word = "not set"
		}
		return "", fmt.Errorf("%s: %s", name, word)
	}
}
