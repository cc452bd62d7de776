package overlay

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
)

// writeRules writes an overlay_rules.json in a fresh directory.
func writeRules(t *testing.T, text string) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "overlay_rules.json")
	if err := os.WriteFile(p, []byte(text), 0o644); err != nil {
		t.Fatal(err)
	}
	return p
}

func loadRules(t *testing.T, text string) map[string]CreateOverlayRequest {
	t.Helper()
	rules, err := LoadRules(writeRules(t, text))
	if err != nil {
		t.Fatalf("LoadRules: %v", err)
	}
	return rules
}

func TestLoadRulesSpecExample(t *testing.T) {
	// SPEC section 7.
	rules := loadRules(t, `{"sdc_overlay": "-e vxlan -p vxlan/listen_ip=192.0.2.10 -s svp -p svp/host=portolan.example -p svp/port=1296 -p svp/underlay_ip=192.0.2.10 -p mtu=1400"}`)
	want := map[string]CreateOverlayRequest{
		"sdc_overlay": {Encap: "vxlan", Search: "svp", Props: []Assignment{
			{"vxlan/listen_ip", "192.0.2.10"},
			{"svp/host", "portolan.example"},
			{"svp/port", "1296"},
			{"svp/underlay_ip", "192.0.2.10"},
			{"mtu", "1400"},
		}},
	}
	if !reflect.DeepEqual(rules, want) {
		t.Errorf("LoadRules =\n%+v\nwant\n%+v", rules, want)
	}
}

func TestLoadRulesIllumosExample(t *testing.T) {
	// illumos.md section 10.1, both rules; the file may span lines and
	// the arguments are split on any white space.
	rules := loadRules(t, `{"sdc_overlay": "-e vxlan -s svp -p vxlan/listen_ip=10.1.0.5 -p svp/host=portolan.dc1.example   -p svp/underlay_ip=10.1.0.5 -p mtu=8500",
  "lab": "-e vxlan -p vxlan/listen_ip=192.168.1.10,vxlan/listen_port=4790 -s files\t-p files/config=/opt/custom/networking/lab.json -p mtu=1400"}
`)
	want := map[string]CreateOverlayRequest{
		"sdc_overlay": {Encap: "vxlan", Search: "svp", Props: []Assignment{
			{"vxlan/listen_ip", "10.1.0.5"},
			{"svp/host", "portolan.dc1.example"},
			{"svp/underlay_ip", "10.1.0.5"},
			{"mtu", "8500"},
		}},
		"lab": {Encap: "vxlan", Search: "files", Props: []Assignment{
			{"vxlan/listen_ip", "192.168.1.10"},
			{"vxlan/listen_port", "4790"},
			{"files/config", "/opt/custom/networking/lab.json"},
			{"mtu", "1400"},
		}},
	}
	if !reflect.DeepEqual(rules, want) {
		t.Errorf("LoadRules =\n%+v\nwant\n%+v", rules, want)
	}
}

func TestLoadRulesEmpty(t *testing.T) {
	if rules := loadRules(t, "{}\n"); len(rules) != 0 {
		t.Errorf("LoadRules of {} = %+v", rules)
	}
}

func TestLoadRulesErrors(t *testing.T) {
	for _, tc := range []struct {
		name string
		text string
		want string // the error after "<path>:"
	}{
		{"trailing comma", "{\n  \"a\": \"-e vxlan -s direct\",\n}\n",
			"3:1: malformed JSON: invalid character '}' looking for beginning of object key string"},
		{"unterminated", "{\"a\": \"-e vxlan",
			"1:15: malformed JSON: unexpected end of JSON input"},
		{"empty file", "",
			"1:1: malformed JSON: unexpected end of JSON input"},
		{"array", "\n  [\"-e vxlan -s direct\"]\n",
			"2:3: the file must hold one JSON object mapping rule names to create-overlay arguments"},
		{"string", `"-e vxlan -s direct"`,
			"1:1: the file must hold one JSON object mapping rule names to create-overlay arguments"},
		{"number", "  42",
			"1:3: the file must hold one JSON object mapping rule names to create-overlay arguments"},
		{"null", "null\n",
			"1:1: the file must hold one JSON object mapping rule names to create-overlay arguments"},
		{"number value", "{\n  \"ok\": \"-e vxlan -s direct\",\n  \"num\": 5\n}\n",
			`3:3: rule "num": the value must be a string of create-overlay arguments`},
		{"null value", `{"n": null}`,
			`1:2: rule "n": the value must be a string of create-overlay arguments`},
		{"list value", `{"l": ["-e", "vxlan"]}`,
			`1:2: rule "l": the value must be a string of create-overlay arguments`},
		{"bad name", `{"bad-name": "-e vxlan -s direct"}`,
			`1:2: rule "bad-name": a rule name has letters, digits and '_' only`},
		{"escaped bad name", "{\n  \"bad\\u002dname\": \"-e vxlan -s direct\"\n}",
			`2:3: rule "bad-name": a rule name has letters, digits and '_' only`},
		{"vnetid", `{"r": "-e vxlan -s direct -v 5"}`,
			`1:2: rule "r": -v is not allowed: the vnetid comes from the VNIC's <rule>/<vnetid>`},
		{"long vnetid", `{"r": "-e vxlan -s direct --vnetid=5"}`,
			`1:2: rule "r": -v is not allowed: the vnetid comes from the VNIC's <rule>/<vnetid>`},
		{"unknown flag", `{"r": "-e vxlan -s direct -x 1"}`,
			`1:2: rule "r": unknown shorthand flag: 'x' in -x`},
		{"unknown long flag", `{"r": "-e vxlan --temporary -s direct"}`,
			`1:2: rule "r": unknown flag: --temporary`},
		{"help", `{"r": "-e vxlan -s direct --help"}`,
			`1:2: rule "r": -h/--help is not a create-overlay argument; a rule gives -e, -s and -p only`},
		{"missing -e", `{"r": "-s direct -p direct/dest_ip=192.0.2.1"}`,
			`1:2: rule "r": missing -e <encap>`},
		{"missing -s", `{"r": "-e vxlan -p vxlan/listen_ip=192.0.2.1"}`,
			`1:2: rule "r": missing -s <search>`},
		{"-e without value", `{"r": "-s direct -e"}`,
			`1:2: rule "r": flag needs an argument: 'e' in -e`},
		{"operand", "{\"ok\": \"-e vxlan -s direct\",\n \"r\": \"-e vxlan -s direct net0\"}",
			`2:2: rule "r": unexpected "net0": rules give no overlay name`},
		{"property without =", `{"r": "-e vxlan -s direct -p mtu"}`,
			`1:2: rule "r": invalid property assignment "mtu": expected <prop>=<value>`},
		{"property without = in a list", `{"r": "-e vxlan -s direct -p mtu=1400,vxlan/listen_ip"}`,
			`1:2: rule "r": invalid property assignment "vxlan/listen_ip": expected <prop>=<value>`},
		{"property without name", `{"r": "-e vxlan -s direct -p =1400"}`,
			`1:2: rule "r": invalid property assignment "=1400": expected <prop>=<value>`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := writeRules(t, tc.text)
			rules, err := LoadRules(p)
			if err == nil {
				t.Fatalf("LoadRules succeeded: %+v", rules)
			}
			if want := p + ":" + tc.want; err.Error() != want {
				t.Errorf("LoadRules error\n got %s\nwant %s", err, want)
			}
		})
	}
}

// With several bad rules the first in the file is reported, every time
// (not whichever a map iteration meets first).
func TestLoadRulesFirstErrorInFileOrder(t *testing.T) {
	p := writeRules(t, `{
  "good": "-e vxlan -s direct",
  "first": "-e vxlan",
  "second": "-s direct",
  "third": 3
}`)
	want := p + `:3:3: rule "first": missing -s <search>`
	for range 20 {
		if _, err := LoadRules(p); err == nil || err.Error() != want {
			t.Fatalf("LoadRules error %v, want %s", err, want)
		}
	}
}

func TestLoadRulesMissingFile(t *testing.T) {
	p := filepath.Join(t.TempDir(), "overlay_rules.json")
	_, err := LoadRules(p)
	if err == nil {
		t.Fatal("LoadRules of a missing file succeeded")
	}
	if !strings.Contains(err.Error(), p) || !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("LoadRules error %q does not name %s as missing", err, p)
	}
}
