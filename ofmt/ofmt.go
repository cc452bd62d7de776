// Package ofmt prints tables the way illumos's libofmt does for dladm:
// aligned columns with a header for people, or ':'-separated fields
// without a header for scripts (-p -o).
package ofmt

import (
	"fmt"
	"io"
	"strings"
)

// Field is one column.
type Field struct {
	// Name is the header and the name -o selects it by (case-insensitive).
	Name string
	// Width is the column width including the gap after it.
	Width int
}

// Printer prints rows of selected fields.
type Printer struct {
	w        io.Writer
	fields   []Field
	parsable bool
	header   bool
}

// New selects fields from all with a -o argument: "" or "all" select every
// field. Parsable output needs an explicit selection. Unknown names are an
// error in parsable mode; otherwise they are skipped with a warning
// written to warn.
func New(w, warn io.Writer, all []Field, selection string, parsable bool) (*Printer, error) {
	p := &Printer{w: w, parsable: parsable}
	if selection == "" || strings.EqualFold(selection, "all") {
		if parsable {
			return nil, fmt.Errorf("output fields must be specified in parsable mode (-p needs -o <field>,...)")
		}
		p.fields = all
		return p, nil
	}
	for _, name := range strings.Split(selection, ",") {
		found := false
		for _, f := range all {
			if strings.EqualFold(f.Name, name) {
				p.fields = append(p.fields, f)
				found = true
				break
			}
		}
		if !found {
			if parsable {
				return nil, fmt.Errorf("unknown output field %q (fields: %s)", name, names(all))
			}
			fmt.Fprintf(warn, "warning: ignoring unknown output field %q\n", name)
		}
	}
	if len(p.fields) == 0 {
		return nil, fmt.Errorf("no valid output fields (fields: %s)", names(all))
	}
	return p, nil
}

func names(all []Field) string {
	var n []string
	for _, f := range all {
		n = append(n, strings.ToLower(f.Name))
	}
	return strings.Join(n, ",")
}

// Row prints one row; get returns the value of a field by its name.
func (p *Printer) Row(get func(field string) string) {
	vals := make([]string, len(p.fields))
	for i, f := range p.fields {
		vals[i] = get(f.Name)
	}
	if p.parsable {
		if len(vals) > 1 {
			for i, v := range vals {
				vals[i] = escape(v)
			}
		}
		fmt.Fprintln(p.w, strings.Join(vals, ":"))
		return
	}
	if !p.header {
		p.header = true
		hdr := make([]string, len(p.fields))
		for i, f := range p.fields {
			hdr[i] = f.Name
		}
		p.line(hdr)
	}
	for i, v := range vals {
		if v == "" {
			vals[i] = "--"
		}
	}
	p.line(vals)
}

// line aligns values in their columns; a value wider than its column
// pushes the rest of the line right by as much, with at least one space.
func (p *Printer) line(vals []string) {
	var b strings.Builder
	col := 0
	for i, v := range vals {
		if i > 0 {
			pad := col - b.Len()
			if pad < 1 {
				pad = 1
			}
			b.WriteString(strings.Repeat(" ", pad))
		}
		b.WriteString(v)
		col += p.fields[i].Width
	}
	fmt.Fprintln(p.w, b.String())
}

func escape(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return strings.ReplaceAll(v, ":", `\:`)
}
