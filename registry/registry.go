// Package registry is the by-name plugin registry behind encap.Register
// and search.Register: plugins add themselves from init, and the core
// finds them by the name an operator types.
package registry

import (
	"fmt"
	"sort"
	"sync"
)

// Registry maps names to plugins of one kind.
type Registry[T any] struct {
	kind string
	mu   sync.RWMutex
	m    map[string]T
}

// New returns an empty registry; kind names the plugins in panics.
func New[T any](kind string) *Registry[T] {
	return &Registry[T]{kind: kind, m: map[string]T{}}
}

// Register adds a plugin. A duplicate name is a programming error and
// panics.
func (r *Registry[T]) Register(name string, v T) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, dup := r.m[name]; dup {
		panic(fmt.Sprintf("%s plugin %q registered twice", r.kind, name))
	}
	r.m[name] = v
}

// Lookup returns the plugin with that name.
func (r *Registry[T]) Lookup(name string) (T, bool) {
	r.mu.RLock()
	defer r.mu.RUnlock()
	v, ok := r.m[name]
	return v, ok
}

// Names returns the registered names, sorted.
func (r *Registry[T]) Names() []string {
	r.mu.RLock()
	defer r.mu.RUnlock()
	names := make([]string, 0, len(r.m))
	for n := range r.m {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}
