package overlay

import (
	"context"
	"slices"
	"sync"
	"testing"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
	"overlaynet/search"
)

// vnetRec is a dynamic search plugin that records the vnetid each of its
// instances was made for, and which are running.
var vnetRec = struct {
	mu      sync.Mutex
	started []uint32
	running map[*vnetRecInstance]bool
}{running: map[*vnetRecInstance]bool{}}

type vnetRecInstance struct{ vnetid uint32 }

func (i *vnetRecInstance) Start() error {
	vnetRec.mu.Lock()
	defer vnetRec.mu.Unlock()
	vnetRec.started = append(vnetRec.started, i.vnetid)
	vnetRec.running[i] = true
	return nil
}

func (i *vnetRecInstance) Stop() {
	vnetRec.mu.Lock()
	defer vnetRec.mu.Unlock()
	delete(vnetRec.running, i)
}

func (i *vnetRecInstance) Lookup(context.Context, uint16, ether.MAC) (encap.Dest, error) {
	return encap.Dest{}, search.ErrNotFound
}

func init() {
	search.Register(&search.Plugin{Name: "vnetrec", Mode: search.Dynamic,
		Props: func(encap.DestType) []prop.Desc { return nil },
		New: func(cfg search.Config) (search.Instance, error) {
			return &vnetRecInstance{vnetid: cfg.VNetID}, nil
		}})
}

// runningVNetIDs returns the vnetids of the running vnetrec instances.
func runningVNetIDs() []uint32 {
	vnetRec.mu.Lock()
	defer vnetRec.mu.Unlock()
	var out []uint32
	for i := range vnetRec.running {
		out = append(out, i.vnetid)
	}
	slices.Sort(out)
	return out
}

// TestSetVNetIDRestartsSearch: a dynamic overlay's new vnetid reaches its
// search plugin (a new instance, the old one stopped) and the answers
// found for the old network are flushed; a change of another property
// (mtu) keeps the instance and the answers.
func TestSetVNetIDRestartsSearch(t *testing.T) {
	m, dp, _ := newPersistManager(t)
	mustCreateOverlay(t, m, CreateOverlayRequest{Name: "dyn0", Encap: "vxlan", Search: "vnetrec", VNetID: "42",
		Props: []Assignment{{"vxlan/listen_ip", "192.0.2.1"}}})
	if got := runningVNetIDs(); !slices.Equal(got, []uint32{42}) {
		t.Fatalf("running instances for vnetids %v, want [42]", got)
	}
	ov := dp.Overlay("dyn0")
	flushes := func() int { return ov.Snapshot().Flushes }
	if err := m.SetProps(SetPropsRequest{Name: "dyn0", Props: []Assignment{{"mtu", "1300"}}}); err != nil {
		t.Fatal(err)
	}
	if got := runningVNetIDs(); !slices.Equal(got, []uint32{42}) {
		t.Errorf("after mtu=1300: running instances for vnetids %v, want [42]", got)
	}
	if n := flushes(); n != 0 {
		t.Errorf("after mtu=1300: %d flushes of the known destinations, want none", n)
	}
	if err := m.SetProps(SetPropsRequest{Name: "dyn0", Props: []Assignment{{"vnetid", "43"}}}); err != nil {
		t.Fatal(err)
	}
	if got := runningVNetIDs(); !slices.Equal(got, []uint32{43}) {
		t.Errorf("after vnetid=43: running instances for vnetids %v, want [43] (the plugin must look up in the new network)", got)
	}
	if n := flushes(); n != 1 {
		t.Errorf("after vnetid=43: %d flushes of the known destinations, want 1 (they are the old network's)", n)
	}
	if got := ov.Snapshot().Config.VNetID; got != 43 {
		t.Errorf("data path vnetid %d, want 43", got)
	}
}
