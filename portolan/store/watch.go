package store

import (
	"context"
	"database/sql"
	"errors"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"
	"github.com/jackc/pgx/v5"
)

// pgChannel is the PostgreSQL notification channel every writing
// transaction notifies.
const pgChannel = "portolan_changes"

// Tuning of the watches; variables so that tests can change them.
var (
	// sqlitePoll is how often a SQLite watch reads PRAGMA data_version
	// in case a file event was missed.
	sqlitePoll = 250 * time.Millisecond
	// sqliteRecheck: on a file event (which comes as the WAL is written,
	// a moment before the commit is visible) the watch signals at once
	// (the follower most often sees the commit by the time it reads)
	// and reads data_version after these delays from the last event,
	// signalling when it moved. (Reading data_version at the event
	// instead was slower: p50 15 µs, p99 1 ms against 5 µs and 60 µs.)
	sqliteRecheck = []time.Duration{250 * time.Microsecond, 2 * time.Millisecond, 20 * time.Millisecond}
	// sqliteEvents turns file events off (tests of the poll alone).
	sqliteEvents = true
	// pgBackoff: the first and longest wait before reconnecting a lost
	// LISTEN connection.
	pgBackoff, pgBackoffMax = 10 * time.Millisecond, time.Second
	// pgPing: a LISTEN connection idle this long is pinged, so that a
	// dead one is found (and replaced) rather than waited on for ever.
	pgPing, pgPingTimeout = 30 * time.Second, 10 * time.Second
)

// watches are the Watch channels of one *SQL.
type watches struct {
	mu     sync.Mutex
	closed bool
	chans  map[chan struct{}]bool
	stop   chan struct{} // closed by Close
	wg     sync.WaitGroup
	err    error // the last failure of any watch
}

// signal sends without blocking: a pending signal covers this one.
func signal(ch chan struct{}) {
	select {
	case ch <- struct{}{}:
	default:
	}
}

// signalLocal signals every watch of this *SQL: a write through it has
// committed. Other writers are seen through the file or LISTEN.
func (s *SQL) signalLocal() {
	s.w.mu.Lock()
	for ch := range s.w.chans {
		signal(ch)
	}
	s.w.mu.Unlock()
}

func (s *SQL) setWatchErr(err error) {
	s.w.mu.Lock()
	s.w.err = err
	s.w.mu.Unlock()
}

// WatchErr returns the last failure of a watch (a lost or refused
// LISTEN connection, a file watch or data_version read that failed), or
// nil if none ever failed. It stays set after the watch recovers: it is
// for logs and health checks, not for deciding anything.
func (s *SQL) WatchErr() error {
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	return s.w.err
}

func (s *SQL) stopWatches() {
	s.w.mu.Lock()
	if s.w.closed {
		s.w.mu.Unlock()
		return
	}
	s.w.closed = true
	if s.w.stop != nil {
		close(s.w.stop)
	}
	s.w.mu.Unlock()
	s.w.wg.Wait()
}

// Watch implements Feed. Each call starts its own watch (on PostgreSQL
// its own LISTEN connection; on SQLite a file watch and a connection of
// its own), so a follower calls it once. The first signal comes once the
// watch is established: a follower that loaded before calling Watch
// catches up then. Signals may be spurious (a checkpoint, a recovered
// connection): the follower reads Changes and may find none. The
// channel is closed when ctx ends or the store is closed.
func (s *SQL) Watch(ctx context.Context) <-chan struct{} {
	ch := make(chan struct{}, 1)
	s.w.mu.Lock()
	defer s.w.mu.Unlock()
	if s.w.closed {
		close(ch)
		return ch
	}
	if s.w.chans == nil {
		s.w.chans = map[chan struct{}]bool{}
		s.w.stop = make(chan struct{})
	}
	s.w.chans[ch] = true
	ctx, cancel := context.WithCancel(ctx)
	stop := s.w.stop
	s.w.wg.Add(1)
	go func() {
		defer s.w.wg.Done()
		defer cancel()
		go func() {
			select {
			case <-stop:
				cancel()
			case <-ctx.Done():
			}
		}()
		if s.d.name == postgres.name {
			s.watchPG(ctx, ch)
		} else {
			s.watchSQLite(ctx, ch)
		}
		s.w.mu.Lock()
		delete(s.w.chans, ch)
		close(ch)
		s.w.mu.Unlock()
	}()
	return ch
}

// watchSQLite follows the database file: inotify (through fsnotify) on
// its directory for writes to the file and its WAL, and PRAGMA
// data_version on a connection of its own, which changes when another
// connection commits.
func (s *SQL) watchSQLite(ctx context.Context, ch chan struct{}) {
	var events <-chan fsnotify.Event
	var errs <-chan error
	if sqliteEvents {
		fw, err := fsnotify.NewWatcher()
		if err == nil {
			if err = fw.Add(filepath.Dir(s.path)); err != nil {
				fw.Close()
			}
		}
		if err != nil {
			s.setWatchErr(err) // the poll alone goes on
		} else {
			defer fw.Close()
			events, errs = fw.Events, fw.Errors
		}
	}
	base := filepath.Base(s.path)

	db, err := sql.Open("sqlite", "file:"+s.path+"?_pragma=busy_timeout(10000)")
	if err != nil {
		s.setWatchErr(err)
		return
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	var conn *sql.Conn
	defer func() {
		if conn != nil {
			conn.Close()
		}
	}()
	last := int64(-1)
	// check reads data_version and signals when it moved; when it cannot
	// read it, it signals anyway.
	check := func() {
		if conn == nil {
			c, err := db.Conn(ctx)
			if err != nil {
				if ctx.Err() == nil {
					s.setWatchErr(err)
					signal(ch)
				}
				return
			}
			conn = c
		}
		var v int64
		if err := conn.QueryRowContext(ctx, `PRAGMA data_version`).Scan(&v); err != nil {
			if ctx.Err() == nil {
				s.setWatchErr(err)
				conn.Close()
				conn = nil
				signal(ch)
			}
			return
		}
		if last >= 0 && v != last {
			signal(ch)
		}
		last = v
	}
	check()
	signal(ch) // established

	poll := time.NewTicker(sqlitePoll)
	defer poll.Stop()
	recheck := time.NewTimer(time.Hour)
	recheck.Stop()
	defer recheck.Stop()
	stage := 0
	for {
		select {
		case <-ctx.Done():
			return
		case ev, ok := <-events:
			if !ok {
				events = nil
				continue
			}
			if n := filepath.Base(ev.Name); n != base && n != base+"-wal" {
				continue
			}
			signal(ch)
			stage = 0
			recheck.Reset(sqliteRecheck[0])
		case err, ok := <-errs:
			if !ok {
				errs = nil
				continue
			}
			s.setWatchErr(err)
			signal(ch) // an overflow: events were lost
		case <-recheck.C:
			check()
			if stage++; stage < len(sqliteRecheck) {
				recheck.Reset(sqliteRecheck[stage] - sqliteRecheck[stage-1])
			}
		case <-poll.C:
			check()
		}
	}
}

// watchPG LISTENs on a connection of its own, reconnecting (after
// pgBackoff, doubling to pgBackoffMax) whenever it is lost and
// signalling after each (re)connection, since notifications may have
// been missed meanwhile.
func (s *SQL) watchPG(ctx context.Context, ch chan struct{}) {
	backoff := pgBackoff
	for {
		err := s.listen(ctx, ch, func() { backoff = pgBackoff })
		if ctx.Err() != nil {
			return
		}
		s.setWatchErr(err)
		t := time.NewTimer(backoff)
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
		backoff = min(2*backoff, pgBackoffMax)
	}
}

// listen connects, LISTENs, calls up and signals, then signals for every
// notification until the connection fails.
func (s *SQL) listen(ctx context.Context, ch chan struct{}, up func()) error {
	conn, err := pgx.Connect(ctx, s.dsn)
	if err != nil {
		return err
	}
	defer func() {
		cctx, cancel := context.WithTimeout(context.Background(), time.Second)
		conn.Close(cctx)
		cancel()
	}()
	if _, err := conn.Exec(ctx, "LISTEN "+pgChannel); err != nil {
		return err
	}
	up()
	signal(ch)
	for {
		wctx, cancel := context.WithTimeout(ctx, pgPing)
		_, err := conn.WaitForNotification(wctx)
		cancel()
		switch {
		case err == nil:
			signal(ch)
		case ctx.Err() != nil:
			return ctx.Err()
		case errors.Is(err, context.DeadlineExceeded) && !conn.IsClosed():
			// Idle: make sure the connection still works. LISTEN again
			// rather than ping, so that pg_stat_activity goes on
			// showing what the connection is for.
			pctx, cancel := context.WithTimeout(ctx, pgPingTimeout)
			_, err = conn.Exec(pctx, "LISTEN "+pgChannel)
			cancel()
			if err != nil {
				return err
			}
		default:
			return err
		}
	}
}
