package store

import (
	"context"
	"errors"
	"net/netip"

	"overlaynet/ether"
)

// The change feed lets a server answer lookups from memory while the
// store stays the source of truth. Every transaction that changes hosts,
// VNICs, addresses or a host's log also appends change records naming
// what changed, in the same transaction, under a sequence number that
// commits in order (PostgreSQL writers serialise on an advisory lock, so
// a reader that has seen seq N has seen every change before it). A
// follower loads everything, then applies the changes after the sequence
// it loaded at by re-reading what each names (so replaying a change twice
// does no harm), and is woken by Watch.

// ChangeKind says what a change record names.
type ChangeKind uint8

// Change kinds.
const (
	// ChangeHost: a host was added, removed, or changed its address,
	// port or source addresses (Change.Host). Re-read the hosts.
	ChangeHost ChangeKind = 1
	// ChangeVNIC: the VL2 mapping of (VNetID, MAC) was added, removed
	// or moved. Re-read it with VL2.
	ChangeVNIC ChangeKind = 2
	// ChangeIP: the VL3 mapping of (VNetID, IP) was added or removed.
	// Re-read it with VL3.
	ChangeIP ChangeKind = 3
	// ChangeLog: entries were appended to the log of Change.Host.
	ChangeLog ChangeKind = 4
	// ChangeReload: too much changed to name (an import): load again.
	ChangeReload ChangeKind = 5
)

// Change is one change record.
type Change struct {
	Seq    int64
	Kind   ChangeKind
	Host   string     // ChangeHost, ChangeLog
	VNetID uint32     // ChangeVNIC, ChangeIP
	MAC    ether.MAC  // ChangeVNIC
	IP     netip.Addr // ChangeIP
}

// ErrChangesPruned says the changes after a sequence number are no longer
// all kept: the follower must load again.
var ErrChangesPruned = errors.New("changes pruned: load the store again")

// Feed is what a follower of the store needs. *SQL implements it.
type Feed interface {
	// ChangeSeq returns the sequence number of the latest change (0 when
	// there is none).
	ChangeSeq(ctx context.Context) (int64, error)
	// Changes returns up to limit changes after seq, oldest first, or
	// ErrChangesPruned.
	Changes(ctx context.Context, after int64, limit int) ([]Change, error)
	// ScanVL2 calls fn for every VNIC mapping; ScanVL3 for every address.
	// An error from fn stops the scan and is returned.
	ScanVL2(ctx context.Context, fn func(vnetid uint32, mac ether.MAC, host string) error) error
	ScanVL3(ctx context.Context, fn func(vnetid uint32, ip netip.Addr, mac ether.MAC) error) error
	// Hosts, Sources, VL2 and VL3 re-read what a change names.
	Hosts(ctx context.Context) ([]Host, error)
	Sources(ctx context.Context) (map[string][]netip.Addr, error)
	VL2(ctx context.Context, vnetid uint32, mac ether.MAC) (h Host, ok bool, err error)
	VL3(ctx context.Context, vnetid uint32, ip netip.Addr) (mac ether.MAC, h Host, ok bool, err error)
	// Watch returns a channel that receives (coalesced: capacity 1) when
	// changes may have been committed, by anyone: another process on the
	// SQLite file, another server on PostgreSQL. It is also signalled
	// after the watch recovers from a failure (a lost LISTEN connection),
	// since changes may have been missed. It stops when ctx ends.
	Watch(ctx context.Context) <-chan struct{}
}

var errFeedTODO = errors.New("change feed not implemented yet")

// ChangeSeq implements Feed.
func (s *SQL) ChangeSeq(ctx context.Context) (int64, error) { return 0, errFeedTODO }

// Changes implements Feed.
func (s *SQL) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	return nil, errFeedTODO
}

// ScanVL2 implements Feed.
func (s *SQL) ScanVL2(ctx context.Context, fn func(vnetid uint32, mac ether.MAC, host string) error) error {
	return errFeedTODO
}

// ScanVL3 implements Feed.
func (s *SQL) ScanVL3(ctx context.Context, fn func(vnetid uint32, ip netip.Addr, mac ether.MAC) error) error {
	return errFeedTODO
}

// Watch implements Feed.
func (s *SQL) Watch(ctx context.Context) <-chan struct{} { return make(chan struct{}) }

var _ Feed = (*SQL)(nil)
