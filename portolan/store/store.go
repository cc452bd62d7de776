// Package store is portolan's storage: hosts (underlay addresses), VNIC
// mappings (VL2: vnetid+MAC -> host; VL3: vnetid+IP -> MAC) and the
// per-host log of changes that tells hosts which cached answers to forget.
// One implementation over SQL serves both the embedded SQLite file (the
// default: nothing to install or run) and PostgreSQL (several portolan
// servers sharing one store). Every change and the log entries it causes
// are written in one transaction, and lookups read the store directly, so
// a change made through any server is answered by every server at once.
package store

import (
	"context"
	"errors"
	"net/netip"

	"overlaynet/ether"
)

// Host is a host (illumos: a compute node) that terminates VXLAN.
type Host struct {
	// ID names the host; operators choose it (a hostname, a UUID).
	ID string
	// IP and Port are where the host receives VXLAN; IP is also how the
	// host identifies itself when it asks for its log.
	IP   netip.Addr
	Port uint16
}

// A host's source addresses are the other addresses its SVP connections
// may come from (Triton's hosts reach portolan over an admin network, not
// the underlay): a connection may ask for a host's log, or remove entries
// from it, only from the host's underlay IP or one of these. They are kept
// apart from Host so that Host stays a comparable value.

// VNIC is one overlay NIC: where its MAC lives and which addresses it has.
type VNIC struct {
	VNetID uint32
	MAC    ether.MAC
	VLAN   uint16
	Host   string
	IPs    []netip.Addr
}

// Log entry types (SVP).
const (
	LogVL2 = 1 // forget the cached destination of a MAC
	LogVL3 = 2 // forget the cached MAC of an IP
)

// LogEntry is one entry of a host's log.
type LogEntry struct {
	ID     [16]byte
	Type   uint32
	VNetID uint32
	MAC    ether.MAC  // LogVL2
	IP     netip.Addr // LogVL3
	VLAN   uint16     // LogVL3
}

// Size is the entry's size on the wire (SVP LOG_ACK).
func (e LogEntry) Size() int {
	if e.Type == LogVL3 {
		return 44
	}
	return 32
}

// Errors.
var (
	ErrNotFound    = errors.New("not found")
	ErrExists      = errors.New("already exists")
	ErrUnknownHost = errors.New("no host has that underlay address")
	ErrInUse       = errors.New("in use")
)

// Store is the mapping store.
type Store interface {
	// PutHost adds a host or changes its address. A change of address
	// logs VL2 entries for every VNIC on the host. The host's source
	// addresses stay as they are.
	PutHost(ctx context.Context, h Host) error
	// SetHost is PutHost that also replaces the host's source addresses
	// (none when sources is empty), in the same transaction. An address
	// may be a source of several hosts.
	SetHost(ctx context.Context, h Host, sources []netip.Addr) error
	// RemoveHost removes a host that holds no VNIC.
	RemoveHost(ctx context.Context, id string) error
	Hosts(ctx context.Context) ([]Host, error)
	// Sources returns the source addresses of every host that has any,
	// by host id, each list sorted.
	Sources(ctx context.Context) (map[string][]netip.Addr, error)
	// HostsFrom returns the hosts a connection from src may act for in
	// LOG_REQ and LOG_RM: the host whose underlay IP is src and every host
	// with src among its source addresses. IPv4-mapped addresses are
	// their IPv4 address.
	HostsFrom(ctx context.Context, src netip.Addr) ([]Host, error)

	// AddVNIC adds a VNIC mapping; MoveVNIC moves it to another host;
	// RemoveVNIC removes it. Each logs entries for every host that has a
	// VNIC on the same vnetid (and so may cache an answer about it).
	AddVNIC(ctx context.Context, v VNIC) error
	MoveVNIC(ctx context.Context, vnetid uint32, mac ether.MAC, host string) error
	RemoveVNIC(ctx context.Context, vnetid uint32, mac ether.MAC) error
	// VNICs lists the VNICs of one vnetid, or of all when all is set.
	VNICs(ctx context.Context, vnetid uint32, all bool) ([]VNIC, error)

	// VL2 answers where a MAC lives; ok is false when nothing maps it.
	VL2(ctx context.Context, vnetid uint32, mac ether.MAC) (h Host, ok bool, err error)
	// VL3 answers which MAC holds an IP, and where that MAC lives.
	VL3(ctx context.Context, vnetid uint32, ip netip.Addr) (mac ether.MAC, h Host, ok bool, err error)

	// Log returns the oldest entries of the host with that underlay IP,
	// as many as fit in maxBytes of SVP log entries (ErrUnknownHost for
	// an unknown address).
	Log(ctx context.Context, hostIP netip.Addr, maxBytes int) ([]LogEntry, error)
	// RemoveLog deletes entries by id; unknown ids are ignored (delivery
	// is at least once).
	RemoveLog(ctx context.Context, ids [][16]byte) error
	// LogOwners returns the ids of the hosts whose logs hold any of ids
	// (unknown ids are ignored), sorted.
	LogOwners(ctx context.Context, ids [][16]byte) ([]string, error)

	Close() error
}
