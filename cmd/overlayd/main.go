// Command overlayd is the overlay network daemon. See 'overlayd --help'.
package main

import (
	"os"

	"overlaynet/daemon"
	_ "overlaynet/plugins"
)

func main() {
	os.Exit(daemon.Main(os.Args[1:], os.Stdout, os.Stderr))
}
