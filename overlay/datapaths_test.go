package overlay

import (
	"log/slog"
	"strings"
	"testing"

	"overlaynet/datapath"
	"overlaynet/datapath/memory"
	"overlaynet/state"
)

// TestDataPaths: the manager's rules between data paths are generic and
// the capabilities it uses are found, not assumed: two data paths never
// share a port, overlays on one may (its own rule); delete-overlay uses
// Deleter; Restore sweeps every Sweeper; Close closes every io.Closer.
func TestDataPaths(t *testing.T) {
	a, b := memory.New(memory.Options{}), memory.New(memory.Options{})
	m := NewManager(slog.New(slog.DiscardHandler), map[string]datapath.DataPath{"a": a, "b": b}, "a")
	if errs := m.Restore(nil, state.Config{}); len(errs) != 0 {
		t.Fatal(errs)
	}
	if a.Sweeps() != 1 || b.Sweeps() != 1 {
		t.Errorf("Restore swept a %d and b %d times, want once each", a.Sweeps(), b.Sweeps())
	}
	mustCreateOverlay(t, m, directReq("ov0", "42", true))
	if got := propValue(t, m, "ov0", PropDataPath); got != "a" {
		t.Errorf("datapath of an overlay created without one: %s, want the default a", got)
	}
	// The same port on the same data path: its own rule (by VNI) allows it.
	mustCreateOverlay(t, m, directReq("ov1", "43", true))
	// The same port on another data path: refused, naming who holds it.
	err := m.CreateOverlay(directReq("ov2", "44", true, Assignment{PropDataPath, "b"}))
	if err == nil || !strings.Contains(err.Error(), "UDP port 4789 is held by overlay ov0 on the a data path; a b overlay cannot share it (choose another vxlan/listen_port)") {
		t.Fatalf("another data path on a held port: %v", err)
	}
	if len(b.Names()) != 0 {
		t.Errorf("the refused overlay was created: %v", b.Names())
	}
	mustCreateOverlay(t, m, directReq("ov2", "44", true, Assignment{PropDataPath, "b"}, Assignment{"vxlan/listen_port", "4790"}))
	if got := b.Names(); len(got) != 1 || got[0] != "ov2" {
		t.Errorf("data path b carries %v, want ov2", got)
	}
	o := a.Overlay("ov0")
	if err := m.DeleteOverlay("ov0", true); err != nil {
		t.Fatal(err)
	}
	if st := o.Snapshot(); !st.Deleted {
		t.Error("delete-overlay did not use the data path's Delete")
	}
	o1 := a.Overlay("ov1")
	m.Close()
	if st := o1.Snapshot(); !st.Closed || st.Deleted {
		t.Errorf("Close: overlay closed %v, deleted %v; want closed, kept", st.Closed, st.Deleted)
	}
	if !a.Closed() || !b.Closed() {
		t.Error("Close did not close the data paths")
	}
}

// TestDropEntryNeedsDropTable: modify-overlay -s MAC=drop works where the
// data path keeps drop entries and is refused, by name, where not.
func TestDropEntryNeedsDropTable(t *testing.T) {
	m, _ := newManager(t)
	mustCreateOverlay(t, m, CreateOverlayRequest{Name: "dyn0", Encap: "vxlan", Search: "vnetrec", VNetID: "42",
		Props: []Assignment{{"vxlan/listen_ip", "192.0.2.1"}}})
	if err := m.ModifyTargets(ModifyRequest{Name: "dyn0", Set: "2:8:20:0:0:9=drop"}); err != nil {
		t.Fatal(err)
	}
	ts, _ := m.Targets("dyn0")
	if len(ts) != 1 || ts[0].Destination != "drop" {
		t.Errorf("targets after -s =drop: %+v", ts)
	}
	// The same overlay on a data path without DropTable.
	m2 := NewManager(slog.New(slog.DiscardHandler), map[string]datapath.DataPath{"plain": coreOnlyDataPath{memory.New(memory.Options{})}}, "plain")
	t.Cleanup(m2.Close)
	mustCreateOverlay(t, m2, CreateOverlayRequest{Name: "dyn0", Encap: "vxlan", Search: "vnetrec", VNetID: "42",
		Props: []Assignment{{"vxlan/listen_ip", "192.0.2.1"}}})
	err := m2.ModifyTargets(ModifyRequest{Name: "dyn0", Set: "2:8:20:0:0:9=drop"})
	if err == nil || !strings.Contains(err.Error(), "overlay dyn0: the plain data path keeps no drop entries") {
		t.Errorf("-s =drop without a DropTable: %v", err)
	}
}

// coreOnlyDataPath makes overlays that show only the core interface.
type coreOnlyDataPath struct{ *memory.DataPath }

func (d coreOnlyDataPath) CreateOverlay(cfg datapath.OverlayConfig) (datapath.Overlay, error) {
	o, err := d.DataPath.CreateOverlay(cfg)
	if err != nil {
		return nil, err
	}
	return coreOnly{o}, nil
}
