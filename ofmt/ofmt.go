// Package ofmt prints tables the way illumos's libofmt does for dladm:
// aligned columns with a header for people (printed even when there is no
// row), or ':'-separated fields without a header for scripts (-p -o).
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

// Printer prints rows of selected fields. Parsable rows are written as
// they come; the others are kept until Flush, which sizes each column to
// its widest value so that the columns stay aligned.
type Printer struct {
	w        io.Writer
	fields   []Field
	parsable bool
	rows     [][]string
}

// New selects fields from all with a -o argument: "" or "all" select every
// field. Parsable output needs a selection, "all" included. Unknown names
// are an error in parsable mode; otherwise they are skipped with a
// warning written to warn.
func New(w, warn io.Writer, all []Field, selection string, parsable bool) (*Printer, error) {
	p := &Printer{w: w, parsable: parsable}
	if selection == "" && parsable {
		return nil, fmt.Errorf("output fields must be specified in parsable mode (-p needs -o <field>,... or -o all)")
	}
	if selection == "" || strings.EqualFold(selection, "all") {
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

// Row adds one row; get returns the value of a field by its name. An
// empty value prints as "--" for people.
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
	for i, v := range vals {
		if v == "" {
			vals[i] = "--"
		}
	}
	p.rows = append(p.rows, vals)
}

// Flush prints, for people, the header and the rows added since the last
// Flush, each column as wide as its field's width or, when wider, its
// widest value and a gap. Parsable output has nothing to flush.
func (p *Printer) Flush() {
	if p.parsable {
		return
	}
	widths := make([]int, len(p.fields))
	hdr := make([]string, len(p.fields))
	for i, f := range p.fields {
		hdr[i] = f.Name
		widths[i] = max(f.Width, len(f.Name)+1)
		for _, r := range p.rows {
			widths[i] = max(widths[i], len(r[i])+1)
		}
	}
	p.line(widths, hdr)
	for _, r := range p.rows {
		p.line(widths, r)
	}
	p.rows = nil
}

// line aligns values in their columns (the last one not padded).
func (p *Printer) line(widths []int, vals []string) {
	var b strings.Builder
	for i, v := range vals {
		b.WriteString(v)
		if i < len(vals)-1 {
			b.WriteString(strings.Repeat(" ", widths[i]-len(v)))
		}
	}
	fmt.Fprintln(p.w, b.String())
}

func escape(v string) string {
	v = strings.ReplaceAll(v, `\`, `\\`)
	return strings.ReplaceAll(v, ":", `\:`)
}
