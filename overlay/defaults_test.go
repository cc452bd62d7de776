package overlay

import (
	"strings"
	"testing"
)

// propSource is show-overlay's value and SOURCE of one property.
func propSource(t *testing.T, m *Manager, overlay, name string) (string, string) {
	t.Helper()
	p := propInfo(t, m, overlay, name)
	return p.Value, p.Source
}

// TestSiteDefaults: a site default is checked as its property checks
// values; new overlays take it, marked site, unless given the property;
// running ones keep theirs; set-linkprop makes it the operator's; reset
// brings the built-in default back for new overlays. Defaults and marks
// are saved and come back with a restart.
func TestSiteDefaults(t *testing.T) {
	m, _, d := newPersistManager(t)
	mustCreateOverlay(t, m, directReq("before", "1", false))

	for _, tc := range []struct {
		as   []Assignment
		want string
	}{
		{[]Assignment{{"mtu", "100"}}, "mtu"},
		{[]Assignment{{"vxlan/listen_port", "x"}}, "vxlan/listen_port"},
		{[]Assignment{{"vnetid", "7"}}, "each overlay gives its own"},
		{[]Assignment{{"datapath", "memory"}}, "--default-datapath"},
		{[]Assignment{{"nosuch/prop", "1"}}, "nosuch/prop"},
		// All or none: the good one is not kept either.
		{[]Assignment{{"mtu", "1300"}, {"direct/dest_ip", "not-an-ip"}}, "direct/dest_ip"},
	} {
		if err := m.SetDefaults(SetDefaultsRequest{Props: tc.as}); err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("SetDefaults(%v): %v, want an error naming %q", tc.as, err, tc.want)
		}
	}
	if len(saved(t, d).Defaults) != 0 {
		t.Fatalf("refused defaults were saved: %v", saved(t, d).Defaults)
	}

	if err := m.SetDefaults(SetDefaultsRequest{Props: []Assignment{{"mtu", "1300"}, {"direct/dest_port", "4790"}}}); err != nil {
		t.Fatal(err)
	}
	// dest_port is required: the site default fills it in.
	req := directReq("after", "2", false)
	req.Props = req.Props[:2]
	mustCreateOverlay(t, m, req)
	mustCreateOverlay(t, m, directReq("given", "3", false, Assignment{"mtu", "1200"}))
	for _, tc := range []struct{ overlay, prop, value, source string }{
		{"before", "mtu", "1400", "default"},
		{"after", "mtu", "1300", "site"},
		{"after", "direct/dest_port", "4790", "site"},
		{"after", "vxlan/listen_port", "4789", "default"},
		{"after", "direct/dest_ip", "192.0.2.2", "set"},
		{"given", "mtu", "1200", "set"},
		{"given", "direct/dest_port", "4789", "set"},
		{"after", "encap", "vxlan", ""},
	} {
		if v, s := propSource(t, m, tc.overlay, tc.prop); v != tc.value || s != tc.source {
			t.Errorf("%s %s: %s (%s), want %s (%s)", tc.overlay, tc.prop, v, s, tc.value, tc.source)
		}
	}
	if err := m.SetProps(SetPropsRequest{Name: "after", Props: []Assignment{{"mtu", "1300"}}}); err != nil {
		t.Fatal(err)
	}
	if _, s := propSource(t, m, "after", "mtu"); s != "set" {
		t.Errorf("after set-linkprop, mtu's source is %q, want set", s)
	}
	if err := m.ResetDefaults(ResetDefaultsRequest{Names: []string{"mtu"}}); err != nil {
		t.Fatal(err)
	}
	mustCreateOverlay(t, m, directReq("reset", "4", false))
	if v, s := propSource(t, m, "reset", "mtu"); v != "1400" || s != "default" {
		t.Errorf("after reset-default, a new overlay's mtu is %s (%s), want 1400 (default)", v, s)
	}
	if err := m.ResetDefaults(ResetDefaultsRequest{Names: []string{"vnetid"}}); err == nil {
		t.Error("reset-default of vnetid succeeded")
	}

	// A restart: the site default and the marks come back; the
	// overlays keep the values they were made with.
	m.Close()
	cfg := saved(t, d)
	m2, _ := newManager(t)
	if errs := m2.Restore(d, cfg); len(errs) != 0 {
		t.Fatal(errs)
	}
	var got []string
	for _, di := range m2.Defaults() {
		if di.Site != "" {
			got = append(got, di.Name+"="+di.Site)
		}
	}
	if strings.Join(got, ",") != "direct/dest_port=4790" {
		t.Errorf("site defaults after a restart: %v, want direct/dest_port=4790", got)
	}
	if v, s := propSource(t, m2, "after", "direct/dest_port"); v != "4790" || s != "site" {
		t.Errorf("after a restart, dest_port is %s (%s), want 4790 (site)", v, s)
	}
	if v, s := propSource(t, m2, "after", "mtu"); v != "1300" || s != "set" {
		t.Errorf("after a restart, mtu is %s (%s), want 1300 (set)", v, s)
	}
}
