package appserver

import (
	"path/filepath"

	"github.com/erpupdate/smartsync/internal/winini"
	"gopkg.in/ini.v1"
)

// TLSConfig is the [SSL] section: where the server's certificate and key
// are, and whether clients may connect without TLS.
type TLSConfig struct {
	// CertFile and KeyFile are the PEM files of the server's certificate
	// (its chain, leaf first) and private key, absolute; both empty when
	// none is configured, and the server then makes its own key and
	// self-signed certificate in its state folder at first start. Taken
	// from [SSL] Certificate and Key, else TOTVS's [SSLConfigure]
	// CertificateServer and KeyServer, else [MPP] SSL_Certificate and
	// SSL_Key; Source names the section they came from.
	CertFile, KeyFile string
	Source            string
	// AllowPlaintext is [SSL] AllowPlaintext: plain TCP clients are
	// served too (a client only connects so when its own smartclient.ini
	// says AllowPlaintext=1). Off by default.
	AllowPlaintext bool
}

const (
	sectionSSL          = "SSL"
	sectionSSLConfigure = "SSLConfigure"
	sectionMPP          = "MPP"

	keyCertificate    = "Certificate"
	keyKey            = "Key"
	keyAllowPlaintext = "AllowPlaintext"
)

// sslKeys are the keys of [SSL], which is ours ([SSLConfigure] and [MPP]
// are TOTVS's: only the two keys we read there are looked at).
var sslKeys = []string{keyCertificate, keyKey, keyAllowPlaintext}

// tls reads the certificate's place from the first of [SSL],
// [SSLConfigure] and [MPP] that names one.
func (v *validator) tls(f *ini.File, cfg *Config) {
	if sec := section(f, sectionSSL); sec != nil {
		v.unknownKeys(sec, sectionSSL, sslKeys)
		if val, _, ok := v.value(sec, sectionSSL, keyAllowPlaintext); ok {
			b, err := winini.Bool(val)
			if err != nil {
				v.add(sectionSSL, keyAllowPlaintext, err, "%q is not 0 or 1", val)
			}
			cfg.TLS.AllowPlaintext = b
		}
	}
	for _, names := range []struct{ section, cert, key string }{
		{sectionSSL, keyCertificate, keyKey},
		{sectionSSLConfigure, "CertificateServer", "KeyServer"},
		{sectionMPP, "SSL_Certificate", "SSL_Key"},
	} {
		sec := section(f, names.section)
		if sec == nil {
			continue
		}
		cert, _, _ := v.value(sec, names.section, names.cert)
		key, _, _ := v.value(sec, names.section, names.key)
		switch {
		case cert == "" && key == "":
			continue
		case cert == "":
			v.add(names.section, names.cert, nil, "is missing; %s=%s needs the certificate beside it", names.key, winini.Quote(key))
		case key == "":
			v.add(names.section, names.key, nil, "is missing; %s=%s needs its private key beside it", names.cert, winini.Quote(cert))
		default:
			cfg.TLS.CertFile, cfg.TLS.KeyFile = v.abs(cert), v.abs(key)
			cfg.TLS.Source = names.section
		}
		return
	}
}

// abs resolves p against the configuration's folder.
func (v *validator) abs(p string) string {
	if !filepath.IsAbs(p) {
		p = filepath.Join(v.baseDir, p)
	}
	return filepath.Clean(p)
}
