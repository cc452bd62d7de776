// Package prop implements the typed property system shared by overlays and
// their plugins: every property has a name, a type, permissions, whether it
// is required, an optional default and optional allowed values or a range
// (SPEC section 3). Values are kept as canonical text so that they print,
// persist and compare the same way everywhere.
package prop

import (
	"fmt"
	"net/netip"
	"slices"
	"strconv"
	"strings"
)

// Type is the value type of a property, numbered as illumos numbers them.
type Type int

// Property types.
const (
	Int    Type = 1
	Uint   Type = 2
	IP     Type = 3
	String Type = 4
)

func (t Type) String() string {
	switch t {
	case Int:
		return "INT"
	case Uint:
		return "UINT"
	case IP:
		return "IP"
	case String:
		return "STRING"
	}
	return fmt.Sprintf("Type(%d)", int(t))
}

// Perm says whether an operator may change a property after creation.
type Perm int

// Permissions.
const (
	ReadOnly  Perm = iota // r-: set at creation (or assigned), never changed
	ReadWrite             // rw: set at creation or with set-linkprop
)

func (p Perm) String() string {
	if p == ReadWrite {
		return "rw"
	}
	return "r-"
}

// Desc describes one property.
type Desc struct {
	Name     string
	Type     Type
	Perm     Perm
	Required bool
	// Default is the canonical text of the default value, "" for none.
	Default string
	// Min and Max bound a Uint or Int value when HasRange is set.
	HasRange bool
	Min, Max int64
	// Possible lists the allowed values of a String property; empty means
	// any value.
	Possible []string
	// Check, when set, validates a parsed value further (for example that
	// an IP is usable as an underlay address). Its error text is shown to
	// the operator after the property name.
	Check func(canonical string) error
	// Help is a one-line description for --help and documentation.
	Help string
}

// Error reports a property value that cannot be accepted. Its text names
// the property, the value and what is wrong.
type Error struct {
	Prop   string
	Value  string
	Reason string
}

func (e *Error) Error() string {
	if e.Value == "" {
		return fmt.Sprintf("property %s: %s", e.Prop, e.Reason)
	}
	return fmt.Sprintf("property %s: invalid value %q: %s", e.Prop, e.Value, e.Reason)
}

// Parse checks text against the property's type, range and allowed values
// and returns its canonical form.
func (d *Desc) Parse(text string) (string, error) {
	bad := func(format string, a ...any) (string, error) {
		return "", &Error{Prop: d.Name, Value: text, Reason: fmt.Sprintf(format, a...)}
	}
	var canon string
	switch d.Type {
	case Uint:
		v, err := strconv.ParseUint(text, 10, 64)
		if err != nil {
			return bad("not an unsigned decimal integer")
		}
		if d.HasRange && (v < uint64(d.Min) || v > uint64(d.Max)) {
			return bad("out of range %d-%d", d.Min, d.Max)
		}
		canon = strconv.FormatUint(v, 10)
	case Int:
		v, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return bad("not a decimal integer")
		}
		if d.HasRange && (v < d.Min || v > d.Max) {
			return bad("out of range %d-%d", d.Min, d.Max)
		}
		canon = strconv.FormatInt(v, 10)
	case IP:
		a, err := ParseIP(text)
		if err != nil {
			return bad("not an IPv4 or IPv6 address")
		}
		canon = a.String()
	case String:
		if len(d.Possible) > 0 && !slices.Contains(d.Possible, text) {
			return bad("must be one of %s", strings.Join(d.Possible, ", "))
		}
		canon = text
	default:
		return bad("property has unknown type %v", d.Type)
	}
	if d.Check != nil {
		if err := d.Check(canon); err != nil {
			return bad("%v", err)
		}
	}
	return canon, nil
}

// PossibleText renders the allowed values the way show-overlay prints
// them: a range as "min-max", a list comma-joined, "" when unconstrained.
func (d *Desc) PossibleText() string {
	switch {
	case d.HasRange:
		return fmt.Sprintf("%d-%d", d.Min, d.Max)
	case len(d.Possible) > 0:
		return strings.Join(d.Possible, ",")
	}
	return ""
}

// ParseIP parses an IPv4 or IPv6 address; an IPv4-mapped IPv6 address is
// the same as the IPv4 address, as in illumos.
func ParseIP(text string) (netip.Addr, error) {
	a, err := netip.ParseAddr(text)
	if err != nil {
		return netip.Addr{}, err
	}
	if a.Zone() != "" {
		return netip.Addr{}, fmt.Errorf("zoned address %q not allowed", text)
	}
	return a.Unmap(), nil
}

// CheckUnderlayIP rejects the address forms that illumos refuses for
// listen and destination addresses: multicast, IPv4-compatible IPv6
// (::a.b.c.d) and 6to4 (2002::/16).
func CheckUnderlayIP(canonical string) error {
	a, err := netip.ParseAddr(canonical)
	if err != nil {
		return err
	}
	switch {
	case a.IsMulticast():
		return fmt.Errorf("multicast addresses are not allowed")
	case a.Is6() && isV4Compatible(a):
		return fmt.Errorf("IPv4-compatible IPv6 addresses are not allowed; use the IPv4 address")
	case a.Is6() && netip.MustParsePrefix("2002::/16").Contains(a):
		return fmt.Errorf("6to4 addresses are not allowed")
	}
	return nil
}

func isV4Compatible(a netip.Addr) bool {
	b := a.As16()
	for _, x := range b[:12] {
		if x != 0 {
			return false
		}
	}
	// :: and ::1 are not IPv4-compatible forms.
	return !(b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] <= 1)
}

// Set holds the property descriptions of one object (an overlay with its
// two plugins, a VNIC) and the values set on it.
type Set struct {
	descs []Desc
	index map[string]int
	vals  map[string]string
}

// NewSet returns an empty set over the given descriptions, in order.
func NewSet(groups ...[]Desc) *Set {
	s := &Set{index: map[string]int{}, vals: map[string]string{}}
	for _, g := range groups {
		for _, d := range g {
			s.index[d.Name] = len(s.descs)
			s.descs = append(s.descs, d)
		}
	}
	return s
}

// Descs returns the descriptions in display order.
func (s *Set) Descs() []Desc { return s.descs }

// Desc returns the description of a property.
func (s *Set) Desc(name string) (Desc, bool) {
	i, ok := s.index[name]
	if !ok {
		return Desc{}, false
	}
	return s.descs[i], true
}

// Set parses text for the named property and stores it.
func (s *Set) Set(name, text string) error {
	d, ok := s.Desc(name)
	if !ok {
		return &Error{Prop: name, Reason: "no such property"}
	}
	v, err := d.Parse(text)
	if err != nil {
		return err
	}
	s.vals[name] = v
	return nil
}

// SetCanonical stores an already canonical value without parsing it: for
// values the daemon assigns itself (varpd/id) and for restoring state.
func (s *Set) SetCanonical(name, value string) { s.vals[name] = value }

// Value returns the explicitly set value of a property.
func (s *Set) Value(name string) (string, bool) {
	v, ok := s.vals[name]
	return v, ok
}

// Get returns the value of a property, or its default, or "".
func (s *Set) Get(name string) string {
	if v, ok := s.vals[name]; ok {
		return v
	}
	if d, ok := s.Desc(name); ok {
		return d.Default
	}
	return ""
}

// Uint returns a Uint property's value, 0 when it has none.
func (s *Set) Uint(name string) uint64 {
	v, _ := strconv.ParseUint(s.Get(name), 10, 64)
	return v
}

// IP returns an IP property's value, the zero Addr when it has none.
func (s *Set) IP(name string) netip.Addr {
	a, _ := netip.ParseAddr(s.Get(name))
	return a
}

// Missing returns the required properties that have neither a value nor
// a default, in display order.
func (s *Set) Missing() []string {
	var out []string
	for _, d := range s.descs {
		if d.Required && s.Get(d.Name) == "" {
			out = append(out, d.Name)
		}
	}
	return out
}

// Values returns a copy of the explicitly set values.
func (s *Set) Values() map[string]string {
	out := make(map[string]string, len(s.vals))
	for k, v := range s.vals {
		out[k] = v
	}
	return out
}

// Clone returns an independent copy sharing the descriptions.
func (s *Set) Clone() *Set {
	c := &Set{descs: s.descs, index: s.index, vals: s.Values()}
	return c
}

// ParseAssignments splits "-p" arguments ("a=1,b=2", possibly repeated)
// into ordered name/value pairs. A value cannot contain a comma, as in
// dladm.
func ParseAssignments(args []string) ([][2]string, error) {
	var out [][2]string
	for _, arg := range args {
		for _, kv := range strings.Split(arg, ",") {
			if kv == "" {
				continue
			}
			name, val, ok := strings.Cut(kv, "=")
			if !ok || name == "" {
				return nil, fmt.Errorf("invalid property assignment %q: expected <prop>=<value>", kv)
			}
			out = append(out, [2]string{name, val})
		}
	}
	return out, nil
}
