package svpwire

import (
	"bytes"
	"encoding/binary"
	"errors"
	"net/netip"
	"reflect"
	"testing"
)

// refCRC is a bit-at-a-time CRC-32 (reflected polynomial 0xEDB88320,
// initial value and final XOR 0xffffffff), written from the definition so
// that the tests do not check hash/crc32 against itself.
func refCRC(b []byte) uint32 {
	c := ^uint32(0)
	for _, x := range b {
		c ^= uint32(x)
		for range 8 {
			if c&1 != 0 {
				c = c>>1 ^ 0xedb88320
			} else {
				c >>= 1
			}
		}
	}
	return ^c
}

// crcInput is what the CRC covers: the frame with bytes 12..15 zeroed.
func crcInput(frame []byte) []byte {
	b := bytes.Clone(frame)
	clear(b[12:16])
	return b
}

func TestRefCRC(t *testing.T) {
	// The standard check value of CRC-32/ISO-HDLC.
	if c := refCRC([]byte("123456789")); c != 0xcbf43926 {
		t.Fatalf("refCRC(123456789) = %#08x", c)
	}
}

// TestPingID1 is the example of illumos.md 6.1.
func TestPingID1(t *testing.T) {
	want := []byte{0, 1, 0, 1, 0, 0, 0, 0, 0, 0, 0, 1, 0xb5, 0xb6, 0x60, 0x88}
	if got := AppendFrame(nil, OpPing, 1, nil); !bytes.Equal(got, want) {
		t.Fatalf("PING id 1 = % x, want % x", got, want)
	}
	if c := Checksum(want[:16], nil); c != 0xb5b66088 {
		t.Fatalf("Checksum = %#08x", c)
	}
}

// handFrames has one frame per op, built by hand: the header with the
// size written out, and the body byte by byte from the layouts in
// illumos.md 6.3. The CRC is added by refCRC.
var handFrames = []struct {
	name string
	op   Op
	id   uint32
	body string // hex
	msg  Message
}{
	{"PING", OpPing, 0x01020304, ``, nil},
	{"PONG", OpPong, 0x01020304, ``, nil},
	{"VL2_REQ", OpVL2Req, 7,
		`02 08 20 aa bb cc  00 00  00 ff ff fe`,
		VL2Req{MAC: [6]byte{2, 8, 0x20, 0xaa, 0xbb, 0xcc}, VNetID: 0xfffffe}},
	{"VL2_ACK v6", OpVL2Ack, 7,
		`00 00  12 b5  20 01 0d b8 00 00 00 00 00 00 00 00 00 00 00 01`,
		VL2Ack{Status: StatusOK, Port: 4789, Addr: netip.MustParseAddr("2001:db8::1")}},
	{"VL2_ACK fatal", OpVL2Ack, 8,
		`00 01  00 00  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`,
		VL2Ack{Status: StatusFatal, Addr: netip.IPv6Unspecified()}},
	{"VL3_REQ", OpVL3Req, 0xdeadbeef,
		`00 00 00 00 00 00 00 00 00 00 ff ff c0 00 02 07  00 00 00 01  00 00 00 2a`,
		VL3Req{IP: netip.MustParseAddr("192.0.2.7"), Type: L3IPv4, VNetID: 42}},
	{"VL3_ACK badl3type", OpVL3Ack, 0xdeadbeef,
		`00 00 00 03  00 00 00 00 00 00  00 00  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`,
		VL3Ack{Status: StatusBadL3Type, Addr: netip.IPv6Unspecified()}},
	{"VL3_ACK v6 underlay", OpVL3Ack, 9,
		`00 00 00 00  90 b8 d0 00 00 03  12 b5  fd 00 01 00 00 00 00 00 00 00 00 00 00 00 00 03`,
		VL3Ack{Status: StatusOK, MAC: [6]byte{0x90, 0xb8, 0xd0, 0, 0, 3}, Port: 4789, Addr: netip.MustParseAddr("fd00:100::3")}},
	{"BULK_REQ", OpBulkReq, 10, `00 00 00 02`, BulkReq{Type: BulkVL3}},
	{"BULK_ACK", OpBulkAck, 10, `00 00 00 04  00 00 00 02`, BulkAck{Status: StatusBadBulk, Type: BulkVL3}},
	{"BULK_ACK data", OpBulkAck, 10, `00 00 00 00  00 00 00 01  01 02 03`, BulkAck{Type: BulkVL2, Data: []byte{1, 2, 3}}},
	{"LOG_REQ v6", OpLogReq, 11,
		`00 00 04 00  fd 00 01 00 00 00 00 00 00 00 00 00 00 00 00 03`,
		LogReq{Count: 1024, IP: netip.MustParseAddr("fd00:100::3")}},
	{"LOG_ACK empty", OpLogAck, 11, `00 00 00 00`, LogAck{}},
	{"LOG_ACK v6 vlan", OpLogAck, 12,
		`00 00 00 00
		 00 00 00 02  00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff  fd 12 00 00 00 00 00 00 00 00 00 00 00 00 00 42  00 00  0f fe  00 ab cd ef
		 00 00 00 01  ff ee dd cc bb aa 99 88 77 66 55 44 33 22 11 00  90 b8 d0 ff 00 42  00 00  00 ab cd ef`,
		LogAck{Entries: []LogEntry{
			{Type: LogVL3, ID: [16]byte{0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff},
				IP: netip.MustParseAddr("fd12::42"), VLAN: 4094, VNetID: 0xabcdef},
			{Type: LogVL2, ID: [16]byte{0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0},
				MAC: [6]byte{0x90, 0xb8, 0xd0, 0xff, 0, 0x42}, VNetID: 0xabcdef},
		}}},
	{"LOG_RM empty", OpLogRm, 13, `00 00 00 00`, LogRm{}},
	{"LOG_RM two", OpLogRm, 13,
		`00 00 00 02  00 11 22 33 44 55 66 77 88 99 aa bb cc dd ee ff  ff ee dd cc bb aa 99 88 77 66 55 44 33 22 11 00`,
		LogRm{IDs: [][16]byte{
			{0, 0x11, 0x22, 0x33, 0x44, 0x55, 0x66, 0x77, 0x88, 0x99, 0xaa, 0xbb, 0xcc, 0xdd, 0xee, 0xff},
			{0xff, 0xee, 0xdd, 0xcc, 0xbb, 0xaa, 0x99, 0x88, 0x77, 0x66, 0x55, 0x44, 0x33, 0x22, 0x11, 0},
		}}},
	{"LOG_RM_ACK fatal", OpLogRmAck, 14, `00 00 00 01`, LogRmAck{Status: StatusFatal}},
	{"SHOOTDOWN", OpShootdown, 0, `90 b8 d0 00 00 07  00 00  00 00 12 34`,
		Shootdown{MAC: [6]byte{0x90, 0xb8, 0xd0, 0, 0, 7}, VNetID: 0x1234}},
	// The illumos client writes the id in host order: on x86 id 42 is
	// the bytes 2a 00 00 00, which must be echoed as they are.
	{"host-order id", OpVL2Ack, 0x2a000000, `00 02  00 00  00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`,
		VL2Ack{Status: StatusNotFound, Addr: netip.IPv6Unspecified()}},
}

// handFrame builds the expected frame independently of the package.
func handFrame(t *testing.T, op Op, id uint32, body []byte) []byte {
	t.Helper()
	f := make([]byte, 16, 16+len(body))
	f[1] = 1
	f[2], f[3] = byte(op>>8), byte(op)
	f[4], f[5], f[6], f[7] = byte(len(body)>>24), byte(len(body)>>16), byte(len(body)>>8), byte(len(body))
	f[8], f[9], f[10], f[11] = byte(id>>24), byte(id>>16), byte(id>>8), byte(id)
	f = append(f, body...)
	c := refCRC(f) // bytes 12..15 are still zero
	f[12], f[13], f[14], f[15] = byte(c>>24), byte(c>>16), byte(c>>8), byte(c)
	return f
}

func TestHandFrames(t *testing.T) {
	ops := map[Op]bool{}
	for _, h := range handFrames {
		t.Run(h.name, func(t *testing.T) {
			ops[h.op] = true
			body := unhex(t, h.body)
			want := handFrame(t, h.op, h.id, body)
			var got []byte
			if h.msg == nil {
				got = AppendFrame(nil, h.op, h.id, nil)
			} else {
				if b := h.msg.Append(nil); !bytes.Equal(b, body) {
					t.Fatalf("Append:\n got % x\nwant % x", b, body)
				}
				got = h.msg.AppendFrame(nil, h.id)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("frame:\n got % x\nwant % x", got, want)
			}
			if got := AppendFrame(nil, h.op, h.id, body); !bytes.Equal(got, want) {
				t.Fatalf("AppendFrame:\n got % x\nwant % x", got, want)
			}
			if n, ok := BodySize(h.op); ok && n != len(body) {
				t.Fatalf("BodySize = %d, body %d", n, len(body))
			}
			f := readOne(t, want)
			if f.Op != h.op || f.ID != h.id || !bytes.Equal(f.Body, body) {
				t.Fatalf("read back %+v", f)
			}
			if !bytes.Equal(want[8:12], binary.BigEndian.AppendUint32(nil, f.ID)) {
				t.Fatal("id bytes not echoed")
			}
			if h.msg == nil {
				return
			}
			m, err := decodeAny(h.op, f.Body)
			if err != nil {
				t.Fatal(err)
			}
			if !reflect.DeepEqual(m, h.msg) {
				t.Fatalf("decoded\n %+v\nwant\n %+v", m, h.msg)
			}
		})
	}
	for op := OpPing; op <= OpShootdown; op++ {
		if !ops[op] {
			t.Errorf("no hand-built frame for %v", op)
		}
	}
}

func TestHeader(t *testing.T) {
	b := unhex(t, vVL2REQFoundRequest)
	h, err := DecodeHeader(b)
	if err != nil {
		t.Fatal(err)
	}
	want := Header{Version: 1, Op: OpVL2Req, Size: 12, ID: 2, CRC: 0x11975ab0}
	if h != want {
		t.Fatalf("DecodeHeader = %+v", h)
	}
	if got := h.Append(nil); !bytes.Equal(got, b[:16]) {
		t.Fatalf("Append = % x", got)
	}
	if c := Checksum(b[:16], b[16:]); c != h.CRC {
		t.Fatalf("Checksum = %#08x", c)
	}
	if _, err := DecodeHeader(b[:15]); err == nil {
		t.Fatal("DecodeHeader of 15 bytes succeeded")
	}
}

func TestStrings(t *testing.T) {
	for op, s := range map[Op]string{
		0: "op(0)", OpPing: "PING", OpPong: "PONG", OpVL2Req: "VL2_REQ", OpVL2Ack: "VL2_ACK",
		OpVL3Req: "VL3_REQ", OpVL3Ack: "VL3_ACK", OpBulkReq: "BULK_REQ", OpBulkAck: "BULK_ACK",
		OpLogReq: "LOG_REQ", OpLogAck: "LOG_ACK", OpLogRm: "LOG_RM", OpLogRmAck: "LOG_RM_ACK",
		OpShootdown: "SHOOTDOWN", 14: "op(14)", 0xffff: "op(65535)",
	} {
		if got := op.String(); got != s {
			t.Errorf("Op(%d).String() = %q, want %q", uint16(op), got, s)
		}
	}
	for st, s := range map[Status]string{
		StatusOK: "OK", StatusFatal: "FATAL", StatusNotFound: "NOTFOUND", StatusBadL3Type: "BADL3TYPE",
		StatusBadBulk: "BADBULK", 5: "status(5)", 0xffffffff: "status(4294967295)",
	} {
		if got := st.String(); got != s {
			t.Errorf("Status(%d).String() = %q, want %q", uint32(st), got, s)
		}
	}
}

func TestExpectedReply(t *testing.T) {
	want := map[Op]Op{OpPing: OpPong, OpVL2Req: OpVL2Ack, OpVL3Req: OpVL3Ack, OpBulkReq: OpBulkAck,
		OpLogReq: OpLogAck, OpLogRm: OpLogRmAck}
	for op := Op(0); op < 20; op++ {
		got, ok := ExpectedReply(op)
		w, wok := want[op]
		if got != w || ok != wok {
			t.Errorf("ExpectedReply(%v) = %v, %v; want %v, %v", op, got, ok, w, wok)
		}
	}
}

func TestBodySize(t *testing.T) {
	// SVP.md "Body sizes are exact per op".
	want := map[Op]int{OpPing: 0, OpPong: 0, OpVL2Req: 12, OpVL2Ack: 20, OpVL3Req: 24, OpVL3Ack: 28,
		OpBulkReq: 4, OpLogReq: 20, OpLogRmAck: 4, OpShootdown: 12}
	for op := Op(0); op < 20; op++ {
		got, ok := BodySize(op)
		w, wok := want[op]
		if got != w || ok != wok {
			t.Errorf("BodySize(%v) = %d, %v; want %d, %v", op, got, ok, w, wok)
		}
	}
}

// TestDecodeSizes feeds every decoder bodies one byte short and one byte
// long of a valid one, and an empty one. (For LOG_ACK the extra byte is a
// truncated entry, for LOG_RM an id that does not match the count.)
func TestDecodeSizes(t *testing.T) {
	for _, h := range handFrames {
		if h.msg == nil {
			continue
		}
		body := h.msg.Append(nil)
		for _, b := range [][]byte{body[:len(body)-1], append(bytes.Clone(body), 0), nil} {
			if h.op == OpBulkAck && len(b) > 8 {
				continue // BULK_ACK data is free-form
			}
			if m, err := decodeAny(h.op, b); err == nil {
				t.Errorf("%s: %d-byte body decoded as %+v", h.name, len(b), m)
			} else if !errors.Is(err, ErrBodySize) {
				t.Errorf("%s: %d-byte body: %v, want ErrBodySize", h.name, len(b), err)
			}
		}
	}
}

func TestDecodeLogAckErrors(t *testing.T) {
	vl2 := logE1.Append(nil)
	vl3 := logE2.Append(nil)
	cat := func(parts ...[]byte) []byte { return bytes.Join(parts, nil) }
	ok := []byte{0, 0, 0, 0}
	for _, c := range []struct {
		name string
		body []byte
		want error
	}{
		{"short status", []byte{0, 0, 0}, ErrBodySize},
		{"1 byte of entry", cat(ok, []byte{0}), ErrBodySize},
		{"3 bytes of entry", cat(ok, vl2[:3]), ErrBodySize},
		{"truncated VL2", cat(ok, vl2[:31]), ErrBodySize},
		{"truncated VL3", cat(ok, vl3[:43]), ErrBodySize},
		{"VL3 typed as VL2 then short", cat(ok, []byte{0, 0, 0, 2}, vl2[4:]), ErrBodySize},
		{"good then truncated", cat(ok, vl2, vl3[:40]), ErrBodySize},
		{"type 0", cat(ok, []byte{0, 0, 0, 0}, vl2[4:]), ErrLogType},
		{"type 3 (route)", cat(ok, []byte{0, 0, 0, 3}, vl3[4:]), ErrLogType},
		{"good then unknown", cat(ok, vl3, []byte{0xff, 0xff, 0xff, 0xff}, vl2[4:]), ErrLogType},
	} {
		if m, err := DecodeLogAck(c.body); !errors.Is(err, c.want) {
			t.Errorf("%s: DecodeLogAck = %+v, %v; want %v", c.name, m, err, c.want)
		}
	}
	// A non-OK status with entries still decodes: acting on it is the
	// client's business.
	m, err := DecodeLogAck(cat([]byte{0, 0, 0, 1}, vl2))
	if err != nil || m.Status != StatusFatal || len(m.Entries) != 1 {
		t.Errorf("FATAL with an entry: %+v, %v", m, err)
	}
	// DecodeLogEntry walks a body without allocating a slice.
	body := cat(vl3, vl2)
	var got []LogEntry
	for off := 0; off < len(body); {
		e, n, err := DecodeLogEntry(body[off:])
		if err != nil {
			t.Fatal(err)
		}
		got = append(got, e)
		off += n
	}
	if !reflect.DeepEqual(got, []LogEntry{logE2, logE1}) {
		t.Errorf("DecodeLogEntry walk = %+v", got)
	}
}

func TestLogEntrySize(t *testing.T) {
	for _, c := range []struct {
		e    LogEntry
		size int
	}{{logE1, LogVL2Size}, {logE2, LogVL3Size}, {LogEntry{Type: 3}, 0}, {LogEntry{}, 0}} {
		if got := c.e.Size(); got != c.size {
			t.Errorf("type %d: Size = %d, want %d", c.e.Type, got, c.size)
		}
		if got := len(c.e.Append(nil)); got != c.size {
			t.Errorf("type %d: Append wrote %d bytes, want %d", c.e.Type, got, c.size)
		}
	}
	// Fields the type does not carry are not written.
	e := logE1
	e.IP, e.VLAN = netip.MustParseAddr("10.1.1.1"), 7
	if !bytes.Equal(e.Append(nil), logE1.Append(nil)) {
		t.Error("VL2 entry wrote VL3 fields")
	}
	e = logE2
	e.MAC = [6]byte{1, 2, 3, 4, 5, 6}
	if !bytes.Equal(e.Append(nil), logE2.Append(nil)) {
		t.Error("VL3 entry wrote the MAC")
	}
}

func TestDecodeLogRmCounts(t *testing.T) {
	for _, c := range []struct {
		name string
		body []byte
	}{
		{"count 1, no id", []byte{0, 0, 0, 1}},
		{"count 0, one id", append([]byte{0, 0, 0, 0}, make([]byte, 16)...)},
		{"count 1, 15 bytes", append([]byte{0, 0, 0, 1}, make([]byte, 15)...)},
		{"count 1, 17 bytes", append([]byte{0, 0, 0, 1}, make([]byte, 17)...)},
		// 4 + 16 x 0x10000000 wraps to 4 in 32 bits.
		{"count 2^28", []byte{0x10, 0, 0, 0}},
		{"count max", []byte{0xff, 0xff, 0xff, 0xff}},
	} {
		if m, err := DecodeLogRm(c.body); !errors.Is(err, ErrBodySize) {
			t.Errorf("%s: DecodeLogRm = %+v, %v; want ErrBodySize", c.name, m, err)
		}
	}
}

// TestAddresses checks the 16-byte address rules on both sides.
func TestAddresses(t *testing.T) {
	for _, c := range []struct {
		in   netip.Addr
		wire string
		out  netip.Addr
	}{
		{netip.MustParseAddr("10.0.0.1"), "00000000000000000000ffff0a000001", netip.MustParseAddr("10.0.0.1")},
		{netip.MustParseAddr("::ffff:10.0.0.1"), "00000000000000000000ffff0a000001", netip.MustParseAddr("10.0.0.1")},
		{netip.MustParseAddr("fd12::42"), "fd120000000000000000000000000042", netip.MustParseAddr("fd12::42")},
		{netip.MustParseAddr("fe80::1%eth0"), "fe800000000000000000000000000001", netip.MustParseAddr("fe80::1")},
		{netip.Addr{}, "00000000000000000000000000000000", netip.IPv6Unspecified()},
		{netip.IPv6Unspecified(), "00000000000000000000000000000000", netip.IPv6Unspecified()},
		{netip.IPv4Unspecified(), "00000000000000000000ffff00000000", netip.IPv4Unspecified()},
	} {
		got := appendAddr(nil, c.in)
		if !bytes.Equal(got, unhex(t, c.wire)) {
			t.Errorf("encode %v = %x, want %s", c.in, got, c.wire)
		}
		if out := decodeAddr(got); out != c.out {
			t.Errorf("decode %s = %v, want %v", c.wire, out, c.out)
		}
	}
}

// TestVL2AckStatus16 checks that VL2_ACK's status is 16 bits.
func TestVL2AckStatus16(t *testing.T) {
	b := VL2Ack{Status: StatusNotFound, Port: 1}.Append(nil)
	if len(b) != 20 || b[0] != 0 || b[1] != 2 || b[2] != 0 || b[3] != 1 {
		t.Fatalf("VL2Ack body % x", b)
	}
}

// TestAppendNoAlloc checks that building a frame into a buffer with room
// does not allocate.
func TestAppendNoAlloc(t *testing.T) {
	buf := make([]byte, 0, 256)
	req := VL2Req{MAC: [6]byte{1, 2, 3, 4, 5, 6}, VNetID: 9}
	ack := VL3Ack{Status: StatusOK, MAC: [6]byte{1, 2, 3, 4, 5, 6}, Port: 4789, Addr: netip.MustParseAddr("192.0.2.1")}
	if n := testing.AllocsPerRun(100, func() {
		buf = req.AppendFrame(buf[:0], 1)
		buf = ack.AppendFrame(buf, 1)
		buf = AppendFrame(buf, OpPong, 1, nil)
	}); n != 0 {
		t.Fatalf("%v allocations", n)
	}
}
