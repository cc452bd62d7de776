// Package svpwire is the wire codec of SVP version 1, the protocol between an
// overlay host's svp search plugin and the portolan mapping server,
// byte-compatible with the illumos client and the Triton server
// (spec/SVP.md, reference/illumos.md section 6).
//
// SVP runs over TCP (port 1296). Every message is a 16-byte big-endian
// header — version u16 (1), op u16, size u32 (body bytes), id u32, crc32
// u32 — followed by the body. The CRC is the ordinary IEEE CRC-32 (zlib's
// crc32) over the header with the CRC field zeroed, then the body. A
// client may pipeline requests; replies carry the request's id. The ops:
// PING/PONG; VL2_REQ/VL2_ACK, (vnetid, MAC) to underlay IP and port;
// VL3_REQ/VL3_ACK, (vnetid, IP) to MAC plus that MAC's underlay IP and
// port; LOG_REQ/LOG_ACK and LOG_RM/LOG_RM_ACK, the shootdown log a host
// polls and then acknowledges; and BULK_REQ/BULK_ACK and SHOOTDOWN, which
// are defined but which no peer implements. Addresses are always 16
// bytes, IPv4 as IPv4-mapped.
//
// Reader splits a stream into frames, checking version, size limit and
// CRC, with no allocation per frame in steady state. Each message type
// has Append (its body), AppendFrame (the whole message) and a DecodeXxx
// function that insists on the exact size. The AppendFrame function
// frames any body: PING and PONG, which have no message type, or a reply
// to an unknown op.
//
// Quirks of the deployed peers, and what this package does about them:
//
//   - The id is opaque. illumos writes it in host byte order, so Header.ID
//     is the four bytes read big-endian, and writing it back big-endian
//     echoes them unchanged. Nothing should interpret it.
//   - VL2_ACK's status is 16 bits on the wire while every other status is
//     32 (VL2Ack.Status is still a Status; Append writes its low 16 bits).
//   - Body sizes are exact per op. Triton ignores extra bytes and crashes
//     on short bodies; the decoders here reject both (ErrBodySize), as our
//     server and client must. LOG_RM must be exactly 4 + 16 x count; a
//     LOG_ACK must be its status followed by whole entries of known types.
//   - The VL3_REQ type is not checked by DecodeVL3Req: Triton ignores it,
//     and our server answers a bad one with StatusBadL3Type, which needs
//     the request decoded.
//   - Unknown ops (0, 99, ...) are returned by Reader, not rejected: which
//     ops a peer accepts is the caller's decision (Triton crashes on them;
//     a server here should answer FATAL or close the connection).
//   - Triton checks neither version nor size and will buffer a 4 GiB body;
//     Reader rejects a bad version (ErrVersion) and an oversized body
//     (ErrTooBig) from the header alone, before reading the body.
//   - Not-found replies carry the address "::": the zero netip.Addr
//     encodes as 16 zero bytes, and 16 zero bytes decode as "::".
//     Decoded IPv4-mapped addresses are unmapped to IPv4.
package svpwire
