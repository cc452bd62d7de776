package api

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"strconv"
	"strings"
	"time"

	"overlaynet/ether"
	"overlaynet/portolan/store"
)

// Server serves the admin API over a store.
type Server struct {
	Store store.Store
	// Token authenticates requests. Writes always need it (none are
	// served when it is empty); reads need it unless OpenReads is set.
	Token     string
	OpenReads bool
	Log       *slog.Logger
}

// maxBody bounds a request body: the largest is a host with its sources.
const maxBody = 64 << 10

// requestTimeout bounds one request's store work.
const requestTimeout = 30 * time.Second

// Handler returns the API's HTTP handler.
func (s *Server) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/hosts", s.read(s.hosts))
	mux.HandleFunc("PUT /v1/hosts/{id}", s.write(s.putHost))
	mux.HandleFunc("DELETE /v1/hosts/{id}", s.write(s.removeHost))
	mux.HandleFunc("GET /v1/vnics", s.read(s.vnics))
	mux.HandleFunc("PUT /v1/vnics/{vnetid}/{mac}", s.write(s.addVNIC))
	mux.HandleFunc("POST /v1/vnics/{vnetid}/{mac}/move", s.write(s.moveVNIC))
	mux.HandleFunc("DELETE /v1/vnics/{vnetid}/{mac}", s.write(s.removeVNIC))
	return mux
}

type handler func(ctx context.Context, r *http.Request) (any, error)

func (s *Server) read(h handler) http.HandlerFunc  { return s.serve(h, !s.OpenReads) }
func (s *Server) write(h handler) http.HandlerFunc { return s.serve(h, true) }

func (s *Server) serve(h handler, auth bool) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if auth {
			if status, msg := s.authorize(r); status != 0 {
				if status == http.StatusUnauthorized {
					w.Header().Set("WWW-Authenticate", `Bearer realm="portolan"`)
				}
				reply(w, status, errorBody{msg})
				return
			}
		}
		ctx, cancel := context.WithTimeout(r.Context(), requestTimeout)
		defer cancel()
		out, err := h(ctx, r)
		if err != nil {
			status := statusOf(err)
			if status == http.StatusInternalServerError && s.Log != nil {
				s.Log.Error("api: request failed", "method", r.Method, "path", r.URL.Path, "err", err)
			}
			reply(w, status, errorBody{err.Error()})
			return
		}
		if r.Method != http.MethodGet && s.Log != nil {
			s.Log.Info("api: change made", "method", r.Method, "path", r.URL.Path, "from", r.RemoteAddr)
		}
		if out == nil {
			w.WriteHeader(http.StatusNoContent)
			return
		}
		reply(w, http.StatusOK, out)
	}
}

// authorize returns 0 for a request with the token, else the status and
// message to refuse it with.
func (s *Server) authorize(r *http.Request) (int, string) {
	if s.Token == "" {
		return http.StatusForbidden, "this server takes no authenticated requests (it was started without a token)"
	}
	given, ok := strings.CutPrefix(r.Header.Get("Authorization"), "Bearer ")
	if !ok {
		return http.StatusUnauthorized, "missing token: send Authorization: Bearer <token>"
	}
	if subtle.ConstantTimeCompare([]byte(given), []byte(s.Token)) != 1 {
		return http.StatusForbidden, "wrong token"
	}
	return 0, ""
}

type errorBody struct {
	Error string `json:"error"`
}

func reply(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	json.NewEncoder(w).Encode(v)
}

// statusOf maps a store or input error to its HTTP status.
func statusOf(err error) int {
	switch {
	case errors.Is(err, ErrInvalid):
		return http.StatusBadRequest
	case errors.Is(err, store.ErrNotFound), errors.Is(err, store.ErrUnknownHost):
		return http.StatusNotFound
	case errors.Is(err, store.ErrExists), errors.Is(err, store.ErrInUse):
		return http.StatusConflict
	case errors.Is(err, context.DeadlineExceeded):
		return http.StatusGatewayTimeout
	}
	return http.StatusInternalServerError
}

// decode reads a JSON body into v, refusing unknown fields.
func decode(r *http.Request, v any) error {
	d := json.NewDecoder(io.LimitReader(r.Body, maxBody))
	d.DisallowUnknownFields()
	if err := d.Decode(v); err != nil {
		return invalid("request body: %v", err)
	}
	return nil
}

func (s *Server) hosts(ctx context.Context, _ *http.Request) (any, error) {
	hs, err := s.Store.Hosts(ctx)
	if err != nil {
		return nil, err
	}
	srcs, err := s.Store.Sources(ctx)
	if err != nil {
		return nil, err
	}
	out := []HostInfo{}
	for _, h := range hs {
		info := HostInfo{ID: h.ID, IP: h.IP.String(), Port: h.Port}
		for _, a := range srcs[h.ID] {
			info.Sources = append(info.Sources, a.String())
		}
		out = append(out, info)
	}
	return out, nil
}

func (s *Server) putHost(ctx context.Context, r *http.Request) (any, error) {
	var req HostRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Port == 0 {
		req.Port = DefaultPort
	}
	h, srcs, err := ParseHost(r.PathValue("id"), req.IP, req.Port, req.Sources)
	if err != nil {
		return nil, err
	}
	return nil, s.Store.SetHost(ctx, h, srcs)
}

func (s *Server) removeHost(ctx context.Context, r *http.Request) (any, error) {
	return nil, s.Store.RemoveHost(ctx, r.PathValue("id"))
}

func (s *Server) vnics(ctx context.Context, r *http.Request) (any, error) {
	var vnetid uint32
	all := true
	if q := r.URL.Query().Get("vnetid"); q != "" {
		n, err := strconv.ParseUint(q, 10, 32)
		if err != nil || n > MaxVNetID {
			return nil, invalid("vnetid %q is not a number from 0 to %d", q, MaxVNetID)
		}
		vnetid, all = uint32(n), false
	}
	vs, err := s.Store.VNICs(ctx, vnetid, all)
	if err != nil {
		return nil, err
	}
	out := []VNICInfo{}
	for _, v := range vs {
		info := VNICInfo{VNetID: v.VNetID, MAC: ether.Short(v.MAC), VLAN: v.VLAN, Host: v.Host}
		for _, a := range v.IPs {
			info.IPs = append(info.IPs, a.String())
		}
		out = append(out, info)
	}
	return out, nil
}

// key reads the network and MAC of a VNIC path.
func key(r *http.Request) (uint32, ether.MAC, error) {
	n, err := strconv.ParseUint(r.PathValue("vnetid"), 10, 32)
	if err != nil {
		return 0, ether.MAC{}, invalid("vnetid %q is not a number from 0 to %d", r.PathValue("vnetid"), MaxVNetID)
	}
	mac, err := ParseVNICKey(uint32(n), r.PathValue("mac"))
	return uint32(n), mac, err
}

func (s *Server) addVNIC(ctx context.Context, r *http.Request) (any, error) {
	vnetid, mac, err := key(r)
	if err != nil {
		return nil, err
	}
	var req VNICRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	v, err := ParseVNIC(vnetid, ether.Short(mac), req.Host, req.IPs, req.VLAN)
	if err != nil {
		return nil, err
	}
	return nil, s.Store.AddVNIC(ctx, v)
}

func (s *Server) moveVNIC(ctx context.Context, r *http.Request) (any, error) {
	vnetid, mac, err := key(r)
	if err != nil {
		return nil, err
	}
	var req MoveRequest
	if err := decode(r, &req); err != nil {
		return nil, err
	}
	if req.Host == "" {
		return nil, invalidField("host", ": missing")
	}
	return nil, s.Store.MoveVNIC(ctx, vnetid, mac, req.Host)
}

func (s *Server) removeVNIC(ctx context.Context, r *http.Request) (any, error) {
	vnetid, mac, err := key(r)
	if err != nil {
		return nil, err
	}
	return nil, s.Store.RemoveVNIC(ctx, vnetid, mac)
}
