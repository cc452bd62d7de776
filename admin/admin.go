// Package admin is overlayd's administration API: one JSON request and one
// JSON reply per connection on a Unix socket. The server side dispatches to
// the overlay core; the client side is what overlayadm uses. Requests and
// replies are the overlay package's types, unchanged.
package admin

import (
	"encoding/json"
)

// DefaultSocket is where overlayd listens unless told otherwise.
const DefaultSocket = "/run/overlayd/overlayd.sock"

// SocketEnv names the environment variable overlayadm reads the socket
// path from when no --socket flag is given.
const SocketEnv = "OVERLAYD_SOCKET"

// Method names.
const (
	MethodCreateOverlay = "create-overlay"
	MethodDeleteOverlay = "delete-overlay"
	MethodSetProps      = "set-linkprop"
	MethodCreateVNIC    = "create-vnic"
	MethodDeleteVNIC    = "delete-vnic"
	MethodShowOverlay   = "show-overlay"
	MethodShowVNIC      = "show-vnic"
	MethodShowTargets   = "show-targets"
	MethodShowStats     = "show-stats"
	MethodShowListeners = "show-listeners"
	MethodModify        = "modify-overlay"
	MethodRefresh       = "refresh-overlay"
	MethodShowDefaults  = "show-defaults"
	MethodSetDefaults   = "set-default"
	MethodResetDefaults = "reset-default"
)

// Request is what a client sends.
type Request struct {
	Method string          `json:"method"`
	Params json.RawMessage `json:"params,omitempty"`
}

// Reply is what the server answers. Error is empty on success.
type Reply struct {
	Result   json.RawMessage `json:"result,omitempty"`
	Error    string          `json:"error,omitempty"`
	NotFound bool            `json:"not_found,omitempty"`
}

// NameParams names one object; Name may be empty for "all". Temporary,
// for deletions, deletes the running object only.
type NameParams struct {
	Name      string `json:"name,omitempty"`
	Temporary bool   `json:"temporary,omitempty"`
}

// ShowVNICParams selects VNICs.
type ShowVNICParams struct {
	Overlay string `json:"overlay,omitempty"`
	Name    string `json:"name,omitempty"`
}
