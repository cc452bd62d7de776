// Command overlayadm administers overlays and VNICs through overlayd.
// See 'overlayadm --help'.
package main

import (
	"os"

	"overlaynet/overlayadm"
	_ "overlaynet/plugins"
)

func main() {
	os.Exit(overlayadm.Main(os.Args[1:], os.Stdout, os.Stderr))
}
