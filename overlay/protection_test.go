package overlay

import (
	"strings"
	"testing"

	"overlaynet/state"
)

// TestProtection: a VNIC is under mac-nospoof unless created or set
// otherwise; set-linkprop on the VNIC reaches the data path at once and
// is saved, and a restart brings the saved value back.
func TestProtection(t *testing.T) {
	m, dp, d := newPersistManager(t)
	mustCreateOverlay(t, m, directReq("net0", "42", false))
	mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn0", Overlay: "net0", MAC: "2:8:20:0:0:1"})
	mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn1", Overlay: "net0", MAC: "2:8:20:0:0:2",
		Props: []Assignment{{Name: PropProtection, Value: ProtectionNone}}})
	noSpoof := func(name string) bool {
		t.Helper()
		cfg, ok := dp.Overlay("net0").VNIC(name)
		if !ok {
			t.Fatalf("the data path has no VNIC %s", name)
		}
		return cfg.NoSpoof
	}
	if !noSpoof("vn0") || noSpoof("vn1") {
		t.Fatalf("at creation: vn0 nospoof %v (want true), vn1 %v (want false)", noSpoof("vn0"), noSpoof("vn1"))
	}
	if err := m.SetProps(SetPropsRequest{Name: "vn0", Props: []Assignment{{Name: PropProtection, Value: ProtectionNone}}}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetProps(SetPropsRequest{Name: "vn1", Props: []Assignment{{Name: PropProtection, Value: ProtectionMACNoSpoof}}}); err != nil {
		t.Fatal(err)
	}
	if noSpoof("vn0") || !noSpoof("vn1") {
		t.Errorf("after set-linkprop: vn0 nospoof %v (want false), vn1 %v (want true)", noSpoof("vn0"), noSpoof("vn1"))
	}
	infos, err := m.VNICs("", "")
	if err != nil {
		t.Fatal(err)
	}
	if infos[0].Protection != ProtectionNone || infos[1].Protection != ProtectionMACNoSpoof {
		t.Errorf("show-vnic protection: %+v", infos)
	}
	for _, bad := range []struct{ prop, value, want string }{
		{PropProtection, "ip-nospoof", "mac-nospoof, none"},
		{PropMTU, "1300", "settable: protection"},
		{"bogus", "1", "settable: protection"},
	} {
		err := m.SetProps(SetPropsRequest{Name: "vn0", Props: []Assignment{{Name: bad.prop, Value: bad.value}}})
		if err == nil || !strings.Contains(err.Error(), bad.want) || !strings.Contains(err.Error(), "vn0") {
			t.Errorf("set %s=%s on a VNIC: %v, want an error naming vn0 and %q", bad.prop, bad.value, err, bad.want)
		}
	}
	if noSpoof("vn0") {
		t.Error("a refused set-linkprop changed the VNIC")
	}

	cfg := saved(t, d)
	byName := map[string]state.VNIC{}
	for _, v := range cfg.VNICs {
		byName[v.Name] = v
	}
	if byName["vn0"].Protection != ProtectionNone || byName["vn1"].Protection != "" {
		t.Errorf("saved protection: vn0 %q (want none), vn1 %q (want the default, empty)", byName["vn0"].Protection, byName["vn1"].Protection)
	}

	m2, dp2 := newManager(t)
	if errs := m2.Restore(nil, cfg); len(errs) != 0 {
		t.Fatal(errs)
	}
	a, _ := dp2.Overlay("net0").VNIC("vn0")
	b, _ := dp2.Overlay("net0").VNIC("vn1")
	if a.NoSpoof || !b.NoSpoof {
		t.Errorf("after a restart: vn0 nospoof %v (want false), vn1 %v (want true)", a.NoSpoof, b.NoSpoof)
	}
}
