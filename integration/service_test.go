package integration

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"overlaynet/netlab"
)

// TestOverlayRules: with an overlay_rules.json of two rules,
// create-vnic -l rule/42 creates the overlay rule42 from the rule and the
// VNIC on it; a bad rules file gives a precise error.
func TestOverlayRules(t *testing.T) {
	mainPassOnly(t)
	l := newLab(t)
	h1, _, err := l.TwoHosts()
	must(t, err)
	rules := filepath.Join(l.Dir, "overlay_rules.json")
	mapPath := filepath.Join(l.Dir, "lab.json")
	must(t, os.WriteFile(mapPath, []byte(`{}`), 0o644))
	must(t, os.WriteFile(rules, []byte(fmt.Sprintf(`{
  "sdc_overlay": "-e vxlan -s direct -p vxlan/listen_ip=%s -p direct/dest_ip=%s,direct/dest_port=4789 -p mtu=1450",
  "lab": "-e vxlan -p vxlan/listen_ip=%s,vxlan/listen_port=4790 -s files -p files/config=%s -p mtu=1400"
}`, netlab.Host1IP, netlab.Host2IP, netlab.Host1IP, mapPath)), 0o644))
	d, err := l.StartDaemon(h1, "--rules", rules)
	must(t, err)
	_, err = d.Adm("create-vnic", "-l", "sdc_overlay/42", "vn1")
	must(t, err)
	_, err = d.Adm("create-vnic", "-l", "sdc_overlay/42", "vn2") // reuses the overlay
	must(t, err)
	_, err = d.Adm("create-vnic", "-l", "lab/7", "vn3")
	must(t, err)
	out, err := d.Adm("show-vnic", "-p", "-o", "link,over,mtu")
	must(t, err)
	if want := "vn1:sdc_overlay42:1450\nvn2:sdc_overlay42:1450\nvn3:lab7:1400\n"; out != want {
		t.Errorf("show-vnic:\n%s\nwant:\n%s", out, want)
	}
	props, err := d.Adm("show-overlay", "-p", "-o", "property,value", "lab7")
	must(t, err)
	for _, want := range []string{"vnetid:7", "search:files", "vxlan/listen_port:4790"} {
		if !strings.Contains(props, want) {
			t.Errorf("lab7 lacks %s:\n%s", want, props)
		}
	}
	// Errors: an unknown rule; a bad rules file, precisely located.
	if _, err := d.Adm("create-vnic", "-l", "nosuch/1", "vn4"); err == nil || !strings.Contains(err.Error(), "nosuch") {
		t.Errorf("unknown rule: %v", err)
	}
	must(t, os.WriteFile(rules, []byte("{\n  \"a\": \"-e vxlan -s direct -v 4\"\n}\n"), 0o644))
	_, err = d.Adm("create-vnic", "-l", "a/1", "vn4")
	if err == nil || !strings.Contains(err.Error(), rules+":2:3:") || !strings.Contains(err.Error(), "-v is not allowed") {
		t.Errorf("rule with -v: %v", err)
	}
	must(t, os.WriteFile(rules, []byte("{\n  \"a\": \"-e vxlan\",\n}\n"), 0o644))
	_, err = d.Adm("create-vnic", "-l", "a/1", "vn4")
	if err == nil || !strings.Contains(err.Error(), rules+":3:1:") {
		t.Errorf("malformed rules file: %v", err)
	}
	if _, err := d.Adm("show-vnic", "vn4"); err == nil {
		t.Error("a failed create-vnic left a VNIC")
	}
}

// TestMetrics: the metrics endpoint, scraped before and after traffic,
// shows the counters moving.
func TestMetrics(t *testing.T) {
	mainPassOnly(t)
	need(t, "ping")
	l := newLab(t)
	h1, h2, err := l.TwoHosts()
	must(t, err)
	d1, err := l.StartDaemon(h1, "--metrics", "127.0.0.1:9790")
	must(t, err)
	d2, err := l.StartDaemon(h2)
	must(t, err)
	must(t, d1.DirectOverlay("ov0", 42, netlab.Host1IP, netlab.Host2IP))
	must(t, d2.DirectOverlay("ov0", 42, netlab.Host2IP, netlab.Host1IP))
	for i, d := range []*netlab.Daemon{d1, d2} {
		_, err := d.Adm("create-vnic", "-l", "ov0", fmt.Sprintf("vnic%d", i+1))
		must(t, err)
	}
	g1, err := d1.Guest("g1", "vnic1", "10.9.0.1/24")
	must(t, err)
	_, err = d2.Guest("g2", "vnic2", "10.9.0.2/24")
	must(t, err)

	scrape := func() string {
		t.Helper()
		var body string
		// The socket must be made on the thread inside h1, so no
		// http.Client (it dials from goroutines of its own).
		must(t, h1.Do(func() error {
			c, err := net.DialTimeout("tcp", "127.0.0.1:9790", 5*time.Second)
			if err != nil {
				return err
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(5 * time.Second))
			fmt.Fprintf(c, "GET /metrics HTTP/1.0\r\nHost: 127.0.0.1\r\n\r\n")
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				return err
			}
			defer resp.Body.Close()
			b, err := io.ReadAll(resp.Body)
			body = string(b)
			return err
		}))
		return body
	}
	value := func(body, series string) float64 {
		t.Helper()
		m := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(series) + ` (\S+)$`).FindStringSubmatch(body)
		if m == nil {
			t.Fatalf("no series %s in:\n%s", series, body)
		}
		v, _ := strconv.ParseFloat(m[1], 64)
		return v
	}
	before := scrape()
	must(t, g1.PingAll("10.9.0.2", 5))
	after := scrape()
	for _, series := range []string{
		`overlayd_overlay_total{counter="encapsulated",overlay="ov0"}`,
		`overlayd_overlay_total{counter="decapsulated",overlay="ov0"}`,
		`overlayd_overlay_total{counter="in-frames",overlay="ov0"}`,
		`overlayd_listener_packets_total{listen="198.18.0.1:4789"}`,
	} {
		if b, a := value(before, series), value(after, series); a < b+5 {
			t.Errorf("%s went from %v to %v over 5 pings", series, b, a)
		}
	}
	if v := value(after, `overlayd_overlay_degraded{overlay="ov0"}`); v != 0 {
		t.Errorf("degraded %v", v)
	}
	for _, want := range []string{"overlayd_overlay_lookup_latency_seconds_bucket", `overlayd_overlay_drops_total{overlay="ov0",reason="mtu"} 0`} {
		if !strings.Contains(after, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}
