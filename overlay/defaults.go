package overlay

import (
	"fmt"
	"maps"
	"slices"
	"strings"

	"overlaynet/encap"
	"overlaynet/prop"
	"overlaynet/search"
)

// DefaultInfo describes a property a site default may be given for: its
// built-in default and the site's, as show-defaults lists them.
type DefaultInfo struct {
	Name string `json:"name"`
	// Plugin is whose property it is: "encap vxlan", "search svp", or
	// "overlay" for every overlay's (mtu).
	Plugin   string `json:"plugin"`
	Required bool   `json:"required"`
	Default  string `json:"default"`
	Site     string `json:"site,omitempty"`
	Possible string `json:"possible"`
}

// SetDefaultsRequest sets site defaults (overlayadm set-default).
type SetDefaultsRequest struct {
	Props []Assignment `json:"props"`
}

// ResetDefaultsRequest removes site defaults (overlayadm reset-default).
type ResetDefaultsRequest struct {
	Names []string `json:"names"`
}

// siteDesc is a property a site default may be given for, with whose.
type siteDesc struct {
	prop.Desc
	plugin string
}

// siteDescs lists, in show-defaults order, the read-write properties an
// overlay takes at creation: mtu, then every encapsulation's, then every
// search plugin's (for a destination of address and port, its fullest).
// vnetid and datapath are not among them: every overlay gives its own
// vnetid, and datapath's default is overlayd --default-datapath.
func siteDescs() []siteDesc {
	out := []siteDesc{{prop.Desc{Name: PropMTU, Type: prop.Uint, Perm: prop.ReadWrite, Default: fmt.Sprint(DefaultMTU),
		HasRange: true, Min: MinMTU, Max: MaxMTU}, "overlay"}}
	for _, name := range encap.Names() {
		enc, _ := encap.Lookup(name)
		for _, d := range enc.Props() {
			if d.Perm == prop.ReadWrite {
				out = append(out, siteDesc{d, "encap " + name})
			}
		}
	}
	for _, name := range search.Names() {
		sp, _ := search.Lookup(name)
		for _, d := range sp.Props(encap.DestIP | encap.DestPort) {
			if d.Perm == prop.ReadWrite {
				out = append(out, siteDesc{d, "search " + name})
			}
		}
	}
	return out
}

// lookupSiteDesc finds a property site defaults may be given for, or
// says which may.
func lookupSiteDesc(name string) (siteDesc, error) {
	all := siteDescs()
	if i := slices.IndexFunc(all, func(d siteDesc) bool { return d.Name == name }); i >= 0 {
		return all[i], nil
	}
	why := ""
	switch name {
	case PropVNetID:
		why = ": each overlay gives its own (-v)"
	case PropDataPath:
		why = ": its default is overlayd --default-datapath"
	}
	names := make([]string, len(all))
	for i, d := range all {
		names[i] = d.Name
	}
	return siteDesc{}, fmt.Errorf("property %s has no site default%s (those that may: %s)", name, why, strings.Join(names, ", "))
}

// Defaults lists every property a site default may be given for, with
// its built-in default and the site's.
func (m *Manager) Defaults() []DefaultInfo {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []DefaultInfo
	for _, d := range siteDescs() {
		out = append(out, DefaultInfo{Name: d.Name, Plugin: d.plugin, Required: d.Required, Default: d.Default,
			Site: m.saved.Defaults[d.Name], Possible: d.PossibleText()})
	}
	return out
}

// SetDefaults sets site defaults, all or none: each value is checked as
// the property itself checks it. Overlays created from then on take
// them; running ones keep their values.
func (m *Manager) SetDefaults(req SetDefaultsRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(req.Props) == 0 {
		return fmt.Errorf("no property to set a default for")
	}
	next := maps.Clone(m.saved.Defaults)
	if next == nil {
		next = map[string]string{}
	}
	for _, a := range req.Props {
		d, err := lookupSiteDesc(a.Name)
		if err != nil {
			return err
		}
		s := prop.NewSet([]prop.Desc{d.Desc})
		if err := s.Set(a.Name, a.Value); err != nil {
			return err
		}
		next[a.Name], _ = s.Value(a.Name)
	}
	return m.saveDefaults(next, req.Props, "site default set")
}

// ResetDefaults removes site defaults: the built-in ones apply again to
// new overlays. A property without a site default is left as it is.
func (m *Manager) ResetDefaults(req ResetDefaultsRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if len(req.Names) == 0 {
		return fmt.Errorf("no property to reset the default of")
	}
	next := maps.Clone(m.saved.Defaults)
	var as []Assignment
	for _, name := range req.Names {
		if _, err := lookupSiteDesc(name); err != nil {
			return err
		}
		delete(next, name)
		as = append(as, Assignment{Name: name})
	}
	return m.saveDefaults(next, as, "site default reset")
}

// saveDefaults makes next the site defaults, saved, or leaves the old
// ones when they cannot be saved.
func (m *Manager) saveDefaults(next map[string]string, as []Assignment, what string) error {
	if len(next) == 0 {
		next = nil
	}
	old := m.saved.Defaults
	m.saved.Defaults = next
	if err := m.save(); err != nil {
		m.saved.Defaults = old
		return fmt.Errorf("site defaults unchanged: they %v", err)
	}
	for _, a := range as {
		m.log.Info(what, "prop", a.Name, "value", next[a.Name])
	}
	return nil
}

// applySiteDefaults gives a new overlay's properties the site defaults
// the request does not set, and returns which it gave.
func applySiteDefaults(props *prop.Set, site map[string]string, given []Assignment) (map[string]bool, error) {
	marks := map[string]bool{}
	for _, d := range props.Descs() {
		v, ok := site[d.Name]
		if !ok || d.Perm != prop.ReadWrite || slices.ContainsFunc(given, func(a Assignment) bool { return a.Name == d.Name }) {
			continue
		}
		if err := props.Set(d.Name, v); err != nil {
			return nil, fmt.Errorf("site default %s=%s: %w (overlayadm set-default or reset-default)", d.Name, v, err)
		}
		marks[d.Name] = true
	}
	return marks, nil
}

// source is where a property's value comes from, for show-overlay.
func (ov *overlay) source(d prop.Desc) string {
	_, set := ov.props.Value(d.Name)
	switch {
	case d.Perm != prop.ReadWrite:
		return ""
	case ov.site[d.Name]:
		return "site"
	case set:
		return "set"
	case d.Default != "":
		return "default"
	}
	return ""
}
