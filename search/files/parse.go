package files

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/netip"
	"strings"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
)

// Entry is what the file says about one MAC.
type Entry struct {
	// Dest is the underlay address of the host holding the MAC.
	Dest encap.Dest
	// ARP and NDP are the MAC's overlay addresses, to answer proxy ARP
	// and NDP; invalid when not given.
	ARP netip.Addr
	NDP netip.Addr
	// DHCPProxy, when HasDHCP is set, is where this MAC's DHCPv4
	// broadcasts are redirected.
	DHCPProxy ether.MAC
	HasDHCP   bool
}

// Map is a parsed file.
type Map struct {
	Entries map[ether.MAC]Entry
	byIP    map[netip.Addr]ether.MAC
	// Warnings lists what was accepted but ignored (unknown keys, group
	// MAC entries), one line each, with file positions.
	Warnings []string
}

// ParseError locates what is wrong in a file.
type ParseError struct {
	Path      string
	Line, Col int
	// Key is the entry (MAC as written) the error is in, "" for errors
	// outside any entry.
	Key string
	Msg string
}

func (e *ParseError) Error() string {
	if e.Key == "" {
		return fmt.Sprintf("%s:%d:%d: %s", e.Path, e.Line, e.Col, e.Msg)
	}
	return fmt.Sprintf("%s:%d:%d: entry %q: %s", e.Path, e.Line, e.Col, e.Key, e.Msg)
}

// Parse parses the overlay_files JSON format (illumos overlay_files(5)): an
// object whose keys are MACs and whose values are objects with "ip",
// "port", "arp", "ndp" and "dhcp-proxy". needPort says whether "port" is
// required (it is for VXLAN). Unlike illumos it is strict: ports must be
// integers, two keys naming one MAC or two entries claiming one address
// are errors, and every error carries its line and column.
func Parse(path string, data []byte, needPort bool) (*Map, error) {
	p := &parser{path: path, data: data, dec: json.NewDecoder(bytes.NewReader(data))}
	p.dec.UseNumber()
	m := &Map{Entries: map[ether.MAC]Entry{}, byIP: map[netip.Addr]ether.MAC{}}
	keyText := map[ether.MAC]string{}
	if err := p.expectDelim('{', "", "the file must hold one JSON object mapping MAC addresses to entries"); err != nil {
		return nil, err
	}
	for p.dec.More() {
		keyOff := p.next()
		tok, err := p.dec.Token()
		if err != nil {
			return nil, p.jsonErr(err, "")
		}
		key := tok.(string) // object keys are strings, or Token fails
		hw, err := ether.ParseMAC(key)
		if err != nil {
			return nil, p.errAt(keyOff, key, "the key is not a MAC address (want e.g. 2:8:20:aa:bb:1)")
		}
		mac := ether.MAC(hw)
		if prev, dup := keyText[mac]; dup {
			return nil, p.errAt(keyOff, key, fmt.Sprintf("MAC %s is already given as %q", ether.Short(hw), prev))
		}
		keyText[mac] = key
		e, err := p.entry(key, needPort, func(w string) { m.Warnings = append(m.Warnings, w) })
		if err != nil {
			return nil, err
		}
		if mac[0]&1 != 0 {
			m.Warnings = append(m.Warnings, p.pos(keyOff)+fmt.Sprintf("entry %q: a group MAC is never looked up: dynamic overlays do not flood; ARP, NDP and DHCP are answered by proxy", key))
			continue
		}
		for i, a := range []netip.Addr{e.ARP, e.NDP} {
			if !a.IsValid() {
				continue
			}
			if other, dup := m.byIP[a]; dup {
				return nil, p.errAt(p.addrOff[i], key, fmt.Sprintf("%q: address %s is already claimed by %q", []string{"arp", "ndp"}[i], a, keyText[other]))
			}
			m.byIP[a] = mac
		}
		m.Entries[mac] = e
	}
	if _, err := p.dec.Token(); err != nil { // the closing '}'
		return nil, p.jsonErr(err, "")
	}
	// Only whitespace may follow; next would also skip a stray ',' or ':'.
	if off := p.skipSpace(int(p.dec.InputOffset())); off < len(data) {
		return nil, p.errAt(off, "", "unexpected data after the top-level object")
	}
	return m, nil
}

// ResolveIP returns the MAC whose entry claims ip.
func (m *Map) ResolveIP(ip netip.Addr) (ether.MAC, bool) {
	mac, ok := m.byIP[ip]
	return mac, ok
}

type parser struct {
	path string
	data []byte
	dec  *json.Decoder
	// addrOff holds the offsets of the last entry's "arp" and "ndp"
	// values, to locate a clash with another entry.
	addrOff [2]int
}

// next returns the offset of the next token, past whitespace and the
// separators the decoder has not consumed yet.
func (p *parser) next() int {
	off := int(p.dec.InputOffset())
	for off < len(p.data) && strings.IndexByte(" \t\r\n,:", p.data[off]) >= 0 {
		off++
	}
	return off
}

// skipSpace returns the offset of the first non-whitespace byte from off.
func (p *parser) skipSpace(off int) int {
	for off < len(p.data) && strings.IndexByte(" \t\r\n", p.data[off]) >= 0 {
		off++
	}
	return off
}

func (p *parser) expectDelim(d json.Delim, key, msg string) error {
	off := p.next()
	tok, err := p.dec.Token()
	if err != nil {
		return p.jsonErr(err, key)
	}
	if tok != d {
		return p.errAt(off, key, msg)
	}
	return nil
}

// entry parses one entry's object.
func (p *parser) entry(key string, needPort bool, warn func(string)) (Entry, error) {
	var e Entry
	start := p.next()
	if err := p.expectDelim('{', key, "the value must be an object with \"ip\" and \"port\""); err != nil {
		return e, err
	}
	seen := map[string]bool{}
	for p.dec.More() {
		fieldOff := p.next()
		tok, err := p.dec.Token()
		if err != nil {
			return e, p.jsonErr(err, key)
		}
		field := tok.(string)
		valOff := p.next()
		var raw json.RawMessage
		if err := p.dec.Decode(&raw); err != nil {
			return e, p.jsonErr(err, key)
		}
		if seen[field] {
			return e, p.errAt(fieldOff, key, fmt.Sprintf("%q is given twice", field))
		}
		seen[field] = true
		bad := func(format string, a ...any) error {
			return p.errAt(valOff, key, fmt.Sprintf("%q: ", field)+fmt.Sprintf(format, a...))
		}
		switch field {
		case "ip":
			a, err := str(raw)
			if err != nil {
				return e, bad("must be a string holding the underlay IP address")
			}
			ip, err := prop.ParseIP(a)
			if err != nil {
				return e, bad("%q is not an IPv4 or IPv6 address", a)
			}
			if err := prop.CheckUnderlayIP(ip.String()); err != nil {
				return e, bad("%v", err)
			}
			e.Dest.IP = ip
		case "port":
			var n json.Number
			// json.Number also takes a string holding a number; a port
			// in quotes is a type error here, as illumos's parser says.
			if len(raw) == 0 || raw[0] == '"' || json.Unmarshal(raw, &n) != nil {
				return e, bad("must be a number 1-65535, not %s", raw)
			}
			v, err := n.Int64()
			if err != nil || v < 1 || v > 65535 {
				return e, bad("must be an integer 1-65535, not %s", raw)
			}
			e.Dest.Port = uint16(v)
		case "arp":
			a, err := str(raw)
			if err != nil {
				return e, bad("must be a string holding an IPv4 address")
			}
			ip, err := prop.ParseIP(a)
			if err != nil || !ip.Is4() {
				return e, bad("%q is not an IPv4 address", a)
			}
			e.ARP, p.addrOff[0] = ip, valOff
		case "ndp":
			a, err := str(raw)
			if err != nil {
				return e, bad("must be a string holding an IPv6 address")
			}
			ip, err := netip.ParseAddr(a)
			if err != nil || !ip.Is6() || ip.Is4In6() || ip.Zone() != "" {
				return e, bad("%q is not an IPv6 address", a)
			}
			e.NDP, p.addrOff[1] = ip, valOff
		case "dhcp-proxy":
			a, err := str(raw)
			if err != nil {
				return e, bad("must be a string holding a MAC address")
			}
			hw, err := ether.ParseMAC(a)
			if err != nil || !ether.IsUnicast(hw) {
				return e, bad("%q is not a unicast MAC address", a)
			}
			e.DHCPProxy, e.HasDHCP = ether.MAC(hw), true
		default:
			// illumos ignores unknown keys; so do we, but say so.
			warn(p.pos(fieldOff) + fmt.Sprintf("entry %q: unknown key %q ignored", key, field))
		}
	}
	if _, err := p.dec.Token(); err != nil { // '}'
		return e, p.jsonErr(err, key)
	}
	if !e.Dest.IP.IsValid() {
		return e, p.errAt(start, key, `missing "ip", the underlay address of the host holding this MAC`)
	}
	if needPort && e.Dest.Port == 0 {
		return e, p.errAt(start, key, `missing "port", the underlay UDP port (VXLAN: usually 4789)`)
	}
	return e, nil
}

func str(raw json.RawMessage) (string, error) {
	if string(raw) == "null" { // Unmarshal would leave s "" without an error
		return "", errors.New("null is not a string")
	}
	var s string
	err := json.Unmarshal(raw, &s)
	return s, err
}

// pos renders an offset as "path:line:col: ".
func (p *parser) pos(off int) string {
	line, col := lineCol(p.data, off)
	return fmt.Sprintf("%s:%d:%d: ", p.path, line, col)
}

func (p *parser) errAt(off int, key, msg string) error {
	line, col := lineCol(p.data, off)
	return &ParseError{Path: p.path, Line: line, Col: col, Key: key, Msg: msg}
}

// jsonErr turns a decoder error into a located one.
func (p *parser) jsonErr(err error, key string) error {
	var se *json.SyntaxError
	switch {
	case errors.As(err, &se):
		// se.Offset is unreliable: for a token error it is the offset
		// of the offending byte itself, and for an error inside a value
		// (a string, a literal, a number) it counts only the bytes of
		// the values decoded so far, not the delimiters and whitespace
		// Token consumed. Everything before the error is valid JSON, so
		// scanning the whole file again stops at the same byte, and its
		// Offset is just past it. The decoder's position (the start of
		// the value, or the offending byte) is the fallback, for when
		// the rescan stops earlier (nesting deeper than it allows).
		off, msg := p.skipSpace(int(p.dec.InputOffset())), se.Error()
		var raw json.RawMessage
		var whole *json.SyntaxError
		if errors.As(json.Unmarshal(p.data, &raw), &whole) && int(whole.Offset)-1 >= off && int(whole.Offset) <= len(p.data) {
			off, msg = int(whole.Offset)-1, whole.Error()
		}
		return p.errAt(off, key, "malformed JSON: "+msg)
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return p.errAt(len(p.data), key, "malformed JSON: the file ends early")
	}
	return p.errAt(p.next(), key, "malformed JSON: "+err.Error())
}

// lineCol converts a byte offset to a 1-based line and column.
func lineCol(data []byte, off int) (int, int) {
	off = min(max(off, 0), len(data))
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return line, col
}
