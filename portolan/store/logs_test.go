package store

import (
	"errors"
	"fmt"
	"net/netip"
	"reflect"
	"testing"
)

// TestLogs: a batched read gives every host what Log gives it, whatever
// its byte limit, for hosts read twice, and ErrUnknownHost for an
// unknown one.
func TestLogs(t *testing.T) {
	eachStore(t, func(t *testing.T, s *SQL) {
		var hosts []Host
		for i := range 5 {
			h := Host{ID: fmt.Sprintf("h%d", i), IP: netip.AddrFrom4([4]byte{198, 18, 2, byte(i)}), Port: 4789}
			must(t, s.PutHost(ctx, h))
			hosts = append(hosts, h)
			must(t, s.AddVNIC(ctx, VNIC{VNetID: 9, MAC: [6]byte{2, 8, 0x20, 0, 2, byte(i)}, Host: h.ID,
				IPs: []netip.Addr{netip.AddrFrom4([4]byte{10, 9, 0, byte(i)})}}))
		}
		// h4's log is drained: empty.
		es, err := s.Log(ctx, hosts[4].IP, 1<<20)
		must(t, err)
		for _, e := range es {
			must(t, s.RemoveLog(ctx, [][16]byte{e.ID}))
		}
		var reads []LogRead
		for i, h := range hosts {
			reads = append(reads, LogRead{IP: h.IP, MaxBytes: 1024})
			if i == 1 {
				reads = append(reads, LogRead{IP: h.IP, MaxBytes: 80}, LogRead{IP: h.IP, MaxBytes: 0})
			}
		}
		unknown := netip.MustParseAddr("198.18.2.99")
		reads = append(reads, LogRead{IP: unknown, MaxBytes: 1024}, LogRead{IP: netip.MustParseAddr("::ffff:198.18.2.3"), MaxBytes: 1024})
		must(t, s.Logs(ctx, reads))
		for _, r := range reads {
			want, werr := s.Log(ctx, r.IP, r.MaxBytes)
			if !errors.Is(r.Err, ErrUnknownHost) || !errors.Is(werr, ErrUnknownHost) {
				if r.Err != nil || werr != nil {
					t.Errorf("%v max %d: Logs error %v, Log error %v", r.IP, r.MaxBytes, r.Err, werr)
					continue
				}
			}
			if len(want) == 0 {
				want = nil
			}
			if !reflect.DeepEqual(r.Entries, want) {
				t.Errorf("%v max %d: Logs gave %d entries, Log %d:\n%+v\n%+v", r.IP, r.MaxBytes, len(r.Entries), len(want), r.Entries, want)
			}
		}
		if r := reads[len(reads)-2]; !errors.Is(r.Err, ErrUnknownHost) {
			t.Errorf("unknown host: %v", r.Err)
		}
		if len(reads[0].Entries) == 0 || len(reads[2].Entries) == 0 || len(reads[2].Entries) >= len(reads[1].Entries) {
			t.Errorf("the test's logs are not as meant: %d, %d, %d entries", len(reads[0].Entries), len(reads[1].Entries), len(reads[2].Entries))
		}
	})
}
