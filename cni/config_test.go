package cni

import (
	"errors"
	"strings"
	"testing"

	"github.com/containernetworking/cni/pkg/types"

	"overlaynet/admin"
)

// TestParseConf: a good configuration decodes with the defaults; a bad
// one gets the spec's error code and a message naming the field.
func TestParseConf(t *testing.T) {
	c, err := parseConf([]byte(`{"cniVersion": "1.1.0", "name": "n", "type": "overlay-cni", "overlay": "rule/2233",
		"mac": "02:08:20:00:00:01", "runtimeConfig": {"mac": "02:08:20:00:00:02"}, "mtu": 1400, "vlan": 7}`))
	if err != nil {
		t.Fatal(err)
	}
	if c.Socket != admin.DefaultSocket || c.mac() != "02:08:20:00:00:02" || c.MTU != 1400 || c.VLAN != 7 {
		t.Errorf("parsed %+v (mac %s)", c, c.mac())
	}
	for _, tc := range []struct {
		conf string
		code uint
		want string
	}{
		{`{`, types.ErrDecodingFailure, "JSON"},
		{`{"name": "n"}`, types.ErrInvalidNetworkConfig, `"overlay" is missing`},
		{`{"overlay": "a b"}`, types.ErrInvalidNetworkConfig, `"overlay" "a b"`},
		{`{"overlay": "rule/x"}`, types.ErrInvalidNetworkConfig, `"overlay"`},
		{`{"overlay": "ov0", "mtu": 100}`, types.ErrInvalidNetworkConfig, `"mtu" 100`},
		{`{"overlay": "ov0", "vlan": 4095}`, types.ErrInvalidNetworkConfig, `"vlan" 4095`},
		{`{"overlay": "ov0", "mac": "01:00:5e:00:00:01"}`, types.ErrInvalidNetworkConfig, `"mac"`},
		{`{"overlay": "ov0", "runtimeConfig": {"mac": "zz"}}`, types.ErrInvalidNetworkConfig, `"runtimeConfig": "mac"`},
		{`{"overlay": "ov0", "isGateway": true}`, types.ErrInvalidNetworkConfig, `"isGateway" needs an "ipam" section`},
		{`{"overlay": "ov0", "portolan": {"url": "portolan:1297", "tokenFile": "t", "host": "h"}}`, types.ErrInvalidNetworkConfig, `"portolan": "url"`},
		{`{"overlay": "ov0", "portolan": {"url": "https://p:1297", "host": "h"}}`, types.ErrInvalidNetworkConfig, `"portolan": "tokenFile"`},
		{`{"overlay": "ov0", "portolan": {"url": "https://p:1297", "tokenFile": "t"}}`, types.ErrInvalidNetworkConfig, `"portolan": "host"`},
	} {
		_, err := parseConf([]byte(tc.conf))
		var e *types.Error
		if !errors.As(err, &e) || e.Code != tc.code || !strings.Contains(e.Msg, tc.want) {
			t.Errorf("%s: %v, want code %d naming %s", tc.conf, err, tc.code, tc.want)
		}
	}
}

// TestVNICName: an attachment's VNIC name is a valid overlayd VNIC name
// of the most characters allowed, the same every time, different for
// another container, interface or network, and starts with its
// network's prefix.
func TestVNICName(t *testing.T) {
	a := vnicName("net", "ctr", "eth0")
	if len(a) != 15 || a[0] != 'c' || a != vnicName("net", "ctr", "eth0") || !strings.HasPrefix(a, vnicPrefix("net")) {
		t.Errorf("vnicName = %q", a)
	}
	for _, b := range []string{vnicName("net", "ctr2", "eth0"), vnicName("net", "ctr", "eth1"), vnicName("net2", "ctr", "eth0")} {
		if b == a {
			t.Errorf("two attachments share VNIC name %s", a)
		}
	}
	if strings.HasPrefix(a, vnicPrefix("net2")) {
		t.Error("another network's prefix matches")
	}
	// GC deletes the network's VNICs not in use; the gateway is not one.
	if g := gatewayName("net"); strings.HasPrefix(g, vnicPrefix("net")) || len(g) > 15 || g != gatewayName("net") || g == gatewayName("net2") {
		t.Errorf("gatewayName = %q", g)
	}
}
