package svpwire

import (
	"bytes"
	"encoding/hex"
	"errors"
	"io"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// Frames captured from the Triton server (spec/reference/svp-vectors.md),
// copied verbatim. The comment above each is the document's section.
const (
	// json:PING
	vPINGRequest = `00 01 00 01 00 00 00 00 00 00 00 01 b5 b6 60 88`
	// json:PING
	vPINGResponse = `00 01 00 02 00 00 00 00 00 00 00 01 08 7c 0c 46`
	// json:VL2_REQ_found
	vVL2REQFoundRequest = `00 01 00 03 00 00 00 0c 00 00 00 02 11 97 5a b0
		90 b8 d0 00 00 01 00 00 00 00 12 34`
	// json:VL2_REQ_found
	vVL2REQFoundResponse = `00 01 00 04 00 00 00 14 00 00 00 02 9a 95 84 8b
		00 00 12 b5 00 00 00 00 00 00 00 00 00 00 ff ff
		c0 a8 64 01`
	// json:VL2_REQ_notfound
	vVL2REQNotfoundRequest = `00 01 00 03 00 00 00 0c 00 00 00 03 70 ab a5 a4
		02 00 00 00 00 99 00 00 00 00 12 34`
	// json:VL2_REQ_notfound
	vVL2REQNotfoundResponse = `00 01 00 04 00 00 00 14 00 00 00 03 ee 1d b9 a7
		00 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00
		00 00 00 00`
	// json:VL3_REQ_v4
	vVL3REQV4Request = `00 01 00 05 00 00 00 18 00 00 00 04 09 01 9e c4
		00 00 00 00 00 00 00 00 00 00 ff ff 0a 00 00 02
		00 00 00 01 00 00 12 34`
	// json:VL3_REQ_v4
	vVL3REQV4Response = `00 01 00 06 00 00 00 1c 00 00 00 04 8c e0 b8 46
		00 00 00 00 90 b8 d0 00 00 02 12 b5 00 00 00 00
		00 00 00 00 00 00 ff ff c0 a8 64 02`
	// json:VL3_REQ_v6
	vVL3REQV6Request = `00 01 00 05 00 00 00 18 00 00 00 05 27 77 ae 5a
		fd 12 00 00 00 00 00 00 00 00 00 00 00 00 00 42
		00 00 00 02 00 00 12 34`
	// json:VL3_REQ_v6
	vVL3REQV6Response = `00 01 00 06 00 00 00 1c 00 00 00 05 38 78 fd 6f
		00 00 00 00 90 b8 d0 ff 00 42 12 b5 00 00 00 00
		00 00 00 00 00 00 ff ff c0 a8 64 01`
	// json:VL3_REQ_notfound
	vVL3REQNotfoundRequest = `00 01 00 05 00 00 00 18 00 00 00 06 4e 7e 67 39
		00 00 00 00 00 00 00 00 00 00 ff ff 0a 07 07 07
		00 00 00 01 00 00 12 34`
	// json:VL3_REQ_notfound
	vVL3REQNotfoundResponse = `00 01 00 06 00 00 00 1c 00 00 00 06 2f 55 1a e9
		00 00 00 02 00 00 00 00 00 00 00 00 00 00 00 00
		00 00 00 00 00 00 00 00 00 00 00 00`
	// json:VL2_REQ_cn_without_underlay
	vVL2REQCnWithoutUnderlayRequest = `00 01 00 03 00 00 00 0c 00 00 00 09 7e ce 9f d5
		90 b8 d0 ff de ad 00 00 00 00 12 34`
	// json:VL2_REQ_cn_without_underlay
	vVL2REQCnWithoutUnderlayResponse = `00 01 00 04 00 00 00 14 00 00 00 09 52 70 0c 4d
		00 02 00 00 00 00 00 00 00 00 00 00 00 00 00 00
		00 00 00 00`
	// json:VL2_REQ_found_other_vnet — json backend ignores vnet_id
	vVL2REQFoundOtherVnetRequest = `00 01 00 03 00 00 00 0c 00 00 00 0a ae 79 b7 5a
		90 b8 d0 00 00 01 00 00 00 ff ff ff`
	// json:VL2_REQ_found_other_vnet — json backend ignores vnet_id
	vVL2REQFoundOtherVnetResponse = `00 01 00 04 00 00 00 14 00 00 00 0a b6 9e 17 3c
		00 00 12 b5 00 00 00 00 00 00 00 00 00 00 ff ff
		c0 a8 64 01`
	// json:pipelined_3 — three frames in one TCP write
	vPipelined3Request1 = `00 01 00 01 00 00 00 00 00 00 00 01 b5 b6 60 88`
	// json:pipelined_3 — three frames in one TCP write
	vPipelined3Request2 = `00 01 00 03 00 00 00 0c 00 00 00 02 11 97 5a b0
		90 b8 d0 00 00 01 00 00 00 00 12 34`
	// json:pipelined_3 — three frames in one TCP write
	vPipelined3Request3 = `00 01 00 05 00 00 00 18 00 00 00 04 09 01 9e c4
		00 00 00 00 00 00 00 00 00 00 ff ff 0a 00 00 02
		00 00 00 01 00 00 12 34`
	// json:pipelined_3 — three frames in one TCP write
	vPipelined3Response1 = `00 01 00 02 00 00 00 00 00 00 00 01 08 7c 0c 46`
	// json:pipelined_3 — three frames in one TCP write
	vPipelined3Response2 = `00 01 00 04 00 00 00 14 00 00 00 02 9a 95 84 8b
		00 00 12 b5 00 00 00 00 00 00 00 00 00 00 ff ff
		c0 a8 64 01`
	// json:pipelined_3 — three frames in one TCP write
	vPipelined3Response3 = `00 01 00 06 00 00 00 1c 00 00 00 04 8c e0 b8 46
		00 00 00 00 90 b8 d0 00 00 02 12 b5 00 00 00 00
		00 00 00 00 00 00 ff ff c0 a8 64 02`
	// json:LOG_REQ — stock json backend
	vLOGREQRequest = `00 01 00 09 00 00 00 14 00 00 00 07 12 71 60 e6
		00 00 04 00 00 00 00 00 00 00 00 00 00 00 ff ff
		c0 a8 64 01`
	// jsonlog:LOG_REQ — shim backend: 2 log entries for CN c001
	vLogLOGREQRequest = `00 01 00 09 00 00 00 14 00 00 00 07 12 71 60 e6
		00 00 04 00 00 00 00 00 00 00 00 00 00 00 ff ff
		c0 a8 64 01`
	// jsonlog:LOG_REQ — shim backend: 2 log entries for CN c001
	vLogLOGREQResponse = `00 01 00 0a 00 00 00 50 00 00 00 07 e8 48 c3 37
		00 00 00 00 00 00 00 01 11 11 11 11 22 22 33 33
		44 44 55 55 55 55 55 01 90 b8 d0 00 00 01 00 00
		00 00 12 34 00 00 00 02 11 11 11 11 22 22 33 33
		44 44 55 55 55 55 55 02 00 00 00 00 00 00 00 00
		00 00 ff ff 0a 00 00 01 00 00 00 00 00 00 12 34`
	// jsonlog:LOG_REQ_count40 — svlr_count=40 bytes: only the 32-byte VL2 entry fits
	vLogLOGREQCount40Request = `00 01 00 09 00 00 00 14 00 00 00 0b 06 dc 13 c8
		00 00 00 28 00 00 00 00 00 00 00 00 00 00 ff ff
		c0 a8 64 01`
	// jsonlog:LOG_REQ_count40 — svlr_count=40 bytes: only the 32-byte VL2 entry fits
	vLogLOGREQCount40Response = `00 01 00 0a 00 00 00 24 00 00 00 0b fb a3 f4 18
		00 00 00 00 00 00 00 01 11 11 11 11 22 22 33 33
		44 44 55 55 55 55 55 01 90 b8 d0 00 00 01 00 00
		00 00 12 34`
	// jsonlog:LOG_RM
	vLogLOGRMRequest = `00 01 00 0b 00 00 00 14 00 00 00 08 e6 e5 13 8f
		00 00 00 01 11 11 11 11 22 22 33 33 44 44 55 55
		55 55 55 01`
	// jsonlog:LOG_RM
	vLogLOGRMResponse = `00 01 00 0c 00 00 00 04 00 00 00 08 36 4e bb 0a
		00 00 00 00`
	// jsonlog:LOG_REQ_after_rm
	vLogLOGREQAfterRmRequest = `00 01 00 09 00 00 00 14 00 00 00 0c 0b 97 45 02
		00 00 04 00 00 00 00 00 00 00 00 00 00 00 ff ff
		c0 a8 64 01`
	// jsonlog:LOG_REQ_after_rm
	vLogLOGREQAfterRmResponse = `00 01 00 0a 00 00 00 30 00 00 00 0c 7f 16 60 ef
		00 00 00 00 00 00 00 02 11 11 11 11 22 22 33 33
		44 44 55 55 55 55 55 02 00 00 00 00 00 00 00 00
		00 00 ff ff 0a 00 00 01 00 00 00 00 00 00 12 34`
	// jsonlog:LOG_REQ_unknown_ip — underlay IP not known -> FATAL status (moray-like)
	vLogLOGREQUnknownIpRequest = `00 01 00 09 00 00 00 14 00 00 00 0d 9e 4b 29 cf
		00 00 04 00 00 00 00 00 00 00 00 00 00 00 ff ff
		7f 00 00 63`
	// jsonlog:LOG_REQ_unknown_ip — underlay IP not known -> FATAL status (moray-like)
	vLogLOGREQUnknownIpResponse = `00 01 00 0a 00 00 00 04 00 00 00 0d ac ea 79 db
		00 00 00 01`
	// bad_crc_ping
	vBadCrcPingRequest = `00 01 00 01 00 00 00 00 00 00 00 15 de ad be ef`
	// bad_crc_then_good_ping_same_conn
	vBadCrcThenGoodPingSameConnRequest = `00 01 00 01 00 00 00 00 00 00 00 16 de ad be ef 00 01 00 01 00 00 00 00 00 00 00 17 5a 16 02 aa`
	// truncated_header_8_bytes
	vTruncatedHeader8BytesRequest = `00 01 00 01 00 00 00 00`
	// truncated_body_vl2_6_of_12
	vTruncatedBodyVl26Of12Request = `00 01 00 03 00 00 00 0c 00 00 00 19 b3 4c d7 d7 90 b8 d0 00 00 01`
	// unknown_op_99
	vUnknownOp99Request = `00 01 00 63 00 00 00 00 00 00 00 1a cc 29 a9 0e`
	// op_0_unknown
	vOp0UnknownRequest = `00 01 00 00 00 00 00 00 00 00 00 1b 42 70 36 2e`
	// op_7_bulk_req
	vOp7BulkReqRequest = `00 01 00 07 00 00 00 04 00 00 00 1c 05 ef 8c fb 00 00 00 01`
	// op_13_shootdown
	vOp13ShootdownRequest = `00 01 00 0d 00 00 00 0c 00 00 00 1d 87 94 0f 09 90 b8 d0 00 00 01 00 00 00 00 12 34`
	// op_2_pong_to_server
	vOp2PongToServerRequest = `00 01 00 02 00 00 00 00 00 00 00 1e ea cc 0c 15`
	// op_4_vl2_ack_to_server
	vOp4Vl2AckToServerRequest = `00 01 00 04 00 00 00 14 00 00 00 1f 15 08 41 74 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00 00`
	// huge_size_0xffffffff_ping
	vHugeSize0xffffffffPingRequest = `00 01 00 01 ff ff ff ff 00 00 00 20 00 00 00 00`
	// huge_size_1MiB_followed_by_ping
	vHugeSize1MiBFollowedByPingRequest = `00 01 00 01 00 10 00 00 00 00 00 21 00 00 00 00 00 01 00 01 00 00 00 00 00 00 00 22 33 d7 35 5c`
	// vl2_req_size_0_valid_crc
	vVl2ReqSize0ValidCrcRequest = `00 01 00 03 00 00 00 00 00 00 00 23 6e eb a9 a7`
	// vl2_req_size_4_valid_crc
	vVl2ReqSize4ValidCrcRequest = `00 01 00 03 00 00 00 04 00 00 00 24 63 3c 72 7b 90 b8 d0 00`
	// vl2_req_size_16_extra_bytes
	vVl2ReqSize16ExtraBytesRequest = `00 01 00 03 00 00 00 10 00 00 00 25 78 23 5b 6d 90 b8 d0 00 00 01 00 00 00 00 12 34 00 00 00 00`
	// vl2_req_size_16_extra_bytes
	vVl2ReqSize16ExtraBytesResponse = `00 01 00 04 00 00 00 14 00 00 00 25 e4 eb 36 ff
		00 00 12 b5 00 00 00 00 00 00 00 00 00 00 ff ff
		c0 a8 64 01`
	// ping_with_4_byte_body
	vPingWith4ByteBodyRequest = `00 01 00 01 00 00 00 04 00 00 00 26 a2 05 53 24 61 62 63 64`
	// ping_with_4_byte_body
	vPingWith4ByteBodyResponse = `00 01 00 02 00 00 00 00 00 00 00 26 7b 9d ff 52`
	// version_0_ping
	vVersion0PingRequest = `00 00 00 01 00 00 00 00 00 00 00 27 42 cc 61 c4`
	// version_0_ping
	vVersion0PingResponse = `00 01 00 02 00 00 00 00 00 00 00 27 46 fd d6 e2`
	// version_2_ping
	vVersion2PingRequest = `00 02 00 01 00 00 00 00 00 00 00 28 68 1a 47 84`
	// version_2_ping
	vVersion2PingResponse = `00 01 00 02 00 00 00 00 00 00 00 28 c4 ad 41 33`
	// vl3_req_bad_type_7
	vVl3ReqBadType7Request = `00 01 00 05 00 00 00 18 00 00 00 29 ca 14 09 78 00 00 00 00 00 00 00 00 00 00 ff ff 0a 00 00 02 00 00 00 07 00 00 12 34`
	// vl3_req_bad_type_7
	vVl3ReqBadType7Response = `00 01 00 06 00 00 00 1c 00 00 00 29 65 da eb 85
		00 00 00 00 90 b8 d0 00 00 02 12 b5 00 00 00 00
		00 00 00 00 00 00 ff ff c0 a8 64 02`
	// log_rm_count_mismatch
	vLogRmCountMismatchRequest = `00 01 00 0b 00 00 00 14 00 00 00 2a 1f 71 6d f9 00 00 00 02 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11 11`
)

// unhex parses hex bytes separated (or not) by white space.
func unhex(tb testing.TB, s string) []byte {
	tb.Helper()
	b, err := hex.DecodeString(strings.Join(strings.Fields(s), ""))
	if err != nil {
		tb.Fatalf("bad hex in test: %v", err)
	}
	return b
}

func mac(s string) [6]byte {
	hw, err := hex.DecodeString(strings.ReplaceAll(s, ":", ""))
	if err != nil || len(hw) != 6 {
		panic("bad MAC in test: " + s)
	}
	return [6]byte(hw)
}

func uuid(s string) [16]byte {
	b, err := hex.DecodeString(strings.ReplaceAll(s, "-", ""))
	if err != nil || len(b) != 16 {
		panic("bad UUID in test: " + s)
	}
	return [16]byte(b)
}

var ip = netip.MustParseAddr

// decodeAny decodes body with the decoder for op. PING and PONG (no body
// type) and unknown ops give (nil, errNoDecoder).
func decodeAny(op Op, body []byte) (Message, error) {
	switch op {
	case OpVL2Req:
		return DecodeVL2Req(body)
	case OpVL2Ack:
		return DecodeVL2Ack(body)
	case OpVL3Req:
		return DecodeVL3Req(body)
	case OpVL3Ack:
		return DecodeVL3Ack(body)
	case OpBulkReq:
		return DecodeBulkReq(body)
	case OpBulkAck:
		return DecodeBulkAck(body)
	case OpLogReq:
		return DecodeLogReq(body)
	case OpLogAck:
		return DecodeLogAck(body)
	case OpLogRm:
		return DecodeLogRm(body)
	case OpLogRmAck:
		return DecodeLogRmAck(body)
	case OpShootdown:
		return DecodeShootdown(body)
	}
	return nil, errNoDecoder
}

var errNoDecoder = errors.New("no decoder for this op")

// readOne reads exactly one frame from b and checks that nothing follows.
func readOne(t *testing.T, b []byte) Frame {
	t.Helper()
	r := NewReader(bytes.NewReader(b), 0)
	f, err := r.Next()
	if err != nil {
		t.Fatalf("Next: %v", err)
	}
	f.Body = bytes.Clone(f.Body)
	if _, err := r.Next(); err != io.EOF {
		t.Fatalf("after the frame: %v, want io.EOF", err)
	}
	return f
}

// Data behind the captured answers.
var (
	logE1 = LogEntry{Type: LogVL2, ID: uuid("11111111-2222-3333-4444-555555555501"),
		MAC: mac("90:b8:d0:00:00:01"), VNetID: 0x1234}
	logE2 = LogEntry{Type: LogVL3, ID: uuid("11111111-2222-3333-4444-555555555502"),
		IP: ip("10.0.0.1"), VLAN: 0, VNetID: 0x1234}
	vl2Found = VL2Ack{Status: StatusOK, Port: 4789, Addr: ip("192.168.100.1")}
	vl2None  = VL2Ack{Status: StatusNotFound, Port: 0, Addr: ip("::")}
	vl3Found = VL3Ack{Status: StatusOK, MAC: mac("90:b8:d0:00:00:02"), Port: 4789, Addr: ip("192.168.100.2")}
	logReq   = LogReq{Count: 1024, IP: ip("192.168.100.1")}
)

// frameVector is one valid captured frame and what it must decode to.
// msg is nil for PING and PONG, which have no body.
type frameVector struct {
	name string
	hex  string
	op   Op
	id   uint32
	msg  Message
}

// validFrames is every well-formed frame in svp-vectors.md: both sides of
// every exchange, and the requests of the "malformed" section that are in
// fact well-formed SVP (the Triton server mishandles them, not the codec).
var validFrames = []frameVector{
	{"PING req", vPINGRequest, OpPing, 1, nil},
	{"PING resp", vPINGResponse, OpPong, 1, nil},
	{"VL2 found req", vVL2REQFoundRequest, OpVL2Req, 2, VL2Req{MAC: mac("90:b8:d0:00:00:01"), VNetID: 0x1234}},
	{"VL2 found resp", vVL2REQFoundResponse, OpVL2Ack, 2, vl2Found},
	{"VL2 notfound req", vVL2REQNotfoundRequest, OpVL2Req, 3, VL2Req{MAC: mac("02:00:00:00:00:99"), VNetID: 0x1234}},
	{"VL2 notfound resp", vVL2REQNotfoundResponse, OpVL2Ack, 3, vl2None},
	{"VL3 v4 req", vVL3REQV4Request, OpVL3Req, 4, VL3Req{IP: ip("10.0.0.2"), Type: L3IPv4, VNetID: 0x1234}},
	{"VL3 v4 resp", vVL3REQV4Response, OpVL3Ack, 4, vl3Found},
	{"VL3 v6 req", vVL3REQV6Request, OpVL3Req, 5, VL3Req{IP: ip("fd12::42"), Type: L3IPv6, VNetID: 0x1234}},
	{"VL3 v6 resp", vVL3REQV6Response, OpVL3Ack, 5,
		VL3Ack{Status: StatusOK, MAC: mac("90:b8:d0:ff:00:42"), Port: 4789, Addr: ip("192.168.100.1")}},
	{"VL3 notfound req", vVL3REQNotfoundRequest, OpVL3Req, 6, VL3Req{IP: ip("10.7.7.7"), Type: L3IPv4, VNetID: 0x1234}},
	{"VL3 notfound resp", vVL3REQNotfoundResponse, OpVL3Ack, 6, VL3Ack{Status: StatusNotFound, Addr: ip("::")}},
	{"VL2 no underlay req", vVL2REQCnWithoutUnderlayRequest, OpVL2Req, 9, VL2Req{MAC: mac("90:b8:d0:ff:de:ad"), VNetID: 0x1234}},
	{"VL2 no underlay resp", vVL2REQCnWithoutUnderlayResponse, OpVL2Ack, 9, vl2None},
	{"VL2 other vnet req", vVL2REQFoundOtherVnetRequest, OpVL2Req, 10, VL2Req{MAC: mac("90:b8:d0:00:00:01"), VNetID: 0xffffff}},
	{"VL2 other vnet resp", vVL2REQFoundOtherVnetResponse, OpVL2Ack, 10, vl2Found},
	{"pipelined req 1", vPipelined3Request1, OpPing, 1, nil},
	{"pipelined req 2", vPipelined3Request2, OpVL2Req, 2, VL2Req{MAC: mac("90:b8:d0:00:00:01"), VNetID: 0x1234}},
	{"pipelined req 3", vPipelined3Request3, OpVL3Req, 4, VL3Req{IP: ip("10.0.0.2"), Type: L3IPv4, VNetID: 0x1234}},
	{"pipelined resp 1", vPipelined3Response1, OpPong, 1, nil},
	{"pipelined resp 2", vPipelined3Response2, OpVL2Ack, 2, vl2Found},
	{"pipelined resp 3", vPipelined3Response3, OpVL3Ack, 4, vl3Found},
	{"LOG_REQ json req", vLOGREQRequest, OpLogReq, 7, logReq},
	{"LOG_REQ req", vLogLOGREQRequest, OpLogReq, 7, logReq},
	{"LOG_REQ resp", vLogLOGREQResponse, OpLogAck, 7, LogAck{Status: StatusOK, Entries: []LogEntry{logE1, logE2}}},
	{"LOG_REQ count40 req", vLogLOGREQCount40Request, OpLogReq, 11, LogReq{Count: 40, IP: ip("192.168.100.1")}},
	{"LOG_REQ count40 resp", vLogLOGREQCount40Response, OpLogAck, 11, LogAck{Status: StatusOK, Entries: []LogEntry{logE1}}},
	{"LOG_RM req", vLogLOGRMRequest, OpLogRm, 8, LogRm{IDs: [][16]byte{logE1.ID}}},
	{"LOG_RM resp", vLogLOGRMResponse, OpLogRmAck, 8, LogRmAck{Status: StatusOK}},
	{"LOG_REQ after rm req", vLogLOGREQAfterRmRequest, OpLogReq, 12, logReq},
	{"LOG_REQ after rm resp", vLogLOGREQAfterRmResponse, OpLogAck, 12, LogAck{Status: StatusOK, Entries: []LogEntry{logE2}}},
	{"LOG_REQ unknown ip req", vLogLOGREQUnknownIpRequest, OpLogReq, 13, LogReq{Count: 1024, IP: ip("127.0.0.99")}},
	{"LOG_REQ unknown ip resp", vLogLOGREQUnknownIpResponse, OpLogAck, 13, LogAck{Status: StatusFatal}},
	// From the malformed section: well-formed frames the server mishandles.
	{"BULK_REQ", vOp7BulkReqRequest, OpBulkReq, 0x1c, BulkReq{Type: BulkVL2}},
	{"SHOOTDOWN", vOp13ShootdownRequest, OpShootdown, 0x1d, Shootdown{MAC: mac("90:b8:d0:00:00:01"), VNetID: 0x1234}},
	{"PONG to server", vOp2PongToServerRequest, OpPong, 0x1e, nil},
	{"VL2_ACK to server", vOp4Vl2AckToServerRequest, OpVL2Ack, 0x1f, VL2Ack{Status: StatusOK, Addr: ip("::")}},
	{"size 16 resp", vVl2ReqSize16ExtraBytesResponse, OpVL2Ack, 0x25, vl2Found},
	{"ping 4-byte body resp", vPingWith4ByteBodyResponse, OpPong, 0x26, nil},
	{"version 0 resp", vVersion0PingResponse, OpPong, 0x27, nil},
	{"version 2 resp", vVersion2PingResponse, OpPong, 0x28, nil},
	{"VL3 type 7 req", vVl3ReqBadType7Request, OpVL3Req, 0x29, VL3Req{IP: ip("10.0.0.2"), Type: 7, VNetID: 0x1234}},
	{"VL3 type 7 resp", vVl3ReqBadType7Response, OpVL3Ack, 0x29, vl3Found},
}

// TestVectors decodes every captured frame, checks the fields, and
// re-encodes them, expecting the captured bytes exactly.
func TestVectors(t *testing.T) {
	for _, v := range validFrames {
		t.Run(v.name, func(t *testing.T) {
			wire := unhex(t, v.hex)
			if c := refCRC(crcInput(wire)); c != uint32(wire[12])<<24|uint32(wire[13])<<16|uint32(wire[14])<<8|uint32(wire[15]) {
				t.Fatalf("reference CRC %#08x disagrees with the capture", c)
			}
			f := readOne(t, wire)
			if f.Op != v.op || f.ID != v.id {
				t.Fatalf("frame op %v id %#x, want %v id %#x", f.Op, f.ID, v.op, v.id)
			}
			if v.msg == nil {
				if len(f.Body) != 0 {
					t.Fatalf("body % x, want none", f.Body)
				}
				if got := AppendFrame(nil, v.op, v.id, nil); !bytes.Equal(got, wire) {
					t.Fatalf("AppendFrame:\n got % x\nwant % x", got, wire)
				}
				return
			}
			if n, ok := BodySize(v.op); ok && n != len(f.Body) {
				t.Fatalf("BodySize(%v) = %d, body is %d", v.op, n, len(f.Body))
			}
			m, err := decodeAny(f.Op, f.Body)
			if err != nil {
				t.Fatalf("decode: %v", err)
			}
			if !reflect.DeepEqual(m, v.msg) {
				t.Fatalf("decoded\n %+v\nwant\n %+v", m, v.msg)
			}
			if m.Op() != v.op {
				t.Fatalf("Op() = %v, want %v", m.Op(), v.op)
			}
			if got := AppendFrame(nil, v.op, v.id, v.msg.Append(nil)); !bytes.Equal(got, wire) {
				t.Fatalf("AppendFrame(Append):\n got % x\nwant % x", got, wire)
			}
			// Appending after existing bytes must leave them alone and
			// frame only the new message.
			prefix := []byte("prefix")
			if got := v.msg.AppendFrame(bytes.Clone(prefix), v.id); !bytes.Equal(got, append(prefix, wire...)) {
				t.Fatalf("AppendFrame method:\n got % x\nwant % x", got, append(prefix, wire...))
			}
		})
	}
}

// TestVectorsIPv4Mapped checks the address forms of the captures: IPv4
// arrives IPv4-mapped and comes out as plain IPv4, IPv6 stays IPv6, and
// the not-found address is "::".
func TestVectorsIPv4Mapped(t *testing.T) {
	req, _ := DecodeVL3Req(readOne(t, unhex(t, vVL3REQV4Request)).Body)
	if !req.IP.Is4() {
		t.Errorf("IPv4-mapped VL3_REQ address decoded as %v, want plain IPv4", req.IP)
	}
	req, _ = DecodeVL3Req(readOne(t, unhex(t, vVL3REQV6Request)).Body)
	if !req.IP.Is6() || req.IP.Is4In6() {
		t.Errorf("IPv6 VL3_REQ address decoded as %v", req.IP)
	}
	ack, _ := DecodeVL2Ack(readOne(t, unhex(t, vVL2REQNotfoundResponse)).Body)
	if ack.Addr != netip.IPv6Unspecified() {
		t.Errorf("not-found address decoded as %v, want ::", ack.Addr)
	}
	// A server that leaves Addr unset sends the same bytes.
	if got, want := AppendFrame(nil, OpVL2Ack, 3, VL2Ack{Status: StatusNotFound}.Append(nil)), unhex(t, vVL2REQNotfoundResponse); !bytes.Equal(got, want) {
		t.Errorf("not-found with zero Addr:\n got % x\nwant % x", got, want)
	}
	if got, want := (VL3Ack{Status: StatusNotFound}).AppendFrame(nil, 6), unhex(t, vVL3REQNotfoundResponse); !bytes.Equal(got, want) {
		t.Errorf("VL3 not-found with zero fields:\n got % x\nwant % x", got, want)
	}
}

// TestVectorsPipelined reads the three pipelined requests and the three
// answers as the single writes they were sent in.
func TestVectorsPipelined(t *testing.T) {
	for _, dir := range []struct {
		name   string
		frames []string
		ops    []Op
	}{
		{"requests", []string{vPipelined3Request1, vPipelined3Request2, vPipelined3Request3}, []Op{OpPing, OpVL2Req, OpVL3Req}},
		{"responses", []string{vPipelined3Response1, vPipelined3Response2, vPipelined3Response3}, []Op{OpPong, OpVL2Ack, OpVL3Ack}},
	} {
		t.Run(dir.name, func(t *testing.T) {
			var stream []byte
			for _, h := range dir.frames {
				stream = append(stream, unhex(t, h)...)
			}
			r := NewReader(bytes.NewReader(stream), 0)
			var rebuilt []byte
			for i, op := range dir.ops {
				f, err := r.Next()
				if err != nil {
					t.Fatalf("frame %d: %v", i+1, err)
				}
				if f.Op != op || f.ID != []uint32{1, 2, 4}[i] {
					t.Fatalf("frame %d: op %v id %d", i+1, f.Op, f.ID)
				}
				rebuilt = AppendFrame(rebuilt, f.Op, f.ID, f.Body)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("after 3 frames: %v, want io.EOF", err)
			}
			if !bytes.Equal(rebuilt, stream) {
				t.Fatalf("rebuilt stream differs:\n got % x\nwant % x", rebuilt, stream)
			}
		})
	}
}

// TestVectorsLogAckCap checks the LOG_ACK packing seen in the capture:
// for count 40 only the 32-byte VL2 entry fits (the 4-byte status is not
// counted), and with count 1024 both entries come back.
func TestVectorsLogAckCap(t *testing.T) {
	for _, c := range []struct {
		req, resp string
	}{
		{vLogLOGREQCount40Request, vLogLOGREQCount40Response},
		{vLogLOGREQRequest, vLogLOGREQResponse},
		{vLogLOGREQAfterRmRequest, vLogLOGREQAfterRmResponse},
	} {
		req, err := DecodeLogReq(readOne(t, unhex(t, c.req)).Body)
		if err != nil {
			t.Fatal(err)
		}
		body := readOne(t, unhex(t, c.resp)).Body
		if len(body) > 4+int(req.Count) {
			t.Errorf("LOG_ACK body %d bytes exceeds 4 + count %d", len(body), req.Count)
		}
		ack, err := DecodeLogAck(body)
		if err != nil {
			t.Fatal(err)
		}
		total := 0
		for _, e := range ack.Entries {
			total += e.Size()
		}
		if total != len(body)-4 {
			t.Errorf("entry sizes sum to %d, body has %d entry bytes", total, len(body)-4)
		}
	}
}

// TestVectorsMalformed runs the "malformed / unusual" section through the
// Reader and the decoders.
func TestVectorsMalformed(t *testing.T) {
	// next reads the first frame of a capture.
	next := func(t *testing.T, h string, maxBody int) (*Reader, Frame, error) {
		t.Helper()
		r := NewReader(bytes.NewReader(unhex(t, h)), maxBody)
		f, err := r.Next()
		return r, f, err
	}
	// wantFrameErr checks err against a protocol error and the header
	// fields a server would log.
	wantFrameErr := func(t *testing.T, err, want error, op Op, id uint32) {
		t.Helper()
		if !errors.Is(err, want) {
			t.Fatalf("err = %v, want %v", err, want)
		}
		var fe *FrameError
		if !errors.As(err, &fe) || fe.Op != op || fe.ID != id {
			t.Fatalf("err = %#v, want a *FrameError for %v id %#x", err, op, id)
		}
	}

	t.Run("bad_crc_ping", func(t *testing.T) {
		_, _, err := next(t, vBadCrcPingRequest, 0)
		wantFrameErr(t, err, ErrCRC, OpPing, 0x15)
	})
	t.Run("bad_crc_then_good_ping", func(t *testing.T) {
		r, _, err := next(t, vBadCrcThenGoodPingSameConnRequest, 0)
		wantFrameErr(t, err, ErrCRC, OpPing, 0x16)
		// The connection is to be closed: the good PING behind it is
		// not delivered.
		if _, err2 := r.Next(); err2 != err {
			t.Fatalf("second Next = %v, want the sticky %v", err2, err)
		}
		// ...though on its own it is fine.
		good := unhex(t, vBadCrcThenGoodPingSameConnRequest)[16:]
		if f := readOne(t, good); f.Op != OpPing || f.ID != 0x17 {
			t.Fatalf("the good PING: %+v", f)
		}
	})
	t.Run("truncated_header_8_bytes", func(t *testing.T) {
		_, _, err := next(t, vTruncatedHeader8BytesRequest, 0)
		if !errors.Is(err, io.ErrUnexpectedEOF) {
			t.Fatalf("err = %v, want unexpected EOF", err)
		}
	})
	t.Run("truncated_body_vl2_6_of_12", func(t *testing.T) {
		_, _, err := next(t, vTruncatedBodyVl26Of12Request, 0)
		wantFrameErr(t, err, io.ErrUnexpectedEOF, OpVL2Req, 0x19)
	})
	for _, c := range []struct {
		name string
		hex  string
		op   Op
		id   uint32
	}{
		{"unknown_op_99", vUnknownOp99Request, 99, 0x1a},
		{"op_0_unknown", vOp0UnknownRequest, 0, 0x1b},
	} {
		t.Run(c.name, func(t *testing.T) {
			// Ops are the caller's business: the frame comes through.
			r, f, err := next(t, c.hex, 0)
			if err != nil || f.Op != c.op || f.ID != c.id || len(f.Body) != 0 {
				t.Fatalf("Next = %+v, %v", f, err)
			}
			if _, err := r.Next(); err != io.EOF {
				t.Fatalf("then %v, want io.EOF", err)
			}
			if _, ok := ExpectedReply(f.Op); ok {
				t.Errorf("ExpectedReply(%v) ok", f.Op)
			}
			if _, ok := BodySize(f.Op); ok {
				t.Errorf("BodySize(%v) ok", f.Op)
			}
			if _, err := decodeAny(f.Op, f.Body); err != errNoDecoder {
				t.Errorf("a decoder exists for %v", f.Op)
			}
			if s := f.Op.String(); !strings.HasPrefix(s, "op(") {
				t.Errorf("String() = %q", s)
			}
			// A FATAL reply can still be framed for it.
			reply := AppendFrame(nil, f.Op, f.ID, LogRmAck{Status: StatusFatal}.Append(nil))
			if g := readOne(t, reply); g.Op != f.Op || g.ID != f.ID {
				t.Errorf("reply %+v", g)
			}
		})
	}
	t.Run("huge_size_0xffffffff_ping", func(t *testing.T) {
		// The header is followed by an endless stream: Next must decide
		// from the header alone and not read on.
		src := &countingReader{r: io.MultiReader(bytes.NewReader(unhex(t, vHugeSize0xffffffffPingRequest)), endless{})}
		r := NewReader(src, 0)
		_, err := r.Next()
		wantFrameErr(t, err, ErrTooBig, OpPing, 0x20)
		if src.n > readBufSize {
			t.Fatalf("read %d bytes before rejecting the header", src.n)
		}
	})
	t.Run("huge_size_1MiB_followed_by_ping", func(t *testing.T) {
		// Exactly MaxBody is accepted by default, so the PING becomes
		// body bytes and the stream ends inside the body.
		_, _, err := next(t, vHugeSize1MiBFollowedByPingRequest, 0)
		wantFrameErr(t, err, io.ErrUnexpectedEOF, OpPing, 0x21)
		// A server with a tighter limit rejects it from the header.
		_, _, err = next(t, vHugeSize1MiBFollowedByPingRequest, 64<<10)
		wantFrameErr(t, err, ErrTooBig, OpPing, 0x21)
		_, _, err = next(t, vHugeSize1MiBFollowedByPingRequest, MaxBody-1)
		wantFrameErr(t, err, ErrTooBig, OpPing, 0x21)
	})
	for _, c := range []struct {
		name string
		hex  string
		id   uint32
		size int
	}{
		{"vl2_req_size_0_valid_crc", vVl2ReqSize0ValidCrcRequest, 0x23, 0},
		{"vl2_req_size_4_valid_crc", vVl2ReqSize4ValidCrcRequest, 0x24, 4},
		{"vl2_req_size_16_extra_bytes", vVl2ReqSize16ExtraBytesRequest, 0x25, 16},
	} {
		t.Run(c.name, func(t *testing.T) {
			// The frame is sound; its body is the wrong size for the op.
			_, f, err := next(t, c.hex, 0)
			if err != nil || f.Op != OpVL2Req || f.ID != c.id || len(f.Body) != c.size {
				t.Fatalf("Next = %+v, %v", f, err)
			}
			if m, err := DecodeVL2Req(f.Body); !errors.Is(err, ErrBodySize) {
				t.Fatalf("DecodeVL2Req = %+v, %v; want ErrBodySize", m, err)
			}
		})
	}
	t.Run("ping_with_4_byte_body", func(t *testing.T) {
		_, f, err := next(t, vPingWith4ByteBodyRequest, 0)
		if err != nil || f.Op != OpPing || f.ID != 0x26 || string(f.Body) != "abcd" {
			t.Fatalf("Next = %+v, %v", f, err)
		}
		// It is the server's job to refuse it; BodySize says how.
		if n, ok := BodySize(OpPing); !ok || n == len(f.Body) {
			t.Fatalf("BodySize(PING) = %d, %v", n, ok)
		}
	})
	for _, c := range []struct {
		name string
		hex  string
		id   uint32
	}{
		{"version_0_ping", vVersion0PingRequest, 0x27},
		{"version_2_ping", vVersion2PingRequest, 0x28},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, _, err := next(t, c.hex, 0)
			wantFrameErr(t, err, ErrVersion, OpPing, c.id)
		})
	}
	t.Run("vl3_req_bad_type_7", func(t *testing.T) {
		// Decodes: the server answers it with BADL3TYPE.
		_, f, err := next(t, vVl3ReqBadType7Request, 0)
		if err != nil {
			t.Fatal(err)
		}
		m, err := DecodeVL3Req(f.Body)
		if err != nil || m.Type != 7 {
			t.Fatalf("DecodeVL3Req = %+v, %v", m, err)
		}
	})
	t.Run("log_rm_count_mismatch", func(t *testing.T) {
		_, f, err := next(t, vLogRmCountMismatchRequest, 0)
		if err != nil || f.Op != OpLogRm || f.ID != 0x2a {
			t.Fatalf("Next = %+v, %v", f, err)
		}
		if m, err := DecodeLogRm(f.Body); !errors.Is(err, ErrBodySize) {
			t.Fatalf("DecodeLogRm = %+v, %v; want ErrBodySize", m, err)
		}
	})
}

// countingReader counts the bytes read through it.
type countingReader struct {
	r io.Reader
	n int
}

func (c *countingReader) Read(p []byte) (int, error) {
	n, err := c.r.Read(p)
	c.n += n
	return n, err
}

// endless is an infinite stream of zero bytes.
type endless struct{}

func (endless) Read(p []byte) (int, error) {
	clear(p)
	return len(p), nil
}
