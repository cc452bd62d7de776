package svpwire

import (
	"bufio"
	"fmt"
	"io"
)

// readBufSize is the size of the bufio.Reader under a Reader. A frame that
// fits in it (every fixed-size message, and LOG_ACKs for the illumos count
// of 1024 bytes) is returned in place, without a copy.
const readBufSize = 4096

// retainMax is the largest body buffer a Reader keeps between frames: one
// odd large frame should not pin a megabyte per connection for its life.
const retainMax = 64 << 10

// Frame is one received message whose header checked out. The op is not
// checked: unknown ops are the caller's business (a server answers them
// or closes the connection; SVP.md says it must not crash).
type Frame struct {
	Op Op
	ID uint32
	// Body is valid until the next call to Reader.Next. Decoders copy what
	// they keep, except BulkAck.Data.
	Body []byte
}

// Reader reads frames from a byte stream (one TCP connection).
type Reader struct {
	br  *bufio.Reader
	max int
	buf []byte          // body buffer for frames larger than br's buffer
	hdr [HeaderLen]byte // header of such a frame, for the CRC
	err error           // sticky: once framing is lost it stays lost
}

// NewReader returns a Reader on r that accepts bodies of up to maxBody
// bytes; maxBody <= 0 means MaxBody. If r is a *bufio.Reader of at least
// 4 KiB it is used as is.
func NewReader(r io.Reader, maxBody int) *Reader {
	if maxBody <= 0 {
		maxBody = MaxBody
	}
	return &Reader{br: bufio.NewReaderSize(r, readBufSize), max: maxBody}
}

// Next returns the next frame. It checks the version, the size against the
// limit (from the header alone, before reading any of the body) and the
// CRC. Errors:
//   - io.EOF: the stream ended cleanly between frames;
//   - io.ErrUnexpectedEOF: it ended inside a header or a body;
//   - ErrVersion, ErrTooBig, ErrCRC: a protocol error; SVP.md says close
//     the connection;
//   - anything the underlying reader returns, wrapped.
//
// All but io.EOF are wrapped with what is known of the frame (a
// *FrameError once the header is complete); use errors.Is. Errors are
// sticky: after one, the position in the stream is lost and every later
// call returns the same error.
func (r *Reader) Next() (Frame, error) {
	if r.err != nil {
		return Frame{}, r.err
	}
	f, err := r.next()
	if err != nil {
		r.err = err
	}
	return f, err
}

func (r *Reader) next() (Frame, error) {
	// Peek rather than read: the header stays in the buffer, so a frame
	// that fits can be returned in place, and no copy of the header is
	// needed for the CRC.
	hb, err := r.br.Peek(HeaderLen)
	if err != nil {
		switch {
		case err == io.EOF && len(hb) == 0:
			return Frame{}, io.EOF
		case err == io.EOF:
			return Frame{}, fmt.Errorf("svp: truncated header (%d of %d bytes): %w", len(hb), HeaderLen, io.ErrUnexpectedEOF)
		default:
			return Frame{}, fmt.Errorf("svp: reading header (%d of %d bytes): %w", len(hb), HeaderLen, err)
		}
	}
	h, _ := DecodeHeader(hb)
	if err := checkHeader(h, r.max); err != nil {
		return Frame{}, err
	}
	n := int(h.Size)
	var body []byte
	if HeaderLen+n <= r.br.Size() {
		fb, err := r.br.Peek(HeaderLen + n)
		if err != nil {
			return Frame{}, frameErr(h, bodyErr(len(fb)-HeaderLen, n, err))
		}
		hb, body = fb[:HeaderLen], fb[HeaderLen:HeaderLen+n:HeaderLen+n]
		// The frame stays readable in the buffer until the next Peek:
		// Discard only moves the read position.
		_, _ = r.br.Discard(HeaderLen + n)
	} else {
		copy(r.hdr[:], hb)
		hb = r.hdr[:]
		_, _ = r.br.Discard(HeaderLen)
		if body, err = r.readBody(n); err != nil {
			return Frame{}, frameErr(h, err)
		}
	}
	if err := checkCRC(h, hb, body); err != nil {
		return Frame{}, err
	}
	return Frame{Op: h.Op, ID: h.ID, Body: body}, nil
}

// checkHeader checks what a header alone tells: the version, and the size
// against the limit, before any of the body is read.
func checkHeader(h Header, maxBody int) error {
	if h.Version != Version {
		return frameErr(h, fmt.Errorf("%w %d", ErrVersion, h.Version))
	}
	// uint64: a 32-bit int cannot hold every size a header can announce.
	if uint64(h.Size) > uint64(maxBody) {
		return frameErr(h, fmt.Errorf("%w (limit %d)", ErrTooBig, maxBody))
	}
	return nil
}

// checkCRC checks a whole frame's CRC.
func checkCRC(h Header, hb, body []byte) error {
	if c := Checksum(hb, body); c != h.CRC {
		return frameErr(h, fmt.Errorf("%w (header %#08x, computed %#08x)", ErrCRC, h.CRC, c))
	}
	return nil
}

// Parse returns the frame at the start of b and its length n on the
// wire, for a caller that does its own reading (an event loop reading
// many connections into one buffer). n is 0, with no error, when b does
// not yet hold the whole frame; a header that fails the checks is an
// error as soon as it is whole, as with Reader.Next. maxBody <= 0 means
// MaxBody. The body aliases b.
func Parse(b []byte, maxBody int) (f Frame, n int, err error) {
	if maxBody <= 0 {
		maxBody = MaxBody
	}
	if len(b) < HeaderLen {
		return Frame{}, 0, nil
	}
	h, _ := DecodeHeader(b)
	if err := checkHeader(h, maxBody); err != nil {
		return Frame{}, 0, err
	}
	n = HeaderLen + int(h.Size)
	if len(b) < n {
		return Frame{}, 0, nil
	}
	body := b[HeaderLen:n:n]
	if err := checkCRC(h, b[:HeaderLen], body); err != nil {
		return Frame{}, 0, err
	}
	return Frame{Op: h.Op, ID: h.ID, Body: body}, n, nil
}

// readBody reads an n-byte body that does not fit in the bufio buffer. It
// grows the buffer as bytes arrive instead of allocating n up front, so a
// peer announcing a large body it never sends costs little memory.
func (r *Reader) readBody(n int) ([]byte, error) {
	buf := r.buf[:0]
	for len(buf) < n {
		chunk := n - len(buf)
		if cap(buf) < n {
			chunk = min(chunk, max(len(buf), retainMax))
			if cap(buf)-len(buf) < chunk {
				nb := make([]byte, len(buf), len(buf)+chunk)
				copy(nb, buf)
				buf = nb
			}
		}
		m, err := io.ReadFull(r.br, buf[len(buf):len(buf)+chunk])
		buf = buf[:len(buf)+m]
		if err != nil {
			return nil, bodyErr(len(buf), n, err)
		}
	}
	if cap(buf) <= retainMax {
		r.buf = buf
	}
	return buf[:n:n], nil
}

// bodyErr describes a failure to read a body of which got bytes arrived.
func bodyErr(got, want int, err error) error {
	if err == io.EOF || err == io.ErrUnexpectedEOF {
		return fmt.Errorf("truncated body (%d of %d bytes): %w", max(got, 0), want, io.ErrUnexpectedEOF)
	}
	return fmt.Errorf("reading body (%d of %d bytes): %w", max(got, 0), want, err)
}

func frameErr(h Header, err error) error {
	return &FrameError{Op: h.Op, ID: h.ID, Size: h.Size, Err: err}
}

// Buffered returns how many bytes of the stream are read and not yet
// returned as frames.
func (r *Reader) Buffered() int { return r.br.Buffered() }

// Ready reports whether the next frame is buffered whole, so that Next
// returns it (or an error about its header) without reading from the
// underlying reader. A server answers what is ready and writes its
// replies before a call that would block.
func (r *Reader) Ready() bool {
	if r.err != nil {
		return true
	}
	if r.br.Buffered() < HeaderLen {
		return false
	}
	hb, _ := r.br.Peek(HeaderLen)
	h, _ := DecodeHeader(hb)
	if checkHeader(h, r.max) != nil {
		return true // Next fails on the header alone
	}
	return HeaderLen+int(h.Size) <= r.br.Buffered()
}
