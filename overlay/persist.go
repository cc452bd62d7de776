package overlay

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strconv"

	"overlaynet/datapath"
	"overlaynet/ether"
	"overlaynet/state"
)

// Restore brings back the saved configuration at startup: every overlay,
// then every VNIC, taking over the VNICs a previous overlayd left
// (persistent TAPs, wherever operators moved them). What fails to come
// back (a plugin's file missing, an address no longer configured) is
// reported and stays saved, to come back at a later start; the rest runs.
// Then every data path that can (datapath.Sweeper) removes what an
// earlier overlayd left that nothing claimed. From then on every change
// is saved in d.
func (m *Manager) Restore(d *state.Dir, cfg state.Config) []error {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state, m.saved = d, cfg
	var errs []error
	// New overlays get ids after every saved one, including those that
	// fail to come back now: they may come back later with their id.
	for _, o := range cfg.Overlays {
		m.nextID = max(m.nextID, o.ID+1)
	}
	for _, o := range cfg.Overlays {
		if _, dup := m.overlays[o.Name]; dup {
			// Only a hand-edited file does this; creating it again
			// would orphan the running one in the data path.
			errs = append(errs, fmt.Errorf("overlay %s did not come back: another saved overlay has that name", o.Name))
			continue
		}
		req := CreateOverlayRequest{Name: o.Name, Encap: o.Encap, Search: o.Search, VNetID: o.Props[PropVNetID]}
		names := make([]string, 0, len(o.Props))
		for k := range o.Props {
			names = append(names, k)
		}
		sort.Strings(names)
		for _, k := range names {
			if k != PropVNetID {
				req.Props = append(req.Props, Assignment{Name: k, Value: o.Props[k]})
			}
		}
		if err := m.createOverlay(req, o.ID, nil, o.Site); err != nil {
			errs = append(errs, fmt.Errorf("overlay %s did not come back: %w", o.Name, err))
		}
	}
	for _, v := range cfg.VNICs {
		if _, ok := m.overlays[v.Overlay]; !ok {
			errs = append(errs, fmt.Errorf("VNIC %s did not come back: its overlay %s is not running", v.Name, v.Overlay))
			continue
		}
		req := CreateVNICRequest{Name: v.Name, Overlay: v.Overlay, MAC: v.MAC, VLAN: v.VLAN, adopt: true}
		if v.MTU != 0 {
			req.Props = []Assignment{{Name: PropMTU, Value: strconv.Itoa(v.MTU)}}
		}
		if v.Protection != "" {
			req.Props = append(req.Props, Assignment{Name: PropProtection, Value: v.Protection})
		}
		if _, err := m.createVNICLocked(req); err != nil {
			errs = append(errs, fmt.Errorf("VNIC %s did not come back: %w", v.Name, err))
		}
	}
	// What an earlier overlayd left and nothing restored claimed goes.
	for _, name := range sortedKeys(m.dps) {
		if sw, ok := m.dps[name].(datapath.Sweeper); ok {
			sw.Sweep()
		}
	}
	return errs
}

// keepOverlay records a persistent overlay in the saved configuration.
func (m *Manager) keepOverlay(ov *overlay) {
	props := ov.props.Values()
	for _, k := range []string{PropEncap, PropSearch, PropVarpdID} {
		delete(props, k)
	}
	o := state.Overlay{Name: ov.name, Encap: ov.enc.Name(), Search: ov.sp.Name, Props: props, ID: ov.id,
		Site: sortedKeys(ov.site)}
	m.saved.Overlays = upsert(m.saved.Overlays, o, func(x state.Overlay) bool { return x.Name == ov.name })
}

// forgetOverlay removes an overlay, and any VNIC saved on it, from the
// saved configuration, and reports whether it was there.
func (m *Manager) forgetOverlay(name string) bool {
	var found bool
	m.saved.Overlays, found = remove(m.saved.Overlays, func(o state.Overlay) bool { return o.Name == name })
	m.saved.VNICs, _ = remove(m.saved.VNICs, func(v state.VNIC) bool { return v.Overlay == name })
	return found
}

// keepVNIC records a persistent VNIC in the saved configuration.
func (m *Manager) keepVNIC(v *vnic) {
	sv := state.VNIC{Name: v.name, Overlay: v.overlay.name, MAC: ether.Short(v.mac), VLAN: v.vlan, MTU: v.explicitMTU}
	if !v.noSpoof {
		sv.Protection = ProtectionNone // saved only when not the default
	}
	m.saved.VNICs = upsert(m.saved.VNICs, sv, func(x state.VNIC) bool { return x.Name == v.name })
}

// forgetVNIC removes a VNIC from the saved configuration and reports
// whether it was there.
func (m *Manager) forgetVNIC(name string) bool {
	var found bool
	m.saved.VNICs, found = remove(m.saved.VNICs, func(v state.VNIC) bool { return v.Name == name })
	return found
}

// upsert replaces the element same picks, or appends v.
func upsert[T any](s []T, v T, same func(T) bool) []T {
	if i := slices.IndexFunc(s, same); i >= 0 {
		s[i] = v
		return s
	}
	return append(s, v)
}

// remove deletes the elements match picks and reports whether there were
// any.
func remove[T any](s []T, match func(T) bool) ([]T, bool) {
	n := len(s)
	s = slices.DeleteFunc(s, match)
	return s, len(s) < n
}

// save writes the saved configuration, if there is a state directory.
func (m *Manager) save() error {
	if m.state == nil {
		return nil
	}
	if err := m.state.Save(m.saved); err != nil {
		var me *state.MirrorError
		if errors.As(err, &me) {
			m.log.Warn("configuration saved, but not its mirror", "dir", m.state.Path(), "err", err)
			return nil
		}
		m.log.Error("cannot save the configuration", "dir", m.state.Path(), "err", err)
		return fmt.Errorf("could not be saved (%v)", err)
	}
	return nil
}
