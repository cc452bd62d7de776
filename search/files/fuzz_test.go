package files

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net"
	"net/netip"
	"strings"
	"testing"

	"overlaynet/ether"
	"overlaynet/prop"
)

// remarshal writes a map's entries back as a file, alternating the short
// and the long MAC form.
func remarshal(t *testing.T, m *Map, needPort bool) []byte {
	t.Helper()
	file := map[string]map[string]any{}
	i := 0
	for mac, e := range m.Entries {
		key := ether.Short(mac)
		if i%2 == 1 {
			key = net.HardwareAddr(mac[:]).String()
		}
		i++
		v := map[string]any{"ip": e.Dest.IP.String()}
		if needPort || e.Dest.Port != 0 {
			v["port"] = e.Dest.Port
		}
		if e.ARP.IsValid() {
			v["arp"] = e.ARP.String()
		}
		if e.NDP.IsValid() {
			v["ndp"] = e.NDP.String()
		}
		if e.HasDHCP {
			v["dhcp-proxy"] = net.HardwareAddr(e.DHCPProxy[:]).String()
		}
		file[key] = v
	}
	data, err := json.MarshalIndent(file, "", "  ")
	if err != nil {
		t.Fatalf("marshal: %v", err)
	}
	return data
}

// checkParse parses data and checks what any answer must satisfy.
func checkParse(t *testing.T, data []byte, needPort bool) *Map {
	const path = "/fuzz/map.json"
	m, err := Parse(path, data, needPort)
	if err != nil {
		if m != nil {
			t.Errorf("Parse returned a map with error %v", err)
		}
		var pe *ParseError
		if !errors.As(err, &pe) {
			t.Fatalf("error %T %v is not a *ParseError", err, err)
		}
		lines := bytes.Split(data, []byte("\n"))
		if pe.Path != path || pe.Line < 1 || pe.Col < 1 || pe.Line > len(lines) {
			t.Fatalf("error at %s:%d:%d in a file of %d lines: %v", pe.Path, pe.Line, pe.Col, len(lines), err)
		}
		if pe.Col > len(lines[pe.Line-1])+1 {
			t.Fatalf("error at column %d of a line of %d bytes: %v", pe.Col, len(lines[pe.Line-1]), err)
		}
		prefix := fmt.Sprintf("%s:%d:%d: ", path, pe.Line, pe.Col)
		if pe.Key != "" {
			prefix += fmt.Sprintf("entry %q: ", pe.Key)
		}
		if err.Error() != prefix+pe.Msg || pe.Msg == "" {
			t.Fatalf("Error() = %q, want %q and a message", err.Error(), prefix+pe.Msg)
		}
		return nil
	}
	for mac, e := range m.Entries {
		if !ether.IsUnicast(mac) {
			t.Errorf("group MAC %v in Entries", mac)
		}
		if !e.Dest.IP.IsValid() || e.Dest.IP.Zone() != "" || e.Dest.IP.Is4In6() || prop.CheckUnderlayIP(e.Dest.IP.String()) != nil {
			t.Errorf("%v: bad underlay IP %v", mac, e.Dest.IP)
		}
		if needPort && e.Dest.Port == 0 {
			t.Errorf("%v: port 0", mac)
		}
		if e.ARP.IsValid() && !e.ARP.Is4() {
			t.Errorf("%v: arp %v", mac, e.ARP)
		}
		if e.NDP.IsValid() && (!e.NDP.Is6() || e.NDP.Is4In6() || e.NDP.Zone() != "") {
			t.Errorf("%v: ndp %v", mac, e.NDP)
		}
		if e.HasDHCP && !ether.IsUnicast(e.DHCPProxy) {
			t.Errorf("%v: dhcp-proxy %v", mac, e.DHCPProxy)
		}
		for _, a := range []netip.Addr{e.ARP, e.NDP} {
			if !a.IsValid() {
				continue
			}
			if got, ok := m.ResolveIP(a); !ok || got != mac {
				t.Errorf("ResolveIP(%v) = %v, %v, want %v", a, got, ok, mac)
			}
		}
	}
	if len(m.byIP) > 2*len(m.Entries) {
		t.Errorf("%d addresses for %d entries", len(m.byIP), len(m.Entries))
	}
	for ip, mac := range m.byIP {
		if e, ok := m.Entries[mac]; !ok || (e.ARP != ip && e.NDP != ip) {
			t.Errorf("ResolveIP(%v) = %v, whose entry %+v does not claim it", ip, mac, e)
		}
	}
	for _, w := range m.Warnings {
		if !strings.HasPrefix(w, path+":") {
			t.Errorf("warning %q without a position", w)
		}
	}
	return m
}

var fuzzSeeds = []string{
	"",
	"{}",
	" \r\n{ }\r\n",
	specExample,
	illumosExample,
	mapV1,
	mapV2,
	`{"2:8:20:aa:bb:1": {"ip": "2001:db8::10", "port": 4789, "ndp": "fd00::1", "x": [1, {"y": null}]}}`,
	`{"ff:ff:ff:ff:ff:ff": {"ip": "192.0.2.1", "port": 4789}, "2:8:20:0:0:1": {"ip": "192.0.2.2"}}`,
	`{"2:8:20:0:0:1": {"ip": "192.0.2.1", "port": 4789}, "02:08:20:00:00:01": {"ip": "192.0.2.2", "port": 4789}}`,
	`{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789,}}`,
	`{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789.5}}`,
	`{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": "4789"}}`,
	`{"2:8:20:aa:bb:1": {"ip": "239.0.0.1", "port": 4789}}`,
	`{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "arp": "fd00::1"}}`,
	`{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "ip": "192.0.2.1", "port": 4789}}`,
	`{"2:8:20:aa:bb:1": {"ip": "192.0.2.1", "port": 4789, "dhcp-proxy": "1:0:5e:0:0:1"}}`,
	"{\"2:8:20:aa:bb:1\": {\"ip\": \"192.0.2.1\", \"port\": tru}}\n",
	"{\"2:8:20:aa:bb:1\": [\"192.0.2.1\"]} x",
	"[{}]",
	"{\"a\"",
	"\ufeff{}",
}

// FuzzParse checks that no input makes Parse panic, that a parsed map
// holds only valid entries and survives being written back and parsed
// again, and that every error is a located *ParseError.
func FuzzParse(f *testing.F) {
	for _, s := range fuzzSeeds {
		f.Add([]byte(s))
	}
	f.Fuzz(func(t *testing.T, data []byte) {
		loose := checkParse(t, data, false)
		strict := checkParse(t, data, true)
		if strict != nil {
			// Requiring a port only adds errors.
			if loose == nil || !maps.Equal(loose.Entries, strict.Entries) {
				t.Fatalf("parsed with a port required but not without: %v, %v", strict, loose)
			}
		}
		for _, c := range []struct {
			m        *Map
			needPort bool
		}{{loose, false}, {strict, true}} {
			if c.m == nil {
				continue
			}
			again := remarshal(t, c.m, c.needPort)
			m2, err := Parse("again.json", again, c.needPort)
			if err != nil {
				t.Fatalf("parsing the entries written back failed: %v\n%s", err, again)
			}
			if !maps.Equal(c.m.Entries, m2.Entries) || !maps.Equal(c.m.byIP, m2.byIP) || len(m2.Warnings) != 0 {
				t.Fatalf("entries written back and parsed again differ:\n%v\n%v\n%q", c.m.Entries, m2.Entries, m2.Warnings)
			}
		}
	})
}
