package spec

import (
	"strings"
	"testing"

	"golang.org/x/sys/unix"
)

// FuzzParseMountOptions checks that any option list parses without panicking, that the
// data string holds only unknown options, and that the last of "ro"/"rw" wins.
func FuzzParseMountOptions(f *testing.F) {
	for _, s := range []string{"rbind,ro", "nosuid,noexec,nodev,mode=755,size=65536k", "ro,rw", "rw,ro", "rprivate,rshared,rro,rnoatime", "idmap,ridmap,tmpcopyup", ",,", "defaults"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, list string) {
		opts := strings.Split(list, ",")
		m := ParseMountOptions(opts)
		for _, d := range strings.Split(m.Data, ",") {
			if d == "" && m.Data != "" {
				t.Fatalf("empty item in data %q", m.Data)
			}
		}
		last := ""
		for _, o := range opts {
			if o == "ro" || o == "rw" {
				last = o
			}
		}
		ro := m.Flags&unix.MS_RDONLY != 0
		if last == "ro" && !ro || last == "rw" && ro {
			t.Fatalf("%q: last of ro/rw is %s but MS_RDONLY=%v", list, last, ro)
		}
	})
}
