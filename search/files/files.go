// Package files is the files search plugin: a dynamic plugin whose map of
// MAC -> underlay destination (plus the addresses to answer ARP and NDP
// with, and DHCP redirections) comes from a JSON file in the illumos
// overlay_files(5) format. Unlike illumos, the file is reread when it
// changes and on request, without restarting anything: only the entries
// that changed leave the target table, a bad file leaves the previous map
// in force and marks the overlay DEGRADED with the file's line and
// column, and a good file clears that again.
package files

import (
	"context"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
	"overlaynet/search"
)

// PropConfig names the file.
const PropConfig = "files/config"

func init() {
	search.Register(&search.Plugin{
		Name: "files",
		Mode: search.Dynamic,
		Props: func(encap.DestType) []prop.Desc {
			return []prop.Desc{{Name: PropConfig, Type: prop.String, Perm: prop.ReadWrite, Required: true,
				Check: checkAbsolute, Help: "absolute path of the JSON file mapping MACs to hosts"}}
		},
		New: newInstance,
	})
}

func checkAbsolute(v string) error {
	if !filepath.IsAbs(v) {
		return fmt.Errorf("must be an absolute path")
	}
	return nil
}

// settle is how long to wait after a change event before reading, so that
// an editor's write-then-rename lands as one reload.
const settle = 50 * time.Millisecond

type instance struct {
	path     string
	needPort bool
	host     search.Host
	log      *slog.Logger

	mu sync.RWMutex
	m  *Map

	reloadMu sync.Mutex // one reload at a time
	watcher  *fsnotify.Watcher
	done     chan struct{}
}

func newInstance(cfg search.Config) (search.Instance, error) {
	if cfg.Dest&^(encap.DestIP|encap.DestPort) != 0 {
		return nil, fmt.Errorf("files plugin cannot supply a %s destination", cfg.Dest)
	}
	return &instance{path: cfg.Props.Get(PropConfig), needPort: cfg.Dest&encap.DestPort != 0,
		host: cfg.Host, log: cfg.Log}, nil
}

// Start loads the file, failing when it cannot (there is no previous map
// to fall back on), and starts watching it.
func (in *instance) Start() error {
	m, err := in.load()
	if err != nil {
		return err
	}
	in.m = m
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("watch %s: %w", in.path, err)
	}
	// Watch the directory: editors and config managers replace files
	// by renaming a new one over them, which a watch on the file misses.
	if err := w.Add(filepath.Dir(in.path)); err != nil {
		w.Close()
		return fmt.Errorf("watch %s: %w", filepath.Dir(in.path), err)
	}
	in.watcher, in.done = w, make(chan struct{})
	go in.watch()
	in.log.Info("files: map loaded", "path", in.path, "entries", len(m.Entries))
	return nil
}

// Stop implements search.Instance.
func (in *instance) Stop() {
	if in.watcher != nil {
		in.watcher.Close()
		<-in.done
	}
}

func (in *instance) watch() {
	defer close(in.done)
	var timer <-chan time.Time
	for {
		select {
		case ev, ok := <-in.watcher.Events:
			if !ok {
				return
			}
			if filepath.Clean(ev.Name) == filepath.Clean(in.path) && ev.Op&(fsnotify.Write|fsnotify.Create|fsnotify.Rename|fsnotify.Remove) != 0 {
				timer = time.After(settle)
			}
		case err, ok := <-in.watcher.Errors:
			if !ok {
				return
			}
			in.log.Warn("files: watching the file failed; use refresh-overlay after changes", "path", in.path, "err", err)
		case <-timer:
			timer = nil
			in.Refresh()
		}
	}
}

func (in *instance) load() (*Map, error) {
	data, err := os.ReadFile(in.path)
	if err != nil {
		return nil, fmt.Errorf("files/config: %w", err)
	}
	m, err := Parse(in.path, data, in.needPort)
	if err != nil {
		return nil, err
	}
	for _, w := range m.Warnings {
		in.log.Warn("files: " + w)
	}
	return m, nil
}

// Refresh rereads the file. On success the new map replaces the old and
// only the MACs whose entries changed are invalidated; on failure the old
// map stays and the overlay is DEGRADED until a good file is read.
func (in *instance) Refresh() error {
	in.reloadMu.Lock()
	defer in.reloadMu.Unlock()
	m, err := in.load()
	if err != nil {
		in.host.Degrade(fmt.Sprintf("%v (previous map kept)", err))
		return err
	}
	in.mu.Lock()
	old := in.m
	in.m = m
	in.mu.Unlock()
	changed := 0
	for mac := range old.Entries {
		if _, ok := m.Entries[mac]; !ok {
			in.host.Invalidate(mac)
			changed++
		}
	}
	for mac, e := range m.Entries {
		oe, ok := old.Entries[mac]
		switch {
		case !ok || oe.Dest != e.Dest:
			// New or moved: install the answer at once (which also
			// replaces an "unknown" remembered for it).
			in.host.Learn(answer(mac, e))
			changed++
		case oe.ARP != e.ARP || oe.NDP != e.NDP || oe.DHCPProxy != e.DHCPProxy:
			// The destination stands: only what is new.
			a := answer(mac, e)
			a.Dest = encap.Dest{}
			in.host.Learn(a)
		}
	}
	in.host.Restore()
	in.log.Info("files: map reloaded", "path", in.path, "entries", len(m.Entries), "changed", changed)
	return nil
}

func (in *instance) current() *Map {
	in.mu.RLock()
	defer in.mu.RUnlock()
	return in.m
}

// Preload implements search.Preloader: every entry of the map is learnt
// up front.
func (in *instance) Preload() {
	for mac, e := range in.current().Entries {
		in.host.Learn(answer(mac, e))
	}
}

// answer is what an entry says about its MAC.
func answer(mac ether.MAC, e Entry) search.Answer {
	a := search.Answer{MAC: mac, Dest: e.Dest}
	for _, ip := range []netip.Addr{e.ARP, e.NDP} {
		if ip.IsValid() {
			a.IPs = append(a.IPs, ip)
		}
	}
	if e.HasDHCP {
		a.DHCPServer = e.DHCPProxy
	}
	return a
}

// Lookup implements search.DynamicInstance.
func (in *instance) Lookup(_ context.Context, _ uint16, mac ether.MAC) (encap.Dest, error) {
	if e, ok := in.current().Entries[mac]; ok {
		return e.Dest, nil
	}
	return encap.Dest{}, search.ErrNotFound
}

// ResolveIP implements search.IPResolver.
func (in *instance) ResolveIP(_ context.Context, _ uint16, ip netip.Addr) (ether.MAC, error) {
	if mac, ok := in.current().ResolveIP(ip); ok {
		return mac, nil
	}
	return ether.MAC{}, search.ErrNotFound
}

// DHCPServer implements search.DHCPResolver.
func (in *instance) DHCPServer(_ context.Context, _ uint16, client ether.MAC) (ether.MAC, error) {
	if e, ok := in.current().Entries[client]; ok && e.HasDHCP {
		return e.DHCPProxy, nil
	}
	return ether.MAC{}, search.ErrNotFound
}
