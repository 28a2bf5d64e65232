package main

import "testing"

func TestResolveRootDir(t *testing.T) {
	for _, tc := range []struct {
		name, flag                        string
		cuboRoot, state, data, home, want string
	}{
		{"flag wins", "/f", "/c", "/s", "/d", "/h", "/f"},
		{"CUBO_ROOT", "", "/c", "/s", "/d", "/h", "/c"},
		{"XDG_STATE_HOME", "", "", "/s", "/d", "/h", "/s/cubo"},
		{"XDG_DATA_HOME", "", "", "", "/d", "/h", "/d/cubo"},
		{"HOME", "", "", "", "", "/h", "/h/.local/state/cubo"},
		{"nothing", "", "", "", "", "", "/tmp/cubo"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Setenv("CUBO_ROOT", tc.cuboRoot)
			t.Setenv("XDG_STATE_HOME", tc.state)
			t.Setenv("XDG_DATA_HOME", tc.data)
			t.Setenv("HOME", tc.home)
			if got := ResolveRootDir(tc.flag); got != tc.want {
				t.Fatalf("got %s, want %s", got, tc.want)
			}
		})
	}
}
