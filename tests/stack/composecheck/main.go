// composecheck (tests/stack/test_compose_config.py): `docker compose config` without Docker. Loads compose files with compose-go (the loader the
// docker compose CLI uses): interpolation from an env file, profiles, extends, merge of override files, and
// validation; prints the resulting project as JSON, or the loader's error and exit status 1.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"strings"

	"github.com/compose-spec/compose-go/v2/cli"
)

func main() {
	var files, profiles string
	var envFile, workdir string
	flag.StringVar(&files, "f", "docker-compose.yml", "comma-separated compose files")
	flag.StringVar(&profiles, "profiles", "", "comma-separated profiles")
	flag.StringVar(&envFile, "env-file", "", ".env file for interpolation")
	flag.StringVar(&workdir, "workdir", ".", "project directory")
	flag.Parse()
	opts := []cli.ProjectOptionsFn{
		cli.WithWorkingDirectory(workdir),
		cli.WithName("telestack"),
		cli.WithInterpolation(true),
		cli.WithResolvedPaths(false),
	}
	if envFile != "" {
		opts = append(opts, cli.WithEnvFiles(envFile), cli.WithDotEnv)
	}
	if profiles != "" {
		opts = append(opts, cli.WithProfiles(strings.Split(profiles, ",")))
	}
	options, err := cli.NewProjectOptions(strings.Split(files, ","), opts...)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	project, err := options.LoadProject(context.Background())
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	out, err := project.MarshalJSON()
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	fmt.Println(string(out))
}
