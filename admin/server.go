package admin

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/user"
	"path/filepath"
	"strconv"
	"time"

	"overlaynet/overlay"
)

// Server answers admin requests from the overlay core.
type Server struct {
	Manager *overlay.Manager
	Log     *slog.Logger
}

// Listen creates the admin socket at path. Only root may use it, unless
// group names a group whose members may too (mode 0660). It refuses to
// replace the socket of a running daemon.
func Listen(path, group string) (*net.UnixListener, error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, fmt.Errorf("admin socket directory: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another overlayd is already serving %s", path)
	}
	// Whatever is there is a stale socket from a daemon that died.
	os.Remove(path)
	ln, err := net.ListenUnix("unix", &net.UnixAddr{Name: path, Net: "unix"})
	if err != nil {
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	mode := os.FileMode(0o600)
	if group != "" {
		g, err := user.LookupGroup(group)
		if err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin socket group: %w", err)
		}
		gid, _ := strconv.Atoi(g.Gid)
		if err := os.Chown(path, 0, gid); err != nil {
			ln.Close()
			return nil, fmt.Errorf("admin socket %s: %w", path, err)
		}
		mode = 0o660
	}
	if err := os.Chmod(path, mode); err != nil {
		ln.Close()
		return nil, fmt.Errorf("admin socket %s: %w", path, err)
	}
	return ln, nil
}

// Serve answers connections until ctx ends or ln is closed.
func (s *Server) Serve(ctx context.Context, ln *net.UnixListener) error {
	go func() {
		<-ctx.Done()
		ln.Close()
	}()
	for {
		c, err := ln.Accept()
		if err != nil {
			if ctx.Err() != nil || errors.Is(err, net.ErrClosed) {
				return nil
			}
			return err
		}
		go s.handle(c)
	}
}

func (s *Server) handle(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	var req Request
	if err := json.NewDecoder(bufio.NewReader(c)).Decode(&req); err != nil {
		if !errors.Is(err, io.EOF) { // a bare connect is a liveness probe
			s.Log.Warn("admin: unreadable request", "err", err)
		}
		return
	}
	result, err := s.dispatch(req)
	var rep Reply
	if err != nil {
		rep.Error = err.Error()
		rep.NotFound = errors.Is(err, overlay.ErrNotFound)
		s.Log.Info("admin request failed", "method", req.Method, "err", err)
	} else if result != nil {
		rep.Result, err = json.Marshal(result)
		if err != nil {
			rep.Error = "internal error: " + err.Error()
		}
	}
	json.NewEncoder(c).Encode(rep)
}

func (s *Server) dispatch(req Request) (any, error) {
	m := s.Manager
	switch req.Method {
	case MethodCreateOverlay:
		var p overlay.CreateOverlayRequest
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return nil, m.CreateOverlay(p)
	case MethodDeleteOverlay:
		var p NameParams
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return nil, m.DeleteOverlay(p.Name, p.Temporary)
	case MethodSetProps:
		var p overlay.SetPropsRequest
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return nil, m.SetProps(p)
	case MethodCreateVNIC:
		var p overlay.CreateVNICRequest
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return m.CreateVNIC(p)
	case MethodDeleteVNIC:
		var p NameParams
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return nil, m.DeleteVNIC(p.Name, p.Temporary)
	case MethodShowOverlay:
		var p NameParams
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return m.Overlays(p.Name)
	case MethodShowVNIC:
		var p ShowVNICParams
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return m.VNICs(p.Overlay, p.Name)
	case MethodShowTargets:
		var p NameParams
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return m.Targets(p.Name)
	case MethodShowStats:
		var p NameParams
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return m.Stats(p.Name)
	case MethodShowListeners:
		return m.Listeners(), nil
	case MethodModify:
		var p overlay.ModifyRequest
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return nil, m.ModifyTargets(p)
	case MethodShowDefaults:
		return m.Defaults(), nil
	case MethodSetDefaults:
		var p overlay.SetDefaultsRequest
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return nil, m.SetDefaults(p)
	case MethodResetDefaults:
		var p overlay.ResetDefaultsRequest
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return nil, m.ResetDefaults(p)
	case MethodRefresh:
		var p NameParams
		if err := decode(req, &p); err != nil {
			return nil, err
		}
		return nil, m.Refresh(p.Name)
	}
	return nil, fmt.Errorf("unknown admin method %q", req.Method)
}

func decode(req Request, v any) error {
	if len(req.Params) == 0 {
		return nil
	}
	if err := json.Unmarshal(req.Params, v); err != nil {
		return fmt.Errorf("bad parameters for %s: %w", req.Method, err)
	}
	return nil
}
