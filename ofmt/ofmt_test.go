package ofmt

import (
	"bytes"
	"reflect"
	"strings"
	"testing"
)

var overlayFields = []Field{
	{Name: "LINK", Width: 6},
	{Name: "PROPERTY", Width: 10},
	{Name: "PERM", Width: 5},
}

// rows are field name -> value maps printed in order.
type rows []map[string]string

func render(t *testing.T, all []Field, selection string, parsable bool, rs rows) (out, warn string) {
	t.Helper()
	var w, wb bytes.Buffer
	p, err := New(&w, &wb, all, selection, parsable)
	if err != nil {
		t.Fatalf("New(%q, parsable=%v) error %v", selection, parsable, err)
	}
	for _, r := range rs {
		p.Row(func(f string) string { return r[f] })
	}
	p.Flush()
	return w.String(), wb.String()
}

func TestHuman(t *testing.T) {
	tests := []struct {
		name      string
		fields    []Field
		selection string
		rows      rows
		want      string
	}{
		{
			name:   "header and alignment; widths include the gap",
			fields: overlayFields,
			rows: rows{
				{"LINK": "ov0", "PROPERTY": "mtu", "PERM": "rw"},
				{"LINK": "ov1", "PROPERTY": "encap", "PERM": "r-"},
			},
			want: "" +
				"LINK  PROPERTY  PERM\n" +
				"ov0   mtu       rw\n" +
				"ov1   encap     r-\n",
		},
		{
			name:      "all selects every field",
			fields:    overlayFields,
			selection: "all",
			rows:      rows{{"LINK": "ov0", "PROPERTY": "mtu", "PERM": "rw"}},
			want:      "LINK  PROPERTY  PERM\nov0   mtu       rw\n",
		},
		{
			name:      "ALL in any case",
			fields:    overlayFields,
			selection: "AlL",
			rows:      rows{{"LINK": "ov0", "PROPERTY": "mtu", "PERM": "rw"}},
			want:      "LINK  PROPERTY  PERM\nov0   mtu       rw\n",
		},
		{
			name:   "a value filling its column widens it by one space",
			fields: overlayFields,
			rows:   rows{{"LINK": "abcdef", "PROPERTY": "0123456789", "PERM": "rw"}},
			want: "" +
				"LINK   PROPERTY   PERM\n" +
				"abcdef 0123456789 rw\n",
		},
		{
			name:   "a wide value widens its column for every row, header included",
			fields: overlayFields,
			rows: rows{
				{"LINK": "overlay_long", "PROPERTY": "vxlan/listen_port", "PERM": "rw"},
				{"LINK": "ov0", "PROPERTY": "mtu", "PERM": "rw"},
			},
			want: "" +
				"LINK         PROPERTY          PERM\n" +
				"overlay_long vxlan/listen_port rw\n" +
				"ov0          mtu               rw\n",
		},
		{
			name:   "only the overflowing column widens",
			fields: overlayFields,
			rows:   rows{{"LINK": "overlay1", "PROPERTY": "m", "PERM": "rw"}},
			want: "" +
				"LINK     PROPERTY  PERM\n" +
				"overlay1 m         rw\n",
		},
		{
			name:   "empty values print --",
			fields: overlayFields,
			rows:   rows{{"LINK": "ov0", "PROPERTY": "", "PERM": ""}},
			want: "" +
				"LINK  PROPERTY  PERM\n" +
				"ov0   --        --\n",
		},
		{
			name:   "missing values print -- too",
			fields: overlayFields,
			rows:   rows{{}},
			want: "" +
				"LINK  PROPERTY  PERM\n" +
				"--    --        --\n",
		},
		{
			name:   "colons and backslashes are not escaped for people",
			fields: overlayFields,
			rows:   rows{{"LINK": "ov0", "PROPERTY": `a:b\c`, "PERM": "rw"}},
			want: "" +
				"LINK  PROPERTY  PERM\n" +
				"ov0   a:b\\c     rw\n",
		},
		{
			name:      "selection order, case-insensitive",
			fields:    overlayFields,
			selection: "perm,Link",
			rows:      rows{{"LINK": "ov0", "PROPERTY": "mtu", "PERM": "rw"}},
			want: "" +
				"PERM LINK\n" +
				"rw   ov0\n",
		},
		{
			name:      "single field",
			fields:    overlayFields,
			selection: "PROPERTY",
			rows:      rows{{"PROPERTY": "mtu"}, {"PROPERTY": ""}},
			want:      "PROPERTY\nmtu\n--\n",
		},
		{
			name:      "header wider than its column",
			fields:    []Field{{Name: "DESTINATION", Width: 4}, {Name: "X", Width: 2}},
			selection: "",
			rows:      rows{{"DESTINATION": "a", "X": "b"}},
			want:      "DESTINATION X\na           b\n",
		},
		{
			name:   "no rows: the header alone, as dladm prints it",
			fields: []Field{{Name: "LINK", Width: 6}, {Name: "MTU", Width: 6}},
			rows:   nil,
			want:   "LINK  MTU\n",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, warn := render(t, tt.fields, tt.selection, false, tt.rows)
			if out != tt.want {
				t.Errorf("output:\n%s\nwant:\n%s", show(out), show(tt.want))
			}
			if warn != "" {
				t.Errorf("unexpected warning %q", warn)
			}
			for _, line := range strings.Split(strings.TrimSuffix(out, "\n"), "\n") {
				if strings.TrimRight(line, " ") != line {
					t.Errorf("line %q has trailing spaces", line)
				}
			}
		})
	}
}

// show makes spaces visible in failure messages.
func show(s string) string { return strings.ReplaceAll(s, " ", "·") }

func TestHumanColumnsAlign(t *testing.T) {
	// Every value that fits starts exactly where its header starts.
	out, _ := render(t, overlayFields, "", false, rows{
		{"LINK": "a", "PROPERTY": "b", "PERM": "c"},
		{"LINK": "abcde", "PROPERTY": "abcdefghi", "PERM": "r-"},
	})
	lines := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
	if len(lines) != 3 {
		t.Fatalf("got %d lines, want 3: %q", len(lines), out)
	}
	starts := []int{0, 6, 16}
	for _, line := range lines {
		for i, s := range starts {
			if s > 0 && line[s-1] != ' ' {
				t.Errorf("line %q: no gap before column %d", line, i)
			}
			if line[s] == ' ' {
				t.Errorf("line %q: column %d does not start at %d", line, i, s)
			}
		}
	}
}

func TestParsable(t *testing.T) {
	tests := []struct {
		name      string
		selection string
		rows      rows
		want      string
	}{
		{
			name:      "joined with colons, no header",
			selection: "link,property,perm",
			rows: rows{
				{"LINK": "ov0", "PROPERTY": "mtu", "PERM": "rw"},
				{"LINK": "ov1", "PROPERTY": "encap", "PERM": "r-"},
			},
			want: "ov0:mtu:rw\nov1:encap:r-\n",
		},
		{
			name:      "no alignment for wide values",
			selection: "link,perm",
			rows:      rows{{"LINK": "a_very_long_overlay_name", "PERM": "rw"}},
			want:      "a_very_long_overlay_name:rw\n",
		},
		{
			name:      "empty values are empty",
			selection: "link,property,perm",
			rows:      rows{{"LINK": "ov0"}, {}},
			want:      "ov0::\n::\n",
		},
		{
			name:      "colon and backslash escaped with several fields",
			selection: "link,property",
			rows: rows{
				{"LINK": "ov0", "PROPERTY": "2001:db8::1"},
				{"LINK": `a\b`, "PROPERTY": `x\:y`},
			},
			want: "ov0:2001\\:db8\\:\\:1\n" +
				"a\\\\b:x\\\\\\:y\n",
		},
		{
			name:      "no escaping with one field",
			selection: "property",
			rows: rows{
				{"PROPERTY": "2001:db8::1"},
				{"PROPERTY": `a\b:c`},
				{"PROPERTY": ""},
			},
			want: "2001:db8::1\na\\b:c\n\n",
		},
		{
			name:      "selection order and case",
			selection: "PERM,Link",
			rows:      rows{{"LINK": "ov0", "PERM": "rw"}},
			want:      "rw:ov0\n",
		},
		{
			name:      "no rows",
			selection: "link",
			rows:      nil,
			want:      "",
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			out, warn := render(t, overlayFields, tt.selection, true, tt.rows)
			if out != tt.want {
				t.Errorf("output %q, want %q", out, tt.want)
			}
			if warn != "" {
				t.Errorf("unexpected warning %q", warn)
			}
		})
	}
}

func TestParsableEscapeRoundTrip(t *testing.T) {
	vals := []string{`a:b`, `c\d`, `\:`, `::`, `\\`, ``, `plain`}
	fields := []Field{{Name: "A"}, {Name: "B"}}
	for _, a := range vals {
		for _, b := range vals {
			out, _ := render(t, fields, "a,b", true, rows{{"A": a, "B": b}})
			got := splitParsable(strings.TrimSuffix(out, "\n"))
			if want := []string{a, b}; !reflect.DeepEqual(got, want) {
				t.Errorf("values %q printed as %q split back to %q", want, out, got)
			}
		}
	}
}

// splitParsable splits a parsable line the way a script would.
func splitParsable(line string) []string {
	var out []string
	var cur strings.Builder
	for i := 0; i < len(line); i++ {
		switch c := line[i]; {
		case c == '\\' && i+1 < len(line):
			i++
			cur.WriteByte(line[i])
		case c == ':':
			out = append(out, cur.String())
			cur.Reset()
		default:
			cur.WriteByte(c)
		}
	}
	return append(out, cur.String())
}

func TestGetReceivesFieldName(t *testing.T) {
	var asked []string
	var w bytes.Buffer
	p, err := New(&w, &w, overlayFields, "perm,link", false)
	if err != nil {
		t.Fatal(err)
	}
	p.Row(func(f string) string { asked = append(asked, f); return "" })
	if want := []string{"PERM", "LINK"}; !reflect.DeepEqual(asked, want) {
		t.Errorf("get called with %q, want %q (the declared names)", asked, want)
	}
}

func TestNewErrors(t *testing.T) {
	tests := []struct {
		name      string
		selection string
		parsable  bool
		wantErr   string // "" means success
		wantWarn  string
		wantCols  []string
	}{
		{"parsable needs -o", "", true, "output fields must be specified in parsable mode", "", nil},
		{"parsable with all", "all", true, "", "", []string{"LINK", "PROPERTY", "PERM"}},
		{"parsable with ALL", "ALL", true, "", "", []string{"LINK", "PROPERTY", "PERM"}},
		{"parsable unknown", "link,bogus", true, `unknown output field "bogus" (fields: link,property,perm)`, "", nil},
		{"parsable all unknown", "bogus", true, `unknown output field "bogus"`, "", nil},
		{"human unknown warns", "link,bogus,perm", false, "",
			"warning: ignoring unknown output field \"bogus\"\n", []string{"LINK", "PERM"}},
		{"human two unknown warn twice", "x,link,y", false, "",
			"warning: ignoring unknown output field \"x\"\nwarning: ignoring unknown output field \"y\"\n", []string{"LINK"}},
		{"human all unknown", "bogus", false, "no valid output fields (fields: link,property,perm)",
			"warning: ignoring unknown output field \"bogus\"\n", nil},
		{"human default", "", false, "", "", []string{"LINK", "PROPERTY", "PERM"}},
		{"human case-insensitive", "LiNk,PERM", false, "", "", []string{"LINK", "PERM"}},
		{"parsable case-insensitive", "Property", true, "", "", []string{"PROPERTY"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			var w, warn bytes.Buffer
			p, err := New(&w, &warn, overlayFields, tt.selection, tt.parsable)
			if warn.String() != tt.wantWarn {
				t.Errorf("warnings %q, want %q", warn.String(), tt.wantWarn)
			}
			if tt.wantErr != "" {
				if err == nil {
					t.Fatalf("New(%q, parsable=%v) succeeded, want error %q", tt.selection, tt.parsable, tt.wantErr)
				}
				if !strings.Contains(err.Error(), tt.wantErr) {
					t.Errorf("New(%q) error %q, want it to contain %q", tt.selection, err, tt.wantErr)
				}
				if p != nil {
					t.Errorf("New returned a printer with an error")
				}
				return
			}
			if err != nil {
				t.Fatalf("New(%q, parsable=%v) error %v", tt.selection, tt.parsable, err)
			}
			var cols []string
			p.Row(func(f string) string { cols = append(cols, f); return "v" })
			p.Flush()
			if !reflect.DeepEqual(cols, tt.wantCols) {
				t.Errorf("columns %q, want %q", cols, tt.wantCols)
			}
			if w.Len() == 0 {
				t.Errorf("Row printed nothing")
			}
		})
	}
}

func TestFieldsNotShared(t *testing.T) {
	// Selecting fields must not modify the caller's field list.
	all := append([]Field(nil), overlayFields...)
	var w bytes.Buffer
	if _, err := New(&w, &w, all, "perm,link", false); err != nil {
		t.Fatal(err)
	}
	if !reflect.DeepEqual(all, overlayFields) {
		t.Errorf("New changed the field list to %v", all)
	}
}
