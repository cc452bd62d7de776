package portolan

import "overlaynet/svpwire"

// With Lookups set, a change that logs an entry for 10,000 hosts brings
// 20,000 log requests within a second or two: a LOG_RM of the entry from
// each host, then its next LOG_REQ, which finds the log empty and is
// held. Neither needs the store in the common case (removals are
// written in the background: remove.go), so the reader answers them
// itself (quickLog) rather than waking the connection's worker for each:
// lookups wait for a thread behind every goroutine made runnable.

// quickLog answers, on the reader, a LOG_RM of entries given on this
// connection, appending its reply to dst, or a LOG_REQ for a log known to
// be empty (it is held). It reports false, doing nothing, for anything
// else, which the worker answers. The worker must be idle, so that
// requests stay in order.
func (cn *conn) quickLog(f svpwire.Frame, dst []byte) ([]byte, bool) {
	switch f.Op {
	case svpwire.OpLogRm:
		m, err := svpwire.DecodeLogRm(f.Body)
		if err != nil || !cn.allGiven(m.IDs) {
			return dst, false
		}
		cn.s.forget(m.IDs)
		cn.removed(m.IDs)
		return svpwire.LogRmAck{Status: svpwire.StatusOK}.AppendFrame(dst, f.ID), true
	case svpwire.OpLogReq:
		m, err := svpwire.DecodeLogReq(f.Body)
		if err != nil || !cn.mayHoldQuick(m) {
			return dst, false
		}
		sig := cn.s.Lookups.LogSignal(m.IP)
		if !cn.knownEmpty(m.IP, sig) {
			return dst, false
		}
		cn.held.Add(1)
		cn.s.holds.hold(cn, request{op: f.Op, id: f.ID, msg: m}, m, sig)
		return dst, true
	}
	return dst, false
}

// mayHoldQuick reports whether a LOG_REQ may be held without a question
// to the store: it comes from the host it names, or from an address
// Lookups says may act for it, it has room for an entry, the connection
// holds fewer than maxHeld and the client has not closed its side.
func (cn *conn) mayHoldQuick(m svpwire.LogReq) bool {
	if m.Count < svpwire.LogVL3Size || cn.held.Load() >= maxHeld {
		return false
	}
	select {
	case <-cn.released:
		return false
	default:
	}
	ok, err := cn.s.mayReadLog(cn.ctx, cn.src, m.IP) // from Lookups: no I/O
	return ok && err == nil
}
