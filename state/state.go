// Package state keeps overlayd's persistent configuration: the overlays
// and VNICs created without -t, written so that a crash at any point
// loses nothing and corrupts nothing, and read back at startup.
//
// The configuration lives in state.json inside the state directory, as a
// JSON envelope carrying a SHA-256 of its content, and is mirrored in
// state.json.prev. Each save writes a temporary file, syncs it and renames
// it over the old one, then does the same for the mirror: whenever the
// machine stops, at least one of the two files holds a complete, checked
// configuration. A lock on the directory keeps a second overlayd out.
package state

import (
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
)

// Overlay is a persistent overlay: what create-overlay was given.
type Overlay struct {
	Name   string `json:"name"`
	Encap  string `json:"encap"`
	Search string `json:"search"`
	// Props holds every property set explicitly, vnetid included.
	Props map[string]string `json:"props"`
	// ID is the overlay's varpd/id, kept so that it survives restarts.
	ID uint64 `json:"id"`
	// Site names the properties of Props that came from site defaults.
	Site []string `json:"site,omitempty"`
}

// VNIC is a persistent VNIC.
type VNIC struct {
	Name    string `json:"name"`
	Overlay string `json:"overlay"`
	MAC     string `json:"mac"`
	VLAN    uint16 `json:"vlan,omitempty"`
	MTU     int    `json:"mtu,omitempty"` // 0: the overlay's
	// Protection is the VNIC's protection property; "" is the default
	// (mac-nospoof).
	Protection string `json:"protection,omitempty"`
}

// Config is everything that is persistent.
type Config struct {
	Overlays []Overlay `json:"overlays"`
	VNICs    []VNIC    `json:"vnics"`
	// Defaults are the site's defaults of overlay properties
	// (overlayadm set-default): new overlays take them.
	Defaults map[string]string `json:"defaults,omitempty"`
	// ID is the state directory's identity (see Dir.ID), a copy of the
	// id file kept here so that the identity survives losing that file.
	// Save fills it in once ID has been called; files written before it
	// was kept have none.
	ID string `json:"id,omitempty"`
}

// envelope is the file format.
type envelope struct {
	Format  string          `json:"format"`
	Version int             `json:"version"`
	SHA256  string          `json:"sha256"`
	Config  json.RawMessage `json:"config"`
}

const (
	format   = "overlayd-state"
	version  = 1
	fileName = "state.json"
	prevName = "state.json.prev"
	lockName = "lock"
	idName   = "id"
)

// FaultEnv names an environment variable that makes Save stop the process
// at a chosen point, to test recovery from crashes: "after-write" exits
// once the new file is written and synced but before it is renamed into
// place.
const FaultEnv = "OVERLAYD_FAULT"

// Dir is an open state directory, locked against other daemons.
type Dir struct {
	path string
	lock *os.File

	mu sync.Mutex // guards id: Save may run on any goroutine
	id string     // the identity once ID has returned it, for Save to record
}

// Open creates (mode 0700) and locks the state directory. It fails, naming
// the other daemon's pid, when another overlayd holds it.
func Open(path string) (*Dir, error) {
	created := missingDirs(path)
	if err := os.MkdirAll(path, 0o700); err != nil {
		return nil, fmt.Errorf("state directory: %w", err)
	}
	// A new directory is an entry in its parent: sync the parents too, or
	// a crash soon after the first save could lose the directory itself,
	// saved file and all.
	for _, d := range created {
		if err := syncDir(filepath.Dir(d)); err != nil {
			return nil, fmt.Errorf("state directory: %w", err)
		}
	}
	f, err := os.OpenFile(filepath.Join(path, lockName), os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		return nil, fmt.Errorf("state directory lock: %w", err)
	}
	if err := syscall.Flock(int(f.Fd()), syscall.LOCK_EX|syscall.LOCK_NB); err != nil {
		if !errors.Is(err, syscall.EWOULDBLOCK) {
			// Not held by anyone: the file system cannot lock (ENOLCK,
			// EOPNOTSUPP on some network and FUSE file systems).
			f.Close()
			return nil, fmt.Errorf("state directory lock %s: %w", f.Name(), err)
		}
		pid, _ := os.ReadFile(f.Name())
		f.Close()
		who := "another overlayd"
		if p := strings.TrimSpace(string(pid)); p != "" {
			who += " (pid " + p + ")"
		}
		return nil, fmt.Errorf("%s is already using state directory %s", who, path)
	}
	f.Truncate(0)
	f.WriteAt([]byte(strconv.Itoa(os.Getpid())+"\n"), 0)
	return &Dir{path: path, lock: f}, nil
}

// ID returns the directory's identity: 16 random hexadecimal digits,
// made on the first call and kept in the file "id" from then on, and in
// state.json too (Config.ID). overlayd tags the persistent VNICs it makes
// with it, so that after a restart it takes over the ones it made and no
// other overlayd's: a VNIC outlives its daemon and moves between network
// namespaces, and another daemon on the same machine (another state
// directory) may have one of the same name.
//
// When the id file is missing or damaged, the copy in state.json (or its
// mirror) is used and the file written again, with a note saying so; only
// with no copy anywhere is a new identity made, noted unless this is a
// first start. When the id file is good but state.json does not hold the
// same identity (written by an older overlayd), state.json is saved again
// with it; a failure to do so is a note, the identity is still good.
func (d *Dir) ID() (id, note string, err error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	p := filepath.Join(d.path, idName)
	data, err := os.ReadFile(p)
	if err == nil {
		if id := strings.TrimSpace(string(data)); validID(id) {
			d.id = id
			return id, d.recordID(id), nil
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return "", "", fmt.Errorf("state directory identity: %w", err)
	}
	missing := err != nil
	problem := fmt.Sprintf("%s is damaged (%q)", p, data)
	if missing {
		problem = p + " is missing"
	}
	saved, from, anyState := d.savedID()
	switch {
	case saved != "":
		id = saved
		note = fmt.Sprintf("%s; the identity %s kept in %s is used, and %s is written again", problem, id, from, p)
	case missing && !anyState:
		// A first start: nothing was ever made under another identity.
	default:
		note = problem + "; no state file keeps the identity either, so a new one is made, and persistent VNICs made under the old one are not taken over"
	}
	if id == "" {
		var b [8]byte
		rand.Read(b[:])
		id = hex.EncodeToString(b[:])
	}
	if err := d.writeAtomic(idName, []byte(id+"\n")); err != nil {
		return "", note, fmt.Errorf("state directory identity: %w", err)
	}
	d.id = id
	if n := d.recordID(id); n != "" {
		note += "; " + n
	}
	return id, note, nil
}

// savedID returns the identity kept in state.json, or else in its mirror,
// and the file it came from; anyState reports whether either file holds a
// readable configuration at all.
func (d *Dir) savedID() (id, from string, anyState bool) {
	for _, name := range []string{fileName, prevName} {
		c, err := d.read(name)
		if err != nil {
			continue
		}
		anyState = true
		if validID(c.ID) {
			return c.ID, filepath.Join(d.path, name), true
		}
	}
	return "", "", anyState
}

// recordID saves state.json again when it holds a configuration but not
// the identity id, so that a state directory from an older overlayd gets
// its copy now rather than at the next change. A damaged or missing
// state.json is left to the next save. It returns a note on failure.
func (d *Dir) recordID(id string) string {
	c, err := d.read(fileName)
	if err != nil || c.ID == id {
		return ""
	}
	c.ID = id
	if err := d.save(c); err != nil {
		return fmt.Sprintf("the identity could not be recorded in %s (%v)", filepath.Join(d.path, fileName), err)
	}
	return ""
}

func validID(s string) bool {
	if len(s) != 16 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// Close releases the lock.
func (d *Dir) Close() error { return d.lock.Close() }

// Path returns the directory's path.
func (d *Dir) Path() string { return d.path }

// Load reads the configuration. A damaged state.json (truncated, not
// JSON, checksum mismatch) is reported in the returned notes and the
// mirror is used; a leftover temporary file from an interrupted save is
// reported and removed. With neither file present the configuration is
// empty (a first start). With both damaged Load fails: starting empty
// would throw the configuration away at the next save.
func (d *Dir) Load() (Config, []string, error) {
	var notes []string
	for _, tmp := range []string{fileName + ".tmp", prevName + ".tmp"} {
		p := filepath.Join(d.path, tmp)
		if _, err := os.Stat(p); err == nil {
			notes = append(notes, fmt.Sprintf("%s is left from a save that did not finish (overlayd stopped mid-write); the last complete state is used", p))
			os.Remove(p)
		}
	}
	cur, curErr := d.read(fileName)
	if curErr == nil {
		return cur, notes, nil
	}
	prev, prevErr := d.read(prevName)
	switch {
	case errors.Is(curErr, os.ErrNotExist) && errors.Is(prevErr, os.ErrNotExist):
		return Config{}, notes, nil
	case prevErr == nil:
		if !errors.Is(curErr, os.ErrNotExist) {
			notes = append(notes, fmt.Sprintf("%v; using the last good state from %s", curErr, filepath.Join(d.path, prevName)))
		}
		return prev, notes, nil
	case errors.Is(curErr, os.ErrNotExist):
		return Config{}, notes, prevErr
	}
	return Config{}, notes, fmt.Errorf("%v; and %v: fix or remove them to start", curErr, prevErr)
}

// read reads and checks one state file.
func (d *Dir) read(name string) (Config, error) {
	p := filepath.Join(d.path, name)
	data, err := os.ReadFile(p)
	if err != nil {
		return Config{}, err
	}
	var env envelope
	dec := json.NewDecoder(bytes.NewReader(data))
	if err := dec.Decode(&env); err != nil {
		return Config{}, fmt.Errorf("state file %s is damaged (%v)", p, err)
	}
	if env.Format != format || env.Version != version {
		return Config{}, fmt.Errorf("state file %s has format %q version %d; this overlayd reads %q version %d",
			p, env.Format, env.Version, format, version)
	}
	// The checksum covers the compact form of the configuration, so that
	// the file can be indented for people to read.
	var compact bytes.Buffer
	if err := json.Compact(&compact, env.Config); err != nil {
		return Config{}, fmt.Errorf("state file %s is damaged (%v)", p, err)
	}
	sum := sha256.Sum256(compact.Bytes())
	if hex.EncodeToString(sum[:]) != env.SHA256 {
		return Config{}, fmt.Errorf("state file %s is damaged (checksum mismatch)", p)
	}
	var c Config
	if err := json.Unmarshal(env.Config, &c); err != nil {
		return Config{}, fmt.Errorf("state file %s is damaged (%v)", p, err)
	}
	return c, nil
}

// Save writes the configuration durably: state.json, then its mirror.
// Once ID has been called, the identity it returned is saved as c.ID,
// whatever c holds.
func (d *Dir) Save(c Config) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.id != "" {
		c.ID = d.id
	}
	return d.save(c)
}

// save is Save with d.mu held.
func (d *Dir) save(c Config) error {
	cfg, err := json.Marshal(c)
	if err != nil {
		return err
	}
	sum := sha256.Sum256(cfg)
	data, err := json.MarshalIndent(envelope{Format: format, Version: version, SHA256: hex.EncodeToString(sum[:]), Config: cfg}, "", "  ")
	if err != nil {
		return err
	}
	data = append(data, '\n')
	if err := d.writeAtomic(fileName, data); err != nil {
		return err
	}
	if err := d.writeAtomic(prevName, data); err != nil {
		return &MirrorError{Err: err}
	}
	return nil
}

// MirrorError reports that the configuration was saved but its mirror
// (the fallback for a damaged state.json) was not: the change is durable.
type MirrorError struct{ Err error }

func (e *MirrorError) Error() string {
	return "the mirror of the state was not written: " + e.Err.Error()
}

// Unwrap returns the underlying error.
func (e *MirrorError) Unwrap() error { return e.Err }

// missingDirs returns path and those of its ancestors that do not exist
// yet, deepest first.
func missingDirs(path string) []string {
	var out []string
	for p := filepath.Clean(path); ; p = filepath.Dir(p) {
		if _, err := os.Stat(p); !errors.Is(err, os.ErrNotExist) {
			return out
		}
		out = append(out, p)
		if filepath.Dir(p) == p {
			return out
		}
	}
}

// syncDir flushes a directory's entries to disk.
func syncDir(path string) error {
	dir, err := os.Open(path)
	if err != nil {
		return err
	}
	defer dir.Close()
	if err := dir.Sync(); err != nil {
		return fmt.Errorf("sync %s: %w", path, err)
	}
	return nil
}

// writeAtomic replaces name with data: write a temporary file, sync it,
// rename it over name, sync the directory.
func (d *Dir) writeAtomic(name string, data []byte) error {
	p := filepath.Join(d.path, name)
	tmp := p + ".tmp"
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if _, err := f.Write(data); err != nil {
		f.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return fmt.Errorf("save state: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if os.Getenv(FaultEnv) == "after-write" && name == fileName {
		fmt.Fprintf(os.Stderr, "overlayd: %s=after-write: stopping between writing %s and renaming it\n", FaultEnv, tmp)
		os.Exit(86)
	}
	if err := os.Rename(tmp, p); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	if err := syncDir(d.path); err != nil {
		return fmt.Errorf("save state: %w", err)
	}
	return nil
}
