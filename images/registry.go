package images

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"

	"github.com/containerd/errdefs"
	"github.com/regclient/regclient"
	"github.com/regclient/regclient/config"
	"github.com/regclient/regclient/scheme/reg"
	"github.com/regclient/regclient/types/errs"
	"github.com/regclient/regclient/types/ref"
)

// dockerHubAuthKey is the key docker uses for Docker Hub in config.json.
const dockerHubAuthKey = "https://index.docker.io/v1/"

// registryOpts are the per-call registry settings shared by pull and login.
type registryOpts struct {
	tlsVerify bool
	user      string
	pass      string
}

// client builds a regclient for the registry of r. Plain HTTP is used for loopback
// registries (as docker allows) and with tlsVerify false (podman's --tls-verify=false),
// but only when the server does not speak TLS, which probeTLS finds out.
func (s *Store) client(ctx context.Context, r ref.Ref, o registryOpts) *regclient.RegClient {
	host := config.Host{Name: r.Registry}
	if !o.tlsVerify || isLoopback(r.Registry) {
		switch probeTLS(ctx, r.Registry) {
		case probePlain:
			host.TLS = config.TLSDisabled
		case probeTLSOK:
			if !o.tlsVerify {
				host.TLS = config.TLSInsecure
			}
		}
	}
	if o.user != "" {
		host.User, host.Pass = o.user, o.pass
	}
	opts := []regclient.Opt{regclient.WithUserAgent("cubo")}
	if s.dockerConfig != "" {
		opts = append(opts, regclient.WithDockerCredsFile(s.dockerConfig))
	} else {
		opts = append(opts, regclient.WithDockerCreds())
	}
	opts = append(opts, regclient.WithDockerCerts(), regclient.WithConfigHost(host))
	if len(s.certDirs) > 0 {
		opts = append(opts, regclient.WithRegOpts(reg.WithCertDirs(s.certDirs)))
	}
	if s.retries >= 0 {
		opts = append(opts, regclient.WithRegOpts(reg.WithRetryLimit(s.retries)))
	}
	return regclient.New(opts...)
}

type probeResult int

const (
	probeUnknown probeResult = iota
	probePlain
	probeTLSOK
)

// probeTLS tells whether host:port answers a TLS handshake or plain HTTP. It does not
// verify certificates: it only picks the scheme, and verification stays with regclient.
func probeTLS(ctx context.Context, hostport string) probeResult {
	if _, _, err := net.SplitHostPort(hostport); err != nil {
		hostport = net.JoinHostPort(hostport, "443")
	}
	var d net.Dialer
	conn, err := d.DialContext(ctx, "tcp", hostport)
	if err != nil {
		return probeUnknown
	}
	defer conn.Close()
	tc := tls.Client(conn, &tls.Config{InsecureSkipVerify: true}) //#nosec G402 scheme probe only
	err = tc.HandshakeContext(ctx)
	if err == nil {
		return probeTLSOK
	}
	var rhe tls.RecordHeaderError
	if errors.As(err, &rhe) {
		return probePlain
	}
	return probeUnknown
}

// isLoopback reports whether a registry host is localhost or in 127.0.0.0/8 (or ::1).
func isLoopback(hostport string) bool {
	h := hostport
	if hh, _, err := net.SplitHostPort(hostport); err == nil {
		h = hh
	}
	if h == "localhost" {
		return true
	}
	ip := net.ParseIP(h)
	return ip != nil && ip.IsLoopback()
}

// registryErr gives regclient errors containerd's classes so callers can tell a missing
// image from bad credentials.
func registryErr(err error) error {
	switch {
	case err == nil:
		return nil
	case errors.Is(err, errs.ErrHTTPUnauthorized):
		return fmt.Errorf("%w: %w", err, errdefs.ErrUnauthenticated)
	case errors.Is(err, errs.ErrNotFound):
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotFound)
	case errors.Is(err, errs.ErrDigestMismatch), errors.Is(err, errs.ErrShortRead), errors.Is(err, errs.ErrSizeLimitExceeded):
		return fmt.Errorf("%w: %w", err, errdefs.ErrDataLoss)
	case errors.Is(err, errs.ErrUnsupportedMediaType):
		// Retrying will not help: say what is missing, not "unavailable".
		return fmt.Errorf("%w: %w", err, errdefs.ErrNotImplemented)
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		return err
	}
	return fmt.Errorf("%w: %w", err, errdefs.ErrUnavailable)
}

// LoginOpt configures Login.
type LoginOpt func(*registryOpts)

// LoginWithTLSVerify sets whether the registry's certificate must verify (default true);
// false also allows plain HTTP.
func LoginWithTLSVerify(v bool) LoginOpt { return func(o *registryOpts) { o.tlsVerify = v } }

// Login checks user and password against registry (a host[:port], "docker.io" for Docker
// Hub) and saves them in the docker config file, or in its credential helper when one is
// configured for that registry. It returns an Unauthenticated error when the registry
// refuses them; nothing is saved then.
func (s *Store) Login(ctx context.Context, registry, user, pass string, opts ...LoginOpt) error {
	o := registryOpts{tlsVerify: true, user: user, pass: pass}
	for _, opt := range opts {
		opt(&o)
	}
	r, err := ref.NewHost(registry)
	if err != nil {
		return fmt.Errorf("registry %q: %w", registry, errdefs.ErrInvalidArgument)
	}
	rc := s.client(ctx, r, o)
	if _, err := rc.Ping(ctx, r); err != nil {
		return fmt.Errorf("log in to %s: %w", r.Registry, registryErr(err))
	}
	return s.editDockerConfig(func(cfg map[string]json.RawMessage, auths map[string]dockerAuth) error {
		key := authKey(r.Registry)
		if helper := credHelperFor(cfg, key); helper != "" {
			in, _ := json.Marshal(map[string]string{"ServerURL": key, "Username": user, "Secret": pass})
			return runCredHelper(helper, "store", in)
		}
		auths[key] = dockerAuth{Auth: base64.StdEncoding.EncodeToString([]byte(user + ":" + pass))}
		return nil
	})
}

// Logout removes the saved credentials of registry from the docker config file (or its
// credential helper). It returns a NotFound error when there were none.
func (s *Store) Logout(ctx context.Context, registry string) error {
	r, err := ref.NewHost(registry)
	if err != nil {
		return fmt.Errorf("registry %q: %w", registry, errdefs.ErrInvalidArgument)
	}
	return s.editDockerConfig(func(cfg map[string]json.RawMessage, auths map[string]dockerAuth) error {
		key := authKey(r.Registry)
		if helper := credHelperFor(cfg, key); helper != "" {
			return runCredHelper(helper, "erase", []byte(key))
		}
		found := false
		for k := range auths {
			if k == key || strings.TrimPrefix(strings.TrimPrefix(k, "https://"), "http://") == key {
				delete(auths, k)
				found = true
			}
		}
		if !found {
			return fmt.Errorf("credentials for %s: %w", r.Registry, errdefs.ErrNotFound)
		}
		return nil
	})
}

type dockerAuth struct {
	Auth string `json:"auth,omitempty"`
	// Other fields (identitytoken...) are kept as they were by round-tripping raw JSON.
	Rest map[string]json.RawMessage `json:"-"`
}

func authKey(registry string) string {
	if registry == "docker.io" {
		return dockerHubAuthKey
	}
	return registry
}

// DockerConfigPath returns the docker config.json the store reads credentials from.
func (s *Store) DockerConfigPath() string {
	if s.dockerConfig != "" {
		return s.dockerConfig
	}
	if d := os.Getenv("DOCKER_CONFIG"); d != "" {
		return filepath.Join(d, "config.json")
	}
	home, err := os.UserHomeDir()
	if err != nil {
		home = "/root"
	}
	return filepath.Join(home, ".docker", "config.json")
}

// editDockerConfig rewrites the docker config atomically, keeping every key it does not
// know about, as docker's own CLI does.
func (s *Store) editDockerConfig(fn func(cfg map[string]json.RawMessage, auths map[string]dockerAuth) error) error {
	p := s.DockerConfigPath()
	cfg := map[string]json.RawMessage{}
	b, err := os.ReadFile(p)
	switch {
	case err == nil:
		if err := json.Unmarshal(b, &cfg); err != nil {
			return fmt.Errorf("parse %s: %w", p, err)
		}
	case errors.Is(err, fs.ErrNotExist):
	default:
		return fmt.Errorf("read %s: %w", p, err)
	}
	rawAuths := map[string]map[string]json.RawMessage{}
	if a, ok := cfg["auths"]; ok {
		if err := json.Unmarshal(a, &rawAuths); err != nil {
			return fmt.Errorf("parse %s auths: %w", p, err)
		}
	}
	auths := map[string]dockerAuth{}
	for k, v := range rawAuths {
		var a dockerAuth
		if raw, ok := v["auth"]; ok {
			_ = json.Unmarshal(raw, &a.Auth)
		}
		a.Rest = v
		auths[k] = a
	}
	if err := fn(cfg, auths); err != nil {
		return err
	}
	out := map[string]map[string]json.RawMessage{}
	for k, a := range auths {
		m := map[string]json.RawMessage{}
		for rk, rv := range a.Rest {
			m[rk] = rv
		}
		if a.Auth != "" {
			m["auth"], _ = json.Marshal(a.Auth)
		}
		out[k] = m
	}
	cfg["auths"], _ = json.Marshal(out)
	nb, err := json.MarshalIndent(cfg, "", "\t")
	if err != nil {
		return fmt.Errorf("encode %s: %w", p, err)
	}
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		return fmt.Errorf("write %s: %w", p, err)
	}
	return writeFileAtomic(p, append(nb, '\n'), 0o600)
}

// credHelperFor returns the credential helper suffix configured for key, "" for none.
func credHelperFor(cfg map[string]json.RawMessage, key string) string {
	var helpers map[string]string
	if raw, ok := cfg["credHelpers"]; ok && json.Unmarshal(raw, &helpers) == nil {
		if h := helpers[key]; h != "" {
			return h
		}
	}
	var store string
	if raw, ok := cfg["credsStore"]; ok && json.Unmarshal(raw, &store) == nil {
		return store
	}
	return ""
}

// runCredHelper runs docker-credential-<helper> <verb> with input on stdin, the
// credential helper protocol docker defines.
func runCredHelper(helper, verb string, input []byte) error {
	cmd := exec.Command("docker-credential-"+helper, verb)
	cmd.Stdin = bytes.NewReader(input)
	var out bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &out
	if err := cmd.Run(); err != nil {
		return fmt.Errorf("credential helper %s %s: %s: %w", helper, verb, strings.TrimSpace(out.String()), err)
	}
	return nil
}
