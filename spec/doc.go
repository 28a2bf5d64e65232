// Package spec holds what the runtime (cubo-runc) and the manager (cubo) share about OCI
// runtime-spec configs: the example config, loading config.json with errors that point at the
// offending byte, and validation with one-line errors that name the offending field.
//
// Validation follows what runc refuses, word for word where callers or people know runc's text
// ("args must not be empty", "unable to set hostname without a private UTS namespace"), and
// otherwise as "<field>: <problem>". Every validation error wraps ErrInvalid.
//
// The package is portable: it imports the runtime-spec types and the standard library only.
// The Linux mount-option table (ParseMountOptions) lives in a _linux.go file.
package spec
