// Command cubo is the Cubo container manager: images (pull, blueprint, rmb, import, save,
// load, login, logout) and, in their own files, the container verbs.
//
// Each verb is a command struct in a file named after it, with a Run(*globals) error
// method; adding a verb means adding a file and one field to cli.
package main

import (
	"fmt"
	"os"

	"github.com/alecthomas/kong"
	"github.com/rs/zerolog"
)

var (
	version = "dev"
	commit  = "unknown"
)

// cli is the kong root: global flags plus one field per verb.
type cli struct {
	globals

	Pull      pullCmd      `cmd:"" help:"Pull an image from a registry." group:"Images"`
	Blueprint blueprintCmd `cmd:"" help:"List images (blueprints)." group:"Images"`
	Rmb       rmbCmd       `cmd:"" help:"Remove images (blueprints) by name or ID." group:"Images"`
	Import    importCmd    `cmd:"" help:"Create an image from a rootfs tarball." group:"Images"`
	Save      saveCmd      `cmd:"" help:"Save images to an OCI archive." group:"Images"`
	Load      loadCmd      `cmd:"" help:"Load images from an OCI or docker archive." group:"Images"`
	Build     buildCmd     `cmd:"" help:"Build an image from a Cubofile or Cubofile.toml." group:"Images"`
	Login     loginCmd     `cmd:"" help:"Log in to a registry." group:"Registries"`
	Logout    logoutCmd    `cmd:"" help:"Log out from a registry." group:"Registries"`
	Run       runCmd       `cmd:"" help:"Run a container from a blueprint." group:"Containers"`
	Ps        psCmd        `cmd:"" help:"List containers." group:"Containers"`
	Stop      stopCmd      `cmd:"" help:"Stop running containers." group:"Containers"`
	Rm        rmCmd        `cmd:"" help:"Remove containers." group:"Containers"`
	Logs      logsCmd      `cmd:"" help:"Print a container's output." group:"Containers"`
	Exec      execCmd      `cmd:"" help:"Run a command in a running container." group:"Containers"`
	Inspect   inspectCmd   `cmd:"" help:"Show containers' records and configs as JSON." group:"Containers"`
	Network   networkCmd   `cmd:"" help:"Manage bridge networks." group:"Containers"`
	System    systemCmd    `cmd:"" help:"Check the root dir's integrity (and repair it)." group:"System"`

	Version kong.VersionFlag `help:"Print the version and exit."`
}

func main() {
	var c cli
	ctx := kong.Parse(&c,
		kong.Name("cubo"),
		kong.Description("A small container manager."),
		kong.UsageOnError(),
		kong.Vars{"version": version + " (" + commit + ")"},
	)
	if err := c.globals.init(); err != nil {
		fail(err)
	}
	if err := ctx.Run(&c.globals); err != nil {
		fail(err)
	}
}

// fail prints err as the one line the user sees and exits 1; only main prints errors.
func fail(err error) {
	fmt.Fprintf(os.Stderr, "cubo: %v\n", err)
	os.Exit(1)
}

// newLogger makes the zerolog logger every verb passes down: stderr, console format.
func newLogger(level string) (zerolog.Logger, error) {
	lvl, err := zerolog.ParseLevel(level)
	if err != nil || level == "" {
		return zerolog.Nop(), fmt.Errorf("log level %q: want trace, debug, info, warn, error or disabled", level)
	}
	return zerolog.New(zerolog.ConsoleWriter{Out: os.Stderr, NoColor: true}).Level(lvl).With().Timestamp().Logger(), nil
}
