package index

import (
	"context"
	"fmt"
	"net/netip"
	"path/filepath"
	"slices"
	"testing"

	"overlaynet/ether"
	"overlaynet/portolan/store"
)

// sqlLoad is a store.Feed over the SQL store's Store methods alone (its
// feed methods may still be stubs): enough to load an index, with no
// changes to follow.
type sqlLoad struct{ *store.SQL }

func (s sqlLoad) ChangeSeq(ctx context.Context) (int64, error) { return 0, nil }
func (s sqlLoad) Changes(ctx context.Context, after int64, limit int) ([]store.Change, error) {
	return nil, nil
}
func (s sqlLoad) Watch(ctx context.Context) <-chan struct{} { return nil }
func (s sqlLoad) ScanVL2(ctx context.Context, fn func(uint32, ether.MAC, string) error) error {
	vs, err := s.VNICs(ctx, 0, true)
	for _, v := range vs {
		if err := fn(v.VNetID, v.MAC, v.Host); err != nil {
			return err
		}
	}
	return err
}
func (s sqlLoad) ScanVL3(ctx context.Context, fn func(uint32, netip.Addr, ether.MAC) error) error {
	vs, err := s.VNICs(ctx, 0, true)
	for _, v := range vs {
		for _, a := range v.IPs {
			if err := fn(v.VNetID, a, v.MAC); err != nil {
				return err
			}
		}
	}
	return err
}

// The index answers as the SQL store does, on the store's own data.
func TestSameAnswersAsSQL(t *testing.T) {
	ctx := context.Background()
	st, err := store.Open(ctx, "sqlite:"+filepath.Join(t.TempDir(), "p.db"))
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	shared := netip.MustParseAddr("10.0.0.9")
	var hosts []store.Host
	for i := range 6 {
		h := store.Host{ID: fmt.Sprintf("h%d", i), IP: netip.AddrFrom4([4]byte{198, 18, 0, byte(i + 1)}), Port: uint16(4789 + i)}
		if i == 5 {
			h.IP = netip.MustParseAddr("fd00:100::5")
		}
		var srcs []netip.Addr
		if i%2 == 0 {
			srcs = append(srcs, shared, netip.AddrFrom4([4]byte{10, 0, 1, byte(i)}))
		}
		if i == 3 {
			srcs = append(srcs, hosts[1].IP) // another host's underlay IP
		}
		if err := st.SetHost(ctx, h, srcs); err != nil {
			t.Fatal(err)
		}
		hosts = append(hosts, h)
	}
	var vs []store.VNIC
	for i := range 40 {
		v := store.VNIC{VNetID: uint32(i % 3), MAC: ether.MAC{2, 8, 0x20, 0, 0, byte(i)}, Host: hosts[i%len(hosts)].ID,
			IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 0, byte(i)})}}
		if i%4 == 0 {
			v.IPs = append(v.IPs, netip.MustParseAddr(fmt.Sprintf("fd00:7::%x", i)))
		}
		vs = append(vs, v)
	}
	if err := st.AddVNICs(ctx, vs); err != nil {
		t.Fatal(err)
	}
	ix := load(t, sqlLoad{st})

	var srcs []netip.Addr
	for _, h := range hosts {
		srcs = append(srcs, h.IP, netip.AddrFrom16(h.IP.As16())) // and IPv4-mapped
	}
	srcs = append(srcs, shared, netip.MustParseAddr("10.0.1.2"), netip.MustParseAddr("10.0.1.3"), netip.MustParseAddr("::"))
	for _, a := range srcs {
		want, err := st.HostsFrom(ctx, a)
		if err != nil {
			t.Fatal(err)
		}
		if got := ix.HostsFrom(a); !slices.Equal(got, want) {
			t.Errorf("HostsFrom(%s) = %v, store %v", a, got, want)
		}
	}
	for vnet := range uint32(4) {
		for i := range 45 {
			mac := ether.MAC{2, 8, 0x20, 0, 0, byte(i)}
			wh, wok, err := st.VL2(ctx, vnet, mac)
			if err != nil {
				t.Fatal(err)
			}
			if h, ok := ix.VL2(vnet, mac); h != wh || ok != wok {
				t.Errorf("VL2(%d, %s) = %v %v, store %v %v", vnet, macString(mac), h, ok, wh, wok)
			}
			for _, a := range []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 0, byte(i)}), netip.MustParseAddr(fmt.Sprintf("::ffff:10.1.0.%d", i)),
				netip.MustParseAddr(fmt.Sprintf("fd00:7::%x", i))} {
				wm, wh, wok, err := st.VL3(ctx, vnet, a)
				if err != nil {
					t.Fatal(err)
				}
				if m, h, ok := ix.VL3(vnet, a); m != wm || h != wh || ok != wok {
					t.Errorf("VL3(%d, %s) = %s %v %v, store %s %v %v", vnet, a, macString(m), h, ok, macString(wm), wh, wok)
				}
			}
		}
	}
}
