package state

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestID: a state directory's identity is made once, kept across Open,
// differs between directories, and is remade, with a note, when damaged.
func TestID(t *testing.T) {
	base := t.TempDir()
	open := func(name string) *Dir {
		t.Helper()
		d, err := Open(filepath.Join(base, name))
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	id := func(d *Dir) (string, string) {
		t.Helper()
		id, note, err := d.ID()
		if err != nil {
			t.Fatal(err)
		}
		if !validID(id) {
			t.Fatalf("ID %q is not 16 hexadecimal digits", id)
		}
		return id, note
	}
	a := open("a")
	first, note := id(a)
	if note != "" {
		t.Errorf("first ID: note %q", note)
	}
	if again, _ := id(a); again != first {
		t.Errorf("second call: %q, want %q", again, first)
	}
	a.Close()
	a = open("a")
	if reopened, _ := id(a); reopened != first {
		t.Errorf("after reopening: %q, want %q", reopened, first)
	}
	b := open("b")
	if other, _ := id(b); other == first {
		t.Errorf("two state directories share the ID %q", other)
	}
	b.Close()

	if err := os.WriteFile(filepath.Join(base, "a", idName), []byte("not an id\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	remade, note := id(a)
	if remade == first || !strings.Contains(note, "damaged") {
		t.Errorf("damaged id file: ID %q (was %q), note %q", remade, first, note)
	}
	if kept, _ := id(a); kept != remade {
		t.Errorf("the remade ID was not kept: %q, then %q", remade, kept)
	}
	a.Close()
}
