package svpwire

import (
	"bufio"
	"bytes"
	"errors"
	"io"
	"net/netip"
	"runtime"
	"testing"
	"testing/iotest"
)

// stream is a mix of frames: small ones, an empty body, a LOG_ACK, a
// frame that does not fit the bufio buffer and one that needs a second
// chunk of body buffer.
func stream(t testing.TB) (b []byte, want []Frame) {
	add := func(op Op, id uint32, body []byte) {
		b = AppendFrame(b, op, id, body)
		want = append(want, Frame{Op: op, ID: id, Body: body})
	}
	add(OpPing, 1, nil)
	add(OpVL2Req, 2, VL2Req{MAC: [6]byte{0x90, 0xb8, 0xd0, 0, 0, 1}, VNetID: 0x1234}.Append(nil))
	add(OpVL3Ack, 3, vl3Found.Append(nil))
	add(OpLogAck, 4, LogAck{Entries: []LogEntry{logE1, logE2, logE1}}.Append(nil))
	add(99, 5, []byte("unknown ops pass"))
	big := make([]byte, readBufSize) // with the header, one byte too many for the buffer
	for i := range big {
		big[i] = byte(i * 7)
	}
	add(OpBulkAck, 6, big)
	huge := bytes.Repeat([]byte("0123456789abcdef"), (retainMax+retainMax/2)/16)
	add(OpBulkAck, 7, huge)
	add(OpPong, 8, nil)
	add(OpVL2Ack, 0xffffffff, vl2Found.Append(nil))
	return b, want
}

func readAll(t *testing.T, r *Reader) []Frame {
	t.Helper()
	var got []Frame
	for {
		f, err := r.Next()
		if err == io.EOF {
			return got
		}
		if err != nil {
			t.Fatalf("frame %d: %v", len(got)+1, err)
		}
		if cap(f.Body) != len(f.Body) {
			t.Fatalf("frame %d: body has spare capacity %d: an append would write into the Reader's buffer", len(got)+1, cap(f.Body)-len(f.Body))
		}
		f.Body = bytes.Clone(f.Body)
		got = append(got, f)
	}
}

func checkFrames(t *testing.T, got, want []Frame) {
	t.Helper()
	if len(got) != len(want) {
		t.Fatalf("%d frames, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Op != want[i].Op || got[i].ID != want[i].ID || !bytes.Equal(got[i].Body, want[i].Body) {
			t.Fatalf("frame %d: op %v id %#x body %d bytes, want op %v id %#x body %d bytes",
				i+1, got[i].Op, got[i].ID, len(got[i].Body), want[i].Op, want[i].ID, len(want[i].Body))
		}
	}
}

func TestReaderBackToBack(t *testing.T) {
	b, want := stream(t)
	for _, c := range []struct {
		name string
		r    io.Reader
	}{
		{"one buffer", bytes.NewReader(b)},
		{"one byte at a time", iotest.OneByteReader(bytes.NewReader(b))},
		{"half reads", iotest.HalfReader(bytes.NewReader(b))},
		{"data with EOF", iotest.DataErrReader(bytes.NewReader(b))},
		{"bufio given", bufio.NewReaderSize(bytes.NewReader(b), 64<<10)},
		{"small bufio given", bufio.NewReaderSize(bytes.NewReader(b), 16)},
	} {
		t.Run(c.name, func(t *testing.T) {
			checkFrames(t, readAll(t, NewReader(c.r, 0)), want)
		})
	}
}

// TestReaderSplitFrame feeds a frame in two writes split at every point.
func TestReaderSplitFrame(t *testing.T) {
	frame := unhex(t, vLogLOGREQResponse)
	for i := 1; i < len(frame); i++ {
		pr, pw := io.Pipe()
		go func() {
			pw.Write(frame[:i])
			pw.Write(frame[i:])
			pw.Close()
		}()
		r := NewReader(pr, 0)
		f, err := r.Next()
		if err != nil || f.Op != OpLogAck || f.ID != 7 || len(f.Body) != 80 {
			t.Fatalf("split at %d: %+v, %v", i, f, err)
		}
		if _, err := r.Next(); err != io.EOF {
			t.Fatalf("split at %d: then %v", i, err)
		}
	}
}

// TestReaderTruncated cuts a stream at every byte: the frames before the
// cut come out, then io.EOF at a frame boundary or io.ErrUnexpectedEOF
// inside a frame.
func TestReaderTruncated(t *testing.T) {
	var b []byte
	var ends []int
	for _, h := range []string{vPipelined3Request1, vPipelined3Request2, vLogLOGREQResponse} {
		b = append(b, unhex(t, h)...)
		ends = append(ends, len(b))
	}
	for cut := 0; cut <= len(b); cut++ {
		r := NewReader(iotest.OneByteReader(bytes.NewReader(b[:cut])), 0)
		whole := 0
		for _, e := range ends {
			if e <= cut {
				whole++
			}
		}
		for i := range whole {
			if _, err := r.Next(); err != nil {
				t.Fatalf("cut %d: frame %d: %v", cut, i+1, err)
			}
		}
		_, err := r.Next()
		atBoundary := cut == 0 || (whole > 0 && ends[whole-1] == cut)
		if atBoundary && err != io.EOF {
			t.Fatalf("cut %d at a boundary: %v, want io.EOF", cut, err)
		}
		if !atBoundary && !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("cut %d inside a frame: %v, want unexpected EOF", cut, err)
		}
	}
}

func TestReaderSticky(t *testing.T) {
	r := NewReader(iotest.TimeoutReader(bytes.NewReader(unhex(t, vLogLOGREQResponse))), 0)
	// TimeoutReader returns the whole frame on the first read and
	// ErrTimeout on the second. The Reader reports the timeout and keeps
	// reporting it: a connection that timed out is to be closed.
	if _, err := r.Next(); err != nil {
		t.Fatal(err)
	}
	_, err := r.Next()
	if !errors.Is(err, iotest.ErrTimeout) {
		t.Fatalf("err = %v, want ErrTimeout wrapped", err)
	}
	if _, err2 := r.Next(); err2 != err {
		t.Fatalf("second call: %v, want the same error", err2)
	}
}

func TestReaderMaxBody(t *testing.T) {
	body := make([]byte, 100)
	frame := AppendFrame(nil, OpBulkAck, 1, body)
	if _, err := NewReader(bytes.NewReader(frame), 100).Next(); err != nil {
		t.Fatalf("body of exactly maxBody: %v", err)
	}
	_, err := NewReader(bytes.NewReader(frame), 99).Next()
	var fe *FrameError
	if !errors.Is(err, ErrTooBig) || !errors.As(err, &fe) || fe.Size != 100 || fe.Op != OpBulkAck {
		t.Fatalf("body over maxBody: %v", err)
	}
	// The default is MaxBody.
	big := AppendFrame(nil, OpBulkAck, 1, make([]byte, MaxBody+1))
	if _, err := NewReader(bytes.NewReader(big), 0).Next(); !errors.Is(err, ErrTooBig) {
		t.Fatalf("MaxBody+1 with the default limit: %v", err)
	}
	big = AppendFrame(nil, OpBulkAck, 1, make([]byte, MaxBody))
	if f, err := NewReader(bytes.NewReader(big), -1).Next(); err != nil || len(f.Body) != MaxBody {
		t.Fatalf("MaxBody with the default limit: %v", err)
	}
}

// TestReaderLargeBodyMemory checks that a peer announcing a large body it
// does not send costs memory in proportion to what it sent, and that one
// large frame does not leave a large buffer behind.
func TestReaderLargeBodyMemory(t *testing.T) {
	hdr := Header{Version: 1, Op: OpBulkAck, Size: MaxBody, ID: 1}.Append(nil)
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	_, err := NewReader(bytes.NewReader(append(hdr, make([]byte, 100)...)), 0).Next()
	runtime.ReadMemStats(&after)
	if !errors.Is(err, io.ErrUnexpectedEOF) {
		t.Fatalf("err = %v", err)
	}
	if n := after.TotalAlloc - before.TotalAlloc; n > 3*retainMax {
		t.Fatalf("allocated %d bytes for a 100-byte partial body", n)
	}

	b := AppendFrame(nil, OpBulkAck, 1, make([]byte, 3*retainMax))
	b = AppendFrame(b, OpBulkAck, 2, make([]byte, 2*readBufSize))
	r := NewReader(bytes.NewReader(b), 0)
	if f, err := r.Next(); err != nil || len(f.Body) != 3*retainMax {
		t.Fatalf("large frame: %v", err)
	}
	if cap(r.buf) > retainMax {
		t.Fatalf("kept a %d-byte buffer after a large frame", cap(r.buf))
	}
	if f, err := r.Next(); err != nil || len(f.Body) != 2*readBufSize {
		t.Fatalf("frame after: %v", err)
	}
	if cap(r.buf) < 2*readBufSize {
		t.Fatalf("did not keep the buffer of a moderate frame (cap %d)", cap(r.buf))
	}
}

// loopReader returns its data over and over, without allocating.
type loopReader struct {
	data []byte
	off  int
}

func (l *loopReader) Read(p []byte) (int, error) {
	n := copy(p, l.data[l.off:])
	l.off = (l.off + n) % len(l.data)
	return n, nil
}

// TestReaderNoAlloc checks steady state: reading (and decoding) frames
// allocates nothing, for frames served from the bufio buffer and for
// frames too large for it.
func TestReaderNoAlloc(t *testing.T) {
	var b []byte
	b = VL2Req{MAC: [6]byte{0x90, 0xb8, 0xd0, 0, 0, 1}, VNetID: 0x1234}.AppendFrame(b, 1)
	b = vl2Found.AppendFrame(b, 1)
	b = VL3Req{IP: netip.MustParseAddr("10.0.0.2"), Type: L3IPv4, VNetID: 0x1234}.AppendFrame(b, 2)
	b = AppendFrame(b, OpPing, 3, nil)
	b = LogReq{Count: 1024, IP: netip.MustParseAddr("192.168.100.1")}.AppendFrame(b, 4)
	b = AppendFrame(b, OpBulkAck, 5, make([]byte, 3*readBufSize)) // the copy path
	const perLoop = 6
	r := NewReader(&loopReader{data: b}, 0)
	var sink uint32
	n := testing.AllocsPerRun(1000, func() {
		for range perLoop {
			f, err := r.Next()
			if err != nil {
				t.Fatal(err)
			}
			switch f.Op {
			case OpVL2Req:
				m, err := DecodeVL2Req(f.Body)
				if err != nil {
					t.Fatal(err)
				}
				sink += m.VNetID
			case OpVL2Ack:
				m, err := DecodeVL2Ack(f.Body)
				if err != nil {
					t.Fatal(err)
				}
				sink += uint32(m.Port)
			case OpVL3Req:
				m, err := DecodeVL3Req(f.Body)
				if err != nil {
					t.Fatal(err)
				}
				sink += m.Type
			case OpLogReq:
				m, err := DecodeLogReq(f.Body)
				if err != nil {
					t.Fatal(err)
				}
				sink += m.Count
			}
		}
	})
	if n != 0 {
		t.Fatalf("%v allocations per %d frames", n, perLoop)
	}
	_ = sink
}

func BenchmarkEncodeVL2Req(b *testing.B) {
	buf := make([]byte, 0, 64)
	m := VL2Req{MAC: [6]byte{0x90, 0xb8, 0xd0, 0, 0, 1}, VNetID: 0x1234}
	b.ReportAllocs()
	b.SetBytes(HeaderLen + 12)
	for i := 0; b.Loop(); i++ {
		buf = m.AppendFrame(buf[:0], uint32(i))
	}
}

func BenchmarkEncodeVL2Ack(b *testing.B) {
	buf := make([]byte, 0, 64)
	b.ReportAllocs()
	b.SetBytes(HeaderLen + 20)
	for i := 0; b.Loop(); i++ {
		buf = vl2Found.AppendFrame(buf[:0], uint32(i))
	}
}

func benchDecode(b *testing.B, frame []byte, decode func([]byte) error) {
	// Many copies per Read, as a busy connection delivers them.
	data := bytes.Repeat(frame, 128)
	r := NewReader(&loopReader{data: data}, 0)
	b.ReportAllocs()
	b.SetBytes(int64(len(frame)))
	for b.Loop() {
		f, err := r.Next()
		if err != nil {
			b.Fatal(err)
		}
		if err := decode(f.Body); err != nil {
			b.Fatal(err)
		}
	}
}

func BenchmarkDecodeVL2Req(b *testing.B) {
	benchDecode(b, unhex(b, vVL2REQFoundRequest), func(body []byte) error {
		_, err := DecodeVL2Req(body)
		return err
	})
}

func BenchmarkDecodeVL2Ack(b *testing.B) {
	benchDecode(b, unhex(b, vVL2REQFoundResponse), func(body []byte) error {
		_, err := DecodeVL2Ack(body)
		return err
	})
}

// TestReaderErrorText checks what a server would log: the op and id of
// the offending frame, and "svp:" said once.
func TestReaderErrorText(t *testing.T) {
	_, err := NewReader(bytes.NewReader(unhex(t, vBadCrcPingRequest)), 0).Next()
	const want = "svp: PING id 0x00000015 size 0: CRC mismatch (header 0xdeadbeef, computed 0x20d651ca)"
	if err == nil || err.Error() != want {
		t.Fatalf("error text %q, want %q", err, want)
	}
}

// TestReaderBodyReadError cuts a body with an I/O error rather than EOF:
// the error is passed on, with the frame's header, not turned into EOF.
func TestReaderBodyReadError(t *testing.T) {
	boom := errors.New("connection reset")
	for _, size := range []int{12, 3 * readBufSize} {
		frame := AppendFrame(nil, OpVL2Req, 0x33, make([]byte, size))
		r := NewReader(io.MultiReader(bytes.NewReader(frame[:len(frame)-1]), iotest.ErrReader(boom)), 0)
		_, err := r.Next()
		var fe *FrameError
		if !errors.Is(err, boom) || errors.Is(err, io.ErrUnexpectedEOF) || !errors.As(err, &fe) || fe.ID != 0x33 {
			t.Fatalf("body of %d: %v", size, err)
		}
	}
}

// TestReady: Ready is true exactly when Next will not read, and Buffered
// counts what is read ahead.
func TestReady(t *testing.T) {
	ping := AppendFrame(nil, OpPing, 1, nil)
	vl2 := VL2Req{VNetID: 7}.AppendFrame(nil, 2)
	bad := bytes.Clone(ping)
	bad[1] = 2 // version 2: Next fails on the header
	stream := append(append(append(bytes.Clone(ping), vl2...), bad...), vl2[:5]...)
	pr, pw := io.Pipe()
	r := NewReader(pr, 0)
	if r.Ready() || r.Buffered() != 0 {
		t.Fatalf("fresh reader: ready %v, buffered %d", r.Ready(), r.Buffered())
	}
	go func() {
		pw.Write(stream) // one read of the bufio buffer gets it all
		pw.Write(vl2[5:])
		pw.Close()
	}()
	if f, err := r.Next(); err != nil || f.Op != OpPing {
		t.Fatalf("first frame %v %v", f.Op, err)
	}
	if n := r.Buffered(); n != len(stream)-len(ping) {
		t.Errorf("buffered %d after the first frame, want %d", n, len(stream)-len(ping))
	}
	if !r.Ready() {
		t.Error("a whole VL2_REQ is buffered but Ready is false")
	}
	if f, err := r.Next(); err != nil || f.Op != OpVL2Req {
		t.Fatalf("second frame %v %v", f.Op, err)
	}
	if !r.Ready() {
		t.Error("a bad header is buffered (Next fails at once) but Ready is false")
	}
	if _, err := r.Next(); !errors.Is(err, ErrVersion) {
		t.Fatalf("third frame: %v, want ErrVersion", err)
	}
	if !r.Ready() {
		t.Error("after an error (sticky) Ready is false")
	}

	// A partial header, then a partial body, are not ready.
	r = NewReader(bytes.NewReader(vl2[:HeaderLen-1]), 0)
	r.br.Peek(1)
	if r.Ready() || r.Buffered() != HeaderLen-1 {
		t.Errorf("partial header: ready %v, buffered %d", r.Ready(), r.Buffered())
	}
	r = NewReader(bytes.NewReader(vl2[:len(vl2)-1]), 0)
	r.br.Peek(HeaderLen)
	if r.Ready() {
		t.Error("partial body: ready")
	}
}
