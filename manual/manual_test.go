package manual

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	_ "overlaynet/plugins" // as in the programs: their properties are in the help
)

// distMan is where the pages are kept, from this package's directory.
const distMan = "../dist/man"

// TestPagesCurrent fails when a page in dist/man differs from what the
// commands' help says now, or a page is missing or left over.
func TestPagesCurrent(t *testing.T) {
	dir := t.TempDir()
	paths, err := Write(dir)
	if err != nil {
		t.Fatal(err)
	}
	if len(paths) < 20 {
		t.Fatalf("only %d pages: %q", len(paths), paths)
	}
	want := map[string]bool{}
	for _, p := range paths {
		rel, _ := filepath.Rel(dir, p)
		want[rel] = true
		fresh, err := os.ReadFile(p)
		if err != nil {
			t.Fatal(err)
		}
		kept, err := os.ReadFile(filepath.Join(distMan, rel))
		if err != nil {
			t.Errorf("dist/man/%s is missing: run go run ./cmd/mkman", rel)
			continue
		}
		if !bytes.Equal(fresh, kept) {
			t.Errorf("dist/man/%s differs from the command's help: run go run ./cmd/mkman (and review the diff)", rel)
		}
	}
	kept, _ := filepath.Glob(filepath.Join(distMan, "man*", "*"))
	for _, p := range kept {
		rel, _ := filepath.Rel(distMan, p)
		if !want[rel] {
			t.Errorf("dist/man/%s is no command's page any more: run go run ./cmd/mkman", rel)
		}
	}
}

// TestPagesRender: man renders every page, without a warning, with its
// NAME section.
func TestPagesRender(t *testing.T) {
	if _, err := exec.LookPath("man"); err != nil {
		t.Skip("man is not installed (Debian's man-db; scripts/install-deps installs it): the pages are not rendered")
	}
	pages, _ := filepath.Glob(filepath.Join(distMan, "man*", "*"))
	if len(pages) == 0 {
		t.Fatal("no pages in dist/man")
	}
	for _, p := range pages {
		cmd := exec.Command("man", "-l", "-P", "cat", p)
		cmd.Env = append(os.Environ(), "MANWIDTH=80", "LC_ALL=C.UTF-8", "MAN_KEEP_FORMATTING=")
		var out, errb bytes.Buffer
		cmd.Stdout, cmd.Stderr = &out, &errb
		if err := cmd.Run(); err != nil {
			t.Errorf("man -l %s: %v: %s", p, err, errb.String())
			continue
		}
		if errb.Len() > 0 {
			t.Errorf("man -l %s warns: %s", p, errb.String())
		}
		if !strings.Contains(out.String(), "NAME") || out.Len() < 200 {
			t.Errorf("man -l %s rendered %d bytes without a NAME section:\n%s", p, out.Len(), out.String())
		}
	}
}
