package images

import (
	"fmt"
	"strings"

	"github.com/containerd/errdefs"
	ocispec "github.com/opencontainers/image-spec/specs-go/v1"
	"github.com/regclient/regclient/types/ref"
)

// Media types Cubo reads. Docker schema 2 documents are OCI-shaped, so they share code.
const (
	mtDockerManifest     = "application/vnd.docker.distribution.manifest.v2+json"
	mtDockerManifestList = "application/vnd.docker.distribution.manifest.list.v2+json"
	mtDockerConfig       = "application/vnd.docker.container.image.v1+json"
	mtDockerLayerGzip    = "application/vnd.docker.image.rootfs.diff.tar.gzip"
	mtDockerLayerForeign = "application/vnd.docker.image.rootfs.foreign.diff.tar.gzip"
	mtDockerLayerZstd    = "application/vnd.docker.image.rootfs.diff.tar.zstd"
)

func isImageManifest(mt string) bool {
	return mt == ocispec.MediaTypeImageManifest || mt == mtDockerManifest
}

func isIndex(mt string) bool {
	return mt == ocispec.MediaTypeImageIndex || mt == mtDockerManifestList
}

func isConfig(mt string) bool {
	return mt == ocispec.MediaTypeImageConfig || mt == mtDockerConfig
}

// compression of a layer media type: "", "gzip" or "zstd"; ok is false for media types
// that are not layers Cubo can unpack (foreign or non-distributable layers included).
func layerCompression(mt string) (comp string, ok bool) {
	switch mt {
	case ocispec.MediaTypeImageLayer:
		return "", true
	case ocispec.MediaTypeImageLayerGzip, mtDockerLayerGzip:
		return "gzip", true
	case ocispec.MediaTypeImageLayerZstd, mtDockerLayerZstd:
		return "zstd", true
	}
	return "", false
}

// parseRef parses an image name the way docker does: "alpine" is
// docker.io/library/alpine:latest. Only registry references are accepted.
func parseRef(name string) (ref.Ref, error) {
	if name == "" || strings.Contains(name, "://") {
		return ref.Ref{}, fmt.Errorf("image name %q: %w", name, errdefs.ErrInvalidArgument)
	}
	r, err := ref.New(name)
	if err != nil {
		return ref.Ref{}, fmt.Errorf("image name %q: %w", name, errdefs.ErrInvalidArgument)
	}
	return r, nil
}

// NormalizeName returns the familiar form of an image name, as stored in index.json:
// "alpine" gives "alpine:latest", "docker.io/library/alpine:3" gives "alpine:3". It
// returns an InvalidArgument error for a malformed name.
func NormalizeName(name string) (string, error) {
	r, err := parseRef(name)
	if err != nil {
		return "", err
	}
	return familiarName(r), nil
}

// familiarName drops docker.io/ and library/ as the docker CLI does, unless the
// short form would parse as another reference: "docker.io/0.0/x" stays whole, since
// "0.0/x" names the repository x on the registry 0.0.
func familiarName(r ref.Ref) string {
	short := shortName(r)
	if r.Registry == "docker.io" {
		if back, err := ref.New(short); err != nil || back.CommonName() != r.CommonName() {
			return r.CommonName()
		}
	}
	return short
}

func shortName(r ref.Ref) string {
	repo := r.Repository
	if r.Registry == "docker.io" {
		// Only official images (one path component under library/) lose the
		// prefix: "library/a/b" shortened to "a/b" would name another image.
		if rest, ok := strings.CutPrefix(repo, "library/"); ok && !strings.Contains(rest, "/") {
			repo = rest
		}
	} else {
		repo = r.Registry + "/" + repo
	}
	if r.Tag != "" {
		repo += ":" + r.Tag
	}
	if r.Digest != "" {
		repo += "@" + r.Digest
	}
	return repo
}

// fullName is the fully qualified name: registry/repository[:tag][@digest].
func fullName(r ref.Ref) string { return r.CommonName() }

// splitName splits a familiar name into repository, tag and digest.
func splitName(name string) (repo, tag, dgst string) {
	if i := strings.Index(name, "@"); i >= 0 {
		name, dgst = name[:i], name[i+1:]
	}
	// A colon after the last slash is the tag; one before it is a registry port.
	if i := strings.LastIndex(name, ":"); i >= 0 && i > strings.LastIndex(name, "/") {
		name, tag = name[:i], name[i+1:]
	}
	return name, tag, dgst
}
