package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"strings"

	"golang.org/x/term"
)

type loginCmd struct {
	Registry      string   `arg:"" optional:"" default:"docker.io" help:"Registry host[:port] (default docker.io)."`
	Username      string   `short:"u" help:"User name."`
	Password      string   `short:"p" help:"Password (prefer --password-stdin)."`
	PasswordStdin bool     `name:"password-stdin" help:"Read the password from stdin."`
	TLSVerify     bool     `name:"tls-verify" default:"true" negatable:"" help:"Require HTTPS with a verified certificate."`
	CertDir       []string `name:"cert-dir" placeholder:"DIR" help:"Extra directories of registry CA certificates."`
}

// Run checks the credentials against the registry and saves them in the docker config.
func (c *loginCmd) Run(g *globals) error {
	st, err := g.store(imagesCertDirs(c.CertDir)...)
	if err != nil {
		return err
	}
	in := bufio.NewReader(os.Stdin)
	tty := term.IsTerminal(int(os.Stdin.Fd()))
	if c.Username == "" {
		if !tty {
			return errors.New("login: --username is required when stdin is not a terminal")
		}
		fmt.Fprint(os.Stderr, "Username: ")
		line, err := in.ReadString('\n')
		if err != nil && !errors.Is(err, io.EOF) {
			return fmt.Errorf("login: %w", err)
		}
		c.Username = strings.TrimSpace(line)
	}
	switch {
	case c.PasswordStdin:
		b, err := io.ReadAll(in)
		if err != nil {
			return fmt.Errorf("login: %w", err)
		}
		c.Password = strings.TrimRight(string(b), "\r\n")
	case c.Password == "" && tty:
		fmt.Fprint(os.Stderr, "Password: ")
		b, err := term.ReadPassword(int(os.Stdin.Fd()))
		fmt.Fprintln(os.Stderr)
		if err != nil {
			return fmt.Errorf("login: %w", err)
		}
		c.Password = string(b)
	case c.Password == "":
		return errors.New("login: a password is required (--password-stdin)")
	}
	if err := st.Login(context.Background(), c.Registry, c.Username, c.Password, loginTLS(c.TLSVerify)); err != nil {
		return err
	}
	fmt.Println("Login Succeeded")
	return nil
}
