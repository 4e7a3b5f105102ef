package server

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"

	"github.com/distribution/distribution/v3/configuration"
	"golang.org/x/crypto/acme"
	"golang.org/x/crypto/acme/autocert"
)

// tlsConfig builds the listener's TLS settings from http.tls, as Distribution reads them.
// It returns nil when TLS is off.
func tlsConfig(c configuration.HTTP) (*tls.Config, error) {
	t := c.TLS
	if t.Certificate == "" && t.LetsEncrypt.CacheFile == "" {
		return nil, nil
	}
	conf := &tls.Config{NextProtos: []string{"h2", "http/1.1"}}
	if c.HTTP2.Disabled {
		conf.NextProtos = []string{"http/1.1"}
	}
	switch t.MinimumTLS {
	case "", "tls1.2":
		conf.MinVersion = tls.VersionTLS12
	case "tls1.3":
		conf.MinVersion = tls.VersionTLS13
	default:
		return nil, fmt.Errorf("http.tls.minimumtls: unknown version %q (want tls1.2 or tls1.3)", t.MinimumTLS)
	}
	for _, name := range t.CipherSuites {
		id, ok := cipherSuite(name)
		if !ok {
			return nil, fmt.Errorf("http.tls.ciphersuites: unknown cipher suite %q", name)
		}
		conf.CipherSuites = append(conf.CipherSuites, id)
	}

	switch {
	case t.LetsEncrypt.CacheFile != "" && t.Certificate != "":
		return nil, errors.New("http.tls: certificate and letsencrypt exclude each other")
	case t.LetsEncrypt.CacheFile != "":
		m := &autocert.Manager{
			HostPolicy: autocert.HostWhitelist(t.LetsEncrypt.Hosts...),
			Cache:      autocert.DirCache(t.LetsEncrypt.CacheFile),
			Email:      t.LetsEncrypt.Email,
			Prompt:     autocert.AcceptTOS,
		}
		if t.LetsEncrypt.DirectoryURL != "" {
			m.Client = &acme.Client{DirectoryURL: t.LetsEncrypt.DirectoryURL}
		}
		conf.GetCertificate = m.GetCertificate
		conf.NextProtos = append(conf.NextProtos, acme.ALPNProto)
	default:
		cert, err := tls.LoadX509KeyPair(t.Certificate, t.Key)
		if err != nil {
			return nil, fmt.Errorf("http.tls.certificate: %w", err)
		}
		conf.Certificates = []tls.Certificate{cert}
	}

	if len(t.ClientCAs) > 0 {
		pool := x509.NewCertPool()
		for _, ca := range t.ClientCAs {
			pem, err := os.ReadFile(ca)
			if err != nil {
				return nil, fmt.Errorf("http.tls.clientcas: %w", err)
			}
			if !pool.AppendCertsFromPEM(pem) {
				return nil, fmt.Errorf("http.tls.clientcas: no certificate in %s", ca)
			}
		}
		conf.ClientCAs = pool
		mode, ok := clientAuth[t.ClientAuth]
		if !ok {
			return nil, fmt.Errorf("http.tls.clientauth: unknown mode %q", t.ClientAuth)
		}
		conf.ClientAuth = mode
	}
	return conf, nil
}

var clientAuth = map[configuration.ClientAuth]tls.ClientAuthType{
	"": tls.RequireAndVerifyClientCert,
	configuration.ClientAuthRequestClientCert:          tls.RequestClientCert,
	configuration.ClientAuthRequireAnyClientCert:       tls.RequireAnyClientCert,
	configuration.ClientAuthVerifyClientCertIfGiven:    tls.VerifyClientCertIfGiven,
	configuration.ClientAuthRequireAndVerifyClientCert: tls.RequireAndVerifyClientCert,
}

func cipherSuite(name string) (uint16, bool) {
	for _, s := range append(tls.CipherSuites(), tls.InsecureCipherSuites()...) {
		if s.Name == name {
			return s.ID, true
		}
	}
	return 0, false
}
