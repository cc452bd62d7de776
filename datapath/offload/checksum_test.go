package offload

import (
	"math/rand/v2"
	"testing"
)

// refChecksum is RFC 1071 word by word.
func refChecksum(b []byte, initial uint32) uint16 {
	s := initial
	for i := 0; i+1 < len(b); i += 2 {
		s += uint32(b[i])<<8 | uint32(b[i+1])
	}
	if len(b)%2 == 1 {
		s += uint32(b[len(b)-1]) << 8
	}
	for s>>16 != 0 {
		s = s&0xffff + s>>16
	}
	return ^uint16(s)
}

func TestChecksumMatchesReference(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for n := 0; n < 600; n++ {
		b := make([]byte, n)
		for i := range b {
			b[i] = byte(r.Uint32())
		}
		if got, want := Checksum(b, 0), refChecksum(b, 0); got != want {
			t.Fatalf("len %d: %#04x, want %#04x", n, got, want)
		}
		if got, want := Checksum(b, 0x1234), refChecksum(b, 0x1234); got != want {
			t.Fatalf("len %d with initial: %#04x, want %#04x", n, got, want)
		}
	}
	// All ones: the sum must not overflow silently.
	b := make([]byte, 70000)
	for i := range b {
		b[i] = 0xff
	}
	if got, want := Checksum(b, 0), refChecksum(b, 0); got != want {
		t.Fatalf("all ones: %#04x, want %#04x", got, want)
	}
}

func BenchmarkChecksum1500(b *testing.B) {
	buf := make([]byte, 1500)
	b.SetBytes(1500)
	b.ReportAllocs()
	for b.Loop() {
		Checksum(buf, 0)
	}
}
