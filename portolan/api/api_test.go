package api

import (
	"context"
	"errors"
	"fmt"
	"net/http/httptest"
	"net/netip"
	"path/filepath"
	"reflect"
	"strings"
	"sync"
	"testing"

	"overlaynet/ether"
	"overlaynet/portolan/store"
)

const token = "s3cret-token"

func openStore(t *testing.T) *store.SQL {
	t.Helper()
	s, err := store.Open(context.Background(), "sqlite:"+filepath.Join(t.TempDir(), "portolan.db"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// serve runs the API over st on loopback.
func serve(t *testing.T, st store.Store, openReads bool) string {
	t.Helper()
	ts := httptest.NewServer((&Server{Store: st, Token: token, OpenReads: openReads}).Handler())
	t.Cleanup(ts.Close)
	return ts.URL
}

var (
	ctx  = context.Background()
	macA = ether.MAC{2, 8, 0x20, 0, 0, 1}
	macB = ether.MAC{2, 8, 0x20, 0, 0, 2}
)

// TestWritesNeedToken: a write without the token, or with a wrong one, is
// refused and changes nothing; reads are refused too unless opened.
func TestWritesNeedToken(t *testing.T) {
	st := openStore(t)
	url := serve(t, st, false)
	for _, c := range []*Client{{URL: url}, {URL: url, Token: "wrong"}} {
		err := c.SetHost(ctx, "h1", HostRequest{IP: "192.0.2.1"})
		if !errors.Is(err, ErrAuth) {
			t.Errorf("write with token %q: %v, want refused", c.Token, err)
		}
		if _, err := c.Hosts(ctx); !errors.Is(err, ErrAuth) {
			t.Errorf("read with token %q: %v, want refused", c.Token, err)
		}
	}
	if hs, _ := st.Hosts(ctx); len(hs) != 0 {
		t.Fatalf("a refused write changed the store: %v", hs)
	}
	good := &Client{URL: url, Token: token}
	if err := good.SetHost(ctx, "h1", HostRequest{IP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	if hs, err := good.Hosts(ctx); err != nil || len(hs) != 1 || hs[0].Port != DefaultPort {
		t.Fatalf("hosts %+v, %v", hs, err)
	}

	// Reads opened: reads without the token work, writes still do not.
	open := &Client{URL: serve(t, st, true)}
	if hs, err := open.Hosts(ctx); err != nil || len(hs) != 1 {
		t.Errorf("open read: %+v, %v", hs, err)
	}
	if err := open.RemoveHost(ctx, "h1"); !errors.Is(err, ErrAuth) {
		t.Errorf("write on a server with open reads: %v, want refused", err)
	}

	// A server started without a token serves no authenticated request.
	ts := httptest.NewServer((&Server{Store: st}).Handler())
	defer ts.Close()
	if err := (&Client{URL: ts.URL, Token: ""}).RemoveHost(ctx, "h1"); !errors.Is(err, ErrAuth) {
		t.Errorf("write to a server without a token: %v", err)
	}
}

// change is one change, made once through the API and once as the store
// commands make it.
type change struct {
	api  func(c *Client) error
	cmds func(s *store.SQL) error
}

func hostChange(id, ip string, port uint16, sources ...string) change {
	return change{
		api: func(c *Client) error { return c.SetHost(ctx, id, HostRequest{IP: ip, Port: port, Sources: sources}) },
		cmds: func(s *store.SQL) error {
			if port == 0 {
				port = DefaultPort
			}
			h, srcs, err := ParseHost(id, ip, port, sources)
			if err != nil {
				return err
			}
			return s.SetHost(ctx, h, srcs)
		},
	}
}

func vnicChange(vnetid uint32, mac ether.MAC, host string, ips ...string) change {
	return change{
		api: func(c *Client) error { return c.AddVNIC(ctx, vnetid, mac, VNICRequest{Host: host, IPs: ips}) },
		cmds: func(s *store.SQL) error {
			v, err := ParseVNIC(vnetid, ether.Short(mac), host, ips, 0)
			if err != nil {
				return err
			}
			return s.AddVNIC(ctx, v)
		},
	}
}

// TestSameAsStoreCommands: the same changes through the API and through
// the store commands leave the same hosts, VNICs and logs.
func TestSameAsStoreCommands(t *testing.T) {
	viaAPI, viaCmds := openStore(t), openStore(t)
	c := &Client{URL: serve(t, viaAPI, false), Token: token}
	for i, ch := range []change{
		hostChange("h1", "192.0.2.1", 0),
		hostChange("h2", "192.0.2.2", 4790, "198.51.100.2"),
		vnicChange(42, macA, "h1", "10.0.0.1", "fd00::1"),
		vnicChange(42, macB, "h2", "10.0.0.2"),
		{api: func(c *Client) error { return c.MoveVNIC(ctx, 42, macA, "h2") },
			cmds: func(s *store.SQL) error { return s.MoveVNIC(ctx, 42, macA, "h2") }},
		hostChange("h1", "192.0.2.11", 0), // a changed address logs too
		{api: func(c *Client) error { return c.RemoveVNIC(ctx, 42, macB) },
			cmds: func(s *store.SQL) error { return s.RemoveVNIC(ctx, 42, macB) }},
	} {
		if err := ch.api(c); err != nil {
			t.Fatalf("change %d through the API: %v", i, err)
		}
		if err := ch.cmds(viaCmds); err != nil {
			t.Fatalf("change %d through the store: %v", i, err)
		}
	}
	for _, q := range []struct {
		what string
		get  func(s *store.SQL) (any, error)
	}{
		{"hosts", func(s *store.SQL) (any, error) { return s.Hosts(ctx) }},
		{"sources", func(s *store.SQL) (any, error) { return s.Sources(ctx) }},
		{"VNICs", func(s *store.SQL) (any, error) { return s.VNICs(ctx, 0, true) }},
		{"h1's log", logOf(netip.MustParseAddr("192.0.2.11"))},
		{"h2's log", logOf(netip.MustParseAddr("192.0.2.2"))},
	} {
		a, errA := q.get(viaAPI)
		b, errB := q.get(viaCmds)
		if errA != nil || errB != nil || !reflect.DeepEqual(a, b) {
			t.Errorf("%s differ:\n API   %+v (%v)\n store %+v (%v)", q.what, a, errA, b, errB)
		}
	}
	// And the API reads them back as the store holds them.
	vs, err := c.VNICs(ctx, 42, false)
	if err != nil || len(vs) != 1 || vs[0].MAC != ether.Short(macA) || vs[0].Host != "h2" ||
		!reflect.DeepEqual(vs[0].IPs, []string{"10.0.0.1", "fd00::1"}) {
		t.Errorf("VNICs through the API: %+v, %v", vs, err)
	}
}

// logOf reads a host's log without the entries' ids, which differ
// between stores.
func logOf(ip netip.Addr) func(s *store.SQL) (any, error) {
	return func(s *store.SQL) (any, error) {
		es, err := s.Log(ctx, ip, 1<<20)
		for i := range es {
			es[i].ID = [16]byte{}
		}
		if len(es) == 0 && err == nil {
			return nil, fmt.Errorf("empty log")
		}
		return es, err
	}
}

// TestErrors: bad input names the field (400), what does not exist is
// 404, a conflict 409, and errors.Is sees the store's errors through the
// client.
func TestErrors(t *testing.T) {
	st := openStore(t)
	c := &Client{URL: serve(t, st, false), Token: token}
	if err := c.SetHost(ctx, "h1", HostRequest{IP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name string
		do   func() error
		is   error
		says string
	}{
		{"bad address", func() error { return c.SetHost(ctx, "h2", HostRequest{IP: "nope"}) }, ErrInvalid, `invalid underlay address "nope"`},
		{"source is the address", func() error {
			return c.SetHost(ctx, "h2", HostRequest{IP: "192.0.2.2", Sources: []string{"192.0.2.2"}})
		}, ErrInvalid, "is the underlay address"},
		{"unknown field", func() error {
			return c.do(ctx, "PUT", "/v1/hosts/h3", map[string]any{"ip": "192.0.2.3", "prot": 1}, nil)
		}, ErrInvalid, `unknown field "prot"`},
		{"bad MAC", func() error { return c.do(ctx, "DELETE", "/v1/vnics/42/zz", nil, nil) }, ErrInvalid, "mac"},
		{"group MAC", func() error {
			return c.AddVNIC(ctx, 42, ether.MAC{1, 0, 0x5e, 0, 0, 1}, VNICRequest{Host: "h1"})
		}, ErrInvalid, "not a unicast address"},
		{"vnetid too big", func() error { return c.RemoveVNIC(ctx, 1<<24, macA) }, ErrInvalid, "vnetid 16777216 out of range"},
		{"no such VNIC", func() error { return c.RemoveVNIC(ctx, 42, macA) }, store.ErrNotFound, ""},
		{"no such host", func() error { return c.RemoveHost(ctx, "h9") }, store.ErrNotFound, ""},
	} {
		err := tc.do()
		if !errors.Is(err, tc.is) || !strings.Contains(fmt.Sprint(err), tc.says) {
			t.Errorf("%s: %v, want %v saying %q", tc.name, err, tc.is, tc.says)
		}
	}
	if err := c.AddVNIC(ctx, 42, macA, VNICRequest{Host: "h1"}); err != nil {
		t.Fatal(err)
	}
	if err := c.AddVNIC(ctx, 42, macA, VNICRequest{Host: "h1"}); !errors.Is(err, store.ErrExists) {
		t.Errorf("a VNIC added twice: %v, want a conflict", err)
	}
	if err := c.RemoveHost(ctx, "h1"); !errors.Is(err, store.ErrInUse) {
		t.Errorf("removing a host that holds a VNIC: %v, want a conflict", err)
	}
}

// TestConcurrentWriters: writers at once through the API lose nothing.
func TestConcurrentWriters(t *testing.T) {
	st := openStore(t)
	c := &Client{URL: serve(t, st, false), Token: token}
	if err := c.SetHost(ctx, "h1", HostRequest{IP: "192.0.2.1"}); err != nil {
		t.Fatal(err)
	}
	const writers, each = 8, 25
	var wg sync.WaitGroup
	errs := make(chan error, writers*each)
	for w := range writers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range each {
				mac := ether.MAC{2, 8, 0x20, 1, byte(w), byte(i)}
				errs <- c.AddVNIC(ctx, 42, mac, VNICRequest{Host: "h1", IPs: []string{fmt.Sprintf("10.%d.%d.1", w, i)}})
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	vs, err := st.VNICs(ctx, 42, false)
	if err != nil || len(vs) != writers*each {
		t.Fatalf("%d VNICs in the store, want %d (%v)", len(vs), writers*each, err)
	}
}
