package svpwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"hash/crc32"
	"io"
	"reflect"
	"testing"
	"testing/iotest"
)

// The seed corpora are in testdata/fuzz/<Target>/: every frame of
// svp-vectors.md, the malformed captures, and streams of several frames.

// fixCRCs writes a correct CRC into every complete frame of data, so that
// the fuzzer gets past the CRC check to the body decoders.
func fixCRCs(data []byte) {
	for off := 0; len(data)-off >= HeaderLen; {
		end := uint64(off) + HeaderLen + uint64(binary.BigEndian.Uint32(data[off+4:]))
		if end > uint64(len(data)) {
			return
		}
		f := data[off:end]
		clear(f[12:16])
		binary.BigEndian.PutUint32(f[12:16], crc32.ChecksumIEEE(f))
		off = int(end)
	}
}

// refNext is a model of Reader.Next on a whole input: the frame at off,
// its length on the wire, or the error Next must give.
func refNext(data []byte, off, maxBody int) (Frame, int, error) {
	rest := data[off:]
	switch {
	case len(rest) == 0:
		return Frame{}, 0, io.EOF
	case len(rest) < HeaderLen:
		return Frame{}, 0, io.ErrUnexpectedEOF
	}
	h, _ := DecodeHeader(rest)
	switch {
	case h.Version != Version:
		return Frame{}, 0, ErrVersion
	case uint64(h.Size) > uint64(maxBody):
		return Frame{}, 0, ErrTooBig
	case uint64(len(rest)) < HeaderLen+uint64(h.Size):
		return Frame{}, 0, io.ErrUnexpectedEOF
	}
	n := HeaderLen + int(h.Size)
	if refCRC(crcInput(rest[:n])) != h.CRC {
		return Frame{}, 0, ErrCRC
	}
	return Frame{Op: h.Op, ID: h.ID, Body: rest[HeaderLen:n]}, n, nil
}

// decoders is every body decoder, by op.
var decoders = []Op{OpVL2Req, OpVL2Ack, OpVL3Req, OpVL3Ack, OpBulkReq, OpBulkAck,
	OpLogReq, OpLogAck, OpLogRm, OpLogRmAck, OpShootdown}

// canonical is body as Append writes it back: pad bytes zeroed.
func canonical(m Message, body []byte) []byte {
	c := bytes.Clone(body)
	switch m.(type) {
	case VL2Req, Shootdown:
		clear(c[6:8])
	case LogAck:
		for off := 4; off < len(c); {
			if binary.BigEndian.Uint32(c[off:]) == LogVL2 {
				clear(c[off+26 : off+28])
				off += LogVL2Size
			} else {
				clear(c[off+36 : off+38])
				off += LogVL3Size
			}
		}
	}
	return c
}

// checkDecode runs the decoder for op on body. If it succeeds, the value
// must re-encode to the same bytes (pads aside) and decode to the same
// value again. It reports whether it decoded.
func checkDecode(t *testing.T, op Op, body []byte) bool {
	t.Helper()
	orig := bytes.Clone(body)
	m, err := decodeAny(op, body)
	if !bytes.Equal(body, orig) {
		t.Fatalf("%v decoder modified its input", op)
	}
	if n, fixed := BodySize(op); fixed && (err == nil) != (len(body) == n) {
		t.Fatalf("%v decoder on %d bytes (exact size %d): %v", op, len(body), n, err)
	}
	if err != nil {
		if !errors.Is(err, ErrBodySize) && !errors.Is(err, ErrLogType) {
			t.Fatalf("%v decoder: unclassified error %v", op, err)
		}
		return false
	}
	if m.Op() != op {
		t.Fatalf("%v decoder returned a %v", op, m.Op())
	}
	out := m.Append(nil)
	if want := canonical(m, body); !bytes.Equal(out, want) {
		t.Fatalf("%v re-encoded\n % x\nwant\n % x", op, out, want)
	}
	m2, err := decodeAny(op, out)
	if err != nil {
		t.Fatalf("%v: re-encoded body does not decode: %v", op, err)
	}
	if !reflect.DeepEqual(m, m2) {
		t.Fatalf("%v round trip:\n %+v\n %+v", op, m, m2)
	}
	// The framed message reads back as the same frame.
	frame := m.AppendFrame(nil, 0x01020304)
	f, err := NewReader(bytes.NewReader(frame), len(out)).Next()
	if err != nil || f.Op != op || f.ID != 0x01020304 || !bytes.Equal(f.Body, out) {
		t.Fatalf("%v AppendFrame reads back as %+v, %v", op, f, err)
	}
	return true
}

// FuzzReader is the server side: arbitrary bytes from a connection go
// through Reader.Next, which must agree with refNext, and every frame's
// body through every decoder.
func FuzzReader(f *testing.F) {
	f.Add([]byte{}, false, uint16(0))
	f.Fuzz(func(t *testing.T, data []byte, fix bool, limit uint16) {
		data = bytes.Clone(data)
		if fix {
			fixCRCs(data)
		}
		maxBody := int(limit)
		if maxBody == 0 {
			maxBody = MaxBody
		}
		// Half reads: frames arrive split, as from a socket.
		r := NewReader(iotest.HalfReader(bytes.NewReader(data)), maxBody)
		for off := 0; ; {
			f, err := r.Next()
			want, n, wantErr := refNext(data, off, maxBody)
			checkParse(t, data[off:], maxBody, want, n, wantErr)
			if wantErr != nil {
				if !errors.Is(err, wantErr) {
					t.Fatalf("at %d: Next = %+v, %v; want %v", off, f, err, wantErr)
				}
				if err != io.EOF && errors.Is(wantErr, io.EOF) {
					t.Fatalf("at %d: %v", off, err)
				}
				if _, err2 := r.Next(); err2 != err {
					t.Fatalf("error not sticky: %v then %v", err, err2)
				}
				return
			}
			if err != nil {
				t.Fatalf("at %d: Next: %v, want %v id %#x", off, err, want.Op, want.ID)
			}
			if f.Op != want.Op || f.ID != want.ID || !bytes.Equal(f.Body, want.Body) {
				t.Fatalf("at %d: Next = %+v, want %+v", off, f, want)
			}
			// A frame that passed the checks is rebuilt byte for byte.
			if got := AppendFrame(nil, f.Op, f.ID, f.Body); !bytes.Equal(got, data[off:off+n]) {
				t.Fatalf("at %d: rebuilt frame differs", off)
			}
			for _, op := range decoders {
				checkDecode(t, op, f.Body)
			}
			off += n
		}
	})
}

// checkParse checks that Parse, an event loop's reader, agrees with
// refNext on the same bytes: a truncated frame is "not yet" (n 0, no
// error), not an error.
func checkParse(t *testing.T, rest []byte, maxBody int, want Frame, wantN int, wantErr error) {
	t.Helper()
	f, n, err := Parse(rest, maxBody)
	switch {
	case errors.Is(wantErr, io.EOF) || errors.Is(wantErr, io.ErrUnexpectedEOF):
		if err != nil || n != 0 {
			t.Fatalf("Parse of %d bytes = n %d, %v; want a frame not yet whole", len(rest), n, err)
		}
	case wantErr != nil:
		if !errors.Is(err, wantErr) || n != 0 {
			t.Fatalf("Parse = n %d, %v; want %v", n, err, wantErr)
		}
	case err != nil || n != wantN || f.Op != want.Op || f.ID != want.ID || !bytes.Equal(f.Body, want.Body):
		t.Fatalf("Parse = %+v, n %d, %v; want %+v, n %d", f, n, err, want, wantN)
	}
	// Every prefix of a whole frame is "not yet".
	if wantErr == nil && wantN > 0 {
		if _, n, err := Parse(rest[:wantN-1], maxBody); n != 0 || (err != nil && !errors.Is(err, ErrVersion) && !errors.Is(err, ErrTooBig)) {
			t.Fatalf("Parse of a frame less its last byte = n %d, %v", n, err)
		}
	}
}

// FuzzClientDecode is the client side: reply bodies from a server go
// through the reply decoders.
func FuzzClientDecode(f *testing.F) {
	f.Add([]byte{})
	f.Fuzz(func(t *testing.T, body []byte) {
		for _, op := range []Op{OpVL2Ack, OpVL3Ack, OpLogAck, OpLogRmAck} {
			checkDecode(t, op, body)
		}
		// DecodeLogAck agrees with walking the entries one by one.
		ack, err := DecodeLogAck(body)
		if len(body) < 4 {
			if err == nil {
				t.Fatal("LOG_ACK shorter than its status decoded")
			}
			return
		}
		var walked []LogEntry
		var walkErr error
		for off := 4; off < len(body); {
			e, n, err := DecodeLogEntry(body[off:])
			if err != nil {
				walkErr = err
				break
			}
			if n != e.Size() || n == 0 {
				t.Fatalf("DecodeLogEntry size %d, Size() %d", n, e.Size())
			}
			walked = append(walked, e)
			off += n
		}
		if (err == nil) != (walkErr == nil) {
			t.Fatalf("DecodeLogAck: %v; walking entries: %v", err, walkErr)
		}
		if err == nil && !reflect.DeepEqual(ack.Entries, walked) {
			t.Fatalf("DecodeLogAck entries %+v, walked %+v", ack.Entries, walked)
		}
	})
}
