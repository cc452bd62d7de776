package state

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// Child processes: the test binary re-runs itself with helperEnv set to
// one of these modes (the standard helper-process pattern).
const (
	helperEnv    = "STATE_TEST_HELPER"
	helperDirEnv = "STATE_TEST_DIR"
	helperSave   = "save" // Open the directory and Save cfgB
	helperOpen   = "open" // Open the directory, report the error
	exitOpenFail = 3      // helperOpen: Open failed (as expected)
	exitFault    = 86     // the exit code of OVERLAYD_FAULT=after-write
	exitUnexpect = 4      // a helper got somewhere it should not
	helperRunArg = "-test.run=^TestHelperProcess$"
)

var (
	cfgA = Config{
		Overlays: []Overlay{
			{Name: "net0", Encap: "vxlan", Search: "direct", ID: 1, Props: map[string]string{
				"vnetid": "42", "mtu": "1400", "vxlan/listen_ip": "192.0.2.1",
				"direct/dest_ip": "192.0.2.2", "direct/dest_port": "4789"}},
			{Name: "lab", Encap: "vxlan", Search: "files", ID: 3, Props: map[string]string{
				"vnetid": "7", "files/config": "/etc/overlayd/lab.json"}},
		},
		VNICs: []VNIC{
			{Name: "vn0", Overlay: "net0", MAC: "2:8:20:1:2:3"},
			{Name: "vn1", Overlay: "lab", MAC: "2:8:20:4:5:6", VLAN: 12, MTU: 1300},
		},
	}
	cfgB = Config{
		Overlays: []Overlay{
			{Name: "other", Encap: "vxlan", Search: "direct", ID: 9, Props: map[string]string{"vnetid": "99"}},
		},
		VNICs: []VNIC{{Name: "vn9", Overlay: "other", MAC: "2:8:20:9:9:9", VLAN: 4094}},
	}
)

// TestHelperProcess is not a test: it is the child side of the tests
// that need another process.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for other tests")
	}
	dir := os.Getenv(helperDirEnv)
	d, err := Open(dir)
	switch mode {
	case helperOpen:
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(exitOpenFail)
		}
		os.Exit(0)
	case helperSave:
		if err != nil {
			os.Stderr.WriteString(err.Error())
			os.Exit(exitUnexpect)
		}
		err := d.Save(cfgB)
		// With OVERLAYD_FAULT=after-write Save never returns.
		os.Stderr.WriteString("Save returned: " + errString(err))
		os.Exit(exitUnexpect)
	}
	os.Exit(exitUnexpect)
}

func errString(err error) string {
	if err == nil {
		return "<nil>"
	}
	return err.Error()
}

// runHelper runs the test binary as a child in mode on dir, with extra
// environment, and returns its exit code and stderr.
func runHelper(t *testing.T, mode, dir string, env ...string) (int, string) {
	t.Helper()
	cmd := exec.Command(os.Args[0], helperRunArg)
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDirEnv+"="+dir)
	cmd.Env = append(cmd.Env, env...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	var ee *exec.ExitError
	switch {
	case err == nil:
		return 0, stderr.String()
	case errors.As(err, &ee):
		return ee.ExitCode(), stderr.String()
	}
	t.Fatalf("running helper: %v", err)
	return 0, ""
}

func open(t *testing.T, path string) *Dir {
	t.Helper()
	d, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { d.Close() })
	return d
}

func save(t *testing.T, d *Dir, c Config) {
	t.Helper()
	if err := d.Save(c); err != nil {
		t.Fatalf("Save: %v", err)
	}
}

func readFile(t *testing.T, p string) []byte {
	t.Helper()
	b, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func writeFile(t *testing.T, p string, b []byte) {
	t.Helper()
	if err := os.WriteFile(p, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

func exists(p string) bool {
	_, err := os.Stat(p)
	return err == nil
}

func TestOpenCreatesAndLocks(t *testing.T) {
	path := filepath.Join(t.TempDir(), "a", "state")
	d, err := Open(path)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	if d.Path() != path {
		t.Errorf("Path() = %q, want %q", d.Path(), path)
	}
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if !fi.IsDir() || fi.Mode().Perm() != 0o700 {
		t.Errorf("state directory mode %v, want a directory with 0700", fi.Mode())
	}
	pid := strconv.Itoa(os.Getpid())
	if got := strings.TrimSpace(string(readFile(t, filepath.Join(path, lockName)))); got != pid {
		t.Errorf("lock file holds %q, want our pid %s", got, pid)
	}

	// flock locks belong to the open file description, so a second Open
	// in this process conflicts with the first.
	d2, err := Open(path)
	if err == nil {
		d2.Close()
		t.Fatal("second Open of a locked directory succeeded")
	}
	for _, want := range []string{"already using state directory " + path, "(pid " + pid + ")"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("second Open: %q does not contain %q", err, want)
		}
	}

	// Another process is kept out too (the real case: a second overlayd).
	code, stderr := runHelper(t, helperOpen, path)
	if code != exitOpenFail {
		t.Fatalf("child Open of a locked directory: exit %d, want %d (stderr %q)", code, exitOpenFail, stderr)
	}
	if !strings.Contains(stderr, "already using state directory") || !strings.Contains(stderr, "(pid "+pid+")") {
		t.Errorf("child Open: %q does not name the directory's user and our pid", stderr)
	}

	if err := d.Close(); err != nil {
		t.Fatalf("Close: %v", err)
	}
	d3, err := Open(path)
	if err != nil {
		t.Fatalf("Open after Close: %v", err)
	}
	d3.Close()
	if code, stderr := runHelper(t, helperOpen, path); code != 0 {
		t.Fatalf("child Open after Close: exit %d (stderr %q)", code, stderr)
	}
}

func TestLoadEmpty(t *testing.T) {
	d := open(t, t.TempDir())
	c, notes, err := d.Load()
	if err != nil || len(notes) != 0 {
		t.Fatalf("Load of an empty directory: notes %q, err %v", notes, err)
	}
	if !reflect.DeepEqual(c, Config{}) {
		t.Errorf("Load of an empty directory = %+v, want an empty Config", c)
	}
}

func TestSaveLoadRoundTrip(t *testing.T) {
	path := t.TempDir()
	d := open(t, path)
	save(t, d, cfgA)
	for _, name := range []string{fileName, prevName} {
		fi, err := os.Stat(filepath.Join(path, name))
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", name, fi.Mode())
		}
	}
	if !bytes.Equal(readFile(t, filepath.Join(path, fileName)), readFile(t, filepath.Join(path, prevName))) {
		t.Error("state.json and its mirror differ after Save")
	}
	for _, tmp := range []string{fileName + ".tmp", prevName + ".tmp"} {
		if exists(filepath.Join(path, tmp)) {
			t.Errorf("%s left after a successful Save", tmp)
		}
	}
	got, notes, err := d.Load()
	if err != nil || len(notes) != 0 {
		t.Fatalf("Load: notes %q, err %v", notes, err)
	}
	if !reflect.DeepEqual(got, cfgA) {
		t.Errorf("Load = %+v\nwant %+v", got, cfgA)
	}

	// A second save replaces the first; a new Dir on the same directory
	// (after Close) reads it.
	save(t, d, cfgB)
	d.Close()
	d2 := open(t, path)
	got, notes, err = d2.Load()
	if err != nil || len(notes) != 0 {
		t.Fatalf("Load: notes %q, err %v", notes, err)
	}
	if !reflect.DeepEqual(got, cfgB) {
		t.Errorf("Load = %+v\nwant %+v", got, cfgB)
	}
}

// damaged sets up a directory whose mirror holds cfgA and whose state.json
// held cfgB, and returns the Dir, the bytes state.json had and the paths.
func damaged(t *testing.T) (d *Dir, cur []byte, curPath, prevPath string) {
	t.Helper()
	path := t.TempDir()
	d = open(t, path)
	curPath, prevPath = filepath.Join(path, fileName), filepath.Join(path, prevName)
	save(t, d, cfgA)
	a := readFile(t, curPath)
	save(t, d, cfgB)
	writeFile(t, prevPath, a)
	return d, readFile(t, curPath), curPath, prevPath
}

// wantMirror checks that Load returns the mirror's cfgA with one note
// holding every want.
func wantMirror(t *testing.T, d *Dir, want ...string) {
	t.Helper()
	got, notes, err := d.Load()
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !reflect.DeepEqual(got, cfgA) {
		t.Errorf("Load = %+v, want the mirror's %+v", got, cfgA)
	}
	if len(notes) != 1 {
		t.Fatalf("Load notes %q, want one", notes)
	}
	for _, w := range want {
		if !strings.Contains(notes[0], w) {
			t.Errorf("note %q does not contain %q", notes[0], w)
		}
	}
}

func TestLoadTruncated(t *testing.T) {
	d, cur, curPath, prevPath := damaged(t)
	if cur[len(cur)-1] != '\n' || cur[len(cur)-2] != '}' {
		t.Fatalf("state.json does not end in \"}\\n\": %q", cur[len(cur)-2:])
	}
	// len-1 only drops the final newline: the envelope is complete and
	// checked, so it is not damage (see TestLoadWithoutFinalNewline);
	// len-2 drops the closing brace.
	for _, tc := range []struct {
		n      int
		reason string
	}{
		{0, "EOF"},
		{1, "unexpected EOF"},
		{len(cur) / 2, "unexpected EOF"},
		{len(cur) - 2, "unexpected EOF"},
	} {
		t.Run(strconv.Itoa(tc.n), func(t *testing.T) {
			writeFile(t, curPath, cur[:tc.n])
			wantMirror(t, d, "state file "+curPath+" is damaged ("+tc.reason+"); using the last good state from "+prevPath)
		})
	}
}

func TestLoadWithoutFinalNewline(t *testing.T) {
	d, cur, curPath, _ := damaged(t)
	writeFile(t, curPath, cur[:len(cur)-1])
	got, notes, err := d.Load()
	if err != nil || len(notes) != 0 {
		t.Fatalf("Load: notes %q, err %v", notes, err)
	}
	if !reflect.DeepEqual(got, cfgB) {
		t.Errorf("Load = %+v, want state.json's %+v", got, cfgB)
	}
}

func TestLoadNotJSON(t *testing.T) {
	d, _, curPath, prevPath := damaged(t)
	writeFile(t, curPath, []byte("overlays: none\n"))
	wantMirror(t, d, "state file "+curPath+" is damaged (invalid character", "using the last good state from "+prevPath)
}

// rewrite changes state.json's envelope with edit and writes it back,
// indented as Save does.
func rewrite(t *testing.T, curPath string, edit func(env *envelope)) {
	t.Helper()
	var env envelope
	if err := json.Unmarshal(readFile(t, curPath), &env); err != nil {
		t.Fatal(err)
	}
	edit(&env)
	b, err := json.MarshalIndent(env, "", "  ")
	if err != nil {
		t.Fatal(err)
	}
	writeFile(t, curPath, append(b, '\n'))
}

func TestLoadChecksumMismatch(t *testing.T) {
	t.Run("wrong sha256", func(t *testing.T) {
		d, _, curPath, prevPath := damaged(t)
		rewrite(t, curPath, func(env *envelope) {
			env.SHA256 = strings.Repeat("0", 64)
		})
		wantMirror(t, d, "state file "+curPath+" is damaged (checksum mismatch)", "using the last good state from "+prevPath)
	})
	t.Run("content changed", func(t *testing.T) {
		d, _, curPath, prevPath := damaged(t)
		rewrite(t, curPath, func(env *envelope) {
			env.Config = bytes.Replace(env.Config, []byte(`"99"`), []byte(`"98"`), 1)
		})
		wantMirror(t, d, "state file "+curPath+" is damaged (checksum mismatch)", "using the last good state from "+prevPath)
	})
	t.Run("config not an object", func(t *testing.T) {
		d, _, curPath, prevPath := damaged(t)
		rewrite(t, curPath, func(env *envelope) {
			env.Config = json.RawMessage(`[1,2]`)
			env.SHA256 = sha(env.Config)
		})
		wantMirror(t, d, "state file "+curPath+" is damaged (", "using the last good state from "+prevPath)
	})
}

func TestLoadWrongFormatOrVersion(t *testing.T) {
	for _, tc := range []struct {
		name    string
		format  string
		version int
	}{
		{"format", "overlayd-config", 1},
		{"version", "overlayd-state", 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			d, _, curPath, prevPath := damaged(t)
			rewrite(t, curPath, func(env *envelope) {
				env.Format, env.Version = tc.format, tc.version
			})
			wantMirror(t, d,
				"state file "+curPath+" has format "+strconv.Quote(tc.format)+" version "+strconv.Itoa(tc.version),
				`this overlayd reads "overlayd-state" version 1`,
				"using the last good state from "+prevPath)
		})
	}
}

func TestLoadMirrorOnly(t *testing.T) {
	d, _, curPath, _ := damaged(t)
	if err := os.Remove(curPath); err != nil {
		t.Fatal(err)
	}
	got, notes, err := d.Load()
	if err != nil || len(notes) != 0 {
		t.Fatalf("Load: notes %q, err %v", notes, err)
	}
	if !reflect.DeepEqual(got, cfgA) {
		t.Errorf("Load = %+v, want the mirror's %+v", got, cfgA)
	}
}

func TestLoadBothDamaged(t *testing.T) {
	d, cur, curPath, prevPath := damaged(t)
	writeFile(t, curPath, cur[:len(cur)/2])
	writeFile(t, prevPath, []byte("garbage"))
	got, _, err := d.Load()
	if err == nil {
		t.Fatalf("Load with both files damaged succeeded: %+v", got)
	}
	for _, want := range []string{"state file " + curPath + " is damaged", "state file " + prevPath + " is damaged", "fix or remove them"} {
		if !strings.Contains(err.Error(), want) {
			t.Errorf("Load error %q does not contain %q", err, want)
		}
	}
	if !reflect.DeepEqual(got, Config{}) {
		t.Errorf("Load returned %+v with its error", got)
	}

	// The mirror damaged with state.json missing is no better.
	os.Remove(curPath)
	if _, _, err := d.Load(); err == nil || !strings.Contains(err.Error(), prevPath) {
		t.Errorf("Load with state.json missing and the mirror damaged: %v, want an error naming %s", err, prevPath)
	}
	// state.json damaged with the mirror missing: fail, do not start empty.
	writeFile(t, curPath, cur[:len(cur)/2])
	os.Remove(prevPath)
	if _, _, err := d.Load(); err == nil || !strings.Contains(err.Error(), curPath) {
		t.Errorf("Load with state.json damaged and no mirror: %v, want an error naming %s", err, curPath)
	}
}

func TestLoadLeftoverTemporaryFiles(t *testing.T) {
	for _, names := range [][]string{{fileName + ".tmp"}, {prevName + ".tmp"}, {fileName + ".tmp", prevName + ".tmp"}} {
		t.Run(strings.Join(names, "+"), func(t *testing.T) {
			path := t.TempDir()
			d := open(t, path)
			save(t, d, cfgA)
			for _, n := range names {
				writeFile(t, filepath.Join(path, n), []byte(`{"format": "overlayd-st`))
			}
			got, notes, err := d.Load()
			if err != nil {
				t.Fatalf("Load: %v", err)
			}
			if !reflect.DeepEqual(got, cfgA) {
				t.Errorf("Load = %+v, want %+v", got, cfgA)
			}
			if len(notes) != len(names) {
				t.Fatalf("notes %q, want one per leftover file %q", notes, names)
			}
			for i, n := range names {
				p := filepath.Join(path, n)
				if !strings.Contains(notes[i], p) || !strings.Contains(notes[i], "did not finish") {
					t.Errorf("note %q does not report %s as a save that did not finish", notes[i], p)
				}
				if exists(p) {
					t.Errorf("%s was not removed", p)
				}
			}
			// Reported once: the next Load is clean.
			if _, notes, err := d.Load(); err != nil || len(notes) != 0 {
				t.Errorf("second Load: notes %q, err %v", notes, err)
			}
		})
	}
}

func TestFileIsIndentedAndReindentable(t *testing.T) {
	path := t.TempDir()
	d := open(t, path)
	save(t, d, cfgA)
	curPath := filepath.Join(path, fileName)
	data := readFile(t, curPath)
	if !bytes.Contains(data, []byte("\n  \"format\": \"overlayd-state\",\n")) ||
		!bytes.Contains(data, []byte("\n        \"name\": \"net0\",\n")) {
		t.Errorf("state.json is not indented for people:\n%s", data)
	}

	// Re-indent the configuration by hand, differently: same content, so
	// the same compact form and checksum.
	var env map[string]json.RawMessage
	if err := json.Unmarshal(data, &env); err != nil {
		t.Fatal(err)
	}
	var cfg bytes.Buffer
	if err := json.Indent(&cfg, env["config"], "\t", "    "); err != nil {
		t.Fatal(err)
	}
	hand := "{\n\t\"format\":\"overlayd-state\",  \"version\": 1,\n\t\"sha256\": " + string(env["sha256"]) +
		",\n\t\"config\": " + cfg.String() + "\n}\n"
	writeFile(t, curPath, []byte(hand))
	writeFile(t, filepath.Join(path, prevName), []byte("no mirror to fall back on"))
	got, notes, err := d.Load()
	if err != nil || len(notes) != 0 {
		t.Fatalf("Load of a re-indented file: notes %q, err %v\n%s", notes, err, hand)
	}
	if !reflect.DeepEqual(got, cfgA) {
		t.Errorf("Load of a re-indented file = %+v, want %+v", got, cfgA)
	}

	// A changed value is not a re-indentation.
	writeFile(t, curPath, []byte(strings.Replace(hand, `"net0"`, `"net1"`, 1)))
	if _, _, err := d.Load(); err == nil || !strings.Contains(err.Error(), "checksum mismatch") {
		t.Errorf("Load of an edited file: %v, want a checksum mismatch", err)
	}
}

func TestFaultAfterWrite(t *testing.T) {
	path := t.TempDir()
	curPath, prevPath := filepath.Join(path, fileName), filepath.Join(path, prevName)
	d, err := Open(path)
	if err != nil {
		t.Fatal(err)
	}
	save(t, d, cfgA)
	d.Close()
	before := readFile(t, curPath)

	code, stderr := runHelper(t, helperSave, path, FaultEnv+"=after-write")
	if code != exitFault {
		t.Fatalf("child Save with %s=after-write: exit %d, want %d (stderr %q)", FaultEnv, code, exitFault, stderr)
	}
	if !strings.Contains(stderr, FaultEnv+"=after-write") {
		t.Errorf("child stderr %q does not explain the stop", stderr)
	}
	if !bytes.Equal(readFile(t, curPath), before) {
		t.Error("state.json changed: the fault should stop Save before the rename")
	}
	if !bytes.Equal(readFile(t, prevPath), before) {
		t.Error("state.json.prev changed")
	}
	tmp := readFile(t, curPath+".tmp")
	if !bytes.Contains(tmp, []byte(`"other"`)) {
		t.Errorf("state.json.tmp does not hold the interrupted save:\n%s", tmp)
	}

	d = open(t, path)
	got, notes, err := d.Load()
	if err != nil {
		t.Fatalf("Load after the fault: %v", err)
	}
	if !reflect.DeepEqual(got, cfgA) {
		t.Errorf("Load after the fault = %+v, want the previous save %+v", got, cfgA)
	}
	if len(notes) != 1 || !strings.Contains(notes[0], curPath+".tmp") || !strings.Contains(notes[0], "did not finish") {
		t.Errorf("Load notes %q, want one reporting %s.tmp", notes, curPath)
	}
	if exists(curPath + ".tmp") {
		t.Error("state.json.tmp was not removed")
	}
}

func sha(b []byte) string {
	var compact bytes.Buffer
	if err := json.Compact(&compact, b); err != nil {
		panic(err)
	}
	sum := sha256.Sum256(compact.Bytes())
	return hex.EncodeToString(sum[:])
}

func TestMissingDirs(t *testing.T) {
	base := t.TempDir()
	want := []string{filepath.Join(base, "a", "b", "c"), filepath.Join(base, "a", "b"), filepath.Join(base, "a")}
	if got := missingDirs(filepath.Join(base, "a", "b", "c") + "/"); !slices.Equal(got, want) {
		t.Errorf("missingDirs = %q, want %q", got, want)
	}
	d, err := Open(want[0])
	if err != nil {
		t.Fatal(err)
	}
	d.Close()
	if got := missingDirs(want[0]); len(got) != 0 {
		t.Errorf("after Open, missingDirs = %q, want none", got)
	}
}
