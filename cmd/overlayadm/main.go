// Command overlayadm administers overlays and VNICs through overlayd.
// See 'overlayadm --help'.
package main

import (
	"os"

	"overlaynet/adm"
	_ "overlaynet/plugins"
)

func main() {
	os.Exit(adm.Main(os.Args[1:], os.Stdout, os.Stderr))
}
