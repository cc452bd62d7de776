// Command portolan is the SVP mapping server and its administration. See
// 'portolan --help'.
package main

import (
	"os"

	"overlaynet/portolan/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
