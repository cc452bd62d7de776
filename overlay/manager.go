// Package overlay is the control-plane core: overlays with their
// properties and plugin instances, VNICs, and the state operators see.
// It drives a datapath.DataPath and never touches frames itself.
package overlay

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"overlaynet/datapath"
	"overlaynet/encap"
	"overlaynet/ether"
	"overlaynet/prop"
	"overlaynet/search"
	"overlaynet/state"
	"overlaynet/underlayns"
)

// ErrNotFound is matched (errors.Is) by errors about objects that do not
// exist.
var ErrNotFound = errors.New("not found")

type notFoundError struct{ msg string }

func (e *notFoundError) Error() string        { return e.msg }
func (e *notFoundError) Is(target error) bool { return target == ErrNotFound }

func notFound(format string, a ...any) error {
	return &notFoundError{msg: fmt.Sprintf(format, a...)}
}

// Manager holds every overlay and VNIC of one overlayd. Its methods are
// safe for concurrent use; they are serialised by one lock, since
// configuration changes are rare and must not interleave.
type Manager struct {
	log *slog.Logger
	// dps are the data paths by name; new overlays use defaultDP unless
	// their datapath property says otherwise.
	dps       map[string]datapath.DataPath
	defaultDP string

	mu       sync.Mutex
	overlays map[string]*overlay
	vnics    map[string]*vnic
	nextID   uint64

	// state is where the persistent configuration is saved (nil: not
	// saved); saved is that configuration, which may hold objects that
	// are not live (deleted with -t, or failing to come back).
	state *state.Dir
	saved state.Config

	// rulesPath is the SmartOS overlay_rules.json, "" for none.
	rulesPath string
}

type overlay struct {
	name      string
	temporary bool
	id        uint64
	props     *prop.Set
	enc       encap.Plugin
	sp        *search.Plugin
	inst      search.Instance
	dp        datapath.Overlay
	vnics     map[string]*vnic
	engine    *engine
	log       *slog.Logger
	// site marks the properties whose values came from a site default
	// at creation (show-overlay's SOURCE site), until set otherwise.
	site map[string]bool

	// Plugins report trouble from their own goroutines, so the state
	// they change has its own lock rather than the manager's.
	smu           sync.Mutex
	degraded      string
	degradedSince time.Time
}

type vnic struct {
	name        string
	overlay     *overlay
	mac         ether.MAC
	vlan        uint16
	explicitMTU int // set with -p mtu=, 0 when it follows the overlay's
	// keptMTU is the MTU its interface kept when it could not follow the
	// overlay's (datapath.MTUError), 0 when it has the one it should.
	keptMTU   int
	noSpoof   bool
	temporary bool
}

// NewManager returns a manager driving the data paths dps, by name; new
// overlays use the one called def unless their datapath property says
// otherwise. The manager owns them: Close closes them. A def that is not
// in dps is a programming error and panics.
func NewManager(log *slog.Logger, dps map[string]datapath.DataPath, def string) *Manager {
	if dps[def] == nil {
		panic(fmt.Sprintf("overlay.NewManager: default data path %q not among %v", def, sortedKeys(dps)))
	}
	return &Manager{log: log, dps: dps, defaultDP: def,
		overlays: map[string]*overlay{}, vnics: map[string]*vnic{}, nextID: 1}
}

// CreateOverlay creates an overlay. On any error nothing is left behind.
func (m *Manager) CreateOverlay(req CreateOverlayRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := checkName("overlay", req.Name, MaxOverlayName); err != nil {
		return err
	}
	if _, dup := m.overlays[req.Name]; dup {
		return fmt.Errorf("overlay %s already exists", req.Name)
	}
	if err := m.createOverlay(req, 0, m.saved.Defaults, nil); err != nil {
		return fmt.Errorf("overlay %s: %w", req.Name, err)
	}
	if req.Temporary {
		return nil
	}
	m.keepOverlay(m.overlays[req.Name])
	if err := m.save(); err != nil {
		return fmt.Errorf("overlay %s was created but %v: it will not come back after a restart", req.Name, err)
	}
	return nil
}

// createOverlay creates an overlay with the given varpd/id, or the next
// free one when id is 0. A new overlay takes the site defaults (site) of
// its properties that req does not set; a restored one has its values
// already, and fromSite says which came from site defaults.
func (m *Manager) createOverlay(req CreateOverlayRequest, id uint64, site map[string]string, fromSite []string) error {
	if id == 0 {
		id = m.nextID
	}
	enc, ok := encap.Lookup(req.Encap)
	if !ok {
		return fmt.Errorf("unknown encapsulation plugin %q (available: %s)", req.Encap, strings.Join(encap.Names(), ", "))
	}
	sp, ok := search.Lookup(req.Search)
	if !ok {
		return fmt.Errorf("unknown search plugin %q (available: %s)", req.Search, strings.Join(search.Names(), ", "))
	}
	props := overlayProps(enc, sp, m.defaultDP, sortedKeys(m.dps))
	props.SetCanonical(PropEncap, enc.Name())
	props.SetCanonical(PropSearch, sp.Name)
	// The data path and the underlay's namespace are chosen at creation
	// only, so they are read-only after.
	var rest []Assignment
	for _, a := range req.Props {
		if a.Name == PropDataPath || a.Name == PropUnderlayNetNS {
			if err := props.Set(a.Name, a.Value); err != nil {
				return err
			}
			continue
		}
		rest = append(rest, a)
	}
	req.Props = rest
	if req.VNetID == "" {
		return fmt.Errorf("missing required virtual network id (-v)")
	}
	if err := props.Set(PropVNetID, req.VNetID); err != nil {
		return err
	}
	for _, a := range req.Props {
		if a.Name == PropVNetID {
			return fmt.Errorf("property vnetid is given with -v, not -p")
		}
	}
	marks, err := applySiteDefaults(props, site, req.Props)
	if err != nil {
		return err
	}
	for _, name := range fromSite {
		marks[name] = true
	}
	if err := applyAssignments(props, req.Props, sp.Name); err != nil {
		return err
	}
	if missing := props.Missing(); len(missing) > 0 {
		return missingError(missing)
	}
	if err := m.checkUnique(req.Name, enc, props); err != nil {
		return err
	}
	ov := &overlay{name: req.Name, temporary: req.Temporary, id: id, props: props,
		enc: enc, sp: sp, vnics: map[string]*vnic{}, site: marks,
		log: m.log.With("overlay", req.Name)}
	ov.engine = newEngine(ov.log)
	props.SetCanonical(PropVarpdID, strconv.FormatUint(ov.id, 10))
	inst, err := startPlugin(ov, props)
	if err != nil {
		return err
	}
	cfg, err := dataConfig(ov, props, inst)
	if err != nil {
		inst.Stop()
		return err
	}
	dpName := props.Get(PropDataPath)
	dp, ok := m.dps[dpName]
	if !ok {
		inst.Stop()
		return fmt.Errorf("property datapath: %q is not available in this overlayd", dpName)
	}
	if err := m.checkPort(req.Name, dpName, enc.Name(), cfg.Underlay.Path(), cfg.Listen.Port()); err != nil {
		inst.Stop()
		return err
	}
	dpo, err := dp.CreateOverlay(cfg)
	if err != nil {
		inst.Stop()
		return err
	}
	ov.inst, ov.dp = inst, dpo
	ov.engine.attach(dpo)
	ov.engine.setInstance(inst)
	if p, ok := inst.(search.Preloader); ok {
		p.Preload()
	}
	m.nextID = max(m.nextID, id+1)
	m.overlays[req.Name] = ov
	ov.log.Info("overlay created", "encap", enc.Name(), "search", sp.Name,
		"vnetid", cfg.VNetID, "listen", cfg.Listen.String(), "temporary", req.Temporary)
	return nil
}

// checkUnique enforces the illumos rule: one overlay per (encapsulation,
// vnetid) on a host, whatever the listen address.
func (m *Manager) checkUnique(self string, enc encap.Plugin, props *prop.Set) error {
	vnetid := props.Uint(PropVNetID)
	for _, o := range m.overlays {
		if o.name != self && o.enc.Name() == enc.Name() && o.props.Uint(PropVNetID) == vnetid {
			return fmt.Errorf("vnetid %d is already used by overlay %s (a host holds one %s overlay per vnetid)", vnetid, o.name, enc.Name())
		}
	}
	return nil
}

func startPlugin(ov *overlay, props *prop.Set) (search.Instance, error) {
	inst, err := ov.sp.New(search.Config{Props: props, Dest: ov.enc.Dest(),
		VNetID: uint32(props.Uint(PropVNetID)), Log: ov.log.With("search", ov.sp.Name), Host: ov})
	if err != nil {
		return nil, fmt.Errorf("search plugin %s: %w", ov.sp.Name, err)
	}
	if err := inst.Start(); err != nil {
		return nil, fmt.Errorf("search plugin %s: %w", ov.sp.Name, err)
	}
	return inst, nil
}

// dataConfig derives the data path's view of an overlay.
func dataConfig(ov *overlay, props *prop.Set, inst search.Instance) (datapath.OverlayConfig, error) {
	listen, err := ov.enc.Listen(props)
	if err != nil {
		return datapath.OverlayConfig{}, err
	}
	ns, err := underlayns.Get(props.Get(PropUnderlayNetNS))
	if err != nil {
		return datapath.OverlayConfig{}, fmt.Errorf("%s: %w", PropUnderlayNetNS, err)
	}
	cfg := datapath.OverlayConfig{
		Name:     ov.name,
		VNetID:   uint32(props.Uint(PropVNetID)),
		Encap:    ov.enc,
		Listen:   listen,
		MTU:      int(props.Uint(PropMTU)),
		Underlay: ns,
	}
	if pi, ok := inst.(search.PointInstance); ok {
		p := pi.Point()
		if err := checkFamilies(listen.Addr(), p.IP); err != nil {
			return cfg, err
		}
		cfg.Point = &p
	} else if gi, ok := inst.(search.GroupInstance); ok {
		group, ageing, max := gi.Group()
		if listen.Addr().IsUnspecified() {
			return cfg, fmt.Errorf("a multicast overlay joins its group on the interface of its listen address: give an address, not %s", listen.Addr())
		}
		if group.Is4() != listen.Addr().Unmap().Is4() {
			return cfg, fmt.Errorf("multicast group %s and listen address %s are not of one family", group, listen.Addr())
		}
		cfg.Group = &datapath.GroupConfig{Dest: encap.Dest{IP: group, Port: listen.Port()}, Ageing: ageing, MaxLearned: max}
	} else {
		cfg.Handler = ov.engine
		_, cfg.Floods = inst.(search.FloodInstance)
	}
	return cfg, nil
}

// checkFamilies refuses a destination the listen socket cannot reach: an
// IPv4 socket cannot send to IPv6 and the reverse. An unspecified "::"
// listen address serves both.
func checkFamilies(listen, dest netip.Addr) error {
	if listen.IsUnspecified() && listen.Is6() {
		return nil
	}
	if listen.Is4() != dest.Is4() {
		fam := func(a netip.Addr) string {
			if a.Is4() {
				return "IPv4"
			}
			return "IPv6"
		}
		return fmt.Errorf("destination %s is %s but the listen address %s is %s; use addresses of one family",
			dest, fam(dest), listen, fam(listen))
	}
	return nil
}

// DeleteOverlay deletes an overlay that has no VNICs. With temporary set
// only the running overlay goes: it comes back at the next start.
func (m *Manager) DeleteOverlay(name string, temporary bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ov, err := m.overlay(name)
	if err != nil {
		if !temporary && m.forgetOverlay(name) {
			// Not running (deleted with -t, or it failed to come back)
			// but saved: deleting it is forgetting it.
			return m.save()
		}
		return err
	}
	if len(ov.vnics) > 0 {
		return fmt.Errorf("overlay %s still has VNICs (%s); delete them first", name, strings.Join(sortedKeys(ov.vnics), ", "))
	}
	if d := ov.engine.data().caps.Delete; d != nil {
		d.Delete() // objects that outlive Close go too
	} else {
		ov.dp.Close()
	}
	ov.inst.Stop()
	ov.engine.setInstance(nil)
	delete(m.overlays, name)
	ov.log.Info("overlay deleted", "temporary", temporary)
	if !temporary && m.forgetOverlay(name) {
		if err := m.save(); err != nil {
			return fmt.Errorf("overlay %s was deleted but %v: it will come back after a restart", name, err)
		}
	}
	return nil
}

// SetProps changes read-write properties of an overlay, or of a VNIC
// when no overlay has that name. All of them take effect, or none.
func (m *Manager) SetProps(req SetPropsRequest) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	ov, err := m.overlay(req.Name)
	if err != nil {
		if v, ok := m.vnics[req.Name]; ok {
			return m.setVNICProps(v, req)
		}
		return notFound("overlay %s does not exist (nor a VNIC of that name)", req.Name)
	}
	if err := m.setProps(ov, req); err != nil {
		return fmt.Errorf("overlay %s: %w", req.Name, err)
	}
	return nil
}

func (m *Manager) setProps(ov *overlay, req SetPropsRequest) error {
	var err error
	if len(req.Props) == 0 {
		return fmt.Errorf("no property to set")
	}
	props := ov.props.Clone()
	if err := applyAssignments(props, req.Props, ov.sp.Name); err != nil {
		return err
	}
	if missing := props.Missing(); len(missing) > 0 {
		return missingError(missing)
	}
	if err := m.checkUnique(ov.name, ov.enc, props); err != nil {
		return err
	}
	newMTU := int(props.Uint(PropMTU))
	for _, v := range ov.vnics {
		if v.explicitMTU > newMTU {
			return fmt.Errorf("VNIC %s has mtu %d, above the new overlay mtu %d; lower or delete it first", v.name, v.explicitMTU, newMTU)
		}
	}
	// A new plugin instance when a plugin property or the vnetid (which
	// the plugin looks up in) changed, so a plugin never sees its
	// configuration change under it, and no answer for the old network
	// stays.
	inst := ov.inst
	searchChanged := props.Uint(PropVNetID) != ov.props.Uint(PropVNetID)
	for _, a := range req.Props {
		if strings.HasPrefix(a.Name, ov.sp.Name+"/") {
			searchChanged = true
		}
	}
	if searchChanged {
		if inst, err = startPlugin(ov, props); err != nil {
			return err
		}
	}
	cfg, err := dataConfig(ov, props, inst)
	if err == nil {
		err = ov.dp.Update(cfg)
	}
	// Some VNICs kept the old MTU: the change is made, and the operator
	// is told which did not follow (after the save, below).
	var mtuErr *datapath.MTUError
	if errors.As(err, &mtuErr) {
		err = nil
	}
	if err != nil {
		if searchChanged {
			inst.Stop()
		}
		return err
	}
	if searchChanged {
		ov.engine.setInstance(inst)
		ov.inst.Stop()
		ov.inst = inst
		if w, ok := inst.(search.VNICWatcher); ok {
			for _, v := range ov.vnics {
				w.VNICUp(v.vlan, v.mac)
			}
		}
		// Answers of the old configuration may be wrong now.
		ov.engine.flushTargets()
		if p, ok := inst.(search.Preloader); ok {
			p.Preload()
		}
	}
	mtuChanged := props.Uint(PropMTU) != ov.props.Uint(PropMTU)
	ov.props = props
	for _, a := range req.Props {
		delete(ov.site, a.Name) // the operator's now
		ov.log.Info("property set", "prop", a.Name, "value", props.Get(a.Name))
	}
	if mtuChanged {
		kept := map[string]int{}
		if mtuErr != nil {
			for _, v := range mtuErr.VNICs {
				if !v.Device {
					kept[v.VNIC] = v.Kept
				}
			}
		}
		for _, v := range ov.vnics {
			if v.explicitMTU == 0 {
				v.keptMTU = kept[v.name]
			}
		}
	}
	if !ov.temporary {
		m.keepOverlay(ov)
		if err := m.save(); err != nil {
			return fmt.Errorf("the properties were set but %v: the old values come back after a restart", err)
		}
	}
	if mtuErr != nil {
		return fmt.Errorf("mtu set to %d, but %w", mtuErr.MTU, mtuErr)
	}
	return nil
}

// setVNICProps changes a VNIC's properties: protection, live.
func (m *Manager) setVNICProps(v *vnic, req SetPropsRequest) error {
	if len(req.Props) == 0 {
		return fmt.Errorf("VNIC %s: no property to set", v.name)
	}
	noSpoof := v.noSpoof
	for _, a := range req.Props {
		if a.Name != PropProtection {
			return fmt.Errorf("VNIC %s: property %s cannot be changed on a VNIC (settable: protection); delete and create the VNIC to change it", v.name, a.Name)
		}
		props := vnicProps(v.overlay.mtuValue())
		if err := props.Set(a.Name, a.Value); err != nil {
			return fmt.Errorf("VNIC %s: %w", v.name, err)
		}
		noSpoof = props.Get(PropProtection) == ProtectionMACNoSpoof
	}
	if noSpoof == v.noSpoof {
		return nil
	}
	if err := v.overlay.dp.SetNoSpoof(v.name, noSpoof); err != nil {
		return fmt.Errorf("VNIC %s: %w", v.name, err)
	}
	v.noSpoof = noSpoof
	v.overlay.log.Info("VNIC property set", "vnic", v.name, "prop", PropProtection, "value", v.protection())
	if !v.temporary {
		m.keepVNIC(v)
		if err := m.save(); err != nil {
			return fmt.Errorf("VNIC %s: the property was set but %v: the old value comes back after a restart", v.name, err)
		}
	}
	return nil
}

func (ov *overlay) mtuValue() int { return int(ov.props.Uint(PropMTU)) }

// CreateVNIC creates a VNIC on an overlay.
func (m *Manager) CreateVNIC(req CreateVNICRequest) (VNICInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	req.adopt = false
	return m.createVNICLocked(req)
}

func (m *Manager) createVNICLocked(req CreateVNICRequest) (VNICInfo, error) {
	if err := checkName("VNIC", req.Name, MaxVNICName); err != nil {
		return VNICInfo{}, err
	}
	if _, dup := m.vnics[req.Name]; dup {
		return VNICInfo{}, fmt.Errorf("VNIC %s already exists", req.Name)
	}
	if req.Overlay == "" {
		return VNICInfo{}, fmt.Errorf("missing overlay (-l) for VNIC %s", req.Name)
	}
	ov, err := m.overlay(req.Overlay)
	if err != nil && strings.Contains(req.Overlay, "/") {
		ov, err = m.overlayFromRule(req.Overlay)
	}
	if err != nil {
		return VNICInfo{}, err
	}
	if req.VLAN > 4094 {
		return VNICInfo{}, fmt.Errorf("VNIC %s: VLAN id %d out of range 1-4094", req.Name, req.VLAN)
	}
	var mac ether.MAC
	switch req.MAC {
	case "", "auto", "random":
		mac = m.freeMAC(ov, req.VLAN)
	default:
		if mac, err = ether.ParseMAC(req.MAC); err != nil {
			return VNICInfo{}, fmt.Errorf("VNIC %s: %w", req.Name, err)
		}
		if !ether.IsUnicast(mac) || ether.IsZero(mac) {
			return VNICInfo{}, fmt.Errorf("VNIC %s: MAC address %s is not a unicast address", req.Name, req.MAC)
		}
	}
	props := vnicProps(int(ov.props.Uint(PropMTU)))
	for _, a := range req.Props {
		if _, ok := props.Desc(a.Name); !ok {
			return VNICInfo{}, fmt.Errorf("VNIC %s: unknown property %s (settable: mtu, protection)", req.Name, a.Name)
		}
		if err := props.Set(a.Name, a.Value); err != nil {
			return VNICInfo{}, fmt.Errorf("VNIC %s: %w", req.Name, err)
		}
	}
	// A VNIC cannot outlive its overlay: on a temporary overlay it is
	// temporary too.
	v := &vnic{name: req.Name, overlay: ov, mac: mac, vlan: req.VLAN, temporary: req.Temporary || ov.temporary}
	if _, set := props.Value(PropMTU); set {
		v.explicitMTU = int(props.Uint(PropMTU))
	}
	v.noSpoof = props.Get(PropProtection) == ProtectionMACNoSpoof
	if err := ov.dp.AddVNIC(datapath.VNICConfig{Name: v.name, MAC: v.mac, VLAN: v.vlan, MTU: v.explicitMTU,
		NoSpoof: v.noSpoof, Persistent: !v.temporary, Adopt: req.adopt}); err != nil {
		return VNICInfo{}, fmt.Errorf("VNIC %s: %w", req.Name, err)
	}
	ov.vnics[v.name] = v
	m.vnics[v.name] = v
	if w, ok := ov.inst.(search.VNICWatcher); ok {
		w.VNICUp(v.vlan, v.mac)
	}
	ov.log.Info("VNIC created", "vnic", v.name, "mac", ether.Short(v.mac), "vlan", v.vlan, "temporary", v.temporary)
	if !v.temporary {
		m.keepVNIC(v)
		if err := m.save(); err != nil {
			return v.info(), fmt.Errorf("VNIC %s was created but %v: it will not come back after a restart", v.name, err)
		}
	}
	return v.info(), nil
}

// freeMAC picks a random MAC not yet used on the overlay's VLAN.
func (m *Manager) freeMAC(ov *overlay, vlan uint16) ether.MAC {
	for {
		mac := ether.RandomMAC(ether.DefaultPrefix)
		used := false
		for _, v := range ov.vnics {
			if v.vlan == vlan && v.mac == mac {
				used = true
			}
		}
		if !used {
			return mac
		}
	}
}

// DeleteVNIC deletes a VNIC. With temporary set only the running VNIC
// goes: it comes back at the next start.
func (m *Manager) DeleteVNIC(name string, temporary bool) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	v, ok := m.vnics[name]
	if !ok {
		if !temporary && m.forgetVNIC(name) {
			return m.save()
		}
		return notFound("VNIC %s does not exist", name)
	}
	if err := v.overlay.dp.RemoveVNIC(name); err != nil {
		return err
	}
	delete(v.overlay.vnics, name)
	delete(m.vnics, name)
	if w, ok := v.overlay.inst.(search.VNICWatcher); ok {
		w.VNICDown(v.vlan, v.mac)
	}
	v.overlay.log.Info("VNIC deleted", "vnic", name, "temporary", temporary)
	if !temporary && m.forgetVNIC(name) {
		if err := m.save(); err != nil {
			return fmt.Errorf("VNIC %s was deleted but %v: it will come back after a restart", name, err)
		}
	}
	return nil
}

// Overlays describes the named overlay, or all overlays sorted by name.
func (m *Manager) Overlays(name string) ([]OverlayInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ovs, err := m.pick(name)
	if err != nil {
		return nil, err
	}
	out := make([]OverlayInfo, 0, len(ovs))
	for _, ov := range ovs {
		info := OverlayInfo{Name: ov.name, Temporary: ov.temporary, Status: StatusOnline,
			VNICs: sortedKeys(ov.vnics)}
		ov.smu.Lock()
		if ov.degraded != "" {
			info.Status = StatusDegraded
			info.Details = ov.degraded
			info.DegradedSince = ov.degradedSince.UTC().Format(time.RFC3339)
		}
		ov.smu.Unlock()
		for _, d := range ov.props.Descs() {
			info.Props = append(info.Props, PropInfo{Name: d.Name, Perm: d.Perm.String(),
				Required: d.Required, Value: ov.props.Get(d.Name), Default: d.Default,
				Possible: d.PossibleText(), Source: ov.source(d)})
		}
		out = append(out, info)
	}
	return out, nil
}

// VNICs describes VNICs: the named one, or those of one overlay, or all.
func (m *Manager) VNICs(overlayName, name string) ([]VNICInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if overlayName != "" {
		if _, err := m.overlay(overlayName); err != nil {
			return nil, err
		}
	}
	if name != "" {
		v, ok := m.vnics[name]
		if !ok {
			return nil, notFound("VNIC %s does not exist", name)
		}
		if overlayName != "" && v.overlay.name != overlayName {
			return nil, notFound("VNIC %s is not on overlay %s", name, overlayName)
		}
		return []VNICInfo{v.info()}, nil
	}
	var out []VNICInfo
	for _, n := range sortedKeys(m.vnics) {
		v := m.vnics[n]
		if overlayName == "" || v.overlay.name == overlayName {
			out = append(out, v.info())
		}
	}
	return out, nil
}

// Targets lists target table entries of the named overlay, or of all.
func (m *Manager) Targets(name string) ([]TargetInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ovs, err := m.pick(name)
	if err != nil {
		return nil, err
	}
	var out []TargetInfo
	for _, ov := range ovs {
		if pi, ok := ov.inst.(search.PointInstance); ok {
			out = append(out, TargetInfo{Overlay: ov.name, Target: "*:*:*:*:*:*", Destination: pi.Point().String()})
			continue
		}
		if gi, ok := ov.inst.(search.GroupInstance); ok {
			// Where frames without an entry go.
			group, _, _ := gi.Group()
			if listen, err := ov.enc.Listen(ov.props); err == nil {
				out = append(out, TargetInfo{Overlay: ov.name, Target: "*:*:*:*:*:*", Destination: encap.Dest{IP: group, Port: listen.Port()}.String()})
			}
		}
		ts := ov.dp.Targets()
		sort.Slice(ts, func(i, j int) bool { return bytes.Compare(ts[i].MAC[:], ts[j].MAC[:]) < 0 })
		for _, t := range ts {
			dest := t.Dest.String()
			switch t.State {
			case datapath.TargetDrop:
				dest = "drop"
			case datapath.TargetPending:
				dest = "pending"
			}
			out = append(out, TargetInfo{Overlay: ov.name, Target: ether.Short(t.MAC), Destination: dest})
		}
	}
	return out, nil
}

// Stats returns the counters of the named overlay, or of all.
func (m *Manager) Stats(name string) ([]StatsInfo, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	ovs, err := m.pick(name)
	if err != nil {
		return nil, err
	}
	var out []StatsInfo
	for _, ov := range ovs {
		out = append(out, StatsInfo{Overlay: ov.name, Stats: append(overlayStats(ov.dp.Stats()), ov.engine.stats()...)})
	}
	return out, nil
}

// Listeners describes the underlay listen addresses.
func (m *Manager) Listeners() []ListenerInfo {
	var out []ListenerInfo
	var ls []datapath.Listener
	for _, dp := range m.dps {
		ls = append(ls, dp.Listeners()...)
	}
	for _, l := range ls {
		sort.Strings(l.Overlays)
		out = append(out, ListenerInfo{Listen: l.Addr.String(), NetNS: l.NetNS, Overlays: l.Overlays, Stats: convStats(l.Stats)})
	}
	sort.Slice(out, func(i, j int) bool {
		if out[i].NetNS != out[j].NetNS {
			return out[i].NetNS < out[j].NetNS
		}
		return out[i].Listen < out[j].Listen
	})
	return out
}

// Close lets go of every overlay and VNIC (Overlay.Close: persistent
// VNICs and kernel objects stay for the next overlayd), then closes the
// data paths, leaving the configuration as it is.
func (m *Manager) Close() {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, ov := range m.overlays {
		ov.dp.Close()
		ov.inst.Stop()
	}
	m.overlays = map[string]*overlay{}
	m.vnics = map[string]*vnic{}
	for _, name := range sortedKeys(m.dps) {
		if c, ok := m.dps[name].(io.Closer); ok {
			if err := c.Close(); err != nil {
				m.log.Warn("cannot close the data path", "datapath", name, "err", err)
			}
		}
	}
}

func (m *Manager) overlay(name string) (*overlay, error) {
	ov, ok := m.overlays[name]
	if !ok {
		return nil, notFound("overlay %s does not exist", name)
	}
	return ov, nil
}

func (m *Manager) pick(name string) ([]*overlay, error) {
	if name != "" {
		ov, err := m.overlay(name)
		if err != nil {
			return nil, err
		}
		return []*overlay{ov}, nil
	}
	var out []*overlay
	for _, n := range sortedKeys(m.overlays) {
		out = append(out, m.overlays[n])
	}
	return out, nil
}

// mtu is the VNIC's MTU: its own, or its overlay's.
func (v *vnic) mtu() int {
	if v.explicitMTU != 0 {
		return v.explicitMTU
	}
	return int(v.overlay.props.Uint(PropMTU))
}

// protection is the VNIC's protection property.
func (v *vnic) protection() string {
	if v.noSpoof {
		return ProtectionMACNoSpoof
	}
	return ProtectionNone
}

func (v *vnic) info() VNICInfo {
	info := VNICInfo{Name: v.name, Overlay: v.overlay.name, MAC: ether.Short(v.mac), VLAN: v.vlan, MTU: v.mtu(),
		Protection: v.protection(), Temporary: v.temporary}
	if v.keptMTU != 0 && v.keptMTU != info.MTU {
		// What the interface has, not what it should have.
		info.MTU, info.WantMTU = v.keptMTU, info.MTU
	}
	return info
}

// overlayStats lists every overlay counter in its order, those the data
// path did not report marked unavailable.
func overlayStats(s datapath.Stats) []Stat {
	have := make(map[string]uint64, len(s))
	for _, st := range s {
		have[st.Name] = st.Value
	}
	out := make([]Stat, 0, len(datapath.OverlayCounters))
	for _, c := range datapath.OverlayCounters {
		v, ok := have[c.String()]
		out = append(out, Stat{Name: c.String(), Value: v, Unavailable: !ok})
	}
	return out
}

func convStats(s datapath.Stats) []Stat {
	out := make([]Stat, len(s))
	for i, st := range s {
		out[i] = Stat{Name: st.Name, Value: st.Value}
	}
	return out
}

func sortedKeys[V any](m map[string]V) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

// Latency is a lookup latency histogram: for each bound, how many lookups
// took at most that long.
type Latency struct {
	Bounds []time.Duration
	Counts []uint64
	Total  uint64
	Sum    time.Duration
}

// OverlayMetrics is what a metrics exporter reports about one overlay.
type OverlayMetrics struct {
	Name     string
	Degraded bool
	Stats    []Stat
	Lookups  Latency
}

// Metrics returns every overlay's counters, status and lookup latency
// histogram (with the given bucket bounds).
func (m *Manager) Metrics(bounds []time.Duration) []OverlayMetrics {
	m.mu.Lock()
	defer m.mu.Unlock()
	var out []OverlayMetrics
	for _, n := range sortedKeys(m.overlays) {
		ov := m.overlays[n]
		om := OverlayMetrics{Name: n, Stats: append(convStats(ov.dp.Stats()), convStats(ov.engine.ctr.Snapshot(datapath.LookupCounters...))...)}
		ov.smu.Lock()
		om.Degraded = ov.degraded != ""
		ov.smu.Unlock()
		om.Lookups.Bounds = bounds
		om.Lookups.Counts, om.Lookups.Total, om.Lookups.Sum = ov.engine.latency.cumulative(bounds)
		out = append(out, om)
	}
	return out
}

// checkPort refuses a listen port that another data path listens on:
// each data path opens its own sockets (the kernel's vxlan devices bind
// the port on every address), so two cannot share one. How overlays on
// one data path share a port is that data path's rule, enforced by its
// CreateOverlay.
func (m *Manager) checkPort(self, dpName, encName, netns string, port uint16) error {
	if port == 0 {
		return nil // straight over IP (NVGRE): no port to share
	}
	for _, name := range sortedKeys(m.dps) {
		if name == dpName {
			continue
		}
		for _, l := range m.dps[name].Listeners() {
			if l.Addr.Port() != port || l.NetNS != netns {
				continue // another port, or another namespace's
			}
			others := slices.DeleteFunc(slices.Clone(l.Overlays), func(o string) bool { return o == self })
			if len(others) == 0 {
				continue
			}
			sort.Strings(others)
			return fmt.Errorf("UDP port %d is held by overlay %s on the %s data path; a %s overlay cannot share it (choose another %s/listen_port)",
				port, others[0], name, dpName, encName)
		}
	}
	return nil
}
