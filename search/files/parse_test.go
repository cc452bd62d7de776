package files

import (
	"errors"
	"fmt"
	"maps"
	"net/netip"
	"strings"
	"testing"

	"overlaynet/encap"
	"overlaynet/ether"
)

// mac parses a MAC for a test, in any form ether.ParseMAC takes.
func mac(t testing.TB, s string) ether.MAC {
	t.Helper()
	hw, err := ether.ParseMAC(s)
	if err != nil {
		t.Fatalf("bad MAC in test: %v", err)
	}
	return ether.MAC(hw)
}

func dest(ip string, port uint16) encap.Dest {
	return encap.Dest{IP: netip.MustParseAddr(ip), Port: port}
}

// marker marks, in a test input, where the token an error or warning is
// about starts. It is removed before parsing.
const marker = "‸"

// located removes the markers from in and returns the text and the
// 1-based line and byte column of each marker, computed independently of
// the parser.
func located(t testing.TB, in string) (string, [][2]int) {
	t.Helper()
	var text strings.Builder
	var at [][2]int
	line, col := 1, 1
	for i := 0; i < len(in); {
		if strings.HasPrefix(in[i:], marker) {
			at = append(at, [2]int{line, col})
			i += len(marker)
			continue
		}
		c := in[i]
		text.WriteByte(c)
		if c == '\n' {
			line, col = line+1, 1
		} else {
			col++
		}
		i++
	}
	return text.String(), at
}

func TestLocated(t *testing.T) {
	text, at := located(t, "‸ab\r\n c‸d\n‸")
	if text != "ab\r\n cd\n" {
		t.Errorf("text = %q", text)
	}
	if want := [][2]int{{1, 1}, {2, 3}, {3, 1}}; fmt.Sprint(at) != fmt.Sprint(want) {
		t.Errorf("positions = %v, want %v", at, want)
	}
}

const specExample = `{"de:ad:be:ef:00:01": {"ip": "192.0.2.10", "port": 4789,
  "arp": "10.55.55.3", "ndp": "fd00::3"}}`

// illumosExample is the example of the illumos reference (section 5.2).
const illumosExample = `{"2:8:20:aa:bb:1": {"ip": "192.168.10.11", "port": 4789, "arp": "10.1.0.11",
  "ndp": "fd00:1::11"}, "2:8:20:aa:bb:2": {"ip": "192.168.10.12", "port": 4789,
  "arp": "10.1.0.12", "dhcp-proxy": "2:8:20:aa:bb:fe"}}`

func TestParseValid(t *testing.T) {
	const path = "/etc/overlay/map.json"
	type want = map[string]Entry // keyed by MAC in any form
	tests := []struct {
		name     string
		in       string // markers locate the warnings, in order
		noPort   bool   // needPort false
		want     want
		warnings []string // one substring each (after the position)
	}{
		{
			name: "spec example",
			in:   specExample,
			want: want{"de:ad:be:ef:0:1": {Dest: dest("192.0.2.10", 4789),
				ARP: netip.MustParseAddr("10.55.55.3"), NDP: netip.MustParseAddr("fd00::3")}},
		},
		{
			name: "illumos example",
			in:   illumosExample,
			want: want{
				"2:8:20:aa:bb:1": {Dest: dest("192.168.10.11", 4789),
					ARP: netip.MustParseAddr("10.1.0.11"), NDP: netip.MustParseAddr("fd00:1::11")},
				"2:8:20:aa:bb:2": {Dest: dest("192.168.10.12", 4789),
					ARP: netip.MustParseAddr("10.1.0.12"), DHCPProxy: mac(t, "2:8:20:aa:bb:fe"), HasDHCP: true},
			},
		},
		{
			name: "short MAC form",
			in:   `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789}}`,
			want: want{"02:08:20:aa:bb:01": {Dest: dest("192.0.2.1", 4789)}},
		},
		{
			name: "long MAC form",
			in:   `{"02:08:20:aa:bb:01": {"ip": "192.0.2.1", "port": 4789}}`,
			want: want{"2:8:20:aa:bb:1": {Dest: dest("192.0.2.1", 4789)}},
		},
		{
			name: "upper case and dash MAC forms",
			in:   `{"02:08:20:AA:BB:01": {"ip": "192.0.2.1", "port": 4789}, "2-8-20-aa-bb-2": {"ip": "192.0.2.2", "port": 4789}}`,
			want: want{
				"2:8:20:aa:bb:1": {Dest: dest("192.0.2.1", 4789)},
				"2:8:20:aa:bb:2": {Dest: dest("192.0.2.2", 4789)},
			},
		},
		{
			name: "escaped key",
			in:   `{"\u0032:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789}}`,
			want: want{"2:8:20:aa:bb:1": {Dest: dest("192.0.2.1", 4789)}},
		},
		{
			name: "IPv6 underlay",
			in:   `{"2:8:20:aa:bb:1": {"ip": "2001:db8::10", "port": 4789, "ndp": "fd00::1"}}`,
			want: want{"2:8:20:aa:bb:1": {Dest: dest("2001:db8::10", 4789), NDP: netip.MustParseAddr("fd00::1")}},
		},
		{
			name: "IPv4-mapped underlay and arp are IPv4",
			in:   `{"2:8:20:aa:bb:1": {"ip": "::ffff:192.0.2.1", "port": 4789, "arp": "::ffff:10.0.0.1"}}`,
			want: want{"2:8:20:aa:bb:1": {Dest: dest("192.0.2.1", 4789), ARP: netip.MustParseAddr("10.0.0.1")}},
		},
		{
			name: "only ip and port",
			in:   `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 1}, "2:8:20:aa:bb:2": {"port": 65535, "ip": "192.0.2.2"}}`,
			want: want{
				"2:8:20:aa:bb:1": {Dest: dest("192.0.2.1", 1)},
				"2:8:20:aa:bb:2": {Dest: dest("192.0.2.2", 65535)},
			},
		},
		{
			name: "arp only, ndp only, dhcp-proxy only",
			in: `{"2:8:20:0:0:1": {"ip": "192.0.2.1", "port": 4789, "arp": "10.0.0.1"},
 "2:8:20:0:0:2": {"ip": "192.0.2.1", "port": 4789, "ndp": "fd00::2"},
 "2:8:20:0:0:3": {"ip": "192.0.2.1", "port": 4789, "dhcp-proxy": "02:08:20:00:00:01"}}`,
			want: want{
				"2:8:20:0:0:1": {Dest: dest("192.0.2.1", 4789), ARP: netip.MustParseAddr("10.0.0.1")},
				"2:8:20:0:0:2": {Dest: dest("192.0.2.1", 4789), NDP: netip.MustParseAddr("fd00::2")},
				"2:8:20:0:0:3": {Dest: dest("192.0.2.1", 4789), DHCPProxy: mac(t, "2:8:20:0:0:1"), HasDHCP: true},
			},
		},
		{
			name:   "no port when none is needed",
			in:     `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1"}}`,
			noPort: true,
			want:   want{"2:8:20:aa:bb:1": {Dest: encap.Dest{IP: netip.MustParseAddr("192.0.2.1")}}},
		},
		{
			name:   "port still checked and kept when none is needed",
			in:     `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789}}`,
			noPort: true,
			want:   want{"2:8:20:aa:bb:1": {Dest: dest("192.0.2.1", 4789)}},
		},
		{
			name: "unknown keys",
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", ‸"comment": "rack 4", "port": 4789,
    ‸"vlan": {"nested": [1, 2, {"x": null}]}}}`,
			want: want{"2:8:20:aa:bb:1": {Dest: dest("192.0.2.1", 4789)}},
			warnings: []string{`entry "2:8:20:aa:bb:1": unknown key "comment" ignored`,
				`entry "2:8:20:aa:bb:1": unknown key "vlan" ignored`},
		},
		{
			name: "group MAC keys",
			in: `{
  ‸"ff:ff:ff:ff:ff:ff": {"ip": "192.0.2.99", "port": 4789},
  "2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789},
  ‸"1:0:5e:0:0:1": {"ip": "192.0.2.98", "port": 4789, "arp": "10.0.0.1"}
}`,
			want: want{"2:8:20:aa:bb:1": {Dest: dest("192.0.2.1", 4789)}},
			warnings: []string{`entry "ff:ff:ff:ff:ff:ff": a group MAC is never looked up`,
				`entry "1:0:5e:0:0:1": a group MAC is never looked up`},
		},
		{
			name: "empty object",
			in:   `{}`,
			want: want{},
		},
		{
			name: "empty object with whitespace",
			in:   " \t\r\n{ \r\n }\r\n\n",
			want: want{},
		},
		{
			name: "CRLF and tabs",
			in: "\r\n{\r\n\t\"2:8:20:aa:bb:1\" :\r\n\t{\r\n\t\t\"ip\"\t:\t\"192.0.2.1\" ,\r\n\t\t\"port\" : 4789\r\n\t} ,\r\n" +
				"\t\"2:8:20:aa:bb:2\": {\"ip\": \"192.0.2.2\", \"port\": 4789,\r\n\t\t‸\"x\": 1}\r\n}\r\n",
			want: want{
				"2:8:20:aa:bb:1": {Dest: dest("192.0.2.1", 4789)},
				"2:8:20:aa:bb:2": {Dest: dest("192.0.2.2", 4789)},
			},
			warnings: []string{`entry "2:8:20:aa:bb:2": unknown key "x" ignored`},
		},
		{
			name: "no whitespace at all",
			in:   `{"2:8:20:aa:bb:1":{"ip":"192.0.2.1","port":4789,‸"y":[]},"2:8:20:aa:bb:2":{"ip":"192.0.2.2","port":4789}}`,
			want: want{
				"2:8:20:aa:bb:1": {Dest: dest("192.0.2.1", 4789)},
				"2:8:20:aa:bb:2": {Dest: dest("192.0.2.2", 4789)},
			},
			warnings: []string{`entry "2:8:20:aa:bb:1": unknown key "y" ignored`},
		},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, at := located(t, tt.in)
			if len(at) != len(tt.warnings) {
				t.Fatalf("test has %d markers for %d warnings", len(at), len(tt.warnings))
			}
			m, err := Parse(path, []byte(in), !tt.noPort)
			if err != nil {
				t.Fatalf("Parse: %v", err)
			}
			want := map[ether.MAC]Entry{}
			for k, e := range tt.want {
				want[mac(t, k)] = e
			}
			if !maps.Equal(m.Entries, want) {
				t.Errorf("Entries:\n got %v\nwant %v", m.Entries, want)
			}
			if len(m.Warnings) != len(tt.warnings) {
				t.Fatalf("Warnings = %q, want %d", m.Warnings, len(tt.warnings))
			}
			for i, w := range m.Warnings {
				prefix := fmt.Sprintf("%s:%d:%d: ", path, at[i][0], at[i][1])
				if !strings.HasPrefix(w, prefix) || !strings.Contains(w, tt.warnings[i]) {
					t.Errorf("warning %d = %q, want %q followed by %q", i, w, prefix, tt.warnings[i])
				}
			}
		})
	}
}

// TestParseMACForms checks that the short and the long form of a MAC are
// the same key.
func TestParseMACForms(t *testing.T) {
	short, err := Parse("a.json", []byte(`{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789}}`), true)
	if err != nil {
		t.Fatal(err)
	}
	long, err := Parse("b.json", []byte(`{"02:08:20:aa:bb:01": {"ip": "192.0.2.1", "port": 4789}}`), true)
	if err != nil {
		t.Fatal(err)
	}
	if !maps.Equal(short.Entries, long.Entries) || len(short.Entries) != 1 {
		t.Errorf("short form %v, long form %v", short.Entries, long.Entries)
	}
	if _, ok := short.Entries[ether.MAC{0x02, 0x08, 0x20, 0xaa, 0xbb, 0x01}]; !ok {
		t.Errorf("02:08:20:aa:bb:01 missing from %v", short.Entries)
	}
}

// A well-formed entry to build invalid files from.
const ok1 = `"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789}`

func TestParseInvalid(t *testing.T) {
	const path = "/etc/overlay/map.json"
	const k1, k2 = "2:8:20:aa:bb:1", "2:8:20:aa:bb:2"
	tests := []struct {
		name   string
		in     string // one marker: where the error is
		noPort bool
		key    string
		msg    []string // words the message must contain
	}{
		// Not JSON.
		{name: "empty file", in: "‸", msg: []string{"malformed JSON", "ends early"}},
		{name: "only whitespace", in: " \r\n\t\n‸", msg: []string{"malformed JSON", "ends early"}},
		{name: "trailing comma in entry", key: k1, msg: []string{"malformed JSON", "'}'"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789,‸}}`},
		{name: "trailing comma after last entry", msg: []string{"malformed JSON", "'}'"},
			in: "{" + ok1 + ",\n‸}"},
		{name: "comma after the object", msg: []string{"unexpected data after the top-level object"},
			in: "{" + ok1 + "}\n‸,\n"},
		{name: "missing closing brace", msg: []string{"malformed JSON", "ends early"},
			in: "{" + ok1 + "\n‸"},
		{name: "missing brace of an entry", msg: []string{"malformed JSON", "ends early"},
			in: "{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": 4789,\n\"2:8:20:aa:bb:2\": {\"ip\": \"192.0.2.2\", \"port\": 4789}}‸"},
		{name: "missing colon", key: k1, msg: []string{"malformed JSON", "'{'", "after object key"},
			in: `{"2:8:20:aa:bb:1" ‸{"ip": "192.0.2.1", "port": 4789}}`},
		{name: "missing comma between fields", key: k1, msg: []string{"malformed JSON", `'"'`},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1"` + "\n  " + `‸"port": 4789}}`},
		{name: "missing comma between entries", msg: []string{"malformed JSON", `'"'`},
			in: "{" + ok1 + "\n  ‸" + `"2:8:20:aa:bb:2": {"ip": "192.0.2.2", "port": 4789}}`},
		{name: "bad literal", key: k1, msg: []string{"malformed JSON", "literal true"},
			in: "{\n  \"2:8:20:aa:bb:1\": {\n    \"ip\": \"192.0.2.1\",\n    \"port\": tru‸}}"},
		{name: "bad number", key: k1, msg: []string{"malformed JSON", "numeric literal"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": -‸x}}`},
		{name: "control character in a string", key: k1, msg: []string{"malformed JSON", "in string literal"},
			in: "{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1‸\t\", \"port\": 4789}}"},
		{name: "control character in a key", msg: []string{"malformed JSON", "in string literal"},
			in: "{" + ok1 + ", \"2:8:20:aa:bb:2‸\n\": {}}"},
		{name: "bad character in an unknown value", key: k1, msg: []string{"malformed JSON", "'x'"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "z": [1, 2, ‸x]}}`},
		{name: "key not a string", msg: []string{"malformed JSON", "'1'"},
			in: `{‸1: {"ip": "192.0.2.1", "port": 4789}}`},
		{name: "field name not a string", key: k1, msg: []string{"malformed JSON", "'i'"},
			in: `{"2:8:20:aa:bb:1": {‸ip: "192.0.2.1", "port": 4789}}`},
		{name: "truncated in a string", key: k1, msg: []string{"malformed JSON", "ends early"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "po‸`},
		{name: "truncated after a value", key: k1, msg: []string{"malformed JSON", "ends early"},
			in: "{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": 47\r\n‸"},
		{name: "truncated after a key", key: k1, msg: []string{"malformed JSON", "ends early"},
			in: `{"2:8:20:aa:bb:1"‸`},
		{name: "truncated after the opening brace", msg: []string{"malformed JSON", "ends early"},
			in: "{\n‸"},
		{name: "garbage after the object", msg: []string{"unexpected data after the top-level object"},
			in: "{" + ok1 + "}\r\n\r\n  ‸garbage"},
		{name: "second object", msg: []string{"unexpected data after the top-level object"},
			in: "{} ‸{}"},
		{name: "BOM", msg: []string{"malformed JSON"},
			in: "‸\ufeff{}"},

		// Not the right shape.
		{name: "top level array", msg: []string{"one JSON object"}, in: `‸[{"2:8:20:aa:bb:1": {}}]`},
		{name: "top level string", msg: []string{"one JSON object"}, in: `  ‸"2:8:20:aa:bb:1"`},
		{name: "top level number", msg: []string{"one JSON object"}, in: "\n‸42\n"},
		{name: "top level null", msg: []string{"one JSON object"}, in: "‸null"},
		{name: "entry a string", key: k1, msg: []string{"must be an object"},
			in: `{"2:8:20:aa:bb:1": ‸"192.0.2.1"}`},
		{name: "entry an array", key: k1, msg: []string{"must be an object"},
			in: `{"2:8:20:aa:bb:1": ‸["192.0.2.1", 4789]}`},
		{name: "entry null", key: k2, msg: []string{"must be an object"},
			in: "{" + ok1 + ",\n \"2:8:20:aa:bb:2\":\n   ‸null}"},

		// Keys.
		{name: "five groups", key: "2:8:20:aa:bb", msg: []string{"not a MAC address"},
			in: `{‸"2:8:20:aa:bb": {"ip": "192.0.2.1", "port": 4789}}`},
		{name: "not hex", key: "2:8:20:aa:bb:zz", msg: []string{"not a MAC address"},
			in: "{" + ok1 + ",\n\t‸\"2:8:20:aa:bb:zz\": {\"ip\": \"192.0.2.1\", \"port\": 4789}}"},
		{name: "three digits", key: "2:8:20:aa:bb:100", msg: []string{"not a MAC address"},
			in: `{‸"2:8:20:aa:bb:100": {}}`},
		{name: "empty key", key: "", msg: []string{"not a MAC address"},
			in: `{‸"": {}}`},
		{name: "duplicate MAC", key: "02:08:20:00:00:01", msg: []string{"already given", `"2:8:20:0:0:1"`},
			in: "{\"2:8:20:0:0:1\": {\"ip\": \"192.0.2.1\", \"port\": 4789},\n  ‸\"02:08:20:00:00:01\": {\"ip\": \"192.0.2.2\", \"port\": 4789}}"},
		{name: "duplicate MAC, same text", key: k1, msg: []string{"already given"},
			in: "{" + ok1 + ", ‸" + ok1 + "}"},

		// Fields.
		{name: "field given twice", key: k1, msg: []string{`"ip" is given twice`},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", ‸"ip": "192.0.2.1", "port": 4789}}`},
		{name: "unknown field given twice", key: k1, msg: []string{`"x" is given twice`},
			in: `{"2:8:20:aa:bb:1": {"x": 1, "ip": "192.0.2.1", "port": 4789, ‸"x": 1}}`},
		{name: "missing ip", key: k1, msg: []string{`missing "ip"`},
			in: `{"2:8:20:aa:bb:1": ‸{"port": 4789}}`},
		{name: "missing ip, no port needed", key: k1, noPort: true, msg: []string{`missing "ip"`},
			in: "{\"2:8:20:aa:bb:1\":\n‸{}}"},
		{name: "missing port", key: k1, msg: []string{`missing "port"`},
			in: `{"2:8:20:aa:bb:1": ‸{"ip": "192.0.2.1", "arp": "10.0.0.1"}}`},
		{name: "port 0", key: k1, msg: []string{`"port"`, "1-65535", "0"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": ‸0}}`},
		{name: "port 0, no port needed", key: k1, noPort: true, msg: []string{`"port"`, "1-65535"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": ‸0}}`},
		{name: "port 65536", key: k1, msg: []string{`"port"`, "1-65535", "65536"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": ‸65536}}`},
		{name: "port 4789.5", key: k1, msg: []string{`"port"`, "integer", "4789.5"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": ‸4789.5}}`},
		{name: "port 4789.0", key: k1, msg: []string{`"port"`, "integer"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": ‸4789.0}}`},
		{name: "port 1e3", key: k1, msg: []string{`"port"`, "integer"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": ‸1e3}}`},
		{name: "port string", key: k1, msg: []string{`"port"`, "must be a number", `"4789"`},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": ‸"4789"}}`},
		{name: "port -1", key: k1, msg: []string{`"port"`, "1-65535", "-1"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port":‸-1}}`},
		{name: "port huge", key: k1, msg: []string{`"port"`, "1-65535"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": ‸18446744073709551617}}`},
		{name: "port null", key: k1, msg: []string{`"port"`, "1-65535", "not null"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": ‸null}}`},
		{name: "port array", key: k1, msg: []string{`"port"`, "must be a number"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": ‸[4789]}}`},
		{name: "ip null", key: k1, msg: []string{`"ip"`, "must be a string"},
			in: `{"2:8:20:aa:bb:1": {"ip": ‸null, "port": 4789}}`},
		{name: "ip not a string", key: k1, msg: []string{`"ip"`, "must be a string"},
			in: `{"2:8:20:aa:bb:1": {"ip": ‸3221225985, "port": 4789}}`},
		{name: "ip invalid", key: k1, msg: []string{`"ip"`, `"192.0.2"`, "not an IPv4 or IPv6 address"},
			in: "{\"2:8:20:aa:bb:1\": {\r\n  \"port\": 4789,\r\n  \"ip\": ‸\"192.0.2\"}}"},
		{name: "ip a host name", key: k1, msg: []string{`"ip"`, "not an IPv4 or IPv6 address"},
			in: `{"2:8:20:aa:bb:1": {"ip": ‸"host1.example.com", "port": 4789}}`},
		{name: "ip with a zone", key: k1, msg: []string{`"ip"`, "not an IPv4 or IPv6 address"},
			in: `{"2:8:20:aa:bb:1": {"ip": ‸"fe80::1%eth0", "port": 4789}}`},
		{name: "ip multicast", key: k1, msg: []string{`"ip"`, "multicast"},
			in: `{"2:8:20:aa:bb:1": {"ip": ‸"239.1.2.3", "port": 4789}}`},
		{name: "ip IPv6 multicast", key: k1, msg: []string{`"ip"`, "multicast"},
			in: `{"2:8:20:aa:bb:1": {"ip": ‸"ff02::1", "port": 4789}}`},
		{name: "ip 6to4", key: k1, msg: []string{`"ip"`, "6to4"},
			in: `{"2:8:20:aa:bb:1": {"ip": ‸"2002:c000:201::1", "port": 4789}}`},
		{name: "arp IPv6", key: k1, msg: []string{`"arp"`, `"fd00::3"`, "not an IPv4 address"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "arp": ‸"fd00::3"}}`},
		{name: "arp not a string", key: k1, msg: []string{`"arp"`, "must be a string"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "arp": ‸true}}`},
		{name: "ndp IPv4", key: k1, msg: []string{`"ndp"`, `"10.0.0.1"`, "not an IPv6 address"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "ndp": ‸"10.0.0.1"}}`},
		{name: "ndp IPv4-mapped", key: k1, msg: []string{`"ndp"`, "not an IPv6 address"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "ndp": ‸"::ffff:10.0.0.1"}}`},
		{name: "dhcp-proxy not a MAC", key: k1, msg: []string{`"dhcp-proxy"`, `"10.0.0.1"`, "not a unicast MAC address"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "dhcp-proxy": ‸"10.0.0.1"}}`},
		{name: "dhcp-proxy multicast", key: k1, msg: []string{`"dhcp-proxy"`, `"1:0:5e:0:0:1"`, "not a unicast MAC address"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "dhcp-proxy": ‸"1:0:5e:0:0:1"}}`},
		{name: "dhcp-proxy broadcast", key: k1, msg: []string{`"dhcp-proxy"`, "not a unicast MAC address"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "dhcp-proxy": ‸"ff:ff:ff:ff:ff:ff"}}`},
		{name: "dhcp-proxy not a string", key: k1, msg: []string{`"dhcp-proxy"`, "must be a string"},
			in: `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "dhcp-proxy": ‸{}}}`},
		{name: "same arp address", key: k2, msg: []string{`"arp"`, "10.0.0.1", "already claimed", `"2:8:20:aa:bb:1"`},
			in: "{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": 4789, \"arp\": \"10.0.0.1\"},\n" +
				" \"2:8:20:aa:bb:2\": {\"ip\": \"192.0.2.2\", \"port\": 4789,\n   \"arp\": ‸\"10.0.0.1\"}}"},
		{name: "same arp address, another spelling", key: k2, msg: []string{`"arp"`, "10.0.0.1", "already claimed"},
			in: "{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": 4789, \"arp\": \"10.0.0.1\"},\n" +
				" \"2:8:20:aa:bb:2\": {\"arp\": ‸\"::ffff:10.0.0.1\", \"ip\": \"192.0.2.2\", \"port\": 4789}}"},
		{name: "same ndp address", key: k2, msg: []string{`"ndp"`, "fd00::1", "already claimed", `"2:8:20:aa:bb:1"`},
			in: "{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": 4789, \"arp\": \"10.0.0.1\", \"ndp\": \"fd00::1\"},\n" +
				" \"2:8:20:aa:bb:2\": {\"ip\": \"192.0.2.2\", \"port\": 4789, \"arp\": \"10.0.0.2\", \"ndp\": ‸\"fd00:0::1\"}}"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			in, at := located(t, tt.in)
			if len(at) != 1 {
				t.Fatalf("test has %d markers, want 1", len(at))
			}
			m, err := Parse(path, []byte(in), !tt.noPort)
			if err == nil {
				t.Fatalf("Parse succeeded: %v", m.Entries)
			}
			if m != nil {
				t.Errorf("Parse returned a map with the error")
			}
			var pe *ParseError
			if !errors.As(err, &pe) {
				t.Fatalf("error %T %v is not a *ParseError", err, err)
			}
			if pe.Path != path || pe.Line != at[0][0] || pe.Col != at[0][1] || pe.Key != tt.key {
				t.Errorf("error at %s:%d:%d key %q, want %s:%d:%d key %q (%v)",
					pe.Path, pe.Line, pe.Col, pe.Key, path, at[0][0], at[0][1], tt.key, err)
			}
			for _, w := range tt.msg {
				if !strings.Contains(pe.Msg, w) {
					t.Errorf("message %q lacks %q", pe.Msg, w)
				}
			}
			want := fmt.Sprintf("%s:%d:%d: %s", path, pe.Line, pe.Col, pe.Msg)
			if tt.key != "" {
				want = fmt.Sprintf("%s:%d:%d: entry %q: %s", path, pe.Line, pe.Col, tt.key, pe.Msg)
			}
			if err.Error() != want {
				t.Errorf("Error() = %q, want %q", err.Error(), want)
			}
		})
	}
}

// TestParseErrorPositions spells out a few positions by hand, so that a
// mistake shared by the marker helper and the parser shows.
func TestParseErrorPositions(t *testing.T) {
	tests := []struct {
		in        string
		line, col int
	}{
		{"", 1, 1},
		{"{} x", 1, 4},
		{"{\n \"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": 0}}", 2, 48},
		{"{\r\n \"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": 0}}", 2, 48},
		{"{\n\n\t\"zz\": {}}", 3, 2},
		{`{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789,}}`, 1, 53},
		{"{\n  \"2:8:20:aa:bb:1\": {\n    \"ip\": \"192.0.2.1\",\n    \"port\": tru}}", 4, 16},
	}
	for _, tt := range tests {
		_, err := Parse("f", []byte(tt.in), true)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != tt.line || pe.Col != tt.col {
			t.Errorf("Parse(%q) = %v, want an error at %d:%d", tt.in, err, tt.line, tt.col)
		}
	}
}

func TestParseErrorString(t *testing.T) {
	e := &ParseError{Path: "/a/b.json", Line: 3, Col: 14, Key: "2:8:20:aa:bb:1", Msg: `"port": must be an integer 1-65535, not 0`}
	if got, want := e.Error(), `/a/b.json:3:14: entry "2:8:20:aa:bb:1": "port": must be an integer 1-65535, not 0`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	e = &ParseError{Path: "/a/b.json", Line: 1, Col: 1, Msg: "malformed JSON: the file ends early"}
	if got, want := e.Error(), `/a/b.json:1:1: malformed JSON: the file ends early`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
	_, err := Parse("/a/b.json", []byte("{\n\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": 0}}"), true)
	if got, want := fmt.Sprint(err), `/a/b.json:2:47: entry "2:8:20:aa:bb:1": "port": must be an integer 1-65535, not 0`; got != want {
		t.Errorf("Error() = %q, want %q", got, want)
	}
}

func TestMapResolveIP(t *testing.T) {
	m, err := Parse("f.json", []byte(illumosExample[:len(illumosExample)-1]+`,
  "2:8:20:aa:bb:3": {"ip": "2001:db8::3", "port": 4789, "ndp": "fd00:1::13"},
  "ff:ff:ff:ff:ff:ff": {"ip": "192.168.10.99", "port": 4789, "arp": "10.1.0.99", "ndp": "fd00:1::99"}}`), true)
	if err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		ip  string
		mac string // "" when not found
	}{
		{"10.1.0.11", "2:8:20:aa:bb:1"},
		{"10.1.0.12", "2:8:20:aa:bb:2"},
		{"fd00:1::11", "2:8:20:aa:bb:1"},
		{"fd00:1:0::11", "2:8:20:aa:bb:1"},
		{"fd00:1::13", "2:8:20:aa:bb:3"},
		{"10.1.0.13", ""},
		{"fd00:1::12", ""},
		{"192.168.10.11", ""}, // an underlay address, not an overlay one
		{"2001:db8::3", ""},
		{"10.1.0.99", ""}, // claimed by a group MAC entry, which is ignored
		{"fd00:1::99", ""},
	}
	for _, tt := range tests {
		got, ok := m.ResolveIP(netip.MustParseAddr(tt.ip))
		if tt.mac == "" {
			if ok {
				t.Errorf("ResolveIP(%s) = %v, want none", tt.ip, got)
			}
			continue
		}
		if want := mac(t, tt.mac); !ok || got != want {
			t.Errorf("ResolveIP(%s) = %v, %v, want %v", tt.ip, got, ok, want)
		}
	}
	if _, ok := m.ResolveIP(netip.Addr{}); ok {
		t.Errorf("ResolveIP(invalid address) found something")
	}
}

// TestParseDeepNesting covers values nested nearly as deep as the JSON
// scanner allows (10000 levels), where scanning the whole file again to
// locate an error fails earlier than the decoder did.
func TestParseDeepNesting(t *testing.T) {
	const prefix = `{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "z": `
	for _, n := range []int{9990, 9998, 9999, 10000} {
		deep := strings.Repeat("[", n) + strings.Repeat("]", n)
		m, err := Parse("f", []byte(prefix+deep+`, "port": 4789}}`), true)
		if err != nil || len(m.Entries) != 1 || len(m.Warnings) != 1 {
			t.Errorf("depth %d: Parse = %v, %v", n, m, err)
		}
		in, at := located(t, prefix+deep+`, "port": ‸x}}`)
		_, err = Parse("f", []byte(in), true)
		var pe *ParseError
		if !errors.As(err, &pe) || pe.Line != at[0][0] || pe.Col != at[0][1] || !strings.Contains(pe.Msg, "'x'") {
			t.Errorf("depth %d: Parse = %v, want an error at %d:%d", n, err, at[0][0], at[0][1])
		}
	}
	deep := strings.Repeat("[", 10001) + strings.Repeat("]", 10001)
	_, err := Parse("f", []byte(prefix+deep+`, "port": 4789}}`), true)
	var pe *ParseError
	if !errors.As(err, &pe) || pe.Line != 1 || pe.Col <= len(prefix) || pe.Col > len(prefix)+10001 || !strings.Contains(pe.Msg, "depth") {
		t.Errorf("depth 10001: Parse = %v, want a depth error in the nested value", err)
	}
}
