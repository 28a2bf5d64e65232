package manager

import (
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"math/big"

	"github.com/containerd/errdefs"
)

var (
	adjectives = []string{
		"agile", "bold", "brave", "bright", "calm", "clever", "cosmic", "crisp", "eager", "fair",
		"fancy", "gentle", "happy", "jolly", "keen", "kind", "lively", "lucid", "merry", "nimble",
		"noble", "proud", "quick", "quiet", "rapid", "shiny", "silent", "steady", "sunny", "swift",
		"tidy", "vivid", "warm", "wise", "witty", "zesty",
	}
	nouns = []string{
		"anchor", "badger", "beacon", "cedar", "comet", "cube", "delta", "ember", "falcon", "fjord",
		"galaxy", "harbor", "heron", "island", "lagoon", "lynx", "maple", "meadow", "nebula", "orbit",
		"otter", "panda", "pebble", "prism", "quartz", "raven", "river", "saturn", "sparrow", "summit",
		"tundra", "velvet", "walrus", "willow", "yak", "zephyr",
	}
)

func pick(words []string) string {
	n, _ := rand.Int(rand.Reader, big.NewInt(int64(len(words))))
	return words[n.Int64()]
}

// reserveRandomName claims an adjective_noun name for id, adding digits when the short
// names are taken, the way docker does.
func (m *Manager) reserveRandomName(id string) (string, error) {
	for i := range 20 {
		name := pick(adjectives) + "_" + pick(nouns)
		if i >= 5 {
			n, _ := rand.Int(rand.Reader, big.NewInt(1000))
			name = fmt.Sprintf("%s%d", name, n.Int64())
		}
		err := m.reserveName(name, id)
		if err == nil {
			return name, nil
		}
		if !errors.Is(err, errdefs.ErrAlreadyExists) {
			return "", err
		}
	}
	name := "cubo_" + id[:12]
	return name, m.reserveName(name, id)
}

func jsonIndent(v any) ([]byte, error) { return json.MarshalIndent(v, "", "\t") }
