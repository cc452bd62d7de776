package overlay

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"reflect"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// FuzzLoadRules feeds arbitrary overlay_rules.json files to LoadRules.
// Every error must be located (file:line:col inside the file) and, when it
// is about a rule, point at that rule's name; every loaded rule must be
// complete and load again, written back, to the same requests.
func FuzzLoadRules(f *testing.F) {
	for _, s := range []string{
		`{"sdc_overlay": "-e vxlan -p vxlan/listen_ip=192.0.2.10 -s svp -p svp/host=portolan.example -p svp/port=1296 -p mtu=1400"}`,
		"{\"a\": \"-e vxlan -s files\t-p files/config=/x.json,mtu=9000\",\n \"b\": \"--encap=vxlan --search=direct\"}",
		"{\n  \"a\": \"-e vxlan -s direct\",\n}\n",
		`{"bad-name": "-e vxlan -s direct"}`,
		`{"r": "-e vxlan -s direct -v 5"}`,
		`{"r": "-e vxlan -s direct -p =1400"}`,
		`{"r": "-e vxlan -s direct net0", "r": 5}`,
		`{"n": null}`, `[]`, `null`, ``, `{"a":"-e"}`,
	} {
		f.Add([]byte(s))
	}
	dir := f.TempDir()
	loc := regexp.MustCompile(`^:([0-9]+):([0-9]+): `)
	f.Fuzz(func(t *testing.T, data []byte) {
		p := filepath.Join(dir, "overlay_rules.json")
		if err := os.WriteFile(p, data, 0o600); err != nil {
			t.Fatal(err)
		}
		rules, err := LoadRules(p)
		if err != nil {
			msg, ok := strings.CutPrefix(err.Error(), p)
			sm := loc.FindStringSubmatch(msg)
			if !ok || sm == nil {
				t.Fatalf("error %q is not located in %s", err, p)
			}
			line, _ := strconv.Atoi(sm[1])
			col, _ := strconv.Atoi(sm[2])
			lines := bytes.Split(data, []byte{'\n'})
			if line < 1 || line > len(lines) || col < 1 || col > len(lines[line-1])+1 {
				t.Fatalf("error %q points outside the file", err)
			}
			off := len(bytes.Join(lines[:line-1], []byte{'\n'})) + col - 1
			if line > 1 {
				off++
			}
			if strings.HasPrefix(msg[len(sm[0]):], "rule ") && (off >= len(data) || data[off] != '"') {
				t.Fatalf("error %q does not point at the rule's name", err)
			}
			if strings.Contains(msg, "help requested") {
				t.Fatalf("error %q does not say what is wrong", err)
			}
			return
		}
		// What loaded is complete, and loads again the same once written
		// back as arguments.
		back := map[string]string{}
		for name, req := range rules {
			if !ruleName.MatchString(name) || req.Encap == "" || req.Search == "" || req.Name != "" || req.VNetID != "" {
				t.Fatalf("rule %q loaded as %+v", name, req)
			}
			args := []string{"--encap=" + req.Encap, "--search=" + req.Search}
			for _, a := range req.Props {
				if a.Name == "" || strings.ContainsAny(a.Name, "=,") || strings.ContainsAny(a.Value, ", \t\n") {
					t.Fatalf("rule %q: property %+v", name, a)
				}
				args = append(args, "--prop="+a.Name+"="+a.Value)
			}
			back[name] = strings.Join(args, " ")
		}
		js, err := json.Marshal(back)
		if err != nil {
			t.Fatal(err)
		}
		p2 := filepath.Join(dir, "again.json")
		if err := os.WriteFile(p2, js, 0o600); err != nil {
			t.Fatal(err)
		}
		again, err := LoadRules(p2)
		if err != nil {
			t.Fatalf("rules written back do not load: %v\n%s", err, js)
		}
		if len(rules) == 0 && len(again) == 0 {
			return
		}
		if !reflect.DeepEqual(again, rules) {
			t.Fatalf("rules written back load differently:\n%+v\n%+v", rules, again)
		}
	})
}
