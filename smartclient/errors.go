package smartclient

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"net"

	"github.com/erpupdate/smartsync/smartclient/internal/servertrust"
	"github.com/erpupdate/smartsync/syncproto"

	"github.com/erpupdate/smartsync/smartclient/internal/fetch"
	"github.com/erpupdate/smartsync/smartclient/internal/install"
	"github.com/erpupdate/smartsync/smartclient/internal/journal"
	"github.com/erpupdate/smartsync/smartclient/internal/manifest"
)

// ErrUsage marks a bad option or configuration: the caller's mistake, not
// a failure of the update.
var ErrUsage = errors.New("usage error")

// Errors of the parts below the sync, for errors.Is: each is the very
// value its part returns.
var (
	// ErrLocked marks a file that stayed in use by another program.
	ErrLocked = install.ErrLocked
	// ErrRolledBack marks a switch that failed and was undone: the
	// install is the old release again.
	ErrRolledBack = journal.ErrRolledBack
	// ErrPostInstall marks a post-install step that failed or ran out of
	// time; the switch is then rolled back.
	ErrPostInstall = journal.ErrPostInstall
	// ErrBadManifest marks a manifest the client refuses before it
	// downloads a byte.
	ErrBadManifest = manifest.ErrBad
	// ErrVerify marks received content that does not match the manifest.
	ErrVerify = fetch.ErrVerify
)

// ConnectionLost reports an error that means the connection to the server
// broke or went silent. The system's words for a broken connection differ:
// see lostErrnos.
func ConnectionLost(err error) bool {
	var ne net.Error
	if errors.Is(err, io.ErrUnexpectedEOF) || errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || errors.As(err, &ne) && ne.Timeout() {
		return true
	}
	for _, e := range lostErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	return false
}

// transportFailure reports an error of the connection itself, which may
// be gone the next time: a dial that failed (refused, unreachable, no
// route, a name not resolved), a connection reset or closed, a read or a
// TLS handshake that timed out. Anything that says the server is not the
// one trusted, or spoke wrongly, is not one, even when a broken
// connection came with it: a certificate or key that fails its check, a
// TLS alert, bytes that are not TLS, an Error from the server, a frame
// that breaks the protocol. Such a failure is never tried again.
func transportFailure(err error) bool {
	var (
		pe  *syncproto.Error
		ae  tls.AlertError
		cve *tls.CertificateVerificationError
		rhe tls.RecordHeaderError
		uae x509.UnknownAuthorityError
		cie x509.CertificateInvalidError
		he  x509.HostnameError
	)
	if err == nil || errors.As(err, &pe) || errors.As(err, &ae) || errors.As(err, &cve) || errors.As(err, &rhe) ||
		errors.As(err, &uae) || errors.As(err, &cie) || errors.As(err, &he) {
		return false
	}
	for _, e := range []error{
		servertrust.ErrKeyChanged, servertrust.ErrFingerprint, servertrust.ErrNotSignedByCA,
		servertrust.ErrUnknownServer, servertrust.ErrPlaintextServer, ErrServerBuild,
		syncproto.ErrBadMagic, syncproto.ErrMalformed, syncproto.ErrUnknownType, syncproto.ErrTooLarge,
		syncproto.ErrUnexpected, syncproto.ErrVersion,
	} {
		if errors.Is(err, e) {
			return false
		}
	}
	if ConnectionLost(err) {
		return true
	}
	for _, e := range unreachableErrnos {
		if errors.Is(err, e) {
			return true
		}
	}
	var oe *net.OpError
	return errors.As(err, &oe) && oe.Op == "dial"
}

// lostConnection is ConnectionLost, as the library's own code says it.
var lostConnection = ConnectionLost
