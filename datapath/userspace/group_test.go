package userspace

import (
	"net/netip"
	"testing"
	"time"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
)

// TestLearnTable: a learned destination is found until it ages out; a
// frame refreshes it; a MAC that moves is learned anew; the bound stops
// learning while live entries fill the table, and room comes back as
// they age.
func TestLearnTable(t *testing.T) {
	lt := newLearnTable(&datapath.GroupConfig{Ageing: 10 * time.Second, MaxLearned: 2})
	sec := int64(time.Second)
	d1 := encap.Dest{IP: netip.MustParseAddr("192.0.2.1"), Port: 4789}
	d2 := encap.Dest{IP: netip.MustParseAddr("192.0.2.2"), Port: 4789}
	a, b, c := ether.MAC{2, 0, 0, 0, 0, 0xa}, ether.MAC{2, 0, 0, 0, 0, 0xb}, ether.MAC{2, 0, 0, 0, 0, 0xc}

	if !lt.learn(a, d1, 0) || !lt.learn(b, d1, 0) {
		t.Fatal("learning into an empty table failed")
	}
	if d, ok := lt.lookup(a, 10*sec); !ok || d != d1 {
		t.Errorf("lookup at the ageing limit: %v %v", d, ok)
	}
	if _, ok := lt.lookup(a, 11*sec); ok {
		t.Error("an entry outlived its ageing")
	}
	if lt.learn(c, d2, 5*sec) {
		t.Error("learned beyond the bound while every entry lives")
	}
	lt.learn(a, d2, 6*sec) // a moved: refreshed, new place
	if d, ok := lt.lookup(a, 15*sec); !ok || d != d2 {
		t.Errorf("a moved MAC: %v %v, want %v", d, ok, d2)
	}
	// b aged out (last seen at 0): room for c.
	if !lt.learn(c, d2, 12*sec) {
		t.Error("no room made by an aged-out entry")
	}
	if ts := lt.list(12 * sec); len(ts) != 2 {
		t.Errorf("list: %v, want a and c", ts)
	}
	lt.flush()
	if _, ok := lt.lookup(a, 12*sec); ok {
		t.Error("flush left an entry")
	}
}
