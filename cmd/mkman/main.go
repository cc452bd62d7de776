// Command mkman writes the manual pages (package manual) into a
// directory, dist/man by default: go run ./cmd/mkman.
package main

import (
	"fmt"
	"os"
	"path/filepath"

	"overlaynet/manual"
	_ "overlaynet/plugins" // the plugins' properties are in the help
)

func main() {
	dir := "dist/man"
	if len(os.Args) > 2 || (len(os.Args) == 2 && os.Args[1][0] == '-') {
		fmt.Fprintln(os.Stderr, "usage: mkman [DIR] (default dist/man)")
		os.Exit(2)
	}
	if len(os.Args) == 2 {
		dir = os.Args[1]
	}
	// Pages of commands that are gone must go too.
	for _, sub := range []string{"man5", "man8"} {
		if err := os.RemoveAll(filepath.Join(dir, sub)); err != nil {
			fmt.Fprintln(os.Stderr, "mkman:", err)
			os.Exit(1)
		}
	}
	paths, err := manual.Write(dir)
	if err != nil {
		fmt.Fprintln(os.Stderr, "mkman:", err)
		os.Exit(1)
	}
	fmt.Printf("mkman: %d pages in %s\n", len(paths), dir)
}
