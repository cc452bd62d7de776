package overlay

import (
	"fmt"
	"strings"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/prop"
	"overlaynet/search"
	"overlaynet/underlayns"
)

// Generic property names.
const (
	PropMTU      = "mtu"
	PropVNetID   = "vnetid"
	PropEncap    = "encap"
	PropSearch   = "search"
	PropVarpdID  = "varpd/id"
	PropDataPath = "datapath"
	// PropUnderlayNetNS is the network namespace of the overlay's
	// underlay socket, set at creation ("" is overlayd's own).
	PropUnderlayNetNS = "underlay_netns"
	// PropProtection is a VNIC's illumos link protection: mac-nospoof
	// (the default) or none.
	PropProtection = "protection"
)

// Values of the protection property.
const (
	ProtectionMACNoSpoof = "mac-nospoof"
	ProtectionNone       = "none"
)

// MTU limits of an overlay (illumos: 576-8900, default 1400).
const (
	DefaultMTU = 1400
	MinMTU     = 576
	MaxMTU     = 8900
)

// overlayProps builds the property set of an overlay with the given
// plugins, in the order show-overlay prints them: mtu, vnetid, encap,
// varpd/id, the encapsulation's properties, search, the search plugin's.
func overlayProps(enc encap.Plugin, sp *search.Plugin, defaultDP string, dps []string) *prop.Set {
	head := []prop.Desc{
		{Name: PropMTU, Type: prop.Uint, Perm: prop.ReadWrite, Default: fmt.Sprint(DefaultMTU),
			HasRange: true, Min: MinMTU, Max: MaxMTU,
			Help: "largest frame payload carried; applied to the overlay's VNICs"},
		{Name: PropVNetID, Type: prop.Uint, Perm: prop.ReadWrite, Required: true,
			HasRange: true, Min: 0, Max: int64(enc.MaxVNetID()),
			Help: "virtual network id written into every packet"},
		{Name: PropEncap, Type: prop.String, Perm: prop.ReadOnly, Required: true,
			Possible: encap.Names(), Help: "encapsulation plugin"},
		{Name: PropVarpdID, Type: prop.Uint, Perm: prop.ReadOnly,
			Help: "search plugin instance id, assigned by overlayd"},
	}
	searchDesc := []prop.Desc{
		{Name: PropSearch, Type: prop.String, Perm: prop.ReadOnly, Required: true,
			Possible: search.Names(), Help: "search plugin"},
	}
	tail := []prop.Desc{
		{Name: PropDataPath, Type: prop.String, Perm: prop.ReadOnly, Default: defaultDP, Possible: dps,
			Help: "what carries the frames (overlayd --help lists the data paths); set at creation"},
		underlayNetNSDesc,
	}
	return prop.NewSet(head, enc.Props(), searchDesc, sp.Props(enc.Dest()), tail)
}

// underlayNetNSDesc describes underlay_netns.
var underlayNetNSDesc = prop.Desc{Name: PropUnderlayNetNS, Type: prop.String, Perm: prop.ReadOnly,
	Check: func(v string) error { _, err := underlayns.Path(v); return err },
	Help:  "network namespace of the underlay socket (a name from ip netns, or a path such as /proc/PID/ns/net); overlayd's own by default; set at creation"}

// applyAssignments sets operator-given properties on s. With create set,
// read-only properties are refused too, since they come from -e, -s or
// overlayd itself; either way read-only properties cannot be set.
func applyAssignments(s *prop.Set, as []Assignment, searchName string) error {
	for _, a := range as {
		d, ok := s.Desc(a.Name)
		if !ok {
			return unknownProp(a.Name, s, searchName)
		}
		if d.Perm != prop.ReadWrite {
			return fmt.Errorf("property %s is read-only", a.Name)
		}
		if err := s.Set(a.Name, a.Value); err != nil {
			return err
		}
	}
	return nil
}

func unknownProp(name string, s *prop.Set, searchName string) error {
	if plugin, _, ok := strings.Cut(name, "/"); ok {
		if _, isSearch := search.Lookup(plugin); isSearch && plugin != searchName {
			return fmt.Errorf("property %s belongs to the %s search plugin, but this overlay uses %s", name, plugin, searchName)
		}
		if _, isEncap := encap.Lookup(plugin); isEncap {
			return fmt.Errorf("property %s belongs to the %s encapsulation, which this overlay does not use", name, plugin)
		}
	}
	var names []string
	for _, d := range s.Descs() {
		if d.Perm == prop.ReadWrite {
			names = append(names, d.Name)
		}
	}
	return fmt.Errorf("unknown property %s (settable properties: %s)", name, strings.Join(names, ", "))
}

func missingError(missing []string) error {
	if len(missing) == 1 {
		return fmt.Errorf("missing required property %s", missing[0])
	}
	return fmt.Errorf("missing required properties %s", strings.Join(missing, ", "))
}

// vnicProps is the property set of a VNIC on an overlay with the given MTU.
func vnicProps(overlayMTU int) *prop.Set {
	return prop.NewSet([]prop.Desc{
		{Name: PropMTU, Type: prop.Uint, Perm: prop.ReadWrite, Default: fmt.Sprint(overlayMTU),
			HasRange: true, Min: MinMTU, Max: int64(overlayMTU),
			Help: "the VNIC's MTU, at most the overlay's"},
		{Name: PropProtection, Type: prop.String, Perm: prop.ReadWrite, Default: ProtectionMACNoSpoof,
			Possible: []string{ProtectionMACNoSpoof, ProtectionNone},
			Help:     "mac-nospoof: frames the VNIC sends from another MAC than its own are dropped (drop-spoofed)"},
	})
}

// PropertyHelp describes, for create-overlay --help, every property an
// operator may give at creation, made from the descriptions of the
// registered encapsulations and search plugins so that the help cannot
// drift from what is accepted.
func PropertyHelp() string {
	var b strings.Builder
	line := func(d prop.Desc) {
		val := "<" + strings.ToLower(d.Type.String()) + ">"
		switch {
		case d.HasRange:
			val = fmt.Sprintf("<%d-%d>", d.Min, d.Max)
		case len(d.Possible) > 0:
			val = strings.Join(d.Possible, "|")
		}
		text := d.Help
		switch {
		case d.Default != "":
			text += "; default " + d.Default
		case d.Required:
			text += " (required)"
		}
		fmt.Fprintf(&b, "  %-28s %s\n", d.Name+"="+val, text)
	}
	line(prop.Desc{Name: PropMTU, Type: prop.Uint, HasRange: true, Min: MinMTU, Max: MaxMTU, Default: fmt.Sprint(DefaultMTU),
		Help: "largest frame payload carried"})
	line(prop.Desc{Name: PropDataPath, Type: prop.String, Possible: datapath.Names(),
		Default: "overlayd --default-datapath", Help: "what carries the frames, set at creation"})
	line(prop.Desc{Name: PropUnderlayNetNS, Type: prop.String, Default: "overlayd's own",
		Help: "network namespace of the underlay socket (ip netns name or path), set at creation"})
	for _, name := range datapath.Names() {
		d, _ := datapath.Lookup(name)
		fmt.Fprintf(&b, "  %-28s   %s: %s\n", "", name, d.Help)
	}
	for _, name := range encap.Names() {
		enc, _ := encap.Lookup(name)
		fmt.Fprintf(&b, "encapsulation %s:\n", name)
		for _, d := range enc.Props() {
			if d.Perm == prop.ReadWrite {
				line(d)
			}
		}
		for _, sname := range search.Names() {
			sp, _ := search.Lookup(sname)
			descs := sp.Props(enc.Dest())
			fmt.Fprintf(&b, "search plugin %s:", sname)
			if len(descs) == 0 {
				b.WriteString(" no properties")
			}
			b.WriteString("\n")
			for _, d := range descs {
				if d.Perm == prop.ReadWrite {
					line(d)
				}
			}
		}
	}
	return strings.TrimSuffix(b.String(), "\n")
}
