package svpwire

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"strconv"
	"strings"
)

// Version is the only protocol version there is.
const Version = 1

// DefaultPort is the TCP port portolan listens on.
const DefaultPort = 1296

// HeaderLen is the length of the header that starts every message.
const HeaderLen = 16

// MaxBody is the largest body a Reader accepts unless told otherwise. No
// defined message comes near it: the largest is a LOG_ACK, bounded by the
// count the client asked for (illumos asks for 1024 bytes).
const MaxBody = 1 << 20

// Op is an operation code.
type Op uint16

// Operation codes (illumos libvarpd_svp_prot.h).
const (
	OpPing      Op = 1
	OpPong      Op = 2
	OpVL2Req    Op = 3
	OpVL2Ack    Op = 4
	OpVL3Req    Op = 5
	OpVL3Ack    Op = 6
	OpBulkReq   Op = 7
	OpBulkAck   Op = 8
	OpLogReq    Op = 9
	OpLogAck    Op = 10
	OpLogRm     Op = 11
	OpLogRmAck  Op = 12
	OpShootdown Op = 13
)

var opNames = [...]string{
	OpPing:      "PING",
	OpPong:      "PONG",
	OpVL2Req:    "VL2_REQ",
	OpVL2Ack:    "VL2_ACK",
	OpVL3Req:    "VL3_REQ",
	OpVL3Ack:    "VL3_ACK",
	OpBulkReq:   "BULK_REQ",
	OpBulkAck:   "BULK_ACK",
	OpLogReq:    "LOG_REQ",
	OpLogAck:    "LOG_ACK",
	OpLogRm:     "LOG_RM",
	OpLogRmAck:  "LOG_RM_ACK",
	OpShootdown: "SHOOTDOWN",
}

// String returns the protocol's name for op, or "op(N)" for an op SVP
// does not define (peers do send those; see svp-vectors.md).
func (op Op) String() string {
	if int(op) < len(opNames) && opNames[op] != "" {
		return opNames[op]
	}
	return "op(" + strconv.Itoa(int(op)) + ")"
}

// Status is the result code carried by replies. It is 32 bits on the wire
// except in VL2_ACK, where it is 16.
type Status uint32

// Status codes.
const (
	StatusOK        Status = 0
	StatusFatal     Status = 1 // the server failed; the client drops the connection
	StatusNotFound  Status = 2 // no mapping
	StatusBadL3Type Status = 3 // VL3_REQ type was not L3IPv4 or L3IPv6
	StatusBadBulk   Status = 4 // unknown BULK_REQ type
)

var statusNames = [...]string{"OK", "FATAL", "NOTFOUND", "BADL3TYPE", "BADBULK"}

// String returns the protocol's name for s, or "status(N)".
func (s Status) String() string {
	if s < Status(len(statusNames)) {
		return statusNames[s]
	}
	return "status(" + strconv.FormatUint(uint64(s), 10) + ")"
}

// VL3_REQ address types.
const (
	L3IPv4 = 1
	L3IPv6 = 2
)

// Log entry types, and their sizes on the wire.
const (
	LogVL2 = 1
	LogVL3 = 2

	LogVL2Size = 32
	LogVL3Size = 44
)

// BULK_REQ types. Bulk transfer is defined but implemented by no peer.
const (
	BulkVL2 = 1
	BulkVL3 = 2
)

// Header is the 16-byte header of every message. All fields are
// big-endian on the wire.
type Header struct {
	Version uint16
	Op      Op
	Size    uint32 // body length, header excluded
	// ID is chosen by the client and echoed in the reply. The illumos
	// client writes it in host byte order, so it is opaque: it is kept as
	// read big-endian and written back big-endian, which returns the same
	// four bytes whatever their meaning.
	ID  uint32
	CRC uint32
}

// DecodeHeader reads a header from the first HeaderLen bytes of b. It
// checks nothing but the length; Reader does the protocol checks.
func DecodeHeader(b []byte) (Header, error) {
	if len(b) < HeaderLen {
		return Header{}, fmt.Errorf("%w: header is %d bytes, want %d", ErrBodySize, len(b), HeaderLen)
	}
	return Header{
		Version: binary.BigEndian.Uint16(b[0:2]),
		Op:      Op(binary.BigEndian.Uint16(b[2:4])),
		Size:    binary.BigEndian.Uint32(b[4:8]),
		ID:      binary.BigEndian.Uint32(b[8:12]),
		CRC:     binary.BigEndian.Uint32(b[12:16]),
	}, nil
}

// Append appends h as it stands, CRC included, to dst.
func (h Header) Append(dst []byte) []byte {
	dst = binary.BigEndian.AppendUint16(dst, h.Version)
	dst = binary.BigEndian.AppendUint16(dst, uint16(h.Op))
	dst = binary.BigEndian.AppendUint32(dst, h.Size)
	dst = binary.BigEndian.AppendUint32(dst, h.ID)
	return binary.BigEndian.AppendUint32(dst, h.CRC)
}

var zeroCRC [4]byte

// Checksum returns the CRC of a message: CRC-32 (IEEE, as zlib's crc32)
// over the first 12 bytes of hdr, four zero bytes in place of the CRC
// field, then body. hdr's own CRC field is ignored, so Checksum can check
// a received frame in place.
func Checksum(hdr, body []byte) uint32 {
	c := crc32.Update(0, crc32.IEEETable, hdr[:12])
	c = crc32.Update(c, crc32.IEEETable, zeroCRC[:])
	return crc32.Update(c, crc32.IEEETable, body)
}

// AppendFrame appends a complete message (version 1 header with size and
// CRC, then body) to dst. body must not overlap dst's spare capacity.
func AppendFrame(dst []byte, op Op, id uint32, body []byte) []byte {
	dst, start := beginFrame(dst, op, id)
	return endFrame(append(dst, body...), start)
}

// beginFrame appends a header with size and CRC still zero and returns
// where it starts, so that a body can be appended in place (no scratch
// buffer) before endFrame fills them in.
func beginFrame(dst []byte, op Op, id uint32) ([]byte, int) {
	start := len(dst)
	return Header{Version: Version, Op: op, ID: id}.Append(dst), start
}

// endFrame fills in the size and CRC of the frame that starts at
// frame[start:] and runs to the end of frame.
func endFrame(frame []byte, start int) []byte {
	f := frame[start:]
	binary.BigEndian.PutUint32(f[4:8], uint32(len(f)-HeaderLen))
	binary.BigEndian.PutUint32(f[12:16], crc32.ChecksumIEEE(f)) // the CRC field is still zero
	return frame
}

// ExpectedReply returns the op that answers op, and false for ops that
// get no reply (SHOOTDOWN, replies themselves, unknown ops).
func ExpectedReply(op Op) (Op, bool) {
	switch op {
	case OpPing, OpVL2Req, OpVL3Req, OpBulkReq, OpLogReq, OpLogRm:
		return op + 1, true
	}
	return 0, false
}

// BodySize returns the exact body size of ops whose size is fixed, and
// false for the variable ones (BULK_ACK, LOG_ACK, LOG_RM) and unknown ops.
func BodySize(op Op) (int, bool) {
	switch op {
	case OpPing, OpPong:
		return 0, true
	case OpVL2Req, OpShootdown:
		return vl2ReqLen, true
	case OpVL2Ack:
		return vl2AckLen, true
	case OpVL3Req:
		return vl3ReqLen, true
	case OpVL3Ack:
		return vl3AckLen, true
	case OpBulkReq:
		return bulkReqLen, true
	case OpLogReq:
		return logReqLen, true
	case OpLogRmAck:
		return logRmAckLen, true
	}
	return 0, false
}

// Errors. Reader wraps the first three in a *FrameError; decoders wrap the
// others with the op and the offending sizes. Test with errors.Is.
var (
	ErrVersion  = errors.New("svp: unsupported protocol version")
	ErrCRC      = errors.New("svp: CRC mismatch")
	ErrTooBig   = errors.New("svp: body larger than accepted")
	ErrBodySize = errors.New("svp: wrong body size")
	ErrLogType  = errors.New("svp: unknown log entry type")
)

// FrameError is a problem with one received frame: a protocol error
// (ErrVersion, ErrTooBig, ErrCRC) or a truncated body
// (io.ErrUnexpectedEOF). The fields come from the frame's header, so that
// a server can log which request broke the connection.
type FrameError struct {
	Op   Op
	ID   uint32
	Size uint32
	Err  error
}

// Error describes the frame and the problem.
func (e *FrameError) Error() string {
	// The reason may be one of this package's errors: say "svp:" once.
	return fmt.Sprintf("svp: %v id %#08x size %d: %s", e.Op, e.ID, e.Size, strings.TrimPrefix(e.Err.Error(), "svp: "))
}

// Unwrap returns the reason, for errors.Is.
func (e *FrameError) Unwrap() error { return e.Err }
