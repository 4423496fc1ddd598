// Command rbee runs large language models on the machines you already own.
// Run "rbee help" for the commands; the package rbee is the library behind it.
package main

import (
	"os"

	"rbee/internal/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:])) }
