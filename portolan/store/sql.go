package store

import (
	"context"
	"crypto/rand"
	"database/sql"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"

	_ "github.com/jackc/pgx/v5/stdlib" // database/sql driver "pgx"
	_ "modernc.org/sqlite"             // database/sql driver "sqlite"

	"overlaynet/ether"
)

// DefaultDSN is the embedded store used when none is given.
const DefaultDSN = "sqlite:/var/lib/portolan/portolan.db"

// dialect holds what differs between SQLite and PostgreSQL.
type dialect struct {
	name    string
	autoinc string // the log's sequence column
	rebind  func(string) string
}

var (
	sqlite   = dialect{name: "sqlite", autoinc: "seq INTEGER PRIMARY KEY AUTOINCREMENT", rebind: func(q string) string { return q }}
	postgres = dialect{name: "postgres", autoinc: "seq BIGSERIAL PRIMARY KEY", rebind: dollarParams}
)

// dollarParams rewrites '?' placeholders as $1, $2, ... for PostgreSQL.
func dollarParams(q string) string {
	var b strings.Builder
	n := 0
	for _, c := range q {
		if c == '?' {
			n++
			fmt.Fprintf(&b, "$%d", n)
			continue
		}
		b.WriteRune(c)
	}
	return b.String()
}

// SQL is the Store over database/sql.
type SQL struct {
	db *sql.DB
	d  dialect
	// The lookups are the hot path: prepared once.
	vl2, vl3, logq *sql.Stmt

	// What Watch needs (watch.go): the SQLite file or the PostgreSQL
	// URL, and the watches running.
	path, dsn string
	w         watches
	created   bool // by the Open that returned it
}

// Created reports whether the Open that returned s created the store
// (the schema, and for SQLite the file).
func (s *SQL) Created() bool { return s.created }

// sqliteIsStore returns nil when the SQLite file at path holds portolan's
// tables, an error wrapping ErrNoStore when it does not. It opens the file
// read-only and changes nothing.
func sqliteIsStore(ctx context.Context, path string) error {
	db, err := sql.Open("sqlite", "file:"+path+"?mode=ro&_pragma=busy_timeout(10000)")
	if err != nil {
		return err
	}
	defer db.Close()
	ok, err := (&SQL{db: db, d: sqlite}).hasSchema(ctx)
	if err != nil {
		return fmt.Errorf("reading %s: %w", path, err)
	}
	if !ok {
		return fmt.Errorf("%w in the file %s", ErrNoTables, path)
	}
	return nil
}

// hasSchema reports whether the database holds portolan's tables.
func (s *SQL) hasSchema(ctx context.Context) (bool, error) {
	q := `SELECT COUNT(*) FROM sqlite_master WHERE type = 'table' AND name = 'hosts'`
	if s.d.name == postgres.name {
		q = `SELECT COUNT(*) FROM information_schema.tables WHERE table_schema = current_schema() AND table_name = 'hosts'`
	}
	var n int
	if err := s.db.QueryRowContext(ctx, q).Scan(&n); err != nil {
		return false, err
	}
	return n > 0, nil
}

// ErrNoStore is returned by OpenExisting for a store that was never
// created: no SQLite file at the path, or a PostgreSQL database without
// portolan's tables.
var ErrNoStore = errors.New("no such store")

// ErrNoTables wraps ErrNoStore for a database that exists (a SQLite file,
// a PostgreSQL database) but holds no portolan tables.
var ErrNoTables = fmt.Errorf("%w: no portolan tables", ErrNoStore)

// Open opens a store: "sqlite:PATH" (the file is created, with its
// directory) or a "postgres://" / "postgresql://" URL. The schema is
// created if missing; Created tells whether this call created it.
func Open(ctx context.Context, dsn string) (*SQL, error) { return open(ctx, dsn, true) }

// OpenExisting opens a store as Open does, but one that exists: it
// creates nothing, and returns an error wrapping ErrNoStore for a SQLite
// path with no file or a PostgreSQL database without portolan's tables.
// Commands that only read, and the server, open their store with it, so
// that a mistyped path is an error instead of a new empty store.
func OpenExisting(ctx context.Context, dsn string) (*SQL, error) { return open(ctx, dsn, false) }

func open(ctx context.Context, dsn string, create bool) (*SQL, error) {
	var s *SQL
	switch {
	case strings.HasPrefix(dsn, "sqlite:"):
		path := strings.TrimPrefix(dsn, "sqlite:")
		if path == "" {
			return nil, fmt.Errorf("store %q: sqlite: needs a file path", dsn)
		}
		mode := "rwc"
		if !create {
			// mode=rw: SQLite itself must not create the file either.
			mode = "rw"
			if _, err := os.Stat(path); errors.Is(err, fs.ErrNotExist) {
				return nil, fmt.Errorf("store %s: %w: the file %s does not exist", dsn, ErrNoStore, path)
			}
			// Look read-only first: a file that is not a store stays as
			// it was (the WAL pragma below would write to it).
			if err := sqliteIsStore(ctx, path); err != nil {
				return nil, fmt.Errorf("store %s: %w", dsn, err)
			}
		} else if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
			return nil, fmt.Errorf("store %s: %w", dsn, err)
		}
		// WAL lets the server read while an admin command writes;
		// immediate transactions and a busy timeout serialise writers
		// from several processes instead of failing them.
		db, err := sql.Open("sqlite", "file:"+path+"?mode="+mode+"&_txlock=immediate&_pragma=busy_timeout(10000)&_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)&_pragma=foreign_keys(ON)")
		if err != nil {
			return nil, fmt.Errorf("store %s: %w", dsn, err)
		}
		db.SetMaxOpenConns(8)
		s = &SQL{db: db, d: sqlite, path: path}
	case strings.HasPrefix(dsn, "postgres://"), strings.HasPrefix(dsn, "postgresql://"):
		db, err := sql.Open("pgx", dsn)
		if err != nil {
			return nil, fmt.Errorf("store: %w", err)
		}
		db.SetMaxOpenConns(32)
		db.SetMaxIdleConns(32)
		s = &SQL{db: db, d: postgres, dsn: dsn}
	default:
		return nil, fmt.Errorf("store %q: want sqlite:PATH or a postgres:// URL", dsn)
	}
	exists, err := s.hasSchema(ctx)
	if err != nil {
		s.db.Close()
		return nil, fmt.Errorf("store %s: %w", redact(dsn), err)
	}
	if !exists && !create {
		s.db.Close()
		if s.d.name == sqlite.name {
			return nil, fmt.Errorf("store %s: %w in the file %s", dsn, ErrNoTables, s.path)
		}
		return nil, fmt.Errorf("store %s: %w in the database", redact(dsn), ErrNoTables)
	}
	s.created = !exists
	if err := s.migrate(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("store %s: %w", redact(dsn), err)
	}
	if err := s.prepare(ctx); err != nil {
		s.db.Close()
		return nil, fmt.Errorf("store %s: %w", redact(dsn), err)
	}
	return s, nil
}

func (s *SQL) prepare(ctx context.Context) error {
	var err error
	s.vl2, err = s.db.PrepareContext(ctx, s.q(`SELECT h.id, h.ip, h.port FROM vnics v JOIN hosts h ON h.id = v.host
		WHERE v.vnetid = ? AND v.mac = ?`))
	if err != nil {
		return err
	}
	s.vl3, err = s.db.PrepareContext(ctx, s.q(`SELECT v.mac, h.id, h.ip, h.port FROM ips i
		JOIN vnics v ON v.vnetid = i.vnetid AND v.mac = i.mac
		JOIN hosts h ON h.id = v.host
		WHERE i.vnetid = ? AND i.ip = ?`))
	if err != nil {
		return err
	}
	// One query for a host's log: a server reads it for every host after
	// each change. A known host with an empty log gives one row of NULLs;
	// an unknown host no row.
	s.logq, err = s.db.PrepareContext(ctx, s.q(`SELECT l.id, l.type, l.vnetid, l.mac, l.ip, l.vlan
		FROM hosts h LEFT JOIN log l ON l.host = h.id WHERE h.ip = ? ORDER BY l.seq LIMIT ?`))
	return err
}

// Redact returns dsn with a password in it hidden, for messages and logs.
func Redact(dsn string) string { return redact(dsn) }

// String names the store as its DSN does, without a password.
func (s *SQL) String() string {
	if s.path != "" {
		return "sqlite:" + s.path
	}
	return redact(s.dsn)
}

// redact hides a password in a URL for error messages.
func redact(dsn string) string {
	if i := strings.Index(dsn, "://"); i >= 0 {
		if at := strings.LastIndex(dsn, "@"); at > i {
			if c := strings.Index(dsn[i+3:at], ":"); c >= 0 {
				return dsn[:i+3+c] + ":xxx" + dsn[at:]
			}
		}
	}
	return dsn
}

func (s *SQL) migrate(ctx context.Context) error {
	stmts := []string{
		`CREATE TABLE IF NOT EXISTS hosts (
			id   TEXT PRIMARY KEY,
			ip   TEXT NOT NULL UNIQUE,
			port INTEGER NOT NULL)`,
		`CREATE TABLE IF NOT EXISTS vnics (
			vnetid BIGINT NOT NULL,
			mac    BIGINT NOT NULL,
			vlan   INTEGER NOT NULL,
			host   TEXT NOT NULL REFERENCES hosts(id),
			PRIMARY KEY (vnetid, mac))`,
		`CREATE INDEX IF NOT EXISTS vnics_host ON vnics(host)`,
		`CREATE TABLE IF NOT EXISTS ips (
			vnetid BIGINT NOT NULL,
			ip     TEXT NOT NULL,
			mac    BIGINT NOT NULL,
			PRIMARY KEY (vnetid, ip),
			FOREIGN KEY (vnetid, mac) REFERENCES vnics(vnetid, mac) ON DELETE CASCADE)`,
		`CREATE TABLE IF NOT EXISTS log (` + s.d.autoinc + `,
			id     TEXT NOT NULL UNIQUE,
			host   TEXT NOT NULL,
			type   INTEGER NOT NULL,
			vnetid BIGINT NOT NULL,
			mac    BIGINT NOT NULL,
			ip     TEXT NOT NULL,
			vlan   INTEGER NOT NULL)`,
		`CREATE INDEX IF NOT EXISTS log_host ON log(host, seq)`,
		// Added after the first release: stores made before it gain the
		// table (empty: every host then acts from its underlay IP only)
		// the next time they are opened.
		`CREATE TABLE IF NOT EXISTS host_sources (
			host TEXT NOT NULL REFERENCES hosts(id) ON DELETE CASCADE,
			addr TEXT NOT NULL,
			PRIMARY KEY (host, addr))`,
		`CREATE INDEX IF NOT EXISTS host_sources_addr ON host_sources(addr)`,
		// The change feed (feed.go), added after host sources: stores
		// made before it gain it empty, the follower starting at 0.
		`CREATE TABLE IF NOT EXISTS changes (` + s.d.autoinc + `,
			kind   INTEGER NOT NULL,
			host   TEXT NOT NULL,
			vnetid BIGINT NOT NULL,
			mac    BIGINT NOT NULL,
			ip     TEXT NOT NULL)`,
		// One row: every change with seq <= pruned_through is deleted.
		`CREATE TABLE IF NOT EXISTS changes_meta (
			id             INTEGER PRIMARY KEY CHECK (id = 1),
			pruned_through BIGINT NOT NULL)`,
		`INSERT INTO changes_meta (id, pruned_through) VALUES (1, 0) ON CONFLICT DO NOTHING`,
	}
	for _, q := range stmts {
		if _, err := s.db.ExecContext(ctx, q); err != nil {
			return fmt.Errorf("create schema: %w", err)
		}
	}
	return nil
}

// Close implements Store. It stops every watch (closing their channels)
// first.
func (s *SQL) Close() error {
	s.stopWatches()
	s.vl2.Close()
	s.vl3.Close()
	s.logq.Close()
	return s.db.Close()
}

func (s *SQL) q(q string) string { return s.d.rebind(q) }

func macInt(m ether.MAC) int64 {
	var b [8]byte
	copy(b[2:], m[:])
	return int64(binary.BigEndian.Uint64(b[:]))
}

func intMAC(v int64) ether.MAC {
	var b [8]byte
	binary.BigEndian.PutUint64(b[:], uint64(v))
	return ether.MAC(b[2:])
}

// PutHost implements Store.
func (s *SQL) PutHost(ctx context.Context, h Host) error {
	return s.tx(ctx, func(tx *wtx) error { return s.putHost(ctx, tx, h) })
}

// SetHost implements Store.
func (s *SQL) SetHost(ctx context.Context, h Host, sources []netip.Addr) error {
	return s.tx(ctx, func(tx *wtx) error {
		if err := s.putHost(ctx, tx, h); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM host_sources WHERE host = ?`), h.ID); err != nil {
			return err
		}
		for _, a := range sources {
			if !a.IsValid() {
				return fmt.Errorf("host %s: an invalid source address", h.ID)
			}
			_, err := tx.ExecContext(ctx, s.q(`INSERT INTO host_sources (host, addr) VALUES (?, ?)`), h.ID, a.Unmap().String())
			if err = uniqueErr(err, fmt.Sprintf("host %s: source address %s given twice", h.ID, a.Unmap())); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *SQL) putHost(ctx context.Context, tx *wtx, h Host) error {
	// Recorded even when nothing changes: following it is harmless.
	tx.change(Change{Kind: ChangeHost, Host: h.ID})
	var oldIP string
	var oldPort int
	err := tx.QueryRowContext(ctx, s.q(`SELECT ip, port FROM hosts WHERE id = ?`), h.ID).Scan(&oldIP, &oldPort)
	isNew := errors.Is(err, sql.ErrNoRows)
	if err != nil && !isNew {
		return err
	}
	if oldIP != h.IP.String() {
		// Name the host that has the address (see insertVNIC).
		var other string
		err := tx.QueryRowContext(ctx, s.q(`SELECT id FROM hosts WHERE ip = ?`), h.IP.String()).Scan(&other)
		switch {
		case err == nil:
			return fmt.Errorf("underlay address %s is already host %s's: %w", h.IP, other, ErrExists)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
	}
	if isNew {
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO hosts (id, ip, port) VALUES (?, ?, ?)`), h.ID, h.IP.String(), int(h.Port))
		return uniqueErr(err, fmt.Sprintf("underlay address %s is already another host's", h.IP))
	}
	if oldIP == h.IP.String() && oldPort == int(h.Port) {
		return nil
	}
	if _, err := tx.ExecContext(ctx, s.q(`UPDATE hosts SET ip = ?, port = ? WHERE id = ?`), h.IP.String(), int(h.Port), h.ID); err != nil {
		return uniqueErr(err, fmt.Sprintf("underlay address %s is already another host's", h.IP))
	}
	// Every cached answer pointing at the old address is wrong now.
	rows, err := tx.QueryContext(ctx, s.q(`SELECT vnetid, mac FROM vnics WHERE host = ?`), h.ID)
	if err != nil {
		return err
	}
	var vs []VNIC
	for rows.Next() {
		var vnet, mac int64
		if err := rows.Scan(&vnet, &mac); err != nil {
			rows.Close()
			return err
		}
		vs = append(vs, VNIC{VNetID: uint32(vnet), MAC: intMAC(mac)})
	}
	rows.Close()
	for _, v := range vs {
		if err := s.logChange(ctx, tx, v.VNetID, nil, LogEntry{Type: LogVL2, VNetID: v.VNetID, MAC: v.MAC}); err != nil {
			return err
		}
	}
	return nil
}

// RemoveHost implements Store.
func (s *SQL) RemoveHost(ctx context.Context, id string) error {
	return s.tx(ctx, func(tx *wtx) error {
		var n int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM vnics WHERE host = ?`), id).Scan(&n); err != nil {
			return err
		}
		if n > 0 {
			return fmt.Errorf("host %s still holds %d VNIC(s); remove or move them first: %w", id, n, ErrInUse)
		}
		res, err := tx.ExecContext(ctx, s.q(`DELETE FROM hosts WHERE id = ?`), id)
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("host %s: %w", id, ErrNotFound)
		}
		tx.change(Change{Kind: ChangeHost, Host: id})
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM host_sources WHERE host = ?`), id); err != nil {
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`DELETE FROM log WHERE host = ?`), id)
		return err
	})
}

// Sources implements Store.
func (s *SQL) Sources(ctx context.Context) (map[string][]netip.Addr, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT host, addr FROM host_sources`)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	out := map[string][]netip.Addr{}
	for rows.Next() {
		var host, addr string
		if err := rows.Scan(&host, &addr); err != nil {
			return nil, err
		}
		a, _ := netip.ParseAddr(addr)
		out[host] = append(out[host], a)
	}
	for _, as := range out {
		slices.SortFunc(as, netip.Addr.Compare)
	}
	return out, rows.Err()
}

// HostsFrom implements Store.
func (s *SQL) HostsFrom(ctx context.Context, src netip.Addr) ([]Host, error) {
	a := src.Unmap().String()
	rows, err := s.db.QueryContext(ctx, s.q(`SELECT id, ip, port FROM hosts WHERE ip = ?
		UNION SELECT h.id, h.ip, h.port FROM hosts h JOIN host_sources hs ON hs.host = h.id WHERE hs.addr = ?
		ORDER BY id`), a, a)
	return scanHosts(rows, err)
}

// Hosts implements Store.
func (s *SQL) Hosts(ctx context.Context) ([]Host, error) {
	rows, err := s.db.QueryContext(ctx, `SELECT id, ip, port FROM hosts ORDER BY id`)
	return scanHosts(rows, err)
}

// scanHosts reads the (id, ip, port) rows of a host query.
func scanHosts(rows *sql.Rows, err error) ([]Host, error) {
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []Host
	for rows.Next() {
		var h Host
		var ip string
		var port int
		if err := rows.Scan(&h.ID, &ip, &port); err != nil {
			return nil, err
		}
		h.IP, _ = netip.ParseAddr(ip)
		h.Port = uint16(port)
		out = append(out, h)
	}
	return out, rows.Err()
}

// AddVNIC implements Store.
func (s *SQL) AddVNIC(ctx context.Context, v VNIC) error { return s.AddVNICs(ctx, []VNIC{v}) }

// AddVNICs adds many VNICs in one transaction: an import. Log entries go
// to the hosts of each affected vnetid once per VNIC, as for AddVNIC.
func (s *SQL) AddVNICs(ctx context.Context, vs []VNIC) error {
	return s.tx(ctx, func(tx *wtx) error {
		hostsOf := map[uint32][]string{}
		for _, v := range vs {
			if err := s.insertVNIC(ctx, tx, v); err != nil {
				return err
			}
			tx.change(Change{Kind: ChangeVNIC, VNetID: v.VNetID, MAC: v.MAC})
			for _, ip := range v.IPs {
				tx.change(Change{Kind: ChangeIP, VNetID: v.VNetID, IP: ip.Unmap()})
			}
			hosts, ok := hostsOf[v.VNetID]
			if !ok {
				var err error
				if hosts, err = s.hostsOn(ctx, tx, v.VNetID); err != nil {
					return err
				}
				hostsOf[v.VNetID] = hosts
			}
			// A host may remember the MAC or its addresses as unknown.
			entries := []LogEntry{{Type: LogVL2, VNetID: v.VNetID, MAC: v.MAC}}
			for _, ip := range v.IPs {
				entries = append(entries, LogEntry{Type: LogVL3, VNetID: v.VNetID, IP: ip, VLAN: v.VLAN})
			}
			if err := s.appendLog(ctx, tx, hosts, entries...); err != nil {
				return err
			}
		}
		return nil
	})
}

func (s *SQL) insertVNIC(ctx context.Context, tx *wtx, v VNIC) error {
	var exists int
	if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM hosts WHERE id = ?`), v.Host).Scan(&exists); err != nil {
		return err
	}
	if exists == 0 {
		return fmt.Errorf("host %s: %w (add it first)", v.Host, ErrNotFound)
	}
	_, err := tx.ExecContext(ctx, s.q(`INSERT INTO vnics (vnetid, mac, vlan, host) VALUES (?, ?, ?, ?)`),
		int64(v.VNetID), macInt(v.MAC), int(v.VLAN), v.Host)
	if err = uniqueErr(err, fmt.Sprintf("VNIC %s on vnetid %d", ether.Short(v.MAC), v.VNetID)); err != nil {
		return err
	}
	for _, ip := range v.IPs {
		// Name the holder: a unique violation alone cannot (and on
		// PostgreSQL it ends the transaction, so it is looked up first).
		var holder int64
		var host string
		err := tx.QueryRowContext(ctx, s.q(`SELECT i.mac, v.host FROM ips i JOIN vnics v ON v.vnetid = i.vnetid AND v.mac = i.mac
			WHERE i.vnetid = ? AND i.ip = ?`), int64(v.VNetID), ip.Unmap().String()).Scan(&holder, &host)
		switch {
		case err == nil:
			m := intMAC(holder)
			return fmt.Errorf("address %s on vnetid %d is already VNIC %s's (on host %s): %w", ip, v.VNetID, ether.Short(m), host, ErrExists)
		case !errors.Is(err, sql.ErrNoRows):
			return err
		}
		_, err = tx.ExecContext(ctx, s.q(`INSERT INTO ips (vnetid, ip, mac) VALUES (?, ?, ?)`),
			int64(v.VNetID), ip.Unmap().String(), macInt(v.MAC))
		if err = uniqueErr(err, fmt.Sprintf("address %s on vnetid %d is already another VNIC's", ip, v.VNetID)); err != nil {
			return err
		}
	}
	return nil
}

// MoveVNIC implements Store.
func (s *SQL) MoveVNIC(ctx context.Context, vnetid uint32, mac ether.MAC, host string) error {
	return s.tx(ctx, func(tx *wtx) error {
		var exists int
		if err := tx.QueryRowContext(ctx, s.q(`SELECT count(*) FROM hosts WHERE id = ?`), host).Scan(&exists); err != nil {
			return err
		}
		if exists == 0 {
			return fmt.Errorf("host %s: %w", host, ErrNotFound)
		}
		before, err := s.hostsOn(ctx, tx, vnetid)
		if err != nil {
			return err
		}
		res, err := tx.ExecContext(ctx, s.q(`UPDATE vnics SET host = ? WHERE vnetid = ? AND mac = ?`), host, int64(vnetid), macInt(mac))
		if err != nil {
			return err
		}
		if n, _ := res.RowsAffected(); n == 0 {
			return fmt.Errorf("VNIC %s on vnetid %d: %w", ether.Short(mac), vnetid, ErrNotFound)
		}
		tx.change(Change{Kind: ChangeVNIC, VNetID: vnetid, MAC: mac})
		return s.logChange(ctx, tx, vnetid, before, LogEntry{Type: LogVL2, VNetID: vnetid, MAC: mac})
	})
}

// RemoveVNIC implements Store.
func (s *SQL) RemoveVNIC(ctx context.Context, vnetid uint32, mac ether.MAC) error {
	return s.tx(ctx, func(tx *wtx) error {
		before, err := s.hostsOn(ctx, tx, vnetid)
		if err != nil {
			return err
		}
		var vlan int
		err = tx.QueryRowContext(ctx, s.q(`SELECT vlan FROM vnics WHERE vnetid = ? AND mac = ?`), int64(vnetid), macInt(mac)).Scan(&vlan)
		if errors.Is(err, sql.ErrNoRows) {
			return fmt.Errorf("VNIC %s on vnetid %d: %w", ether.Short(mac), vnetid, ErrNotFound)
		} else if err != nil {
			return err
		}
		entries := []LogEntry{{Type: LogVL2, VNetID: vnetid, MAC: mac}}
		ips, err := s.ipsOf(ctx, tx, vnetid, mac)
		if err != nil {
			return err
		}
		tx.change(Change{Kind: ChangeVNIC, VNetID: vnetid, MAC: mac})
		for _, ip := range ips {
			entries = append(entries, LogEntry{Type: LogVL3, VNetID: vnetid, IP: ip, VLAN: uint16(vlan)})
			tx.change(Change{Kind: ChangeIP, VNetID: vnetid, IP: ip})
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM ips WHERE vnetid = ? AND mac = ?`), int64(vnetid), macInt(mac)); err != nil {
			return err
		}
		if _, err := tx.ExecContext(ctx, s.q(`DELETE FROM vnics WHERE vnetid = ? AND mac = ?`), int64(vnetid), macInt(mac)); err != nil {
			return err
		}
		return s.logChange(ctx, tx, vnetid, before, entries...)
	})
}

// VNICs implements Store.
func (s *SQL) VNICs(ctx context.Context, vnetid uint32, all bool) ([]VNIC, error) {
	q := `SELECT vnetid, mac, vlan, host FROM vnics`
	var args []any
	if !all {
		q += ` WHERE vnetid = ?`
		args = append(args, int64(vnetid))
	}
	rows, err := s.db.QueryContext(ctx, s.q(q+` ORDER BY vnetid, mac`), args...)
	if err != nil {
		return nil, err
	}
	var out []VNIC
	for rows.Next() {
		var vnet, mac int64
		var vlan int
		var v VNIC
		if err := rows.Scan(&vnet, &mac, &vlan, &v.Host); err != nil {
			rows.Close()
			return nil, err
		}
		v.VNetID, v.MAC, v.VLAN = uint32(vnet), intMAC(mac), uint16(vlan)
		out = append(out, v)
	}
	rows.Close()
	for i := range out {
		if out[i].IPs, err = s.ipsOf(ctx, s.db, out[i].VNetID, out[i].MAC); err != nil {
			return nil, err
		}
	}
	return out, nil
}

type querier interface {
	QueryContext(ctx context.Context, q string, args ...any) (*sql.Rows, error)
}

func (s *SQL) ipsOf(ctx context.Context, db querier, vnetid uint32, mac ether.MAC) ([]netip.Addr, error) {
	rows, err := db.QueryContext(ctx, s.q(`SELECT ip FROM ips WHERE vnetid = ? AND mac = ? ORDER BY ip`), int64(vnetid), macInt(mac))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []netip.Addr
	for rows.Next() {
		var ip string
		if err := rows.Scan(&ip); err != nil {
			return nil, err
		}
		a, _ := netip.ParseAddr(ip)
		out = append(out, a)
	}
	return out, rows.Err()
}

// VL2 implements Store.
func (s *SQL) VL2(ctx context.Context, vnetid uint32, mac ether.MAC) (Host, bool, error) {
	var h Host
	var ip string
	var port int
	err := s.vl2.QueryRowContext(ctx, int64(vnetid), macInt(mac)).Scan(&h.ID, &ip, &port)
	if errors.Is(err, sql.ErrNoRows) {
		return h, false, nil
	} else if err != nil {
		return h, false, err
	}
	h.IP, _ = netip.ParseAddr(ip)
	h.Port = uint16(port)
	return h, true, nil
}

// VL3 implements Store.
func (s *SQL) VL3(ctx context.Context, vnetid uint32, addr netip.Addr) (ether.MAC, Host, bool, error) {
	var h Host
	var ip string
	var port int
	var mac int64
	err := s.vl3.QueryRowContext(ctx, int64(vnetid), addr.Unmap().String()).Scan(&mac, &h.ID, &ip, &port)
	if errors.Is(err, sql.ErrNoRows) {
		return ether.MAC{}, h, false, nil
	} else if err != nil {
		return ether.MAC{}, h, false, err
	}
	h.IP, _ = netip.ParseAddr(ip)
	h.Port = uint16(port)
	return intMAC(mac), h, true, nil
}

// logRow is a log entry as the log queries give it: NULLs in a host's
// row when its log is empty (a LEFT JOIN from hosts).
type logRow struct {
	id, ip               sql.NullString
	typ, vnet, mac, vlan sql.NullInt64
}

// dest is what rows.Scan fills, in the queries' column order: id, type,
// vnetid, mac, ip, vlan.
func (r *logRow) dest() []any {
	return []any{&r.id, &r.typ, &r.vnet, &r.mac, &r.ip, &r.vlan}
}

func (r *logRow) entry() LogEntry {
	var e LogEntry
	hex.Decode(e.ID[:], []byte(r.id.String))
	e.Type, e.VNetID, e.MAC, e.VLAN = uint32(r.typ.Int64), uint32(r.vnet.Int64), intMAC(r.mac.Int64), uint16(r.vlan.Int64)
	e.IP, _ = netip.ParseAddr(r.ip.String)
	return e
}

// Log implements Store.
func (s *SQL) Log(ctx context.Context, hostIP netip.Addr, maxBytes int) ([]LogEntry, error) {
	limit := max(maxBytes/32, 1) // one row tells a known host from an unknown one
	rows, err := s.logq.QueryContext(ctx, hostIP.Unmap().String(), limit)
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []LogEntry
	known, total := false, 0
	for rows.Next() {
		known = true
		var r logRow
		if err := rows.Scan(r.dest()...); err != nil {
			return nil, err
		}
		if !r.id.Valid {
			break // the host's log is empty
		}
		e := r.entry()
		if total+e.Size() > maxBytes {
			break
		}
		total += e.Size()
		out = append(out, e)
	}
	if err := rows.Err(); err != nil {
		return nil, err
	}
	if !known {
		return nil, fmt.Errorf("%s: %w", hostIP, ErrUnknownHost)
	}
	return out, nil
}

// LogRead is one host's log read in a Logs call: IP and MaxBytes as for
// Log, then its result.
type LogRead struct {
	IP       netip.Addr
	MaxBytes int
	Entries  []LogEntry
	Err      error
}

// Logs does many Log reads in a few queries: after a change, a server
// reads the logs of thousands of hosts at once. Each read gets what Log
// would give it; the error returned is for the whole (no read done).
func (s *SQL) Logs(ctx context.Context, reads []LogRead) error {
	const chunk = 250
	for start := 0; start < len(reads); start += chunk {
		if err := s.logs(ctx, reads[start:min(start+chunk, len(reads))]); err != nil {
			return err
		}
	}
	return nil
}

func (s *SQL) logs(ctx context.Context, reads []LogRead) error {
	byIP := make(map[string][]int, len(reads)) // the same host may be read twice
	limit := 1
	args := make([]any, 0, len(reads)+1)
	for i := range reads {
		ip := reads[i].IP.Unmap().String()
		if _, ok := byIP[ip]; !ok {
			args = append(args, ip)
		}
		byIP[ip] = append(byIP[ip], i)
		limit = max(limit, reads[i].MaxBytes/32)
		reads[i].Entries, reads[i].Err = nil, nil
	}
	args = append(args, limit)
	q := `SELECT hip, id, type, vnetid, mac, ip, vlan FROM (
		SELECT h.ip AS hip, l.id, l.type, l.vnetid, l.mac, l.ip, l.vlan, l.seq,
			ROW_NUMBER() OVER (PARTITION BY h.id ORDER BY l.seq) AS rn
		FROM hosts h LEFT JOIN log l ON l.host = h.id
		WHERE h.ip IN (` + strings.TrimSuffix(strings.Repeat("?,", len(args)-1), ",") + `)) t
		WHERE rn <= ? ORDER BY hip, seq`
	rows, err := s.db.QueryContext(ctx, s.q(q), args...)
	if err != nil {
		return err
	}
	defer rows.Close()
	known := make(map[string]bool, len(byIP))
	total := make([]int, len(reads))
	full := make([]bool, len(reads))
	for rows.Next() {
		var hip string
		var r logRow
		if err := rows.Scan(append([]any{&hip}, r.dest()...)...); err != nil {
			return err
		}
		known[hip] = true
		if !r.id.Valid {
			continue // an empty log
		}
		e := r.entry()
		for _, i := range byIP[hip] {
			if full[i] || total[i]+e.Size() > reads[i].MaxBytes {
				full[i] = true // entries stay in order: none after one that did not fit
				continue
			}
			total[i] += e.Size()
			reads[i].Entries = append(reads[i].Entries, e)
		}
	}
	if err := rows.Err(); err != nil {
		return err
	}
	for ip, is := range byIP {
		if !known[ip] {
			for _, i := range is {
				reads[i].Err = fmt.Errorf("%s: %w", reads[i].IP, ErrUnknownHost)
			}
		}
	}
	return nil
}

// RemoveLog implements Store.
func (s *SQL) RemoveLog(ctx context.Context, ids [][16]byte) error {
	if len(ids) == 0 {
		return nil
	}
	// Removing entries names no change for the feed: no advisory lock.
	// At most 500 ids a statement, within every database's limit on
	// parameters: a server removes many hosts' LOG_RMs in one call.
	return s.run(ctx, false, func(tx *wtx) error {
		for start := 0; start < len(ids); start += 500 {
			chunk := ids[start:min(start+500, len(ids))]
			args := make([]any, len(chunk))
			for i, id := range chunk {
				args[i] = hex.EncodeToString(id[:])
			}
			q := `DELETE FROM log WHERE id IN (` + strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",") + `)`
			if _, err := tx.ExecContext(ctx, s.q(q), args...); err != nil {
				return err
			}
		}
		return nil
	})
}

// LogOwners implements Store.
func (s *SQL) LogOwners(ctx context.Context, ids [][16]byte) ([]string, error) {
	seen := map[string]bool{}
	// At most 500 ids a statement, within every database's limit on
	// parameters (a LOG_RM may carry 4,000).
	for start := 0; start < len(ids); start += 500 {
		chunk := ids[start:min(start+500, len(ids))]
		args := make([]any, len(chunk))
		for i, id := range chunk {
			args[i] = hex.EncodeToString(id[:])
		}
		q := `SELECT DISTINCT host FROM log WHERE id IN (` + strings.TrimSuffix(strings.Repeat("?,", len(chunk)), ",") + `)`
		rows, err := s.db.QueryContext(ctx, s.q(q), args...)
		if err != nil {
			return nil, err
		}
		for rows.Next() {
			var h string
			if err := rows.Scan(&h); err != nil {
				rows.Close()
				return nil, err
			}
			seen[h] = true
		}
		rows.Close()
		if err := rows.Err(); err != nil {
			return nil, err
		}
	}
	out := make([]string, 0, len(seen))
	for h := range seen {
		out = append(out, h)
	}
	slices.Sort(out)
	return out, nil
}

// hostsOn returns the hosts holding a VNIC on vnetid: those that may
// cache answers about it.
func (s *SQL) hostsOn(ctx context.Context, tx *wtx, vnetid uint32) ([]string, error) {
	rows, err := tx.QueryContext(ctx, s.q(`SELECT DISTINCT host FROM vnics WHERE vnetid = ?`), int64(vnetid))
	if err != nil {
		return nil, err
	}
	defer rows.Close()
	var out []string
	for rows.Next() {
		var h string
		if err := rows.Scan(&h); err != nil {
			return nil, err
		}
		out = append(out, h)
	}
	return out, rows.Err()
}

// logChange logs entries for every host on vnetid now and every host in
// before (which may have held the changed VNIC).
func (s *SQL) logChange(ctx context.Context, tx *wtx, vnetid uint32, before []string, entries ...LogEntry) error {
	after, err := s.hostsOn(ctx, tx, vnetid)
	if err != nil {
		return err
	}
	seen := map[string]bool{}
	var hosts []string
	for _, h := range append(before, after...) {
		if !seen[h] {
			seen[h] = true
			hosts = append(hosts, h)
		}
	}
	return s.appendLog(ctx, tx, hosts, entries...)
}

func (s *SQL) appendLog(ctx context.Context, tx *wtx, hosts []string, entries ...LogEntry) error {
	if len(entries) == 0 {
		return nil
	}
	// Many rows a statement: a change on a network logs an entry for
	// every host on it, thousands in a cloud, and a statement each would
	// make the write as slow as its round trips.
	const rows = 100 // 700 parameters a statement
	args := make([]any, 0, 7*rows)
	flush := func(n int) error {
		if n == 0 {
			return nil
		}
		q := `INSERT INTO log (id, host, type, vnetid, mac, ip, vlan) VALUES ` +
			strings.TrimSuffix(strings.Repeat("(?, ?, ?, ?, ?, ?, ?),", n), ",")
		if _, err := tx.ExecContext(ctx, s.q(q), args...); err != nil {
			return err
		}
		args = args[:0]
		return nil
	}
	n := 0
	for _, h := range hosts {
		if !tx.logged[h] {
			if tx.logged == nil {
				tx.logged = map[string]bool{}
			}
			tx.logged[h] = true
			tx.change(Change{Kind: ChangeLog, Host: h})
		}
		for _, e := range entries {
			var id [16]byte
			rand.Read(id[:])
			id[6] = id[6]&0x0f | 0x40 // a version 4 UUID
			id[8] = id[8]&0x3f | 0x80
			ip := ""
			if e.IP.IsValid() {
				ip = e.IP.Unmap().String()
			}
			args = append(args, hex.EncodeToString(id[:]), h, int(e.Type), int64(e.VNetID), macInt(e.MAC), ip, int(e.VLAN))
			if n++; n == rows {
				if err := flush(n); err != nil {
					return err
				}
				n = 0
			}
		}
	}
	return flush(n)
}

// wtx is a writing transaction and the change records it makes, written
// just before it commits.
type wtx struct {
	*sql.Tx
	changes []Change
	logged  map[string]bool // hosts with a ChangeLog among changes
}

func (w *wtx) change(c Change) { w.changes = append(w.changes, c) }

// tx runs fn in a writing transaction that records changes for the feed
// (see feed.go). On PostgreSQL it first takes the feed's advisory lock,
// so that change sequence numbers commit in order.
func (s *SQL) tx(ctx context.Context, fn func(*wtx) error) error {
	return s.run(ctx, true, fn)
}

func (s *SQL) run(ctx context.Context, feed bool, fn func(*wtx) error) error {
	tx, err := s.db.BeginTx(ctx, nil)
	if err != nil {
		return err
	}
	w := &wtx{Tx: tx}
	if feed && s.d.name == postgres.name {
		if _, err := tx.ExecContext(ctx, `SELECT pg_advisory_xact_lock($1)`, feedLock); err != nil {
			tx.Rollback()
			return err
		}
	}
	if err := fn(w); err != nil {
		tx.Rollback()
		return err
	}
	if len(w.changes) > 0 {
		if !feed {
			tx.Rollback()
			return errors.New("store: changes recorded outside a feed transaction")
		}
		if err := s.writeChanges(ctx, w); err != nil {
			tx.Rollback()
			return err
		}
	}
	if err := tx.Commit(); err != nil {
		return err
	}
	if len(w.changes) > 0 {
		s.signalLocal()
	}
	return nil
}

// uniqueErr turns a unique-constraint violation into ErrExists with a
// message; other errors pass through.
func uniqueErr(err error, what string) error {
	if err == nil {
		return nil
	}
	msg := strings.ToLower(err.Error())
	if strings.Contains(msg, "unique") || strings.Contains(msg, "duplicate key") {
		return fmt.Errorf("%s: %w", what, ErrExists)
	}
	return err
}

// Import adds many VNICs without logging changes: for loading a store
// (nobody can have cached answers about VNICs that did not exist), not
// for changing a live one. Rows go in multi-row statements, in one
// transaction, which records a single ChangeReload for the feed.
func (s *SQL) Import(ctx context.Context, vs []VNIC) error {
	const rows = 500
	if len(vs) == 0 {
		return nil
	}
	return s.tx(ctx, func(tx *wtx) error {
		tx.change(Change{Kind: ChangeReload})
		for start := 0; start < len(vs); start += rows {
			chunk := vs[start:min(start+rows, len(vs))]
			var b strings.Builder
			b.WriteString(`INSERT INTO vnics (vnetid, mac, vlan, host) VALUES `)
			args := make([]any, 0, 4*len(chunk))
			var ipArgs []any
			for i, v := range chunk {
				if i > 0 {
					b.WriteByte(',')
				}
				b.WriteString("(?, ?, ?, ?)")
				args = append(args, int64(v.VNetID), macInt(v.MAC), int(v.VLAN), v.Host)
				for _, ip := range v.IPs {
					ipArgs = append(ipArgs, int64(v.VNetID), ip.Unmap().String(), macInt(v.MAC))
				}
			}
			if _, err := tx.ExecContext(ctx, s.q(b.String()), args...); err != nil {
				return uniqueErr(err, "a VNIC in the import")
			}
			// At most 500 addresses a statement, within every database's
			// limit on parameters.
			for len(ipArgs) > 0 {
				n := min(len(ipArgs), 3*rows)
				q := `INSERT INTO ips (vnetid, ip, mac) VALUES ` + strings.TrimSuffix(strings.Repeat("(?, ?, ?),", n/3), ",")
				if _, err := tx.ExecContext(ctx, s.q(q), ipArgs[:n]...); err != nil {
					return uniqueErr(err, "an address in the import")
				}
				ipArgs = ipArgs[n:]
			}
		}
		return nil
	})
}
