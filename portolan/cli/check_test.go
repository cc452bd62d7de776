package cli

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"overlaynet/portolan/index"
	"overlaynet/portolan/store"
)

func TestCheck(t *testing.T) {
	t.Parallel()
	dsn := newDSN(t)
	ok(t, dsn, "add-host", "--source", "10.0.0.9", "h1", "198.18.0.1")
	ok(t, dsn, "add-host", "h2", "fd00:100::2")
	ok(t, dsn, "add-vnic", "--vnetid", "7", "--mac", "2:8:20:0:0:1", "--host", "h1", "--ip", "10.1.0.1", "--ip", "fd00:7::1")
	ok(t, dsn, "add-vnic", "--vnetid", "7", "--mac", "2:8:20:0:0:2", "--host", "h2", "--ip", "10.1.0.2")
	ok(t, dsn, "add-vnic", "--vnetid", "8", "--mac", "2:8:20:0:0:1", "--host", "h2")

	code, out, errs := cmd(t, dsn, "check")
	if code != 0 || errs != "" || !strings.HasPrefix(out, "index matches the store at seq ") ||
		!strings.HasSuffix(out, ": 2 hosts, 3 VL2 mappings, 3 VL3 mappings\n") {
		t.Fatalf("check: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}

	// A dump taken now, compared after the store changed: what changed
	// since the dump is no difference.
	ctx := context.Background()
	st, err := store.Open(ctx, dsn)
	if err != nil {
		t.Fatal(err)
	}
	ix, err := index.Load(ctx, st, nil)
	st.Close()
	if err != nil {
		t.Fatal(err)
	}
	dump := filepath.Join(t.TempDir(), "dump")
	f, err := os.Create(dump)
	if err != nil {
		t.Fatal(err)
	}
	if err := ix.Dump(f); err != nil {
		t.Fatal(err)
	}
	f.Close()
	ok(t, dsn, "move-vnic", "--vnetid", "7", "--mac", "2:8:20:0:0:1", "--host", "h2")
	ok(t, dsn, "add-host", "h1", "198.18.0.11")
	if out := ok(t, dsn, "check", "--dump", dump); !strings.HasPrefix(out, "index matches the store at seq ") {
		t.Errorf("check --dump after changes: %q", out)
	}
	if out := ok(t, dsn, "check"); !strings.HasSuffix(out, ": 2 hosts, 3 VL2 mappings, 3 VL3 mappings\n") {
		t.Errorf("check after changes: %q", out)
	}

	// A dump that says what the store does not.
	b, err := os.ReadFile(dump)
	if err != nil {
		t.Fatal(err)
	}
	bad := strings.Replace(string(b), "vl2 8 2:8:20:0:0:1 h2\n", "vl2 8 2:8:20:0:0:1 h1\n", 1)
	bad = strings.Replace(bad, "vl3 7 10.1.0.2 2:8:20:0:0:2\n", "", 1)
	if bad == string(b) {
		t.Fatalf("the dump is not as expected:\n%s", b)
	}
	os.WriteFile(dump, []byte(bad), 0o644)
	code, out, errs = cmd(t, dsn, "check", "--dump", dump)
	if code != 1 || out != "vl2 8 2:8:20:0:0:1: index h1, store h2\nvl3 7 10.1.0.2: missing from the index (store: 2:8:20:0:0:2)\n" ||
		!strings.HasPrefix(errs, "portolan: 2 differences between the index (seq ") {
		t.Errorf("check --dump of a wrong dump: exit %d\nstdout %q\nstderr %q", code, out, errs)
	}
}

func TestCheckBadDump(t *testing.T) {
	t.Parallel()
	dsn := newDSN(t)
	dir := t.TempDir()
	fails(t, []string{"check", "--store", dsn, "--dump", filepath.Join(dir, "none")}, "no such file")
	bad := filepath.Join(dir, "bad")
	os.WriteFile(bad, []byte("seq 1\nvl2 7 2:8:20:0:0:1 h9\n"), 0o644)
	fails(t, []string{"check", "--store", dsn, "--dump", bad}, "--dump "+bad+": dump line 2: host h9 is not in the dump")
	misused(t, []string{"check", "--store", dsn, "extra"}, `unexpected operand "extra"`)
}
