package svpwire

import (
	"encoding/binary"
	"fmt"
	"net/netip"
)

// Body sizes of the fixed-size messages (illumos.md 6.3).
const (
	vl2ReqLen   = 12 // also SHOOTDOWN
	vl2AckLen   = 20
	vl3ReqLen   = 24
	vl3AckLen   = 28
	bulkReqLen  = 4
	bulkAckMin  = 8
	logReqLen   = 20
	logAckMin   = 4
	logRmMin    = 4
	logRmIDLen  = 16
	logRmAckLen = 4
)

// Message is a body that knows its op. Every message type below
// implements it; PING and PONG have no body and no type (use AppendFrame
// with a nil body).
type Message interface {
	Op() Op
	// Append appends the body to dst.
	Append(dst []byte) []byte
	// AppendFrame appends the whole message, header included, to dst.
	AppendFrame(dst []byte, id uint32) []byte
}

// sizeErr reports a body whose length is wrong for op.
func sizeErr(op Op, got, want int) error {
	return fmt.Errorf("%w: %v body is %d bytes, want %d", ErrBodySize, op, got, want)
}

var zeroAddr [16]byte

// appendAddr writes a 16-byte address: IPv4 as IPv4-mapped (As16 does
// that), and the zero Addr as all zeros, which is what not-found replies
// carry.
func appendAddr(dst []byte, a netip.Addr) []byte {
	if !a.IsValid() {
		return append(dst, zeroAddr[:]...)
	}
	b := a.As16()
	return append(dst, b[:]...)
}

// decodeAddr reads a 16-byte address. IPv4-mapped addresses come back as
// IPv4, so that they compare equal to the addresses callers hold; all
// zeros is the IPv6 unspecified address "::".
func decodeAddr(b []byte) netip.Addr {
	return netip.AddrFrom16([16]byte(b[:16])).Unmap()
}

var pad2 [2]byte

// VL2Req (VL2_REQ) asks where a MAC lives: (vnetid, MAC) -> underlay IP
// and port.
type VL2Req struct {
	MAC    [6]byte
	VNetID uint32
}

// Op returns OpVL2Req.
func (VL2Req) Op() Op { return OpVL2Req }

// Append appends the 12-byte body: mac[6], pad[2], vnetid u32.
func (m VL2Req) Append(dst []byte) []byte {
	dst = append(dst, m.MAC[:]...)
	dst = append(dst, pad2[:]...)
	return binary.BigEndian.AppendUint32(dst, m.VNetID)
}

// AppendFrame appends the whole message with the given id.
func (m VL2Req) AppendFrame(dst []byte, id uint32) []byte {
	dst, start := beginFrame(dst, OpVL2Req, id)
	return endFrame(m.Append(dst), start)
}

// DecodeVL2Req decodes a VL2_REQ body of exactly 12 bytes. The pad bytes
// are not checked.
func DecodeVL2Req(b []byte) (VL2Req, error) {
	if len(b) != vl2ReqLen {
		return VL2Req{}, sizeErr(OpVL2Req, len(b), vl2ReqLen)
	}
	return VL2Req{MAC: [6]byte(b[0:6]), VNetID: binary.BigEndian.Uint32(b[8:12])}, nil
}

// VL2Ack (VL2_ACK) answers a VL2Req.
type VL2Ack struct {
	// Status is 16 bits on the wire in this message only; Append keeps
	// its low 16 bits. (The illumos client reads it with a 32-bit swap,
	// so it only ever tells zero from nonzero.)
	Status Status
	Port   uint16
	Addr   netip.Addr // the zero Addr is sent as "::"
}

// Op returns OpVL2Ack.
func (VL2Ack) Op() Op { return OpVL2Ack }

// Append appends the 20-byte body: status u16, port u16, addr[16].
func (m VL2Ack) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, uint16(m.Status))
	dst = binary.BigEndian.AppendUint16(dst, m.Port)
	return appendAddr(dst, m.Addr)
}

// AppendFrame appends the whole message with the given id.
func (m VL2Ack) AppendFrame(dst []byte, id uint32) []byte {
	dst, start := beginFrame(dst, OpVL2Ack, id)
	return endFrame(m.Append(dst), start)
}

// DecodeVL2Ack decodes a VL2_ACK body of exactly 20 bytes.
func DecodeVL2Ack(b []byte) (VL2Ack, error) {
	if len(b) != vl2AckLen {
		return VL2Ack{}, sizeErr(OpVL2Ack, len(b), vl2AckLen)
	}
	return VL2Ack{
		Status: Status(binary.BigEndian.Uint16(b[0:2])),
		Port:   binary.BigEndian.Uint16(b[2:4]),
		Addr:   decodeAddr(b[4:20]),
	}, nil
}

// VL3Req (VL3_REQ) asks which MAC holds an IP: (vnetid, IP) -> MAC and
// that MAC's underlay IP and port.
type VL3Req struct {
	IP netip.Addr
	// Type is L3IPv4 or L3IPv6. It is not checked on decode: a server
	// answers other values with StatusBadL3Type (Triton ignores it).
	Type   uint32
	VNetID uint32
}

// Op returns OpVL3Req.
func (VL3Req) Op() Op { return OpVL3Req }

// Append appends the 24-byte body: ip[16], type u32, vnetid u32.
func (m VL3Req) Append(dst []byte) []byte {
	dst = appendAddr(dst, m.IP)
	dst = binary.BigEndian.AppendUint32(dst, m.Type)
	return binary.BigEndian.AppendUint32(dst, m.VNetID)
}

// AppendFrame appends the whole message with the given id.
func (m VL3Req) AppendFrame(dst []byte, id uint32) []byte {
	dst, start := beginFrame(dst, OpVL3Req, id)
	return endFrame(m.Append(dst), start)
}

// DecodeVL3Req decodes a VL3_REQ body of exactly 24 bytes.
func DecodeVL3Req(b []byte) (VL3Req, error) {
	if len(b) != vl3ReqLen {
		return VL3Req{}, sizeErr(OpVL3Req, len(b), vl3ReqLen)
	}
	return VL3Req{
		IP:     decodeAddr(b[0:16]),
		Type:   binary.BigEndian.Uint32(b[16:20]),
		VNetID: binary.BigEndian.Uint32(b[20:24]),
	}, nil
}

// VL3Ack (VL3_ACK) answers a VL3Req.
type VL3Ack struct {
	Status Status // 32 bits on the wire, unlike VL2Ack's
	MAC    [6]byte
	Port   uint16
	Addr   netip.Addr // the zero Addr is sent as "::"
}

// Op returns OpVL3Ack.
func (VL3Ack) Op() Op { return OpVL3Ack }

// Append appends the 28-byte body: status u32, mac[6], port u16,
// addr[16].
func (m VL3Ack) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Status))
	dst = append(dst, m.MAC[:]...)
	dst = binary.BigEndian.AppendUint16(dst, m.Port)
	return appendAddr(dst, m.Addr)
}

// AppendFrame appends the whole message with the given id.
func (m VL3Ack) AppendFrame(dst []byte, id uint32) []byte {
	dst, start := beginFrame(dst, OpVL3Ack, id)
	return endFrame(m.Append(dst), start)
}

// DecodeVL3Ack decodes a VL3_ACK body of exactly 28 bytes.
func DecodeVL3Ack(b []byte) (VL3Ack, error) {
	if len(b) != vl3AckLen {
		return VL3Ack{}, sizeErr(OpVL3Ack, len(b), vl3AckLen)
	}
	return VL3Ack{
		Status: Status(binary.BigEndian.Uint32(b[0:4])),
		MAC:    [6]byte(b[4:10]),
		Port:   binary.BigEndian.Uint16(b[10:12]),
		Addr:   decodeAddr(b[12:28]),
	}, nil
}

// BulkReq (BULK_REQ) asks for a whole table. Defined in v1, implemented
// by no peer: Triton crashes on it, a server should answer StatusBadBulk
// or FATAL.
type BulkReq struct {
	Type uint32 // BulkVL2 or BulkVL3
}

// Op returns OpBulkReq.
func (BulkReq) Op() Op { return OpBulkReq }

// Append appends the 4-byte body: type u32.
func (m BulkReq) Append(dst []byte) []byte {
	return binary.BigEndian.AppendUint32(dst, m.Type)
}

// AppendFrame appends the whole message with the given id.
func (m BulkReq) AppendFrame(dst []byte, id uint32) []byte {
	dst, start := beginFrame(dst, OpBulkReq, id)
	return endFrame(m.Append(dst), start)
}

// DecodeBulkReq decodes a BULK_REQ body of exactly 4 bytes.
func DecodeBulkReq(b []byte) (BulkReq, error) {
	if len(b) != bulkReqLen {
		return BulkReq{}, sizeErr(OpBulkReq, len(b), bulkReqLen)
	}
	return BulkReq{Type: binary.BigEndian.Uint32(b)}, nil
}

// BulkAck (BULK_ACK) answers a BulkReq. The format of the data was never
// defined; a server sends only a status (StatusBadBulk or StatusFatal).
type BulkAck struct {
	Status Status
	Type   uint32
	Data   []byte // aliases the decoded body
}

// Op returns OpBulkAck.
func (BulkAck) Op() Op { return OpBulkAck }

// Append appends the body: status u32, type u32, data.
func (m BulkAck) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Status))
	dst = binary.BigEndian.AppendUint32(dst, m.Type)
	return append(dst, m.Data...)
}

// AppendFrame appends the whole message with the given id.
func (m BulkAck) AppendFrame(dst []byte, id uint32) []byte {
	dst, start := beginFrame(dst, OpBulkAck, id)
	return endFrame(m.Append(dst), start)
}

// DecodeBulkAck decodes a BULK_ACK body of at least 8 bytes. Data is nil
// when there is none.
func DecodeBulkAck(b []byte) (BulkAck, error) {
	if len(b) < bulkAckMin {
		return BulkAck{}, fmt.Errorf("%w: %v body is %d bytes, want at least %d", ErrBodySize, OpBulkAck, len(b), bulkAckMin)
	}
	m := BulkAck{Status: Status(binary.BigEndian.Uint32(b[0:4])), Type: binary.BigEndian.Uint32(b[4:8])}
	if len(b) > bulkAckMin {
		m.Data = b[bulkAckMin:]
	}
	return m, nil
}

// LogReq (LOG_REQ) polls the server for the shootdown log of the host
// whose underlay address is IP.
type LogReq struct {
	// Count is the number of bytes of log entries the client accepts
	// (not a number of entries; the 4-byte status is not counted).
	Count uint32
	IP    netip.Addr
}

// Op returns OpLogReq.
func (LogReq) Op() Op { return OpLogReq }

// Append appends the 20-byte body: count u32, ip[16].
func (m LogReq) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, m.Count)
	return appendAddr(dst, m.IP)
}

// AppendFrame appends the whole message with the given id.
func (m LogReq) AppendFrame(dst []byte, id uint32) []byte {
	dst, start := beginFrame(dst, OpLogReq, id)
	return endFrame(m.Append(dst), start)
}

// DecodeLogReq decodes a LOG_REQ body of exactly 20 bytes.
func DecodeLogReq(b []byte) (LogReq, error) {
	if len(b) != logReqLen {
		return LogReq{}, sizeErr(OpLogReq, len(b), logReqLen)
	}
	return LogReq{Count: binary.BigEndian.Uint32(b[0:4]), IP: decodeAddr(b[4:20])}, nil
}

// LogEntry is one shootdown log entry of a LOG_ACK. A LogVL2 entry (32
// bytes: type, id, mac, pad, vnetid) tells the client to forget where MAC
// lives; a LogVL3 entry (44 bytes: type, id, ip, pad, vlan, vnetid) to
// re-resolve IP and announce it with a gratuitous ARP. Fields the entry's
// type does not carry are ignored by Append and zero after decoding.
type LogEntry struct {
	Type   uint32   // LogVL2 or LogVL3
	ID     [16]byte // a UUID; the client returns it in LOG_RM
	MAC    [6]byte  // LogVL2
	IP     netip.Addr
	VLAN   uint16 // LogVL3
	VNetID uint32
}

// Size returns the entry's size on the wire: LogVL2Size, LogVL3Size, or 0
// for a type SVP does not define (which Append does not write).
func (e LogEntry) Size() int {
	switch e.Type {
	case LogVL2:
		return LogVL2Size
	case LogVL3:
		return LogVL3Size
	}
	return 0
}

// Append appends the entry. An entry of unknown type appends nothing,
// as its Size says: there is no layout to write it in.
func (e LogEntry) Append(dst []byte) []byte {
	switch e.Type {
	case LogVL2:
		dst = binary.BigEndian.AppendUint32(dst, e.Type)
		dst = append(dst, e.ID[:]...)
		dst = append(dst, e.MAC[:]...)
		dst = append(dst, pad2[:]...)
	case LogVL3:
		dst = binary.BigEndian.AppendUint32(dst, e.Type)
		dst = append(dst, e.ID[:]...)
		dst = appendAddr(dst, e.IP)
		dst = append(dst, pad2[:]...)
		dst = binary.BigEndian.AppendUint16(dst, e.VLAN)
	default:
		return dst
	}
	return binary.BigEndian.AppendUint32(dst, e.VNetID)
}

// DecodeLogEntry decodes the log entry at the start of b and returns it
// and its size, so that a caller can walk a LOG_ACK without allocating.
// An unknown type is ErrLogType, a truncated entry ErrBodySize.
func DecodeLogEntry(b []byte) (LogEntry, int, error) {
	return decodeEntry(b)
}

func decodeEntry(b []byte) (LogEntry, int, error) {
	if len(b) < 4 {
		return LogEntry{}, 0, fmt.Errorf("%w: log entry of %d bytes, too short for a type", ErrBodySize, len(b))
	}
	e := LogEntry{Type: binary.BigEndian.Uint32(b)}
	n := e.Size()
	if n == 0 {
		return LogEntry{}, 0, fmt.Errorf("%w %d", ErrLogType, e.Type)
	}
	if len(b) < n {
		return LogEntry{}, 0, fmt.Errorf("%w: log entry of type %d needs %d bytes, %d left", ErrBodySize, e.Type, n, len(b))
	}
	e.ID = [16]byte(b[4:20])
	if e.Type == LogVL2 {
		e.MAC = [6]byte(b[20:26])
		e.VNetID = binary.BigEndian.Uint32(b[28:32])
	} else {
		e.IP = decodeAddr(b[20:36])
		e.VLAN = binary.BigEndian.Uint16(b[38:40])
		e.VNetID = binary.BigEndian.Uint32(b[40:44])
	}
	return e, n, nil
}

// LogAck (LOG_ACK) answers a LogReq with entries packed back to back.
type LogAck struct {
	Status  Status
	Entries []LogEntry // nil when there are none
}

// Op returns OpLogAck.
func (LogAck) Op() Op { return OpLogAck }

// Append appends the body: status u32, then the entries. The sender keeps
// the entries' total Size within the LogReq's Count.
func (m LogAck) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(m.Status))
	for _, e := range m.Entries {
		dst = e.Append(dst)
	}
	return dst
}

// AppendFrame appends the whole message with the given id.
func (m LogAck) AppendFrame(dst []byte, id uint32) []byte {
	dst, start := beginFrame(dst, OpLogAck, id)
	return endFrame(m.Append(dst), start)
}

// DecodeLogAck decodes a LOG_ACK body: a status, then whole entries of
// known types filling the body exactly. Anything else is an error (the
// illumos client discards such a batch). The caller checks the body
// against the Count it asked for.
func DecodeLogAck(b []byte) (LogAck, error) {
	if len(b) < logAckMin {
		return LogAck{}, fmt.Errorf("%w: %v body is %d bytes, want at least %d", ErrBodySize, OpLogAck, len(b), logAckMin)
	}
	m := LogAck{Status: Status(binary.BigEndian.Uint32(b))}
	// First pass validates and counts, so that Entries is allocated once
	// at its exact size.
	count := 0
	for off := logAckMin; off < len(b); {
		_, n, err := decodeEntry(b[off:])
		if err != nil {
			return LogAck{}, fmt.Errorf("%w (%v body offset %d)", err, OpLogAck, off)
		}
		off += n
		count++
	}
	if count == 0 {
		return m, nil
	}
	m.Entries = make([]LogEntry, 0, count)
	for off := logAckMin; off < len(b); {
		e, n, _ := decodeEntry(b[off:])
		m.Entries = append(m.Entries, e)
		off += n
	}
	return m, nil
}

// LogRm (LOG_RM) tells the server which log entries the client has
// applied, so that it deletes them.
type LogRm struct {
	IDs [][16]byte // nil when there are none
}

// Op returns OpLogRm.
func (LogRm) Op() Op { return OpLogRm }

// Append appends the body: count u32, then count ids of 16 bytes.
func (m LogRm) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint32(dst, uint32(len(m.IDs)))
	for i := range m.IDs {
		dst = append(dst, m.IDs[i][:]...)
	}
	return dst
}

// AppendFrame appends the whole message with the given id.
func (m LogRm) AppendFrame(dst []byte, id uint32) []byte {
	dst, start := beginFrame(dst, OpLogRm, id)
	return endFrame(m.Append(dst), start)
}

// DecodeLogRm decodes a LOG_RM body, which must be exactly 4 + 16 x count
// bytes for the count it carries.
func DecodeLogRm(b []byte) (LogRm, error) {
	if len(b) < logRmMin {
		return LogRm{}, fmt.Errorf("%w: %v body is %d bytes, want at least %d", ErrBodySize, OpLogRm, len(b), logRmMin)
	}
	count := binary.BigEndian.Uint32(b)
	// uint64: 16 x count overflows 32 bits.
	if want := logRmMin + logRmIDLen*uint64(count); uint64(len(b)) != want {
		return LogRm{}, fmt.Errorf("%w: %v body is %d bytes, want %d for count %d", ErrBodySize, OpLogRm, len(b), want, count)
	}
	if count == 0 {
		return LogRm{}, nil
	}
	m := LogRm{IDs: make([][16]byte, count)}
	for i := range m.IDs {
		off := logRmMin + logRmIDLen*i
		m.IDs[i] = [16]byte(b[off : off+logRmIDLen])
	}
	return m, nil
}

// LogRmAck (LOG_RM_ACK) answers a LogRm.
type LogRmAck struct {
	Status Status
}

// Op returns OpLogRmAck.
func (LogRmAck) Op() Op { return OpLogRmAck }

// Append appends the 4-byte body: status u32.
func (m LogRmAck) Append(dst []byte) []byte {
	return binary.BigEndian.AppendUint32(dst, uint32(m.Status))
}

// AppendFrame appends the whole message with the given id.
func (m LogRmAck) AppendFrame(dst []byte, id uint32) []byte {
	dst, start := beginFrame(dst, OpLogRmAck, id)
	return endFrame(m.Append(dst), start)
}

// DecodeLogRmAck decodes a LOG_RM_ACK body of exactly 4 bytes.
func DecodeLogRmAck(b []byte) (LogRmAck, error) {
	if len(b) != logRmAckLen {
		return LogRmAck{}, sizeErr(OpLogRmAck, len(b), logRmAckLen)
	}
	return LogRmAck{Status: Status(binary.BigEndian.Uint32(b))}, nil
}

// Shootdown (SHOOTDOWN) is a one-way server-to-client message: forget
// where MAC lives. Defined in v1, sent by no server and ignored by the
// illumos client; it gets no reply.
type Shootdown struct {
	MAC    [6]byte
	VNetID uint32
}

// Op returns OpShootdown.
func (Shootdown) Op() Op { return OpShootdown }

// Append appends the 12-byte body: mac[6], pad[2], vnetid u32.
func (m Shootdown) Append(dst []byte) []byte {
	return VL2Req(m).Append(dst)
}

// AppendFrame appends the whole message with the given id.
func (m Shootdown) AppendFrame(dst []byte, id uint32) []byte {
	dst, start := beginFrame(dst, OpShootdown, id)
	return endFrame(m.Append(dst), start)
}

// DecodeShootdown decodes a SHOOTDOWN body of exactly 12 bytes.
func DecodeShootdown(b []byte) (Shootdown, error) {
	if len(b) != vl2ReqLen {
		return Shootdown{}, sizeErr(OpShootdown, len(b), vl2ReqLen)
	}
	return Shootdown{MAC: [6]byte(b[0:6]), VNetID: binary.BigEndian.Uint32(b[8:12])}, nil
}

// Interface checks.
var (
	_ Message = VL2Req{}
	_ Message = VL2Ack{}
	_ Message = VL3Req{}
	_ Message = VL3Ack{}
	_ Message = BulkReq{}
	_ Message = BulkAck{}
	_ Message = LogReq{}
	_ Message = LogAck{}
	_ Message = LogRm{}
	_ Message = LogRmAck{}
	_ Message = Shootdown{}
)
