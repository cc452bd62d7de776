package state

import (
	"os"
	"path/filepath"
	"reflect"
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

// idOf calls d.ID, failing the test on an error or a malformed identity.
func idOf(t *testing.T, d *Dir) (id, note string) {
	t.Helper()
	id, note, err := d.ID()
	if err != nil {
		t.Fatalf("ID: %v", err)
	}
	if !validID(id) {
		t.Fatalf("ID %q is not 16 hexadecimal digits", id)
	}
	return id, note
}

// oldState is a configuration as overlayd wrote it before state.json kept
// the identity: no "id" field.
const oldState = `{"overlays": [{"name": "net0", "encap": "vxlan", "search": "direct", "props": {"vnetid": "42"}, "id": 1}],
 "vnics": [{"name": "vn0", "overlay": "net0", "mac": "2:8:20:1:2:3"}]}`

var oldConfig = Config{
	Overlays: []Overlay{{Name: "net0", Encap: "vxlan", Search: "direct", Props: map[string]string{"vnetid": "42"}, ID: 1}},
	VNICs:    []VNIC{{Name: "vn0", Overlay: "net0", MAC: "2:8:20:1:2:3"}},
}

// loadID loads the configuration and returns the identity it keeps.
func loadID(t *testing.T, d *Dir) string {
	t.Helper()
	c, notes, err := d.Load()
	if err != nil || len(notes) != 0 {
		t.Fatalf("Load: notes %q, err %v", notes, err)
	}
	return c.ID
}

// TestIDKeptInState: Save keeps the identity in state.json, and when the
// id file is lost or damaged ID returns that same identity, says so, and
// writes the id file again.
func TestIDKeptInState(t *testing.T) {
	for _, tc := range []struct {
		name  string
		spoil func(t *testing.T, idPath string)
	}{
		{"missing", func(t *testing.T, p string) {
			if err := os.Remove(p); err != nil {
				t.Fatal(err)
			}
		}},
		{"damaged", func(t *testing.T, p string) { writeFile(t, p, []byte("not an id\n")) }},
		{"empty", func(t *testing.T, p string) { writeFile(t, p, nil) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			path := t.TempDir()
			idPath := filepath.Join(path, idName)
			d := open(t, path)
			id, _ := idOf(t, d)
			save(t, d, cfgA) // cfgA has no ID: Save fills it in
			if got := loadID(t, d); got != id {
				t.Fatalf("state.json keeps identity %q, want %q", got, id)
			}
			d.Close()

			tc.spoil(t, idPath)
			d = open(t, path)
			got, note := idOf(t, d)
			if got != id {
				t.Fatalf("id file %s: ID %q, want %q from state.json", tc.name, got, id)
			}
			if !strings.Contains(note, idPath) || !strings.Contains(note, filepath.Join(path, fileName)) || !strings.Contains(note, id) {
				t.Errorf("note %q should name %s, the identity and where it came from", note, idPath)
			}
			if b := string(readFile(t, idPath)); b != id+"\n" {
				t.Errorf("id file not written again: %q, want %q", b, id+"\n")
			}
			if again, note := idOf(t, d); again != id || note != "" {
				t.Errorf("next call: ID %q note %q, want %q and no note", again, note, id)
			}
		})
	}
}

// TestIDFromMirror: with the id file missing and state.json damaged, the
// identity comes from the mirror.
func TestIDFromMirror(t *testing.T) {
	path := t.TempDir()
	d := open(t, path)
	id, _ := idOf(t, d)
	save(t, d, cfgA)
	d.Close()
	if err := os.Remove(filepath.Join(path, idName)); err != nil {
		t.Fatal(err)
	}
	writeFile(t, filepath.Join(path, fileName), []byte("{trunc"))
	d = open(t, path)
	got, note := idOf(t, d)
	if got != id || !strings.Contains(note, filepath.Join(path, prevName)) {
		t.Errorf("ID %q note %q, want %q from %s", got, note, id, prevName)
	}
}

// TestIDNowhere: with neither the id file nor a state file keeping the
// identity (a state directory from an older overlayd that lost its id
// file), a new identity is made, noted, and recorded in both.
func TestIDNowhere(t *testing.T) {
	for _, idFile := range []string{"", "garbage\n"} {
		path := t.TempDir()
		idPath := filepath.Join(path, idName)
		if idFile != "" {
			writeFile(t, idPath, []byte(idFile))
		}
		writeFile(t, filepath.Join(path, fileName), seal([]byte(oldState)))
		d := open(t, path)
		id, note := idOf(t, d)
		if !strings.Contains(note, idPath) || !strings.Contains(note, "new one") {
			t.Errorf("id file %q: note %q should say a new identity was made for %s", idFile, note, idPath)
		}
		if b := string(readFile(t, idPath)); b != id+"\n" {
			t.Errorf("id file %q: id file holds %q, want %q", idFile, b, id+"\n")
		}
		if got := loadID(t, d); got != id {
			t.Errorf("id file %q: state.json keeps %q, want the new %q", idFile, got, id)
		}
		d.Close()
	}
}

// TestIDOldState: a state.json written before it kept the identity loads
// as before, and ID records the identity in it without changing the rest.
func TestIDOldState(t *testing.T) {
	path := t.TempDir()
	writeFile(t, filepath.Join(path, fileName), seal([]byte(oldState)))
	writeFile(t, filepath.Join(path, idName), []byte("0123456789abcdef\n"))
	d := open(t, path)
	c, notes, err := d.Load()
	if err != nil || len(notes) != 0 || !reflect.DeepEqual(c, oldConfig) {
		t.Fatalf("old state.json: loaded %+v, notes %q, err %v; want %+v", c, notes, err, oldConfig)
	}
	id, note := idOf(t, d)
	if id != "0123456789abcdef" || note != "" {
		t.Fatalf("ID %q note %q, want the id file's and no note", id, note)
	}
	c, _, _ = d.Load()
	want := oldConfig
	want.ID = id
	if !reflect.DeepEqual(c, want) {
		t.Errorf("after ID, state.json holds %+v, want %+v", c, want)
	}
}
