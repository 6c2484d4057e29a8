package redistest

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"
)

// Certs are a certificate authority and a server certificate it signed for
// 127.0.0.1 and localhost, written as PEM files into a test's temporary
// directory.
type Certs struct {
	// CAFile, CertFile and KeyFile are the paths of the CA's certificate and
	// of the server's certificate and key.
	CAFile, CertFile, KeyFile string
	// Pool holds the CA's certificate: a client that trusts it trusts the
	// server.
	Pool *x509.CertPool
}

// NewCerts generates a CA and a server certificate (ECDSA P-256, valid for
// an hour) into tb.TempDir().
func NewCerts(tb testing.TB) *Certs {
	tb.Helper()
	dir := tb.TempDir()
	caKey, caDER := selfSigned(tb, "breakwater test CA")
	caCert, err := x509.ParseCertificate(caDER)
	if err != nil {
		tb.Fatalf("redistest: parse CA certificate: %v", err)
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("redistest: server key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(2),
		Subject:      pkix.Name{CommonName: "redis-server"},
		NotBefore:    time.Now().Add(-time.Minute),
		NotAfter:     time.Now().Add(time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1)},
		DNSNames:     []string{"localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		tb.Fatalf("redistest: sign server certificate: %v", err)
	}
	c := &Certs{
		CAFile:   filepath.Join(dir, "ca.crt"),
		CertFile: filepath.Join(dir, "redis.crt"),
		KeyFile:  filepath.Join(dir, "redis.key"),
		Pool:     x509.NewCertPool(),
	}
	c.Pool.AddCert(caCert)
	writePEM(tb, c.CAFile, "CERTIFICATE", caDER)
	writePEM(tb, c.CertFile, "CERTIFICATE", der)
	keyDER, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		tb.Fatalf("redistest: marshal server key: %v", err)
	}
	writePEM(tb, c.KeyFile, "EC PRIVATE KEY", keyDER)
	return c
}

// ClientConfig returns a TLS configuration that trusts the CA.
func (c *Certs) ClientConfig() *tls.Config {
	return &tls.Config{RootCAs: c.Pool, MinVersion: tls.VersionTLS12}
}

// selfSigned returns the key and DER certificate of a new CA.
func selfSigned(tb testing.TB, name string) (*ecdsa.PrivateKey, []byte) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatalf("redistest: CA key: %v", err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{CommonName: name},
		NotBefore:             time.Now().Add(-time.Minute),
		NotAfter:              time.Now().Add(time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageDigitalSignature,
		BasicConstraintsValid: true,
		IsCA:                  true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		tb.Fatalf("redistest: self-sign CA: %v", err)
	}
	return key, der
}

func writePEM(tb testing.TB, path, typ string, der []byte) {
	tb.Helper()
	b := pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der})
	if err := os.WriteFile(path, b, 0o600); err != nil {
		tb.Fatalf("redistest: write %s: %v", path, err)
	}
}

// StartTLS starts a redis-server that accepts TLS connections only (its
// plain port is off), with the server certificate of certs, and returns
// once it answers over TLS. Clients need not present a certificate. Extra
// args are appended as for Start. Client, Restart and the rest work as for
// a server of Start; Client's connections use TLS.
func StartTLS(tb testing.TB, certs *Certs, args ...string) *Server {
	tb.Helper()
	bin := lookup(tb)
	return startWith(tb, bin, false, certs, args)
}

// tlsArgs returns redis-server's TLS arguments for port.
func tlsArgs(certs *Certs, port int) []string {
	return []string{
		"--port", "0",
		"--tls-port", strconv.Itoa(port),
		"--tls-cert-file", certs.CertFile,
		"--tls-key-file", certs.KeyFile,
		"--tls-ca-cert-file", certs.CAFile,
		"--tls-auth-clients", "no",
	}
}
