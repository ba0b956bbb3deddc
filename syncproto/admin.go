package syncproto

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/ecdh"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"

	"github.com/zeebo/blake3"
)

// Limits of the session and administrator messages.
const (
	AdminKeySize = 32  // an X25519 public key
	MaxPassword  = 256 // bytes of an administrator password
	// MaxSealed is the largest sealed credential: nonce, password (or
	// token) and tag.
	MaxSealed = sealNonce + MaxPassword + sealTag
	MaxNotify = 320 // an e-mail address
	// TokenSize is the size of an administrator session token, and
	// SealedTokenSize that of a token sealed for the wire.
	TokenSize       = 32
	SealedTokenSize = sealNonce + TokenSize + sealTag
)

const (
	sealNonce = 12
	sealTag   = 16
	// sealContext separates the keys derived here from any other use of
	// the same key exchange.
	sealContext = "smartsync 2026-11 administrator password"
	// The associated data of a sealed request and of a sealed token start
	// with a label of their own, so that one can never be taken for the
	// other.
	requestLabel = "smartsync admin request\x00"
	tokenLabel   = "smartsync admin token\x00"
)

// Stay, sent by a client after ReportAck, keeps its session open while its
// application runs (smartclient run), so that the server can warn it with
// Notice before it restarts. The client sends nothing more; the server
// sends Notices and, at the deadline, a NoticeClosing and closes.
type Stay struct{}

// NoticeKind says what a Notice announces.
type NoticeKind uint8

// Notice kinds. The numbers are part of the protocol.
const (
	// NoticeCountdown: the server restarts for an update in Seconds.
	NoticeCountdown NoticeKind = 1
	// NoticeCancelled: the announced restart will not happen.
	NoticeCancelled NoticeKind = 2
	// NoticeClosing: the deadline has come; the server closes the
	// session, and the client should stop its application now.
	NoticeClosing NoticeKind = 3
	// NoticeHeartbeat: nothing to say; the server checks that the
	// session is still there, and the client that the server is. The
	// server sends one as soon as the session stays and then one every
	// Seconds (its interval, rounded up to whole seconds); a client that
	// hears nothing for three intervals takes the server as gone.
	NoticeHeartbeat NoticeKind = 4
)

// Notice is the server's word to a staying session.
type Notice struct {
	Kind    NoticeKind
	Seconds uint32 // NoticeCountdown: seconds until the restart; NoticeHeartbeat: the interval
	Message string // for people
}

// AdminKey carries an ephemeral X25519 public key. An administrator's
// client opens the session with it instead of Hello, and the server
// answers with its own; the password then travels sealed with a key both
// derive (see SealRequest).
type AdminKey struct{ Key [AdminKeySize]byte }

// AdminOp is what an administrator asks for.
type AdminOp uint8

// Administrator operations. The numbers are part of the protocol.
const (
	OpUpdate AdminOp = 1 // update the server from Source
	OpStatus AdminOp = 2 // report the scheduled, running or last update
	OpCancel AdminOp = 3 // withdraw an update not yet past its countdown
)

// Admin flags.
const (
	AdminAllowDowngrade uint8 = 1 << 0 // accept a release not newer than the running build
	// AdminToken says that Sealed holds the session token of an earlier
	// login of the same command (see AdminSession) instead of the
	// password. The token travels sealed like the password, so that it
	// is never readable on the wire, and it admits OpStatus only.
	AdminToken uint8 = 1 << 1
	// AdminFeed asks, with OpStatus, for what the server knows of the
	// vendor's release feed: the feed fields of UpdateStatus. A server
	// sends them only to a request with this flag, so that a client that
	// does not know them never receives them.
	AdminFeed uint8 = 1 << 2

	adminFlags = AdminAllowDowngrade | AdminToken | AdminFeed
)

// Admin is an administrator's request, after the AdminKey exchange. The
// server answers OpUpdate with AdminEvents as the steps happen and then
// UpdateStatus (or an Error); OpStatus and OpCancel with UpdateStatus.
//
// Sealed holds the credential (the password, or with AdminToken the
// session token) sealed by SealRequest, with every other field of the
// request as associated data: a field changed on the way makes the seal
// fail to open, and the server refuses the request.
type Admin struct {
	User      string
	Sealed    []byte // the password or token, sealed (see SealRequest)
	Op        AdminOp
	Source    string // OpUpdate: release archive path or URL
	Countdown uint32 // OpUpdate: seconds of warning to connected sessions
	At        int64  // OpUpdate: Unix seconds to start at; 0 for now
	Notify    string // OpUpdate: e-mail address told the outcome; "" for none
	Flags     uint8  // AdminAllowDowngrade, AdminToken
}

// AdminSession carries the session token of a login, sent by the server
// before the first UpdateStatus of an OpUpdate that runs now. The client
// asks the restarted server for the outcome with the token (AdminToken),
// never with the password again. The token is sealed (see SealToken) and
// bound to the user, to the update and to its expiry; the server keeps
// only its hash.
type AdminSession struct {
	Sealed   []byte // the token, sealed
	Session  string // the session's name; an UpdateStatus answered to the token names it
	UpdateID string // the update the token may ask about
	Expires  int64  // Unix seconds; the server refuses the token after it
}

// AdminEvent is one line of progress of an update, for the administrator.
type AdminEvent struct{ Text string }

// UpdateState is where a server self-update stands.
type UpdateState uint8

// Update states. The numbers are part of the protocol.
const (
	StateNone      UpdateState = 0 // no update scheduled, running or done
	StateScheduled UpdateState = 1 // waiting for its time (At)
	StatePreparing UpdateState = 2 // fetching and verifying the release
	StateCountdown UpdateState = 3 // warning sessions; When is the deadline
	StateSwitching UpdateState = 4 // sessions closed; backing up and switching
	StateDone      UpdateState = 5 // the new build runs
	StateReverted  UpdateState = 6 // the new build failed its check; the old one runs again
	StateFailed    UpdateState = 7 // refused or failed before the switch; nothing changed
	StateCancelled UpdateState = 8 // withdrawn by an administrator
)

var stateNames = map[UpdateState]string{
	StateNone: "none", StateScheduled: "scheduled", StatePreparing: "preparing",
	StateCountdown: "countdown", StateSwitching: "switching", StateDone: "done",
	StateReverted: "reverted", StateFailed: "failed", StateCancelled: "cancelled",
}

func (s UpdateState) String() string {
	if n, ok := stateNames[s]; ok {
		return n
	}
	return fmt.Sprintf("state(%d)", uint8(s))
}

// Final reports a state an update does not leave.
func (s UpdateState) Final() bool {
	return s == StateDone || s == StateReverted || s == StateFailed || s == StateCancelled
}

// UpdateStatus describes the scheduled, running or last update.
type UpdateStatus struct {
	State        UpdateState
	ID           string // names one update request, so a client can tell its own outcome
	RunningBuild string // the answering server's own build
	OldBuild     string
	NewBuild     string
	When         int64 // Unix seconds: start (Scheduled), deadline (Countdown), end (final states)
	Source       string
	Message      string // the reason, for Reverted, Failed and Cancelled
	// Session names the administrator session (AdminSession.Session)
	// whose token the request carried; "" for a request with a password.
	Session string

	// The feed fields, sent only in answer to a request with AdminFeed
	// and only when one is set (see "Administrator sessions").
	//
	// FeedChecked is when the server last believed its release feed (Unix
	// seconds); 0 when it has no feed or has not read one yet.
	FeedChecked int64
	// NewestBuild is the newest release the feed lists for the server's
	// platform that is newer than RunningBuild; "" for none. NewestNotes
	// is the first line of its notes.
	NewestBuild string
	NewestNotes string
	// FeedError says why the last check of the feed failed; "" when it
	// did not.
	FeedError string
}

// hasFeed reports whether any feed field is set, and so whether the
// feed fields are on the wire.
func (m UpdateStatus) hasFeed() bool {
	return m.FeedChecked != 0 || m.NewestBuild != "" || m.NewestNotes != "" || m.FeedError != ""
}

func (Stay) Type() MsgType         { return MsgStay }
func (Notice) Type() MsgType       { return MsgNotice }
func (AdminKey) Type() MsgType     { return MsgAdminKey }
func (Admin) Type() MsgType        { return MsgAdmin }
func (AdminEvent) Type() MsgType   { return MsgAdminEvent }
func (UpdateStatus) Type() MsgType { return MsgUpdateStatus }
func (AdminSession) Type() MsgType { return MsgAdminSession }

func (Stay) appendPayload(b []byte) []byte { return b }

func (m Notice) appendPayload(b []byte) []byte {
	b = append(b, uint8(m.Kind))
	b = binary.BigEndian.AppendUint32(b, m.Seconds)
	return appendString(b, m.Message)
}

func (m AdminKey) appendPayload(b []byte) []byte { return append(b, m.Key[:]...) }

func (m Admin) appendPayload(b []byte) []byte {
	b = appendString(b, m.User)
	b = binary.BigEndian.AppendUint16(b, uint16(len(m.Sealed)))
	b = append(b, m.Sealed...)
	b = append(b, uint8(m.Op))
	b = appendString(b, m.Source)
	b = binary.BigEndian.AppendUint32(b, m.Countdown)
	b = binary.BigEndian.AppendUint64(b, uint64(m.At))
	b = appendString(b, m.Notify)
	return append(b, m.Flags)
}

func (m AdminEvent) appendPayload(b []byte) []byte { return appendString(b, m.Text) }

func (m UpdateStatus) appendPayload(b []byte) []byte {
	b = append(b, uint8(m.State))
	b = appendString(b, m.ID)
	b = appendString(b, m.RunningBuild)
	b = appendString(b, m.OldBuild)
	b = appendString(b, m.NewBuild)
	b = binary.BigEndian.AppendUint64(b, uint64(m.When))
	b = appendString(b, m.Source)
	b = appendString(b, m.Message)
	b = appendString(b, m.Session)
	if !m.hasFeed() {
		return b
	}
	b = binary.BigEndian.AppendUint64(b, uint64(m.FeedChecked))
	b = appendString(b, m.NewestBuild)
	b = appendString(b, m.NewestNotes)
	return appendString(b, m.FeedError)
}

func (m AdminSession) appendPayload(b []byte) []byte {
	b = append(b, m.Sealed...)
	b = appendString(b, m.Session)
	b = appendString(b, m.UpdateID)
	return binary.BigEndian.AppendUint64(b, uint64(m.Expires))
}

// decodeSession decodes the session and administrator messages.
func decodeSession(t MsgType, d *decoder) Message {
	switch t {
	case MsgNotice:
		n := Notice{Kind: NoticeKind(d.u8("kind")), Seconds: d.u32("seconds"), Message: d.str("message", MaxMessage)}
		if d.err == nil && (n.Kind < NoticeCountdown || n.Kind > NoticeHeartbeat) {
			d.fail("unknown notice kind %d", n.Kind)
		}
		return n
	case MsgAdminKey:
		var k AdminKey
		copy(k.Key[:], d.take(AdminKeySize, "key"))
		return k
	case MsgAdmin:
		a := Admin{User: d.str("user", MaxShortString)}
		n := int(d.u16("sealed length"))
		if d.err == nil && (n < sealNonce+sealTag || n > MaxSealed) {
			d.fail("sealed credential of %d bytes, must be %d..%d", n, sealNonce+sealTag, MaxSealed)
		}
		a.Sealed = append([]byte(nil), d.take(n, "sealed credential")...)
		a.Op = AdminOp(d.u8("op"))
		a.Source = d.str("source", MaxPath)
		a.Countdown = d.u32("countdown")
		a.At = int64(d.u64("at"))
		a.Notify = d.str("notify", MaxNotify)
		a.Flags = d.u8("flags")
		if d.err == nil && (a.Op < OpUpdate || a.Op > OpCancel) {
			d.fail("unknown operation %d", a.Op)
		}
		if d.err == nil && a.Flags&^adminFlags != 0 {
			d.fail("unknown flags %#x", a.Flags)
		}
		return a
	case MsgAdminEvent:
		return AdminEvent{Text: d.str("text", MaxMessage)}
	case MsgUpdateStatus:
		s := UpdateStatus{
			State:        UpdateState(d.u8("state")),
			ID:           d.str("id", MaxShortString),
			RunningBuild: d.str("running build", MaxShortString),
			OldBuild:     d.str("old build", MaxShortString),
			NewBuild:     d.str("new build", MaxShortString),
			When:         int64(d.u64("when")),
			Source:       d.str("source", MaxPath),
			Message:      d.str("message", MaxMessage),
			Session:      d.str("session", MaxShortString),
		}
		if d.err == nil && len(d.b) > 0 {
			s.FeedChecked = int64(d.u64("feed checked"))
			s.NewestBuild = d.str("newest build", MaxShortString)
			s.NewestNotes = d.str("newest notes", MaxMessage)
			s.FeedError = d.str("feed error", MaxMessage)
			if d.err == nil && !s.hasFeed() {
				// One way to write a status: without feed fields, not
				// with empty ones.
				d.fail("empty feed fields")
			}
		}
		if d.err == nil {
			if _, ok := stateNames[s.State]; !ok {
				d.fail("unknown state %d", s.State)
			}
		}
		return s
	case MsgAdminSession:
		return AdminSession{
			Sealed:   append([]byte(nil), d.take(SealedTokenSize, "sealed token")...),
			Session:  d.str("session", MaxShortString),
			UpdateID: d.str("update id", MaxShortString),
			Expires:  int64(d.u64("expires")),
		}
	}
	d.fail("no decoder for %v", t)
	return nil
}

// ErrSeal is returned when a sealed password or token does not open: a
// wrong key, or bytes changed on the way (in the sealed bytes or in any
// field bound to them).
var ErrSeal = errors.New("syncproto: sealed credential does not open")

// NewAdminKey makes an ephemeral X25519 key pair for one session.
func NewAdminKey() (*ecdh.PrivateKey, AdminKey, error) {
	priv, err := ecdh.X25519().GenerateKey(rand.Reader)
	if err != nil {
		return nil, AdminKey{}, fmt.Errorf("making a session key: %w", err)
	}
	var k AdminKey
	copy(k.Key[:], priv.PublicKey().Bytes())
	return priv, k, nil
}

// sealKey derives the AES-256-GCM key of a session from the X25519 shared
// secret and both public keys, client's first.
func sealKey(priv *ecdh.PrivateKey, peer AdminKey, clientKey, serverKey AdminKey) (cipher.AEAD, error) {
	pub, err := ecdh.X25519().NewPublicKey(peer.Key[:])
	if err != nil {
		return nil, fmt.Errorf("peer key: %w", err)
	}
	shared, err := priv.ECDH(pub)
	if err != nil {
		return nil, fmt.Errorf("key exchange: %w", err)
	}
	material := append(append(shared, clientKey.Key[:]...), serverKey.Key[:]...)
	key := make([]byte, 32)
	blake3.DeriveKey(sealContext, material, key)
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(block)
}

// clientSeal and serverSeal derive a session's key on either side.
func clientSeal(client *ecdh.PrivateKey, server AdminKey) (cipher.AEAD, error) {
	var ck AdminKey
	copy(ck.Key[:], client.PublicKey().Bytes())
	return sealKey(client, server, ck, server)
}

func serverSeal(server *ecdh.PrivateKey, client AdminKey) (cipher.AEAD, error) {
	var sk AdminKey
	copy(sk.Key[:], server.PublicKey().Bytes())
	return sealKey(server, client, client, sk)
}

func seal(aead cipher.AEAD, secret, aad []byte) ([]byte, error) {
	nonce := make([]byte, sealNonce, sealNonce+len(secret)+sealTag)
	if _, err := rand.Read(nonce); err != nil {
		return nil, err
	}
	return aead.Seal(nonce, nonce, secret, aad), nil
}

func open(aead cipher.AEAD, sealed, aad []byte) ([]byte, error) {
	if len(sealed) < sealNonce+sealTag {
		return nil, ErrSeal
	}
	p, err := aead.Open(nil, sealed[:sealNonce], sealed[sealNonce:], aad)
	if err != nil {
		return nil, ErrSeal
	}
	return p, nil
}

// AuthData returns the associated data a request's seal is bound to: a
// label and every field of a but Sealed, as encoded on the wire, so that
// two different requests never give the same bytes.
func (a Admin) AuthData() []byte {
	a.Sealed = nil
	return a.appendPayload([]byte(requestLabel))
}

// authData returns the associated data of a sealed token: its label, the
// session's name, the update and the expiry.
func (m AdminSession) authData() []byte {
	m.Sealed = nil
	return m.appendPayload([]byte(tokenLabel))
}

// SealRequest seals secret (the administrator's password, or with
// AdminToken in a.Flags the session token) into a.Sealed on the client's
// side of the AdminKey exchange: AES-256-GCM under a key derived with
// BLAKE3 from the X25519 shared secret and both public keys, with every
// other field of a as associated data (see AuthData). Set the fields
// first: a field changed after sealing makes the request fail to open.
// The seal keeps the secret from anyone who only listens on the network
// and binds the fields to it; that the peer is the real server is the
// pinned TLS key's work.
func SealRequest(client *ecdh.PrivateKey, server AdminKey, a *Admin, secret []byte) error {
	if len(secret) > MaxPassword {
		return fmt.Errorf("credential of %d bytes, limit %d", len(secret), MaxPassword)
	}
	aead, err := clientSeal(client, server)
	if err != nil {
		return err
	}
	a.Sealed, err = seal(aead, secret, a.AuthData())
	return err
}

// OpenRequest opens the credential of a request sealed by SealRequest,
// on the server's side. It returns ErrSeal when any byte of the request
// was changed on the way.
func OpenRequest(server *ecdh.PrivateKey, client AdminKey, a Admin) ([]byte, error) {
	aead, err := serverSeal(server, client)
	if err != nil {
		return nil, err
	}
	return open(aead, a.Sealed, a.AuthData())
}

// SealToken seals a session token into m.Sealed on the server's side,
// bound to m's other fields.
func SealToken(server *ecdh.PrivateKey, client AdminKey, m *AdminSession, token []byte) error {
	if len(token) != TokenSize {
		return fmt.Errorf("token of %d bytes, want %d", len(token), TokenSize)
	}
	aead, err := serverSeal(server, client)
	if err != nil {
		return err
	}
	m.Sealed, err = seal(aead, token, m.authData())
	return err
}

// OpenToken opens the token of an AdminSession on the client's side.
func OpenToken(client *ecdh.PrivateKey, server AdminKey, m AdminSession) ([]byte, error) {
	aead, err := clientSeal(client, server)
	if err != nil {
		return nil, err
	}
	t, err := open(aead, m.Sealed, m.authData())
	if err == nil && len(t) != TokenSize {
		return nil, ErrSeal
	}
	return t, err
}
