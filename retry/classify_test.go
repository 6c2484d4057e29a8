package retry_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"syscall"
	"testing"
	"time"

	"github.com/breakwater-go/breakwater/retry"
)

// listen starts a TCP listener on a free local port, closed at cleanup.
func listen(t *testing.T) net.Listener {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatalf("listen: %v", err)
	}
	t.Cleanup(func() { ln.Close() })
	return ln
}

// serveOnce accepts one connection on a fresh listener and, once the client
// side is connected, hands the server side to handle in the background. It
// returns the client side.
func serveOnce(t *testing.T, handle func(net.Conn)) net.Conn {
	t.Helper()
	ln := listen(t)
	connected := make(chan struct{})
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		<-connected
		handle(c)
	}()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		ln.Close()
		close(connected)
		<-done
		t.Fatalf("dial: %v", err)
	}
	close(connected)
	t.Cleanup(func() { c.Close(); <-done })
	return c
}

func connRefused(t *testing.T) error {
	ln := listen(t)
	addr := ln.Addr().String()
	ln.Close()
	_, err := net.Dial("tcp", addr)
	if !errors.Is(err, syscall.ECONNREFUSED) {
		t.Fatalf("dial closed port: got %v, want ECONNREFUSED", err)
	}
	return err
}

func connReset(t *testing.T) error {
	c := serveOnce(t, func(c net.Conn) {
		_ = c.(*net.TCPConn).SetLinger(0) // close with RST
		c.Close()
	})
	_, err := c.Read(make([]byte, 1))
	if !errors.Is(err, syscall.ECONNRESET) {
		t.Fatalf("read after RST: got %v, want ECONNRESET", err)
	}
	return err
}

func eof(t *testing.T) error {
	c := serveOnce(t, func(c net.Conn) { c.Close() })
	_, err := c.Read(make([]byte, 1))
	if err != io.EOF {
		t.Fatalf("read after close: got %v, want io.EOF", err)
	}
	return fmt.Errorf("reading response: %w", err)
}

func unexpectedEOF(t *testing.T) error {
	c := serveOnce(t, func(c net.Conn) {
		_, _ = c.Write([]byte("ab"))
		c.Close()
	})
	_, err := io.ReadFull(c, make([]byte, 4))
	if err != io.ErrUnexpectedEOF {
		t.Fatalf("short read: got %v, want io.ErrUnexpectedEOF", err)
	}
	return err
}

func readTimeout(t *testing.T) error {
	c := serveOnce(t, func(c net.Conn) {
		_, _ = c.Read(make([]byte, 1)) // hold the connection open until the client closes
		c.Close()
	})
	_ = c.SetReadDeadline(time.Now().Add(-time.Second))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		t.Fatalf("read past deadline: got %v, want a net.Error with Timeout()", err)
	}
	return err
}

func attemptDeadline(t *testing.T) error {
	ctx, cancel := context.WithDeadline(context.Background(), time.Now().Add(-time.Second))
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://127.0.0.1:1/", nil)
	if err != nil {
		t.Fatal(err)
	}
	_, err = http.DefaultClient.Do(req)
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("request with expired context: got %v, want context.DeadlineExceeded", err)
	}
	return err
}

func unknownAuthority(t *testing.T) error {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	srv.Config.ErrorLog = quietLog()
	client := &http.Client{Transport: &http.Transport{}} // does not trust the test CA
	_, err := client.Get(srv.URL)
	var ua x509.UnknownAuthorityError
	if !errors.As(err, &ua) {
		t.Fatalf("GET with untrusted cert: got %v, want x509.UnknownAuthorityError", err)
	}
	return err
}

func wrongHostname(t *testing.T) error {
	srv := httptest.NewTLSServer(http.HandlerFunc(func(http.ResponseWriter, *http.Request) {}))
	t.Cleanup(srv.Close)
	srv.Config.ErrorLog = quietLog()
	pool := x509.NewCertPool()
	pool.AddCert(srv.Certificate())
	conn, err := tls.Dial("tcp", srv.Listener.Addr().String(), &tls.Config{RootCAs: pool, ServerName: "wrong.invalid"})
	if err == nil {
		conn.Close()
	}
	var he x509.HostnameError
	if !errors.As(err, &he) {
		t.Fatalf("TLS dial with wrong name: got %v, want x509.HostnameError", err)
	}
	return err
}

func notTLS(t *testing.T) error {
	ln := listen(t)
	done := make(chan struct{})
	go func() {
		defer close(done)
		c, err := ln.Accept()
		if err != nil {
			return
		}
		_, _ = c.Write([]byte("HTTP/1.1 200 OK\r\n\r\n"))
		c.Close()
	}()
	t.Cleanup(func() { <-done })
	conn, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{ServerName: "localhost"})
	if err == nil {
		conn.Close()
	}
	var rh tls.RecordHeaderError
	if !errors.As(err, &rh) {
		t.Fatalf("TLS dial to plain server: got %v (%T), want tls.RecordHeaderError", err, err)
	}
	return err
}

func missingPort(t *testing.T) error {
	_, err := net.Dial("tcp", "127.0.0.1")
	var ae *net.AddrError
	if !errors.As(err, &ae) {
		t.Fatalf("dial without port: got %v, want *net.AddrError", err)
	}
	return err
}

func unknownNetwork(t *testing.T) error {
	_, err := net.Dial("carrier-pigeon", "127.0.0.1:1")
	var un net.UnknownNetworkError
	if !errors.As(err, &un) {
		t.Fatalf("dial unknown network: got %v, want net.UnknownNetworkError", err)
	}
	return err
}

func TestDefaultRetryable(t *testing.T) {
	brokenPipe := &net.OpError{Op: "write", Net: "tcp", Err: os.NewSyscallError("write", syscall.EPIPE)}
	aborted := &net.OpError{Op: "read", Net: "tcp", Err: os.NewSyscallError("read", syscall.ECONNABORTED)}
	timedOut := &net.OpError{Op: "dial", Net: "tcp", Err: os.NewSyscallError("connect", syscall.ETIMEDOUT)}
	boom := errors.New("boom")
	nested := &retry.Error{Reason: retry.ReasonAttempts, Attempts: 3, Last: boom}

	tests := []struct {
		name string
		err  func(t *testing.T) error
		want bool
		kind retry.Kind
	}{
		{"nil", func(*testing.T) error { return nil }, false, retry.KindOther},
		{"connection refused", connRefused, true, retry.KindConnection},
		{"connection reset", connReset, true, retry.KindConnection},
		{"broken pipe", func(*testing.T) error { return brokenPipe }, true, retry.KindConnection},
		{"connection aborted", func(*testing.T) error { return aborted }, true, retry.KindConnection},
		{"ETIMEDOUT", func(*testing.T) error { return timedOut }, true, retry.KindTimeout},
		{"io.EOF from a connection", eof, true, retry.KindConnection},
		{"io.ErrUnexpectedEOF", unexpectedEOF, true, retry.KindConnection},
		{"read deadline (net.Error Timeout)", readTimeout, true, retry.KindTimeout},
		{"per-attempt context deadline", attemptDeadline, true, retry.KindTimeout},
		{"DNS temporary", func(*testing.T) error {
			return &net.DNSError{Err: "server misbehaving", Name: "api.example", IsTemporary: true}
		}, true, retry.KindConnection},
		{"DNS timeout", func(*testing.T) error {
			return &net.DNSError{Err: "i/o timeout", Name: "api.example", IsTimeout: true}
		}, true, retry.KindTimeout},
		{"DNS not found", func(*testing.T) error {
			return &net.DNSError{Err: "no such host", Name: "api.example", IsNotFound: true}
		}, false, retry.KindConnection},
		{"x509 unknown authority", unknownAuthority, false, retry.KindOther},
		{"x509 hostname mismatch", wrongHostname, false, retry.KindOther},
		{"TLS to a plain server", notTLS, false, retry.KindOther},
		{"address without port", missingPort, false, retry.KindOther},
		{"unknown network", unknownNetwork, false, retry.KindOther},
		{"context.Canceled", func(*testing.T) error { return fmt.Errorf("op: %w", context.Canceled) }, false, retry.KindOther},
		{"HTTP 503", func(*testing.T) error { return &retry.StatusError{StatusCode: 503} }, true, retry.KindOther},
		{"HTTP 429", func(*testing.T) error { return &retry.StatusError{StatusCode: 429} }, true, retry.KindRateLimit},
		{"HTTP 408", func(*testing.T) error { return &retry.StatusError{StatusCode: 408} }, true, retry.KindTimeout},
		{"HTTP 504 wrapped", func(*testing.T) error {
			return fmt.Errorf("GET /: %w", &retry.StatusError{StatusCode: 504})
		}, true, retry.KindTimeout},
		{"HTTP 404", func(*testing.T) error { return &retry.StatusError{StatusCode: 404} }, false, retry.KindOther},
		{"Permanent", func(*testing.T) error { return retry.Permanent(connRefused(t)) }, false, retry.KindConnection},
		{"Permanent wrapped", func(*testing.T) error { return fmt.Errorf("x: %w", retry.Permanent(boom)) }, false, retry.KindOther},
		{"Transient 404", func(*testing.T) error { return retry.Transient(&retry.StatusError{StatusCode: 404}) }, true, retry.KindOther},
		{"outer mark wins: Transient(Permanent)", func(*testing.T) error { return retry.Transient(retry.Permanent(boom)) }, true, retry.KindOther},
		{"outer mark wins: Permanent(Transient)", func(*testing.T) error { return retry.Permanent(retry.Transient(boom)) }, false, retry.KindOther},
		{"nested Do gave up", func(*testing.T) error { return fmt.Errorf("inner: %w", nested) }, false, retry.KindOther},
		{"unknown error", func(*testing.T) error { return boom }, true, retry.KindOther},
	}
	for _, tt := range tests {
		tt := tt
		t.Run(tt.name, func(t *testing.T) {
			err := tt.err(t)
			if got := retry.DefaultRetryable(err); got != tt.want {
				t.Errorf("DefaultRetryable(%v) = %v, want %v", err, got, tt.want)
			}
			if got := retry.KindOf(err); got != tt.kind {
				t.Errorf("KindOf(%v) = %v, want %v", err, got, tt.kind)
			}
		})
	}
}

func TestMarksKeepTheError(t *testing.T) {
	base := errors.New("boom")
	for _, mark := range []func(error) error{retry.Permanent, retry.Transient} {
		err := mark(base)
		if !errors.Is(err, base) {
			t.Errorf("errors.Is(mark(base), base) = false, want true")
		}
		if err.Error() != base.Error() {
			t.Errorf("message %q, want %q", err.Error(), base.Error())
		}
		if mark(nil) != nil {
			t.Errorf("mark(nil) = %v, want nil", mark(nil))
		}
	}
}
