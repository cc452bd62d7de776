package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// Modes of FuzzLoad, bits of its mode argument.
const (
	fuzzSealCur  = 1 << iota // cur is a configuration: wrap it in a valid envelope
	fuzzSealPrev             // the same for prev
	fuzzNoCur                // no state.json
	fuzzNoPrev               // no state.json.prev
)

// seal wraps configuration bytes in an envelope whose checksum matches,
// so that the fuzzer reaches the decoding of the configuration itself.
func seal(cfg []byte) []byte {
	var compact bytes.Buffer
	if json.Compact(&compact, cfg) != nil {
		compact.Write(cfg)
	}
	sum := sha256.Sum256(compact.Bytes())
	out := []byte(`{"format": "overlayd-state", "version": 1, "sha256": "` + hex.EncodeToString(sum[:]) + `", "config": `)
	return append(append(out, cfg...), "}\n"...)
}

// FuzzLoad writes arbitrary state.json and state.json.prev files and
// loads them. An error names the file(s) at fault and, for a value of the
// wrong type, the field; a damaged state.json that the mirror stands in
// for is noted; whatever loads is saved and loads back the same.
func FuzzLoad(f *testing.F) {
	good, err := json.Marshal(cfgA)
	if err != nil {
		f.Fatal(err)
	}
	f.Add(good, []byte{}, uint8(fuzzSealCur|fuzzNoPrev))
	f.Add(seal(good), seal(good), uint8(0))
	f.Add(seal(good)[:40], seal(good), uint8(0))
	f.Add([]byte(`{"overlays": [{"name": "a", "props": {"vnetid": "1"}, "id": 18446744073709551615}], "vnics": null}`), []byte(`{}`), uint8(fuzzSealCur|fuzzSealPrev))
	f.Add([]byte(`{"vnics": [{"name": "v", "vlan": "12"}]}`), []byte{}, uint8(fuzzSealCur|fuzzNoPrev))
	f.Add([]byte(`{"vnics": [{"name": "v", "mtu": 1.5}]}`), []byte(`[]`), uint8(fuzzSealCur|fuzzSealPrev))
	f.Add([]byte(`{"format": "overlayd-state", "version": 2}`), []byte(`x`), uint8(0))
	f.Fuzz(func(t *testing.T, cur, prev []byte, mode uint8) {
		path := t.TempDir()
		d, err := Open(path)
		if err != nil {
			t.Fatal(err)
		}
		defer d.Close()
		curPath, prevPath := filepath.Join(path, fileName), filepath.Join(path, prevName)
		write := func(p string, data []byte, sealed, omit bool) {
			if omit {
				return
			}
			if sealed {
				data = seal(data)
			}
			if err := os.WriteFile(p, data, 0o600); err != nil {
				t.Fatal(err)
			}
		}
		write(curPath, cur, mode&fuzzSealCur != 0, mode&fuzzNoCur != 0)
		write(prevPath, prev, mode&fuzzSealPrev != 0, mode&fuzzNoPrev != 0)

		c, notes, err := d.Load()
		// A value of the wrong type in a sealed configuration is named by
		// its field in whatever reports the file as damaged.
		typeField := func(data []byte, sealed, omit bool) string {
			var te *json.UnmarshalTypeError
			if sealed && !omit && json.Valid(data) && errors.As(json.Unmarshal(data, new(Config)), &te) {
				return te.Field
			}
			return ""
		}
		curField := typeField(cur, mode&fuzzSealCur != 0, mode&fuzzNoCur != 0)
		prevField := typeField(prev, mode&fuzzSealPrev != 0, mode&fuzzNoPrev != 0)
		if err != nil {
			msg := err.Error()
			if !strings.Contains(msg, curPath) && !strings.Contains(msg, prevPath) {
				t.Fatalf("error %q names neither state file", msg)
			}
			for _, fl := range []string{curField, prevField} {
				if !strings.Contains(msg, fl) {
					t.Fatalf("error %q does not name field %s", msg, fl)
				}
			}
			return
		}
		if data, rerr := os.ReadFile(curPath); rerr == nil {
			if _, rerr := d.read(fileName); rerr == nil {
				if !json.Valid(data) {
					t.Fatalf("state.json that is not one JSON value loaded:\n%q", data)
				}
			} else if len(notes) == 0 || !strings.Contains(notes[0], curPath) || !strings.Contains(notes[0], curField) {
				t.Fatalf("damaged state.json (%v) used its mirror without a note naming it (and field %q): %q", rerr, curField, notes)
			}
		}
		if err := d.Save(c); err != nil {
			t.Fatal(err)
		}
		again, notes, err := d.Load()
		if err != nil || len(notes) != 0 {
			t.Fatalf("loading what was saved: notes %q, err %v", notes, err)
		}
		if !reflect.DeepEqual(again, c) {
			t.Fatalf("loaded %+v, saved and loaded back %+v", c, again)
		}
	})
}
