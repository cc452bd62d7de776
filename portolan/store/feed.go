package store

import (
	"context"
	"errors"
	"fmt"
	"net/netip"
	"strings"

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

// feedLock is the PostgreSQL advisory lock ("portolan" in ASCII) every
// writing transaction takes first, so that change sequence numbers
// commit in the order they are drawn.
const feedLock int64 = 0x706f72746f6c616e

// How many changes are kept: at least keepChanges (the newest), pruned
// in batches of pruneBatch so that pruning costs a write only now and
// then. Variables so that tests can shrink them.
var (
	keepChanges int64 = 100_000
	pruneBatch  int64 = 1_000
)

// writeChanges appends the transaction's change records, prunes old ones
// when a batch is due and, on PostgreSQL, notifies listeners (delivered
// at commit).
func (s *SQL) writeChanges(ctx context.Context, w *wtx) error {
	const rows = 100 // 500 parameters a statement
	for start := 0; start < len(w.changes); start += rows {
		chunk := w.changes[start:min(start+rows, len(w.changes))]
		q := `INSERT INTO changes (kind, host, vnetid, mac, ip) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?),", len(chunk)), ",")
		args := make([]any, 0, 5*len(chunk))
		for _, c := range chunk {
			ip := ""
			if c.IP.IsValid() {
				ip = c.IP.Unmap().String()
			}
			args = append(args, int(c.Kind), c.Host, int64(c.VNetID), macInt(c.MAC), ip)
		}
		if _, err := w.ExecContext(ctx, s.q(q), args...); err != nil {
			return fmt.Errorf("record changes: %w", err)
		}
	}
	var last, pruned int64
	if err := w.QueryRowContext(ctx, `SELECT COALESCE((SELECT MAX(seq) FROM changes), 0), pruned_through FROM changes_meta WHERE id = 1`).
		Scan(&last, &pruned); err != nil {
		return fmt.Errorf("prune changes: %w", err)
	}
	if cut := last - keepChanges; cut >= pruned+pruneBatch {
		if _, err := w.ExecContext(ctx, s.q(`DELETE FROM changes WHERE seq <= ?`), cut); err != nil {
			return fmt.Errorf("prune changes: %w", err)
		}
		if _, err := w.ExecContext(ctx, s.q(`UPDATE changes_meta SET pruned_through = ? WHERE id = 1`), cut); err != nil {
			return fmt.Errorf("prune changes: %w", err)
		}
	}
	if s.d.name == postgres.name {
		if _, err := w.ExecContext(ctx, `SELECT pg_notify('`+pgChannel+`', '')`); err != nil {
			return err
		}
	}
	return nil
}

// ChangeSeq implements Feed.
func (s *SQL) ChangeSeq(ctx context.Context) (int64, error) {
	var last, pruned int64
	err := s.db.QueryRowContext(ctx, `SELECT COALESCE((SELECT MAX(seq) FROM changes), 0), pruned_through FROM changes_meta WHERE id = 1`).
		Scan(&last, &pruned)
	// With every change pruned (keepChanges 0) the latest is the last
	// one pruned.
	return max(last, pruned), err
}

// Changes implements Feed. The changes after seq are all kept unless
// after < pruned_through (every change with seq <= pruned_through has
// been deleted): then it returns ErrChangesPruned. Sequence numbers may
// have gaps (PostgreSQL sequences do not roll back). Only the fields a
// change's Kind names are set (IP unmapped). With limit <= 0 it returns
// no changes but still reports ErrChangesPruned.
func (s *SQL) Changes(ctx context.Context, after int64, limit int) ([]Change, error) {
	var out []Change
	if limit > 0 {
		rows, err := s.db.QueryContext(ctx, s.q(`SELECT seq, kind, host, vnetid, mac, ip FROM changes WHERE seq > ? ORDER BY seq LIMIT ?`), after, limit)
		if err != nil {
			return nil, err
		}
		defer rows.Close()
		for rows.Next() {
			var c Change
			var kind int
			var vnet, mac int64
			var ip string
			if err := rows.Scan(&c.Seq, &kind, &c.Host, &vnet, &mac, &ip); err != nil {
				return nil, err
			}
			c.Kind, c.VNetID, c.MAC = ChangeKind(kind), uint32(vnet), intMAC(mac)
			if ip != "" {
				c.IP, _ = netip.ParseAddr(ip)
			}
			out = append(out, c)
		}
		if err := rows.Err(); err != nil {
			return nil, err
		}
		rows.Close()
	}
	// Read after the changes: a prune that raced with the read above is
	// seen here (at worst reported when the rows were in fact complete).
	var pruned int64
	if err := s.db.QueryRowContext(ctx, `SELECT pruned_through FROM changes_meta WHERE id = 1`).Scan(&pruned); err != nil {
		return nil, err
	}
	if after < pruned {
		return nil, ErrChangesPruned
	}
	return out, nil
}

// ScanVL2 implements Feed. Rows stream from the database (one
// connection, one snapshot) in no particular order; nothing is gathered
// in memory. Take ChangeSeq before scanning, then follow the changes
// after it.
func (s *SQL) ScanVL2(ctx context.Context, fn func(vnetid uint32, mac ether.MAC, host string) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT vnetid, mac, host FROM vnics`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var vnet, mac int64
		var host string
		if err := rows.Scan(&vnet, &mac, &host); err != nil {
			return err
		}
		if err := fn(uint32(vnet), intMAC(mac), host); err != nil {
			return err
		}
	}
	return rows.Err()
}

// ScanVL3 implements Feed, as ScanVL2 does.
func (s *SQL) ScanVL3(ctx context.Context, fn func(vnetid uint32, ip netip.Addr, mac ether.MAC) error) error {
	rows, err := s.db.QueryContext(ctx, `SELECT vnetid, ip, mac FROM ips`)
	if err != nil {
		return err
	}
	defer rows.Close()
	for rows.Next() {
		var vnet, mac int64
		var ip string
		if err := rows.Scan(&vnet, &ip, &mac); err != nil {
			return err
		}
		a, err := netip.ParseAddr(ip)
		if err != nil {
			return fmt.Errorf("address %q on vnetid %d: %w", ip, vnet, err)
		}
		if err := fn(uint32(vnet), a, intMAC(mac)); err != nil {
			return err
		}
	}
	return rows.Err()
}

var _ Feed = (*SQL)(nil)
