package overlay

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"regexp"
	"strings"

	"github.com/spf13/pflag"
)

// DefaultRulesPath is where overlayd looks for SmartOS-style overlay rules
// unless told otherwise (SmartOS keeps them in
// /var/run/smartdc/networking/overlay_rules.json).
const DefaultRulesPath = "/etc/overlayd/overlay_rules.json"

// A rule names create-overlay arguments without -v and the overlay name
// (SPEC section 7): create-vnic -l <rule>/<vnetid> creates the overlay
// <rule><vnetid> from it on demand.
var ruleRef = regexp.MustCompile(`^([A-Za-z0-9_]+)/([0-9]+)$`)

var ruleName = regexp.MustCompile(`^[A-Za-z0-9_]+$`)

// LoadRules reads an overlay_rules.json: an object mapping rule names to
// create-overlay argument strings, split on white space as a shell would.
// Errors name the file, line and column, and the rule.
func LoadRules(path string) (map[string]CreateOverlayRequest, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("overlay rules: %w", err)
	}
	// Where the top-level value starts, for errors about it.
	start := len(data) - len(bytes.TrimLeft(data, " \t\r\n"))
	const notObject = "the file must hold one JSON object mapping rule names to create-overlay arguments"
	var raw map[string]json.RawMessage
	if err := json.Unmarshal(data, &raw); err != nil {
		var se *json.SyntaxError
		var te *json.UnmarshalTypeError
		switch {
		case errors.As(err, &se):
			return nil, posErr(path, data, int(se.Offset)-1, "malformed JSON: %v", se)
		case errors.As(err, &te):
			return nil, posErr(path, data, start, notObject)
		}
		return nil, fmt.Errorf("overlay rules %s: %w", path, err)
	}
	if raw == nil { // null
		return nil, posErr(path, data, start, notObject)
	}
	// Walk the (valid) object again in file order, so that the first bad
	// rule is the one reported and errors point at its name.
	rules := map[string]CreateOverlayRequest{}
	dec := json.NewDecoder(bytes.NewReader(data))
	if _, err := dec.Token(); err != nil { // {
		return nil, posErr(path, data, start, "malformed JSON: %v", err)
	}
	for dec.More() {
		off := int(dec.InputOffset())
		for off < len(data) && data[off] != '"' { // skip white space and ','
			off++
		}
		tok, err := dec.Token()
		if err != nil {
			return nil, posErr(path, data, off, "malformed JSON: %v", err)
		}
		name, _ := tok.(string)
		var v json.RawMessage
		if err := dec.Decode(&v); err != nil {
			return nil, posErr(path, data, off, "malformed JSON: %v", err)
		}
		if !ruleName.MatchString(name) {
			return nil, posErr(path, data, off, "rule %q: a rule name has letters, digits and '_' only", name)
		}
		var args string
		if err := json.Unmarshal(v, &args); err != nil || v[0] != '"' {
			return nil, posErr(path, data, off, "rule %q: the value must be a string of create-overlay arguments", name)
		}
		req, err := parseRule(args)
		if err != nil {
			return nil, posErr(path, data, off, "rule %q: %v", name, err)
		}
		rules[name] = req
	}
	return rules, nil
}

// parseRule parses create-overlay arguments without -v and name.
func parseRule(args string) (CreateOverlayRequest, error) {
	var req CreateOverlayRequest
	var props []string
	var vnetid string
	fs := pflag.NewFlagSet("rule", pflag.ContinueOnError)
	fs.SetOutput(new(bytes.Buffer))
	fs.StringVarP(&req.Encap, "encap", "e", "", "")
	fs.StringVarP(&req.Search, "search", "s", "", "")
	fs.StringArrayVarP(&props, "prop", "p", nil, "")
	fs.StringVarP(&vnetid, "vnetid", "v", "", "")
	if err := fs.Parse(strings.Fields(args)); err != nil {
		if errors.Is(err, pflag.ErrHelp) {
			// pflag's "help requested" says nothing about the rule.
			return req, fmt.Errorf("-h/--help is not a create-overlay argument; a rule gives -e, -s and -p only")
		}
		return req, err
	}
	switch {
	case vnetid != "":
		return req, fmt.Errorf("-v is not allowed: the vnetid comes from the VNIC's <rule>/<vnetid>")
	case fs.NArg() > 0:
		return req, fmt.Errorf("unexpected %q: rules give no overlay name", fs.Arg(0))
	case req.Encap == "":
		return req, fmt.Errorf("missing -e <encap>")
	case req.Search == "":
		return req, fmt.Errorf("missing -s <search>")
	}
	for _, p := range props {
		for _, kv := range strings.Split(p, ",") {
			k, v, ok := strings.Cut(kv, "=")
			if !ok || k == "" {
				return req, fmt.Errorf("invalid property assignment %q: expected <prop>=<value>", kv)
			}
			req.Props = append(req.Props, Assignment{Name: k, Value: v})
		}
	}
	return req, nil
}

func posErr(path string, data []byte, off int, format string, a ...any) error {
	off = min(max(off, 0), len(data))
	line := 1 + bytes.Count(data[:off], []byte{'\n'})
	col := off - bytes.LastIndexByte(data[:off], '\n')
	return fmt.Errorf("%s:%d:%d: %s", path, line, col, fmt.Sprintf(format, a...))
}

// SetRulesPath sets where create-vnic -l <rule>/<vnetid> finds its rules.
// The file is read on each use, so edits apply without a restart.
func (m *Manager) SetRulesPath(path string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.rulesPath = path
}

// overlayFromRule returns the overlay a <rule>/<vnetid> reference names,
// creating it from the rule if it does not exist yet (as SmartOS's
// statechange does at zone boot). An existing overlay is used as it is,
// even if the rule changed since.
func (m *Manager) overlayFromRule(ref string) (*overlay, error) {
	sm := ruleRef.FindStringSubmatch(ref)
	if sm == nil {
		return nil, notFound("overlay %s does not exist (and is not a <rule>/<vnetid> reference)", ref)
	}
	name := sm[1] + sm[2]
	if ov, ok := m.overlays[name]; ok {
		return ov, nil
	}
	if m.rulesPath == "" {
		return nil, fmt.Errorf("%s names overlay rule %s, but overlayd has no rules file (--rules)", ref, sm[1])
	}
	rules, err := LoadRules(m.rulesPath)
	if err != nil {
		return nil, err
	}
	req, ok := rules[sm[1]]
	if !ok {
		return nil, notFound("%s names overlay rule %s, which %s does not define", ref, sm[1], m.rulesPath)
	}
	req.Name, req.VNetID = name, sm[2]
	if err := checkName("overlay", name, MaxOverlayName); err != nil {
		return nil, err
	}
	if err := m.createOverlay(req, 0, m.saved.Defaults, nil); err != nil {
		return nil, fmt.Errorf("overlay %s from rule %s: %w", name, sm[1], err)
	}
	ov := m.overlays[name]
	ov.log.Info("overlay created from a rule", "rule", sm[1], "rules", m.rulesPath)
	m.keepOverlay(ov)
	if err := m.save(); err != nil {
		return ov, fmt.Errorf("overlay %s was created from rule %s but %v", name, sm[1], err)
	}
	return ov, nil
}
