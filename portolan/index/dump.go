package index

import (
	"bufio"
	"bytes"
	"cmp"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"unicode"

	"overlaynet/ether"
	"overlaynet/portolan/store"
)

// The dump format is text, one record a line, fields separated by one
// space, every kind sorted:
//
//	seq SEQ
//	host ID IP PORT SOURCES     (SOURCES comma-separated, or -)
//	vl2 VNETID MAC HOST
//	vl3 VNETID IP MAC
//
// hosts by ID, VL2 mappings by vnetid then MAC, VL3 mappings by vnetid
// then address (IPv4 first). A host ID that is empty or holds a space, a
// quote or an unprintable character is written as a Go string literal.
// A VL2 mapping whose host is gone (answered by nothing) is not written.

type snapHost struct {
	h       store.Host
	sources []netip.Addr
}

type vl2Ent struct {
	k    vl2Key
	host uint32
}

type vl4Ent struct {
	k   vl3Key4
	mac ether.MAC
}

type vl6Ent struct {
	k   vl3Key6
	mac ether.MAC
}

// snap is a sorted copy of a state, taken under the read lock so that
// writing it out holds nothing.
type snap struct {
	seq   int64
	hosts []snapHost // live, by ID
	names []string   // host ID by slot
	vl2   []vl2Ent
	vl4   []vl4Ent
	vl6   []vl6Ent
}

func (ix *Index) snap() *snap {
	ix.mu.RLock()
	st := ix.st
	s := &snap{seq: ix.seq, names: make([]string, len(st.hosts)),
		vl2: make([]vl2Ent, 0, st.vl2.len()), vl4: make([]vl4Ent, 0, st.vl4.len()), vl6: make([]vl6Ent, 0, st.vl6.len())}
	for i, sl := range st.hosts {
		s.names[i] = sl.h.ID
		if sl.alive {
			s.hosts = append(s.hosts, snapHost{sl.h, sl.sources})
		}
	}
	st.vl2.all(func(k vl2K, r hostRef) {
		if st.hosts[r.idx()].alive {
			s.vl2 = append(s.vl2, vl2Ent{k.key(), r.idx()})
		}
	})
	st.vl4.all(func(k vl4K, m ether.MAC) { s.vl4 = append(s.vl4, vl4Ent{k.key(), m}) })
	st.vl6.all(func(k vl6K, m ether.MAC) { s.vl6 = append(s.vl6, vl6Ent{k.key(), m}) })
	ix.mu.RUnlock()
	slices.SortFunc(s.hosts, func(a, b snapHost) int { return cmp.Compare(a.h.ID, b.h.ID) })
	slices.SortFunc(s.vl2, func(a, b vl2Ent) int { return cmpVL2(a.k, b.k) })
	slices.SortFunc(s.vl4, func(a, b vl4Ent) int { return cmpVL4(a.k, b.k) })
	slices.SortFunc(s.vl6, func(a, b vl6Ent) int { return cmpVL6(a.k, b.k) })
	return s
}

func cmpVL2(a, b vl2Key) int {
	return cmp.Or(cmp.Compare(a.vnet, b.vnet), bytes.Compare(a.mac[:], b.mac[:]))
}

func cmpVL4(a, b vl3Key4) int {
	return cmp.Or(cmp.Compare(a.vnet, b.vnet), bytes.Compare(a.ip[:], b.ip[:]))
}

func cmpVL6(a, b vl3Key6) int {
	return cmp.Or(cmp.Compare(a.vnet, b.vnet), bytes.Compare(a.ip[:], b.ip[:]))
}

func macString(m ether.MAC) string { return ether.Short(m) }

func quoteID(id string) string {
	if id == "" || strings.ContainsFunc(id, func(r rune) bool { return r <= ' ' || r == '"' || !unicode.IsPrint(r) }) {
		return strconv.Quote(id)
	}
	return id
}

func sourcesString(as []netip.Addr) string {
	if len(as) == 0 {
		return "-"
	}
	ss := make([]string, len(as))
	for i, a := range as {
		ss[i] = a.String()
	}
	return strings.Join(ss, ",")
}

func hostLine(h snapHost) string {
	return fmt.Sprintf("%s %s %d %s", quoteID(h.h.ID), h.h.IP, h.h.Port, sourcesString(h.sources))
}

// Dump writes the whole index to w in the dump format (ReadDump reads
// it). It copies the index under the read lock, then writes without it.
func (ix *Index) Dump(w io.Writer) error {
	s := ix.snap()
	bw := bufio.NewWriterSize(w, 64<<10)
	fmt.Fprintf(bw, "seq %d\n", s.seq)
	for _, h := range s.hosts {
		fmt.Fprintf(bw, "host %s\n", hostLine(h))
	}
	for _, e := range s.vl2 {
		fmt.Fprintf(bw, "vl2 %d %s %s\n", e.k.vnet, macString(e.k.mac), quoteID(s.names[e.host]))
	}
	i, j := 0, 0
	for i < len(s.vl4) || j < len(s.vl6) {
		// IPv4 before IPv6 within a vnetid.
		if j == len(s.vl6) || i < len(s.vl4) && s.vl4[i].k.vnet <= s.vl6[j].k.vnet {
			e := s.vl4[i]
			fmt.Fprintf(bw, "vl3 %d %s %s\n", e.k.vnet, netip.AddrFrom4(e.k.ip), macString(e.mac))
			i++
		} else {
			e := s.vl6[j]
			fmt.Fprintf(bw, "vl3 %d %s %s\n", e.k.vnet, netip.AddrFrom16(e.k.ip), macString(e.mac))
			j++
		}
	}
	return bw.Flush()
}

// fields splits a dump line on spaces, reading quoted host IDs.
func fields(line string) ([]string, error) {
	var out []string
	for {
		var f string
		if strings.HasPrefix(line, `"`) {
			q, err := strconv.QuotedPrefix(line)
			if err != nil {
				return nil, err
			}
			f, _ = strconv.Unquote(q)
			line = line[len(q):]
			if line != "" && line[0] != ' ' {
				return nil, errors.New("want a space after a quoted field")
			}
		} else {
			i := strings.IndexByte(line, ' ')
			if i < 0 {
				i = len(line)
			}
			f, line = line[:i], line[i:]
		}
		out = append(out, f)
		if line == "" {
			return out, nil
		}
		line = line[1:] // the space
	}
}

// ReadDump reads an index written by Dump (by this process or another,
// such as a running server). The index answers lookups and can be
// compared (Diff, Check), but not followed: it has no store.
func ReadDump(r io.Reader) (*Index, error) {
	var hosts []store.Host
	srcs := map[string][]netip.Addr{}
	type vl2Line struct {
		k    vl2Key
		host string
		n    int
	}
	var vl2s []vl2Line
	st := newState(0, 0, 0)
	seq := int64(-1)
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 0, 64<<10), 1<<20)
	n := 0
	for sc.Scan() {
		n++
		bad := func(format string, a ...any) error {
			return fmt.Errorf("dump line %d: %s", n, fmt.Sprintf(format, a...))
		}
		f, err := fields(sc.Text())
		if err != nil {
			return nil, bad("%v", err)
		}
		if len(f) == 0 {
			return nil, bad("empty")
		}
		switch {
		case f[0] == "seq" && len(f) == 2:
			if seq >= 0 {
				return nil, bad("a second seq")
			}
			if seq, err = strconv.ParseInt(f[1], 10, 64); err != nil || seq < 0 {
				return nil, bad("bad seq %q", f[1])
			}
		case f[0] == "host" && len(f) == 5:
			ip, err := netip.ParseAddr(f[2])
			if err != nil {
				return nil, bad("bad address %q", f[2])
			}
			port, err := strconv.ParseUint(f[3], 10, 16)
			if err != nil {
				return nil, bad("bad port %q", f[3])
			}
			hosts = append(hosts, store.Host{ID: f[1], IP: ip, Port: uint16(port)})
			if f[4] != "-" {
				for s := range strings.SplitSeq(f[4], ",") {
					a, err := netip.ParseAddr(s)
					if err != nil {
						return nil, bad("bad source address %q", s)
					}
					srcs[f[1]] = append(srcs[f[1]], a)
				}
			}
		case f[0] == "vl2" && len(f) == 4:
			vnet, err := strconv.ParseUint(f[1], 10, 32)
			if err != nil {
				return nil, bad("bad vnetid %q", f[1])
			}
			mac, err := ether.ParseMAC(f[2])
			if err != nil {
				return nil, bad("%v", err)
			}
			vl2s = append(vl2s, vl2Line{vl2Key{uint32(vnet), ether.MAC(mac)}, f[3], n})
		case f[0] == "vl3" && len(f) == 4:
			vnet, err := strconv.ParseUint(f[1], 10, 32)
			if err != nil {
				return nil, bad("bad vnetid %q", f[1])
			}
			ip, err := netip.ParseAddr(f[2])
			if err != nil {
				return nil, bad("bad address %q", f[2])
			}
			mac, err := ether.ParseMAC(f[3])
			if err != nil {
				return nil, bad("%v", err)
			}
			st.setVL3(uint32(vnet), ip, ether.MAC(mac), true)
		default:
			return nil, bad("want seq, host, vl2 or vl3 and its fields, got %q", sc.Text())
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("dump: %w", err)
	}
	if seq < 0 {
		return nil, errors.New("dump: no seq line")
	}
	st.setHosts(hosts, srcs)
	st.takeClosed() // a new state's signals: nobody waits on them
	for _, v := range vl2s {
		i, ok := st.byID[v.host]
		if !ok {
			return nil, fmt.Errorf("dump line %d: host %s is not in the dump", v.n, quoteID(v.host))
		}
		st.vl2.set(pk2(v.k), ref(i))
	}
	return &Index{log: slog.New(slog.DiscardHandler), st: st, seq: seq}, nil
}

// A difference between two indexes, with what it is about (for leaving
// out what changed in between).
type diffItem struct {
	host string // a host's difference
	vl2  *vl2Key
	vnet uint32 // with ip: a VL3 difference
	ip   netip.Addr
	text string
}

// mergeDiff walks two sorted lists and reports what only one holds and
// what differs.
func mergeDiff[E any](a, b []E, key func(E, E) int, same func(E, E) bool, report func(a, b *E)) {
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		c := 0
		switch {
		case j == len(b):
			c = -1
		case i == len(a):
			c = 1
		default:
			c = key(a[i], b[j])
		}
		switch {
		case c < 0:
			report(&a[i], nil)
			i++
		case c > 0:
			report(nil, &b[j])
			j++
		default:
			if !same(a[i], b[j]) {
				report(&a[i], &b[j])
			}
			i++
			j++
		}
	}
}

func describe(what, a, b string) string {
	switch {
	case b == "":
		return fmt.Sprintf("%s: not in the store (index: %s)", what, a)
	case a == "":
		return fmt.Sprintf("%s: missing from the index (store: %s)", what, b)
	}
	return fmt.Sprintf("%s: index %s, store %s", what, a, b)
}

func diff(ix, ref *Index) []diffItem {
	a, b := ix.snap(), ref.snap()
	var out []diffItem
	mergeDiff(a.hosts, b.hosts, func(x, y snapHost) int { return cmp.Compare(x.h.ID, y.h.ID) },
		func(x, y snapHost) bool { return x.h == y.h && slices.Equal(x.sources, y.sources) },
		func(x, y *snapHost) {
			var id, sa, sb string
			if x != nil {
				id, sa = x.h.ID, hostLine(*x)
			}
			if y != nil {
				id, sb = y.h.ID, hostLine(*y)
			}
			_, sa, _ = strings.Cut(sa, " ")
			_, sb, _ = strings.Cut(sb, " ")
			out = append(out, diffItem{host: id, text: describe("host "+quoteID(id), sa, sb)})
		})
	mergeDiff(a.vl2, b.vl2, func(x, y vl2Ent) int { return cmpVL2(x.k, y.k) },
		func(x, y vl2Ent) bool { return a.names[x.host] == b.names[y.host] },
		func(x, y *vl2Ent) {
			var k vl2Key
			var sa, sb string
			if x != nil {
				k, sa = x.k, quoteID(a.names[x.host])
			}
			if y != nil {
				k, sb = y.k, quoteID(b.names[y.host])
			}
			out = append(out, diffItem{vl2: &k, text: describe(fmt.Sprintf("vl2 %d %s", k.vnet, macString(k.mac)), sa, sb)})
		})
	vl3 := func(vnet uint32, ip netip.Addr, x, y *ether.MAC) {
		var sa, sb string
		if x != nil {
			sa = macString(*x)
		}
		if y != nil {
			sb = macString(*y)
		}
		out = append(out, diffItem{vnet: vnet, ip: ip, text: describe(fmt.Sprintf("vl3 %d %s", vnet, ip), sa, sb)})
	}
	mergeDiff(a.vl4, b.vl4, func(x, y vl4Ent) int { return cmpVL4(x.k, y.k) }, func(x, y vl4Ent) bool { return x.mac == y.mac },
		func(x, y *vl4Ent) {
			e := cmp.Or(x, y)
			vl3(e.k.vnet, netip.AddrFrom4(e.k.ip), macOf4(x), macOf4(y))
		})
	mergeDiff(a.vl6, b.vl6, func(x, y vl6Ent) int { return cmpVL6(x.k, y.k) }, func(x, y vl6Ent) bool { return x.mac == y.mac },
		func(x, y *vl6Ent) {
			e := cmp.Or(x, y)
			vl3(e.k.vnet, netip.AddrFrom16(e.k.ip), macOf6(x), macOf6(y))
		})
	return out
}

func macOf4(e *vl4Ent) *ether.MAC {
	if e == nil {
		return nil
	}
	return &e.mac
}

func macOf6(e *vl6Ent) *ether.MAC {
	if e == nil {
		return nil
	}
	return &e.mac
}

func texts(items []diffItem) []string {
	var out []string
	for _, d := range items {
		out = append(out, d.text)
	}
	return out
}

// Diff lists every difference between the index ix and the reference
// ref (the store as read now), one human-readable line each: a host, VL2
// or VL3 mapping missing from ix ("missing from the index"), one ix has
// that ref does not ("not in the store"), and one they hold differently
// ("index ..., store ..."). Hosts come first, then VL2, then VL3
// mappings, each sorted. It does not compare sequence numbers.
func Diff(ix, ref *Index) []string { return texts(diff(ix, ref)) }

// Check compares ix with the store read through feed: it loads a fresh
// index from feed, brings it and ix (unless ix is a dump, from ReadDump)
// up to date, and returns Diff's lines. When the two stand at different
// sequence numbers, differences about what the changes between them name
// are left out (they may be the changes themselves), unless those
// changes are pruned or include a reload. A check that finds differences
// while the store is changing is tried again, up to three times in all.
func Check(ctx context.Context, ix *Index, feed store.Feed) ([]string, error) {
	var out []string
	for try := 0; try < 3; try++ {
		ref, err := Load(ctx, feed, nil)
		if err != nil {
			return nil, err
		}
		if err := ref.Update(ctx); err != nil {
			return nil, err
		}
		if ix.feed != nil {
			if err := ix.Update(ctx); err != nil {
				return nil, err
			}
		}
		items := diff(ix, ref)
		lo, hi := min(ix.Seq(), ref.Seq()), max(ix.Seq(), ref.Seq())
		if len(items) > 0 && lo < hi {
			if items, err = dropChanged(ctx, feed, items, lo, hi); err != nil {
				return nil, err
			}
		}
		out = texts(items)
		if len(out) == 0 || ix.feed == nil {
			return out, nil
		}
		end, err := feed.ChangeSeq(ctx)
		if err != nil {
			return nil, err
		}
		if end == hi {
			return out, nil // the store stood still: the differences are real
		}
	}
	return out, nil
}

// dropChanged leaves out the differences about what the changes in
// (lo, hi] name; all are kept when those changes are pruned or include a
// reload.
func dropChanged(ctx context.Context, feed store.Feed, items []diffItem, lo, hi int64) ([]diffItem, error) {
	hosts := map[string]bool{}
	vnics := map[vl2Key]bool{}
	type ipKey struct {
		vnet uint32
		ip   netip.Addr
	}
	ips := map[ipKey]bool{}
	allHosts := false
	for seq := lo; seq < hi; {
		cs, err := feed.Changes(ctx, seq, changesLimit)
		if errors.Is(err, store.ErrChangesPruned) {
			return items, nil
		}
		if err != nil {
			return nil, err
		}
		if len(cs) == 0 {
			break
		}
		for _, c := range cs {
			if c.Seq > hi {
				break
			}
			switch c.Kind {
			case store.ChangeReload:
				return items, nil
			case store.ChangeHost:
				hosts[c.Host] = true
				allHosts = allHosts || c.Host == ""
			case store.ChangeVNIC:
				vnics[vl2Key{c.VNetID, c.MAC}] = true
			case store.ChangeIP:
				ips[ipKey{c.VNetID, c.IP.Unmap()}] = true
			}
		}
		seq = cs[len(cs)-1].Seq
	}
	return slices.DeleteFunc(items, func(d diffItem) bool {
		switch {
		case d.vl2 != nil:
			return vnics[*d.vl2]
		case d.ip.IsValid():
			return ips[ipKey{d.vnet, d.ip}]
		}
		return allHosts || hosts[d.host]
	}), nil
}
