package overlay

import (
	"errors"
	"log/slog"
	"reflect"
	"slices"
	"strings"
	"testing"

	"overlaynet/datapath"
	"overlaynet/datapath/memory"
	"overlaynet/ether"
	"overlaynet/state"

	_ "overlaynet/encap/vxlan"
	_ "overlaynet/search/direct"
)

// newManager returns a manager on a memory data path of its own, as
// overlayd's default data path, made through the registry as overlayd
// makes its data paths.
func newManager(t *testing.T) (*Manager, *memory.DataPath) {
	t.Helper()
	d, ok := datapath.Lookup(memory.Name)
	if !ok {
		t.Fatal("the memory data path is not registered")
	}
	made, err := d.New(datapath.Env{Log: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	dp := made.(*memory.DataPath)
	m := NewManager(slog.New(slog.DiscardHandler), map[string]datapath.DataPath{memory.Name: dp}, memory.Name)
	t.Cleanup(m.Close)
	return m, dp
}

// newPersistManager returns a manager on a memory data path saving in a
// fresh state directory (Restore of an empty configuration, as overlayd
// starts).
func newPersistManager(t *testing.T) (*Manager, *memory.DataPath, *state.Dir) {
	t.Helper()
	d, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Close() })
	m, dp := newManager(t)
	if errs := m.Restore(d, state.Config{}); len(errs) != 0 {
		t.Fatalf("Restore of nothing: %v", errs)
	}
	return m, dp, d
}

// saved reads back what the manager saved. Load only reads the files, so
// it can run on the manager's own (locked) Dir.
func saved(t *testing.T, d *state.Dir) state.Config {
	t.Helper()
	c, notes, err := d.Load()
	if err != nil || len(notes) != 0 {
		t.Fatalf("Load: notes %q, err %v", notes, err)
	}
	return c
}

func savedOverlayNames(c state.Config) []string {
	var out []string
	for _, o := range c.Overlays {
		out = append(out, o.Name)
	}
	return out
}

func savedVNICNames(c state.Config) []string {
	var out []string
	for _, v := range c.VNICs {
		out = append(out, v.Name)
	}
	return out
}

// directReq is a point-mode VXLAN overlay request.
func directReq(name, vnetid string, temporary bool, extra ...Assignment) CreateOverlayRequest {
	return CreateOverlayRequest{Name: name, Encap: "vxlan", Search: "direct", VNetID: vnetid, Temporary: temporary,
		Props: append([]Assignment{
			{"vxlan/listen_ip", "192.0.2.1"},
			{"direct/dest_ip", "192.0.2.2"},
			{"direct/dest_port", "4789"},
		}, extra...)}
}

func directProps(vnetid string, extra ...string) map[string]string {
	p := map[string]string{
		"vnetid":          vnetid,
		"vxlan/listen_ip": "192.0.2.1", "direct/dest_ip": "192.0.2.2", "direct/dest_port": "4789",
	}
	for i := 0; i+1 < len(extra); i += 2 {
		p[extra[i]] = extra[i+1]
	}
	return p
}

func mustCreateOverlay(t *testing.T, m *Manager, req CreateOverlayRequest) {
	t.Helper()
	if err := m.CreateOverlay(req); err != nil {
		t.Fatalf("CreateOverlay %s: %v", req.Name, err)
	}
}

func mustCreateVNIC(t *testing.T, m *Manager, req CreateVNICRequest) VNICInfo {
	t.Helper()
	info, err := m.CreateVNIC(req)
	if err != nil {
		t.Fatalf("CreateVNIC %s: %v", req.Name, err)
	}
	return info
}

func propValue(t *testing.T, m *Manager, overlay, name string) string {
	t.Helper()
	return propInfo(t, m, overlay, name).Value
}

// propInfo is show-overlay's row of one property.
func propInfo(t *testing.T, m *Manager, overlay, name string) PropInfo {
	t.Helper()
	infos, err := m.Overlays(overlay)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range infos[0].Props {
		if p.Name == name {
			return p
		}
	}
	t.Fatalf("overlay %s has no property %s", overlay, name)
	return PropInfo{}
}

func TestPersistCreate(t *testing.T) {
	m, dp, d := newPersistManager(t)
	mustCreateOverlay(t, m, directReq("net0", "42", false, Assignment{"mtu", "1500"}))
	mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn0", Overlay: "net0", MAC: "02:08:20:0A:0B:0C", VLAN: 7,
		Props: []Assignment{{PropMTU, "1200"}}})
	auto := mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn1", Overlay: "net0"})
	mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn2", Overlay: "net0", Temporary: true})

	want := state.Config{
		Overlays: []state.Overlay{{Name: "net0", Encap: "vxlan", Search: "direct", ID: 1,
			Props: directProps("42", "mtu", "1500")}},
		VNICs: []state.VNIC{
			{Name: "vn0", Overlay: "net0", MAC: "2:8:20:a:b:c", VLAN: 7, MTU: 1200},
			{Name: "vn1", Overlay: "net0", MAC: auto.MAC},
		},
	}
	if got := saved(t, d); !reflect.DeepEqual(got, want) {
		t.Errorf("saved\n%+v\nwant\n%+v", got, want)
	}

	for name, persistent := range map[string]bool{"vn0": true, "vn1": true, "vn2": false} {
		if v, _ := dp.Overlay("net0").VNIC(name); v.Persistent != persistent || v.Adopt {
			t.Errorf("data path VNIC %s = %+v, want Persistent %v, Adopt false", name, v, persistent)
		}
	}

	// A temporary overlay is not saved, nor any VNIC on it, even one
	// asked for without -t.
	mustCreateOverlay(t, m, directReq("tmp0", "43", true))
	info := mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn3", Overlay: "tmp0"})
	if v, _ := dp.Overlay("tmp0").VNIC("vn3"); !info.Temporary || v.Persistent {
		t.Errorf("a VNIC on a temporary overlay is not temporary: %+v, data path %+v", info, v)
	}
	if got := saved(t, d); !reflect.DeepEqual(got, want) {
		t.Errorf("saved after temporary creations\n%+v\nwant\n%+v", got, want)
	}
}

func TestPersistDelete(t *testing.T) {
	m, dp, d := newPersistManager(t)
	mustCreateOverlay(t, m, directReq("net0", "42", false))
	mustCreateOverlay(t, m, directReq("net1", "43", false))
	mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn0", Overlay: "net0"})
	mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn1", Overlay: "net0"})
	mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn2", Overlay: "net1"})
	check := func(ovs, vnics []string) {
		t.Helper()
		c := saved(t, d)
		if got := savedOverlayNames(c); !slices.Equal(got, ovs) {
			t.Errorf("saved overlays %q, want %q", got, ovs)
		}
		if got := savedVNICNames(c); !slices.Equal(got, vnics) {
			t.Errorf("saved VNICs %q, want %q", got, vnics)
		}
	}
	check([]string{"net0", "net1"}, []string{"vn0", "vn1", "vn2"})

	// -t: the VNIC goes from the data path, stays saved.
	if err := m.DeleteVNIC("vn0", true); err != nil {
		t.Fatal(err)
	}
	if _, ok := dp.Overlay("net0").VNIC("vn0"); ok {
		t.Error("vn0 still in the data path")
	}
	check([]string{"net0", "net1"}, []string{"vn0", "vn1", "vn2"})
	// Deleting it again without -t forgets it.
	if err := m.DeleteVNIC("vn0", false); err != nil {
		t.Fatalf("DeleteVNIC of a saved, not running VNIC: %v", err)
	}
	check([]string{"net0", "net1"}, []string{"vn1", "vn2"})
	if err := m.DeleteVNIC("vn0", false); !errorsIsNotFound(err) {
		t.Errorf("DeleteVNIC of a forgotten VNIC: %v, want not found", err)
	}
	// Without -t a running VNIC goes from both.
	if err := m.DeleteVNIC("vn1", false); err != nil {
		t.Fatal(err)
	}
	check([]string{"net0", "net1"}, []string{"vn2"})

	// -t: the overlay stops, stays saved; then without -t it is
	// forgotten.
	if err := m.DeleteOverlay("net0", true); err != nil {
		t.Fatal(err)
	}
	if dp.Overlay("net0") != nil {
		t.Error("net0 still in the data path")
	}
	check([]string{"net0", "net1"}, []string{"vn2"})
	if err := m.DeleteOverlay("net0", true); !errorsIsNotFound(err) {
		t.Errorf("DeleteOverlay -t of a stopped overlay: %v, want not found", err)
	}
	if err := m.DeleteOverlay("net0", false); err != nil {
		t.Fatalf("DeleteOverlay of a saved, not running overlay: %v", err)
	}
	check([]string{"net1"}, []string{"vn2"})
	if err := m.DeleteOverlay("net0", false); !errorsIsNotFound(err) {
		t.Errorf("DeleteOverlay of a forgotten overlay: %v, want not found", err)
	}

	// Deleting an overlay without -t forgets its saved VNICs too (here
	// one deleted with -t, so not running).
	if err := m.DeleteVNIC("vn2", true); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteOverlay("net1", false); err != nil {
		t.Fatal(err)
	}
	check(nil, nil)
}

func errorsIsNotFound(err error) bool { return errors.Is(err, ErrNotFound) }

func TestPersistSetProps(t *testing.T) {
	m, _, d := newPersistManager(t)
	mustCreateOverlay(t, m, directReq("net0", "42", false))
	mustCreateOverlay(t, m, directReq("tmp0", "43", true))
	if err := m.SetProps(SetPropsRequest{Name: "net0", Props: []Assignment{{"mtu", "1300"}, {"direct/dest_ip", "192.0.2.9"}}}); err != nil {
		t.Fatal(err)
	}
	if err := m.SetProps(SetPropsRequest{Name: "tmp0", Props: []Assignment{{"mtu", "1300"}}}); err != nil {
		t.Fatal(err)
	}
	want := []state.Overlay{{Name: "net0", Encap: "vxlan", Search: "direct", ID: 1,
		Props: directProps("42", "mtu", "1300", "direct/dest_ip", "192.0.2.9")}}
	if got := saved(t, d).Overlays; !reflect.DeepEqual(got, want) {
		t.Errorf("saved overlays\n%+v\nwant\n%+v", got, want)
	}
	// A refused change saves nothing.
	if err := m.SetProps(SetPropsRequest{Name: "net0", Props: []Assignment{{"mtu", "100"}}}); err == nil {
		t.Fatal("SetProps mtu=100 succeeded")
	}
	if got := saved(t, d).Overlays; !reflect.DeepEqual(got, want) {
		t.Errorf("saved overlays after a refused change\n%+v\nwant\n%+v", got, want)
	}
}

// restoreConfig is a saved configuration: two overlays and their VNICs
// that come back, an overlay that cannot (its vnetid is taken) with a
// VNIC on it, and a VNIC whose overlay is not saved at all.
var restoreConfig = state.Config{
	Overlays: []state.Overlay{
		{Name: "net0", Encap: "vxlan", Search: "direct", ID: 7, Props: directProps("42", "mtu", "1500")},
		{Name: "net1", Encap: "vxlan", Search: "direct", ID: 3, Props: directProps("43")},
		{Name: "clash", Encap: "vxlan", Search: "direct", ID: 12, Props: directProps("42")},
	},
	VNICs: []state.VNIC{
		{Name: "vn0", Overlay: "net0", MAC: "2:8:20:a:b:c", VLAN: 7, MTU: 1200},
		{Name: "vn1", Overlay: "net1", MAC: "2:8:20:1:2:3"},
		{Name: "vn2", Overlay: "clash", MAC: "2:8:20:1:2:4"},
		{Name: "vn3", Overlay: "gone", MAC: "2:8:20:1:2:5"},
	},
}

func TestRestore(t *testing.T) {
	d, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	if err := d.Save(restoreConfig); err != nil {
		t.Fatal(err)
	}
	cfg := saved(t, d)
	m, dp := newManager(t)
	errs := m.Restore(d, cfg)

	var msgs []string
	for _, e := range errs {
		msgs = append(msgs, e.Error())
	}
	wantErrs := []string{
		"overlay clash did not come back: vnetid 42 is already used by overlay net0",
		"VNIC vn2 did not come back: its overlay clash is not running",
		"VNIC vn3 did not come back: its overlay gone is not running",
	}
	if len(msgs) != len(wantErrs) {
		t.Fatalf("Restore errors %q, want %d", msgs, len(wantErrs))
	}
	for i, w := range wantErrs {
		if !strings.HasPrefix(msgs[i], w) {
			t.Errorf("Restore error %d = %q, want %q...", i, msgs[i], w)
		}
	}

	// The overlays keep their varpd/id and properties.
	for _, tc := range []struct{ name, id, vnetid, mtu string }{
		{"net0", "7", "42", "1500"},
		{"net1", "3", "43", "1400"},
	} {
		if got := propValue(t, m, tc.name, PropVarpdID); got != tc.id {
			t.Errorf("%s varpd/id = %s, want %s", tc.name, got, tc.id)
		}
		if got := propValue(t, m, tc.name, PropVNetID); got != tc.vnetid {
			t.Errorf("%s vnetid = %s, want %s", tc.name, got, tc.vnetid)
		}
		if got := propValue(t, m, tc.name, PropMTU); got != tc.mtu {
			t.Errorf("%s mtu = %s, want %s", tc.name, got, tc.mtu)
		}
		if o := dp.Overlay(tc.name); o == nil {
			t.Errorf("%s not in the data path", tc.name)
		}
	}
	if dp.Overlay("clash") != nil {
		t.Error("overlay clash is in the data path")
	}
	if _, err := m.Overlays("clash"); err == nil {
		t.Error("overlay clash is running")
	}

	// The VNICs keep their MAC, VLAN and explicit MTU, and are adopted.
	vnics, err := m.VNICs("", "")
	if err != nil {
		t.Fatal(err)
	}
	wantInfo := []VNICInfo{
		{Name: "vn0", Overlay: "net0", MAC: "2:8:20:a:b:c", VLAN: 7, MTU: 1200, Protection: ProtectionMACNoSpoof},
		{Name: "vn1", Overlay: "net1", MAC: "2:8:20:1:2:3", MTU: 1400, Protection: ProtectionMACNoSpoof},
	}
	if !reflect.DeepEqual(vnics, wantInfo) {
		t.Errorf("VNICs after Restore\n%+v\nwant\n%+v", vnics, wantInfo)
	}
	for _, tc := range []struct {
		overlay, name, mac string
		vlan               uint16
		mtu                int
	}{
		{"net0", "vn0", "02:08:20:0a:0b:0c", 7, 1200},
		{"net1", "vn1", "02:08:20:01:02:03", 0, 0},
	} {
		v, ok := dp.Overlay(tc.overlay).VNIC(tc.name)
		if !ok {
			t.Errorf("%s not in the data path", tc.name)
			continue
		}
		if ether.Long(v.MAC) != tc.mac || v.VLAN != tc.vlan || v.MTU != tc.mtu || !v.Adopt || !v.Persistent {
			t.Errorf("data path VNIC %s = %+v, want MAC %s VLAN %d MTU %d, adopted and persistent", tc.name, v, tc.mac, tc.vlan, tc.mtu)
		}
	}

	// What failed stays saved, to come back at a later start.
	if got := saved(t, d); !reflect.DeepEqual(got, restoreConfig) {
		t.Errorf("saved after Restore\n%+v\nwant\n%+v", got, restoreConfig)
	}

	// New overlays get ids after every saved one, the failed clash's
	// (12) included: it may come back later and must not share its id.
	mustCreateOverlay(t, m, directReq("net2", "44", false))
	if got := propValue(t, m, "net2", PropVarpdID); got != "13" {
		t.Errorf("varpd/id of a new overlay = %s, want 13", got)
	}

	// A VNIC created after the restore is new: not adopted.
	mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn4", Overlay: "net2"})
	if v, _ := dp.Overlay("net2").VNIC("vn4"); v.Adopt {
		t.Error("CreateVNIC passed Adopt to the data path")
	}

	// Once its vnetid is free, the failed overlay comes back at a
	// restart, with its VNIC and its id.
	if err := m.DeleteVNIC("vn0", true); err != nil {
		t.Fatal(err)
	}
	if err := m.DeleteOverlay("net0", false); err != nil {
		t.Fatal(err)
	}
	m.Close()
	cfg = saved(t, d)
	m2, dp2 := newManager(t)
	errs = m2.Restore(d, cfg)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "VNIC vn3 did not come back") {
		t.Errorf("second Restore errors %v, want only vn3's", errs)
	}
	ids := map[string]bool{}
	for _, n := range []string{"net1", "clash", "net2"} {
		id := propValue(t, m2, n, PropVarpdID)
		if ids[id] {
			t.Errorf("overlay %s has varpd/id %s, which another overlay has", n, id)
		}
		ids[id] = true
	}
	if got := propValue(t, m2, "clash", PropVarpdID); got != "12" {
		t.Errorf("clash varpd/id = %s, want 12", got)
	}
	if _, ok := dp2.Overlay("clash").VNIC("vn2"); !ok {
		t.Error("vn2 did not come back with its overlay")
	}
}

func TestRestoreDuplicateName(t *testing.T) {
	d, err := state.Open(t.TempDir())
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	// A hand-edited state file can name an overlay twice.
	cfg := state.Config{Overlays: []state.Overlay{
		{Name: "net0", Encap: "vxlan", Search: "direct", ID: 1, Props: directProps("42")},
		{Name: "net0", Encap: "vxlan", Search: "direct", ID: 2, Props: directProps("43")},
	}}
	m, dp := newManager(t)
	errs := m.Restore(d, cfg)
	if len(errs) != 1 || !strings.Contains(errs[0].Error(), "overlay net0 did not come back") {
		t.Fatalf("Restore errors %v, want one about the second net0", errs)
	}
	if got := propValue(t, m, "net0", PropVNetID); got != "42" {
		t.Errorf("net0 vnetid = %s, want the first entry's 42", got)
	}
	if got := dp.Names(); !slices.Equal(got, []string{"net0"}) {
		t.Errorf("data path carries %q, want one net0", got)
	}
	m.Close()
	if got := dp.Names(); len(got) != 0 {
		t.Errorf("data path still carries %q after Close", got)
	}
}

// A configuration saved by one manager comes back in the next one (a
// restart), through a new state.Dir on the same directory.
func TestRestart(t *testing.T) {
	path := t.TempDir()
	d, err := state.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	m, _ := newManager(t)
	m.Restore(d, state.Config{})
	mustCreateOverlay(t, m, directReq("net0", "42", false, Assignment{"mtu", "1600"}))
	mustCreateOverlay(t, m, directReq("net1", "43", false))
	mustCreateOverlay(t, m, directReq("tmp0", "44", true))
	if err := m.DeleteOverlay("net1", false); err != nil {
		t.Fatal(err)
	}
	mustCreateOverlay(t, m, directReq("net2", "45", false))
	vn0 := mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn0", Overlay: "net0", VLAN: 3, Props: []Assignment{{PropMTU, "1000"}}})
	vn1 := mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn1", Overlay: "net2"})
	mustCreateVNIC(t, m, CreateVNICRequest{Name: "vn2", Overlay: "tmp0"})
	wantOverlays, _ := m.Overlays("")
	wantOverlays = slices.DeleteFunc(wantOverlays, func(o OverlayInfo) bool { return o.Name == "tmp0" })
	m.Close()
	d.Close()

	d, err = state.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer d.Close()
	cfg, notes, err := d.Load()
	if err != nil || len(notes) != 0 {
		t.Fatalf("Load: notes %q, err %v", notes, err)
	}
	m, _ = newManager(t)
	if errs := m.Restore(d, cfg); len(errs) != 0 {
		t.Fatalf("Restore: %v", errs)
	}
	gotOverlays, _ := m.Overlays("")
	if !reflect.DeepEqual(gotOverlays, wantOverlays) {
		t.Errorf("overlays after a restart\n%+v\nwant\n%+v", gotOverlays, wantOverlays)
	}
	vnics, _ := m.VNICs("", "")
	if want := []VNICInfo{vn0, vn1}; !reflect.DeepEqual(vnics, want) {
		t.Errorf("VNICs after a restart\n%+v\nwant\n%+v", vnics, want)
	}
	// ids continue after net2's 4 (net1 had 2, tmp0 3).
	mustCreateOverlay(t, m, directReq("net3", "46", false))
	if got := propValue(t, m, "net3", PropVarpdID); got != "5" {
		t.Errorf("varpd/id of a new overlay after a restart = %s, want 5", got)
	}
}
