// Package api is portolan's network admin API: the store commands
// (add-host, remove-host, add-vnic, move-vnic, remove-vnic, show-hosts,
// show-vnics) as HTTP/JSON requests, so that a host that cannot open the
// store (a CNI plugin registering a container's VNIC) can change the
// mappings. A request makes the same store call, in the same transaction
// and with the same log entries, as the command does.
//
//	GET    /v1/hosts                          list hosts (with sources)
//	PUT    /v1/hosts/{id}                     add or change a host: {"ip","port","sources"}
//	DELETE /v1/hosts/{id}                     remove a host that holds no VNIC
//	GET    /v1/vnics[?vnetid=N]               list VNICs (of one network)
//	PUT    /v1/vnics/{vnetid}/{mac}           add a VNIC: {"host","ips","vlan"}
//	POST   /v1/vnics/{vnetid}/{mac}/move      move it: {"host"}
//	DELETE /v1/vnics/{vnetid}/{mac}           remove it
//
// Every request carries "Authorization: Bearer <token>"; a write without
// the token is refused (401, or 403 for a wrong one), and so is a read
// unless the server opens reads. Errors are {"error": "..."} with 400 for
// bad input, 404 for what does not exist, 409 for a conflict.
package api

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"overlaynet/ether"
	"overlaynet/portolan/store"
	"overlaynet/prop"
)

// HostRequest is the body of PUT /v1/hosts/{id}.
type HostRequest struct {
	IP      string   `json:"ip"`
	Port    uint16   `json:"port,omitempty"` // 0: 4789
	Sources []string `json:"sources,omitempty"`
}

// HostInfo is one host of GET /v1/hosts.
type HostInfo struct {
	ID      string   `json:"id"`
	IP      string   `json:"ip"`
	Port    uint16   `json:"port"`
	Sources []string `json:"sources,omitempty"`
}

// VNICRequest is the body of PUT /v1/vnics/{vnetid}/{mac}.
type VNICRequest struct {
	Host string   `json:"host"`
	IPs  []string `json:"ips,omitempty"`
	VLAN uint16   `json:"vlan,omitempty"`
}

// MoveRequest is the body of POST /v1/vnics/{vnetid}/{mac}/move.
type MoveRequest struct {
	Host string `json:"host"`
}

// VNICInfo is one VNIC of GET /v1/vnics.
type VNICInfo struct {
	VNetID uint32   `json:"vnetid"`
	MAC    string   `json:"mac"`
	VLAN   uint16   `json:"vlan"`
	Host   string   `json:"host"`
	IPs    []string `json:"ips,omitempty"`
}

// DefaultPort is a host's VXLAN port when none is given.
const DefaultPort = 4789

// MaxVNetID is the largest virtual network id (24 bits).
const MaxVNetID = 1<<24 - 1

// ErrInvalid is matched (errors.Is) by errors about bad input.
var ErrInvalid = errors.New("invalid")

// InvalidError is bad input. Field, when set, is the request field it is
// about, which the error's text starts with (the command line prefixes
// "--": its flags have the fields' names).
type InvalidError struct {
	Field string
	Msg   string // the rest of the text, after Field
}

func (e *InvalidError) Error() string        { return e.Field + e.Msg }
func (e *InvalidError) Is(target error) bool { return target == ErrInvalid }

func invalid(format string, a ...any) error { return &InvalidError{Msg: fmt.Sprintf(format, a...)} }

// invalidField is bad input in field; format continues its name.
func invalidField(field, format string, a ...any) error {
	return &InvalidError{Field: field, Msg: fmt.Sprintf(format, a...)}
}

// ParseHost checks a host's underlay address, port and source addresses
// as add-host does, and returns them for store.SetHost.
func ParseHost(id, ip string, port uint16, sources []string) (store.Host, []netip.Addr, error) {
	if id == "" {
		return store.Host{}, nil, invalid("missing host id")
	}
	addr, err := prop.ParseIP(ip)
	if err != nil {
		return store.Host{}, nil, invalid("invalid underlay address %q", ip)
	}
	if err := prop.CheckUnderlayIP(addr.String()); err != nil {
		return store.Host{}, nil, invalid("underlay address %s: %v", addr, err)
	}
	if port == 0 {
		return store.Host{}, nil, invalidField("port", " 0: a host receives VXLAN on a UDP port from 1 to 65535 (4789 when omitted)")
	}
	var srcs []netip.Addr
	for _, s := range sources {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return store.Host{}, nil, invalidField("source", " %q is not an IP address", s)
		}
		a = a.Unmap()
		switch {
		case a.IsUnspecified() || a.IsMulticast():
			return store.Host{}, nil, invalidField("source", " %s: no connection comes from an unspecified or multicast address", a)
		case a == addr.Unmap():
			return store.Host{}, nil, invalidField("source", " %s is the underlay address; give only other addresses", a)
		case slices.Contains(srcs, a):
			return store.Host{}, nil, invalidField("source", " %s given twice", a)
		}
		srcs = append(srcs, a)
	}
	return store.Host{ID: id, IP: addr, Port: port}, srcs, nil
}

// ParseVNIC checks a VNIC's network, MAC, addresses and VLAN as add-vnic
// does.
func ParseVNIC(vnetid uint32, mac, host string, ips []string, vlan uint16) (store.VNIC, error) {
	m, err := ParseVNICKey(vnetid, mac)
	if err != nil {
		return store.VNIC{}, err
	}
	if host == "" {
		return store.VNIC{}, invalidField("host", ": missing")
	}
	v := store.VNIC{VNetID: vnetid, MAC: m, VLAN: vlan, Host: host}
	for _, s := range ips {
		a, err := netip.ParseAddr(s)
		if err != nil || a.Zone() != "" {
			return store.VNIC{}, invalidField("ip", " %q is not an IP address", s)
		}
		if slices.Contains(v.IPs, a.Unmap()) {
			return store.VNIC{}, invalidField("ip", " %s given twice", a.Unmap())
		}
		v.IPs = append(v.IPs, a.Unmap())
	}
	if vlan > 4094 {
		return store.VNIC{}, invalidField("vlan", " %d out of range 0-4094", vlan)
	}
	return v, nil
}

// ParseVNICKey checks the network and MAC that name a VNIC.
func ParseVNICKey(vnetid uint32, mac string) (ether.MAC, error) {
	if vnetid > MaxVNetID {
		return ether.MAC{}, invalidField("vnetid", " %d out of range 0-%d", vnetid, MaxVNetID)
	}
	m, err := ether.ParseMAC(mac)
	if err != nil {
		return ether.MAC{}, invalidField("mac", ": %v", err)
	}
	if !ether.IsUnicast(m) {
		return ether.MAC{}, invalidField("mac", " %s is not a unicast address", mac)
	}
	return m, nil
}
