package proxy

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/pbkdf2"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"sync"

	"github.com/jackc/pgx/v5/pgconn"
	"github.com/jackc/pgx/v5/pgproto3"
)

// scramIterations matches Postgres' default scram_iterations.
const scramIterations = 4096

// scramSecret is what the server keeps for a SCRAM-SHA-256 user (RFC 5802 §3):
// never the password itself once derived.
type scramSecret struct {
	salt      []byte
	storedKey []byte
	serverKey []byte
}

// secretCache derives SCRAM secrets once per (user, password): PBKDF2 with
// 4096 iterations costs about a millisecond, too much per connection.
type secretCache struct {
	mu sync.Mutex
	m  map[string]*scramSecret
}

func (c *secretCache) get(user, password string) (*scramSecret, error) {
	key := user + "\x00" + password
	c.mu.Lock()
	defer c.mu.Unlock()
	if s, ok := c.m[key]; ok {
		return s, nil
	}
	if strings.HasPrefix(password, "SCRAM-SHA-256$") {
		s, err := parseScramVerifier(password)
		if err != nil {
			return nil, err
		}
		c.put(key, s)
		return s, nil
	}
	salt := make([]byte, 16)
	if _, err := rand.Read(salt); err != nil {
		return nil, err
	}
	salted, err := pbkdf2.Key(sha256.New, password, salt, scramIterations, sha256.Size)
	if err != nil {
		return nil, err
	}
	s := &scramSecret{
		salt:      salt,
		storedKey: sha256Sum(hmacSum(salted, "Client Key")),
		serverKey: hmacSum(salted, "Server Key"),
	}
	c.put(key, s)
	return s, nil
}

func (c *secretCache) put(key string, s *scramSecret) {
	if c.m == nil {
		c.m = make(map[string]*scramSecret)
	}
	c.m[key] = s
}

// parseScramVerifier reads a Postgres-style verifier:
// SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>.
// Only the default iteration count is supported, since the client derives
// the salted password with the count we announce.
func parseScramVerifier(v string) (*scramSecret, error) {
	var iter int
	var salt, keys string
	parts := strings.SplitN(strings.TrimPrefix(v, "SCRAM-SHA-256$"), "$", 2)
	if len(parts) != 2 {
		return nil, errors.New("malformed SCRAM verifier")
	}
	if _, err := fmt.Sscanf(parts[0], "%d:%s", &iter, &salt); err != nil {
		return nil, errors.New("malformed SCRAM verifier")
	}
	keys = parts[1]
	k := strings.SplitN(keys, ":", 2)
	if len(k) != 2 || iter != scramIterations {
		return nil, errors.New("malformed SCRAM verifier")
	}
	s := &scramSecret{}
	var err error
	if s.salt, err = base64.StdEncoding.DecodeString(salt); err != nil {
		return nil, err
	}
	if s.storedKey, err = base64.StdEncoding.DecodeString(k[0]); err != nil {
		return nil, err
	}
	if s.serverKey, err = base64.StdEncoding.DecodeString(k[1]); err != nil {
		return nil, err
	}
	return s, nil
}

func hmacSum(key []byte, msg string) []byte {
	h := hmac.New(sha256.New, key)
	h.Write([]byte(msg))
	return h.Sum(nil)
}

func sha256Sum(b []byte) []byte {
	s := sha256.Sum256(b)
	return s[:]
}

// errAuthFailed is the message Postgres gives for any password failure; it
// does not reveal whether the role exists.
func errAuthFailed(user string) error {
	return &pgconn.PgError{Severity: "FATAL", Code: "28P01",
		Message: fmt.Sprintf("password authentication failed for user %q", user)}
}

func errProtocol(format string, args ...any) error {
	return &pgconn.PgError{Severity: "FATAL", Code: "08P01", Message: fmt.Sprintf(format, args...)}
}

// authSCRAM runs the SCRAM-SHA-256 exchange (RFC 5802, RFC 7677) as the
// server; see the Postgres docs "SASL Authentication". password is "" with
// known=false for an unknown role: the exchange then runs to the end with a
// throwaway secret so that timing and messages do not reveal which roles exist.
func authSCRAM(be *pgproto3.Backend, cache *secretCache, user, password string, known bool) error {
	var secret *scramSecret
	var err error
	if known {
		secret, err = cache.get(user, password)
	} else {
		secret, err = cache.get("\x00unknown", "unknown")
	}
	if err != nil {
		return err
	}
	be.Send(&pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASL); err != nil {
		return err
	}
	msg, err := be.Receive()
	if err != nil {
		return err
	}
	initial, ok := msg.(*pgproto3.SASLInitialResponse)
	if !ok {
		return errProtocol("expected SASL initial response, got %T", msg)
	}
	if initial.AuthMechanism != "SCRAM-SHA-256" {
		return errProtocol("client selected an invalid SASL authentication mechanism")
	}
	clientFirst := string(initial.Data)
	// gs2 header: we offer no channel binding, so accept "n,," and "y,,".
	if !strings.HasPrefix(clientFirst, "n,,") && !strings.HasPrefix(clientFirst, "y,,") {
		return errProtocol("malformed SCRAM message (unsupported channel binding)")
	}
	clientFirstBare := clientFirst[3:]
	clientNonce := scramAttr(clientFirstBare, 'r')
	if clientNonce == "" {
		return errProtocol("malformed SCRAM message (missing nonce)")
	}
	nonceBytes := make([]byte, 18)
	if _, err := rand.Read(nonceBytes); err != nil {
		return err
	}
	nonce := clientNonce + base64.StdEncoding.EncodeToString(nonceBytes)
	serverFirst := fmt.Sprintf("r=%s,s=%s,i=%d", nonce, base64.StdEncoding.EncodeToString(secret.salt), scramIterations)
	be.Send(&pgproto3.AuthenticationSASLContinue{Data: []byte(serverFirst)})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeSASLContinue); err != nil {
		return err
	}
	msg, err = be.Receive()
	if err != nil {
		return err
	}
	resp, ok := msg.(*pgproto3.SASLResponse)
	if !ok {
		return errProtocol("expected SASL response, got %T", msg)
	}
	clientFinal := string(resp.Data)
	i := strings.LastIndex(clientFinal, ",p=")
	if i < 0 {
		return errProtocol("malformed SCRAM message (missing proof)")
	}
	withoutProof := clientFinal[:i]
	if scramAttr(withoutProof, 'r') != nonce {
		return errProtocol("malformed SCRAM message (nonce mismatch)")
	}
	proof, err := base64.StdEncoding.DecodeString(clientFinal[i+3:])
	if err != nil || len(proof) != sha256.Size {
		return errProtocol("malformed SCRAM message (invalid proof)")
	}
	authMessage := clientFirstBare + "," + serverFirst + "," + withoutProof
	clientSignature := hmacSum(secret.storedKey, authMessage)
	clientKey := make([]byte, len(proof))
	for j := range proof {
		clientKey[j] = proof[j] ^ clientSignature[j]
	}
	if !known || subtle.ConstantTimeCompare(sha256Sum(clientKey), secret.storedKey) != 1 {
		return errAuthFailed(user)
	}
	serverSignature := hmacSum(secret.serverKey, authMessage)
	be.Send(&pgproto3.AuthenticationSASLFinal{Data: []byte("v=" + base64.StdEncoding.EncodeToString(serverSignature))})
	return nil
}

// scramAttr returns the value of attribute k in a comma-separated SCRAM message.
func scramAttr(msg string, k byte) string {
	for _, f := range strings.Split(msg, ",") {
		if len(f) >= 2 && f[0] == k && f[1] == '=' {
			return f[2:]
		}
	}
	return ""
}

// authMD5 runs md5 password authentication ("md5" + md5(md5(password+user)+salt)).
// It exists for old drivers; SCRAM is the default.
func authMD5(be *pgproto3.Backend, user, password string, known bool) error {
	var salt [4]byte
	if _, err := rand.Read(salt[:]); err != nil {
		return err
	}
	be.Send(&pgproto3.AuthenticationMD5Password{Salt: salt})
	if err := be.Flush(); err != nil {
		return err
	}
	if err := be.SetAuthType(pgproto3.AuthTypeMD5Password); err != nil {
		return err
	}
	msg, err := be.Receive()
	if err != nil {
		return err
	}
	pw, ok := msg.(*pgproto3.PasswordMessage)
	if !ok {
		return errProtocol("expected password response, got %T", msg)
	}
	inner := password
	if !strings.HasPrefix(password, "md5") || len(password) != 35 {
		inner = "md5" + md5Hex(password+user)
	}
	want := "md5" + md5Hex(inner[3:]+string(salt[:]))
	if !known || subtle.ConstantTimeCompare([]byte(pw.Password), []byte(want)) != 1 {
		return errAuthFailed(user)
	}
	return nil
}

func md5Hex(s string) string {
	sum := md5.Sum([]byte(s))
	return hex.EncodeToString(sum[:])
}
