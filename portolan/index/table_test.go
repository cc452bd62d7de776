package index

import (
	"math/rand/v2"
	"testing"
)

// The table against a Go map: random sets and deletes over a small key
// space (long clusters, wrapping round the end), checking every key after
// each step.
func TestTable(t *testing.T) {
	for _, space := range []int{5, 40, 1000} {
		r := rand.New(rand.NewPCG(1, uint64(space)))
		tb := newTable[vl4K, hostRef](0)
		refm := map[vl4K]hostRef{}
		key := func(i int) vl4K { return pk4(vl3Key4{uint32(i % 3), [4]byte{10, 0, byte(i >> 8), byte(i)}}) }
		for step := range 20000 {
			k := key(r.IntN(space))
			switch r.IntN(3) {
			case 0, 1:
				v := ref(uint32(step))
				tb.set(k, v)
				refm[k] = v
			default:
				tb.delete(k)
				delete(refm, k)
			}
			if step%97 == 0 {
				tb.fit()
			}
			if tb.len() != len(refm) {
				t.Fatalf("space %d step %d: len %d, want %d", space, step, tb.len(), len(refm))
			}
			if step%7 == 0 || space < 100 {
				for i := range space {
					k := key(i)
					v, ok := tb.get(k)
					w, wok := refm[k]
					if ok != wok || v != w {
						t.Fatalf("space %d step %d: get(%v) = %v %v, want %v %v", space, step, k, v, ok, w, wok)
					}
				}
			}
		}
		n := 0
		tb.all(func(k vl4K, v hostRef) {
			n++
			if refm[k] != v {
				t.Fatalf("all: %v %v, want %v", k, v, refm[k])
			}
		})
		if n != len(refm) {
			t.Errorf("all gave %d entries, want %d", n, len(refm))
		}
	}
}

// Keys pack in (vnetid, address) order and unpack to themselves.
func TestPackedKeys(t *testing.T) {
	k2 := vl2Key{0x01020304, [6]byte{5, 6, 7, 8, 9, 10}}
	if p := pk2(k2); p != (vl2K{1, 2, 3, 4, 5, 6, 7, 8, 9, 10}) || p.key() != k2 {
		t.Errorf("pk2 = %v", p)
	}
	k4 := vl3Key4{7, [4]byte{10, 1, 2, 3}}
	if p := pk4(k4); p.key() != k4 {
		t.Errorf("pk4 round trip = %v", p.key())
	}
	k6 := vl3Key6{7, [16]byte{0xfd, 15: 1}}
	if p := pk6(k6); p.key() != k6 {
		t.Errorf("pk6 round trip = %v", p.key())
	}
	if ref(70000).idx() != 70000 {
		t.Error("hostRef round trip")
	}
}
