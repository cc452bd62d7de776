package prop

import (
	"errors"
	"testing"
)

// FuzzParse checks that Parse never panics, that its canonical forms are
// fixed points, and that errors name the property and the value.
func FuzzParse(f *testing.F) {
	for _, s := range []string{"0", "0042", "-7", "+7", "18446744073709551616", "",
		"192.0.2.1", "::ffff:192.0.2.1", "::192.0.2.1", "2002::1", "ff02::1", "::",
		"fe80::1%eth0", "svp", "x"} {
		f.Add(s)
	}
	descs := []Desc{
		{Name: "u", Type: Uint},
		{Name: "ur", Type: Uint, HasRange: true, Min: 1, Max: 65535},
		{Name: "i", Type: Int},
		{Name: "ir", Type: Int, HasRange: true, Min: -100, Max: 100},
		{Name: "ip", Type: IP},
		{Name: "uip", Type: IP, Check: CheckUnderlayIP},
		{Name: "s", Type: String},
		{Name: "sp", Type: String, Possible: []string{"direct", "files", "svp"}},
	}
	f.Fuzz(func(t *testing.T, text string) {
		for _, d := range descs {
			canon, err := d.Parse(text)
			if err != nil {
				var pe *Error
				if !errors.As(err, &pe) || pe.Prop != d.Name || pe.Value != text || pe.Reason == "" {
					t.Fatalf("%s: Parse(%q) error %#v", d.Name, text, err)
				}
				continue
			}
			again, err := d.Parse(canon)
			if err != nil || again != canon {
				t.Fatalf("%s: Parse(%q) = %q, but Parse(%q) = %q, %v", d.Name, text, canon, canon, again, err)
			}
			// An accepted underlay address is accepted in its
			// original spelling too (mapped and unmapped agree).
			if d.Check != nil && CheckUnderlayIP(text) != nil {
				t.Fatalf("%s: accepted %q as %q, but CheckUnderlayIP(%q) = %v", d.Name, text, canon, text, CheckUnderlayIP(text))
			}
		}
	})
}
