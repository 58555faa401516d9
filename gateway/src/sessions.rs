//! MCP sessions bound to the caller that opened them, without state shared between replicas.
//!
//! An upstream's `Mcp-Session-Id` is a bearer secret of its own: whoever presents it continues the session.
//! The gateway never hands it to the client as it is. It gives the client a *sealed* id instead: the upstream's
//! id encrypted with XChaCha20-Poly1305 (an AEAD) under a key derived from the session secret (HKDF-SHA256),
//! with the upstream's name and the session's owner as associated data, so they are bound to it without being
//! stored in it. Who owns a session:
//! - a caller admitted by a gateway key: the key's identity;
//! - a JWT of the gateway's issuer: its issuer and either its subject (a user) or its client (a client
//!   credentials grant, where `sub` names the client itself, or `sub` is absent) — a user `alice` and a client
//!   `alice` are different owners; a JWT naming neither: the token's SHA-256 digest;
//! - a passthrough caller (the upstream's own OAuth token): the SHA-256 digest of that token, never the token.
//!   A client whose token is refreshed therefore no longer owns the sessions it opened with the old token: they
//!   answer 404 and the client opens a new one, as the MCP transport specifies.
//!
//! Every replica holding the same secret ([`SECRET_VAR`], or `general_settings.session_secret`) opens the id,
//! after a restart too; during a rotation the previous secret ([`PREVIOUS_SECRET_VAR`]) is still accepted. A
//! sealed id presented by another caller, for another upstream, altered in any byte, sealed under another
//! secret, or the upstream's raw id, does not open: the answer is `404` (an unknown session), and the upstream
//! is never contacted. `DELETE` is relayed with the upstream's id, so the upstream forgets the session, which
//! every replica then learns from it. Without a configured secret, a random one is drawn per process: sessions
//! then live as long as the process, on that replica only.
//!
//! The request's `Mcp-Session-Id` must be one header of visible ASCII (the MCP transport's rule); several, or
//! other bytes, are `400`.

use std::{fmt, sync::Arc, time::Duration};

use axum::http::{HeaderMap, HeaderName, HeaderValue};
use base64::{engine::general_purpose::URL_SAFE_NO_PAD, Engine as _};
use chacha20poly1305::{
    aead::{rand_core::RngCore, Aead, AeadCore, AeadInPlace, KeyInit, OsRng, Payload},
    Tag, XChaCha20Poly1305, XNonce,
};
use hkdf::Hkdf;
use moka::sync::Cache;
use sha2::{Digest, Sha256};
use smallvec::SmallVec;

use super::resource_server::Caller;

/// The MCP session header, a `HeaderName` so that looking it up or setting it does not parse its name.
pub const SESSION_HEADER: HeaderName = HeaderName::from_static("mcp-session-id");
/// The environment variable of the session secret every replica shares.
pub const SECRET_VAR: &str = "MCP_GATEWAY_SESSION_SECRET";
/// The environment variable of the previous session secret, still accepted during a rotation.
pub const PREVIOUS_SECRET_VAR: &str = "MCP_GATEWAY_SESSION_SECRET_PREVIOUS";
/// The shortest secret accepted, in bytes (`openssl rand -base64 32` gives 44).
pub const MIN_SECRET_LEN: usize = 32;

/// The first byte of every sealed id: the format, so that a later one can be told apart.
const VERSION: u8 = 1;
/// HKDF's `info`: the key is for sealing session ids and nothing else.
const KEY_INFO: &[u8] = b"mcp-gateway session id v1";
const NONCE_LEN: usize = 24;
const TAG_LEN: usize = 16;
/// Sealed ids longer than this are not decoded (the upstream ids they hold are short).
const MAX_SEALED_LEN: usize = 2048;

/// A configured session secret. `Debug` never shows it.
#[derive(Clone, PartialEq, Eq)]
pub struct SessionSecret(Vec<u8>);

impl SessionSecret {
    /// `value` as a secret, or why not (too short); `source` names where it came from, never the value.
    pub fn new(value: &str, source: &str) -> Result<Self, String> {
        if value.trim().len() < MIN_SECRET_LEN {
            return Err(format!(
                "{source}: the session secret must be at least {MIN_SECRET_LEN} bytes (e.g. openssl rand -base64 32)"
            ));
        }
        Ok(Self(value.trim().as_bytes().to_vec()))
    }

    /// A random secret, for a process without a configured one.
    pub(crate) fn random() -> Self {
        let mut bytes = vec![0; 32];
        OsRng.fill_bytes(&mut bytes);
        Self(bytes)
    }

    /// The `configured` secret, else the process's `random` one (drawn once, so that sessions survive a
    /// reload), with a warning that sessions then end with the process.
    pub(crate) fn configured_or<'a>(configured: Option<&'a Self>, random: &'a Self) -> &'a Self {
        configured.unwrap_or_else(|| {
            tracing::warn!(
                "no session secret ({SECRET_VAR} or general_settings.session_secret): MCP sessions are \
                 sealed with a random secret of this process, so they end when it stops and other replicas \
                 do not know them"
            );
            random
        })
    }

    fn cipher(&self) -> XChaCha20Poly1305 {
        let mut key = [0; 32];
        Hkdf::<Sha256>::new(None, &self.0)
            .expand(KEY_INFO, &mut key)
            .expect("32 bytes is a valid HKDF-SHA256 output length");
        XChaCha20Poly1305::new(&key.into())
    }
}

impl fmt::Debug for SessionSecret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SessionSecret([redacted])")
    }
}

/// Who opened a session, as the bytes bound to its sealed id: a kind, then length-prefixed fields, so no two
/// owners share an encoding (an issuer URL with a `:` in it cannot run into a subject). Held in place up to
/// [`OWNER_INLINE`] bytes (a key's name, a token digest, most issuer and subject pairs): finding the owner of a
/// request allocates nothing.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Owner(SmallVec<[u8; OWNER_INLINE]>);

/// The bytes of an [`Owner`] held without an allocation.
const OWNER_INLINE: usize = 96;

impl Owner {
    /// The caller of an admitted request: its identity if it has one, else its passthrough token's SHA-256
    /// digest.
    pub fn of(identity: Option<&Caller>, token_digest: Option<[u8; 32]>) -> Option<Self> {
        match (identity, token_digest) {
            (Some(Caller::Key(key)), _) => Some(Self::new(b'k', &[key.name().as_bytes()])),
            (Some(Caller::Jwt(claims)), _) => {
                Some(match (claims.sub.as_deref(), claims.client_id.as_deref()) {
                    // RFC 9068 §2.2: without a resource owner (client credentials), `sub` names the client.
                    (Some(sub), Some(client)) if sub == client => {
                        Self::new(b'c', &[claims.iss.as_bytes(), client.as_bytes()])
                    }
                    (Some(sub), _) => Self::new(b'u', &[claims.iss.as_bytes(), sub.as_bytes()]),
                    (None, Some(client)) => {
                        Self::new(b'c', &[claims.iss.as_bytes(), client.as_bytes()])
                    }
                    (None, None) => Self::new(b'j', &[&Sha256::digest(claims.token().as_bytes())]),
                })
            }
            (None, Some(digest)) => Some(Self::new(b't', &[&digest])),
            (None, None) => None,
        }
    }

    fn new(kind: u8, fields: &[&[u8]]) -> Self {
        let length = 1 + fields.iter().map(|field| 4 + field.len()).sum::<usize>();
        let mut bytes = SmallVec::with_capacity(length);
        bytes.push(kind);
        for field in fields {
            bytes.extend_from_slice(&(field.len() as u32).to_be_bytes());
            bytes.extend_from_slice(field);
        }
        Self(bytes)
    }
}

/// Seals upstream session ids into the ids clients see, and opens them again.
#[derive(Clone)]
pub struct Sealer {
    current: XChaCha20Poly1305,
    previous: Option<XChaCha20Poly1305>,
    /// Ids this sealer opened, by the id the client holds: each request of a session presents the same id, and
    /// opening it (XChaCha20-Poly1305's key set-up) costs more than the rest of the session's handling. An entry
    /// answers only for the upstream and owner it was opened for, as the seal would; ids that do not open are
    /// never kept.
    opened: Cache<Box<[u8]>, Arc<Opened>, foldhash::fast::RandomState>,
}

/// An id [`Sealer::open`] opened: for whom, and the upstream's id inside.
struct Opened {
    upstream: Box<str>,
    owner: Owner,
    session: HeaderValue,
}

/// The bytes the cache of opened ids holds at most (about 20,000 sessions of typical length).
const OPENED_CAPACITY: u64 = 4 << 20;
/// How long an opened id no request presents stays in the cache.
const OPENED_IDLE: Duration = Duration::from_secs(600);

impl Sealer {
    /// Seals with `current` and opens with `current` or `previous`.
    pub fn new(current: &SessionSecret, previous: Option<&SessionSecret>) -> Self {
        Self {
            current: current.cipher(),
            previous: previous.map(SessionSecret::cipher),
            opened: Cache::<Box<[u8]>, Arc<Opened>>::builder()
                .max_capacity(OPENED_CAPACITY)
                .weigher(|sealed, opened| {
                    let bytes = sealed.len()
                        + opened.upstream.len()
                        + opened.owner.0.len()
                        + opened.session.len();
                    u32::try_from(bytes + 64).unwrap_or(u32::MAX)
                })
                .time_to_idle(OPENED_IDLE)
                // Only ids that opened are kept, so clients cannot choose the keys: a fast hash will do.
                .build_with_hasher(foldhash::fast::RandomState::default()),
        }
    }

    /// The id the client sees for `session`, which `upstream` handed to `owner`.
    pub fn seal(&self, upstream: &str, owner: &Owner, session: &[u8]) -> HeaderValue {
        let nonce = XChaCha20Poly1305::generate_nonce(&mut OsRng);
        let aad = associated(upstream, owner);
        let sealed = self
            .current
            .encrypt(
                &nonce,
                Payload {
                    msg: session,
                    aad: &aad,
                },
            )
            .expect("XChaCha20-Poly1305 seals any message of this size");
        let mut bytes = Vec::with_capacity(1 + NONCE_LEN + sealed.len());
        bytes.push(VERSION);
        bytes.extend_from_slice(&nonce);
        bytes.extend_from_slice(&sealed);
        HeaderValue::try_from(URL_SAFE_NO_PAD.encode(bytes))
            .expect("base64 is a valid header value")
    }

    /// The upstream's id inside `sealed`, if it was sealed for `owner` on `upstream` under the current or the
    /// previous secret; `None` for anything else.
    pub fn open(&self, upstream: &str, owner: &Owner, sealed: &HeaderValue) -> Option<HeaderValue> {
        let sealed = sealed.as_bytes();
        if sealed.len() > MAX_SEALED_LEN {
            return None;
        }
        if let Some(known) = self.opened.get(sealed) {
            // Sealed for another upstream or owner, this id would not open: nor does it here.
            return (*known.upstream == *upstream && known.owner == *owner)
                .then(|| known.session.clone());
        }
        let session = self.open_sealed(upstream, owner, sealed)?;
        self.opened.insert(
            sealed.into(),
            Arc::new(Opened {
                upstream: upstream.into(),
                owner: owner.clone(),
                session: session.clone(),
            }),
        );
        Some(session)
    }

    /// [`Self::open`] without the cache.
    fn open_sealed(&self, upstream: &str, owner: &Owner, sealed: &[u8]) -> Option<HeaderValue> {
        // Decoded and opened in place, on the stack: only the opened id is allocated.
        let mut buffer = [0u8; MAX_SEALED_LEN / 4 * 3];
        let len = URL_SAFE_NO_PAD.decode_slice(sealed, &mut buffer).ok()?;
        let (&mut version, rest) = buffer[..len].split_first_mut()?;
        if version != VERSION || rest.len() < NONCE_LEN + TAG_LEN {
            return None;
        }
        let (nonce, rest) = rest.split_at_mut(NONCE_LEN);
        let (message, tag) = rest.split_at_mut(rest.len() - TAG_LEN);
        let (nonce, tag) = (XNonce::from_slice(nonce), Tag::from_slice(tag));
        let aad = associated(upstream, owner);
        // The tag is checked before anything is decrypted: a refused key leaves `message` as it was.
        self.current
            .decrypt_in_place_detached(nonce, &aad, message, tag)
            .or_else(|e| {
                self.previous
                    .as_ref()
                    .ok_or(e)?
                    .decrypt_in_place_detached(nonce, &aad, message, tag)
            })
            .ok()?;
        HeaderValue::from_bytes(message).ok()
    }
}

/// The associated data of a sealed id: the upstream's name, then the owner.
fn associated(upstream: &str, owner: &Owner) -> Vec<u8> {
    let mut aad = Vec::with_capacity(4 + upstream.len() + owner.0.len());
    aad.extend_from_slice(&(upstream.len() as u32).to_be_bytes());
    aad.extend_from_slice(upstream.as_bytes());
    aad.extend_from_slice(&owner.0);
    aad
}

/// The request's session id: `Ok(None)` when absent, or why it is refused (the caller answers `400`) when it
/// is sent several times or holds anything but visible ASCII.
pub fn presented(headers: &HeaderMap) -> Result<Option<&HeaderValue>, &'static str> {
    let mut values = headers.get_all(&SESSION_HEADER).iter();
    match (values.next(), values.next()) {
        (None, _) => Ok(None),
        (Some(_), Some(_)) => Err("more than one Mcp-Session-Id header"),
        (Some(value), None)
            if value.is_empty() || !value.as_bytes().iter().all(|b| (0x21..=0x7e).contains(b)) =>
        {
            Err("the Mcp-Session-Id header must be visible ASCII")
        }
        (Some(value), None) => Ok(Some(value)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn secret(fill: char) -> SessionSecret {
        SessionSecret::new(&fill.to_string().repeat(40), "test").unwrap()
    }

    fn owner(name: &str) -> Owner {
        Owner::new(b'k', &[name.as_bytes()])
    }

    #[test]
    fn a_sealed_id_opens_only_for_its_owner_upstream_and_secret() {
        let sealer = Sealer::new(&secret('a'), None);
        let sealed = sealer.seal("atl", &owner("alice"), b"upstream-1");
        assert_ne!(sealed.as_bytes(), b"upstream-1");
        assert_eq!(
            sealer.open("atl", &owner("alice"), &sealed).unwrap(),
            "upstream-1"
        );
        assert!(sealer.open("atl", &owner("bob"), &sealed).is_none());
        assert!(sealer.open("priv", &owner("alice"), &sealed).is_none());
        let other = Sealer::new(&secret('b'), None);
        assert!(other.open("atl", &owner("alice"), &sealed).is_none());
        assert!(sealer
            .open(
                "atl",
                &owner("alice"),
                &HeaderValue::from_static("upstream-1")
            )
            .is_none());
    }

    #[test]
    fn an_opened_id_is_kept_for_its_upstream_and_owner_only() {
        let sealer = Sealer::new(&secret('a'), None);
        let sealed = sealer.seal("atl", &owner("alice"), b"upstream-1");
        for _ in 0..3 {
            assert_eq!(
                sealer.open("atl", &owner("alice"), &sealed).unwrap(),
                "upstream-1"
            );
        }
        assert_eq!(
            sealer.opened.get(sealed.as_bytes()).unwrap().session,
            "upstream-1"
        );
        // Kept, and still refused to anyone else and on any other upstream.
        assert!(sealer.open("atl", &owner("bob"), &sealed).is_none());
        assert!(sealer.open("priv", &owner("alice"), &sealed).is_none());
        // An id that does not open is never kept.
        let forged = HeaderValue::from_static(
            "AQAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        );
        assert!(sealer.open("atl", &owner("alice"), &forged).is_none());
        assert!(sealer.opened.get(forged.as_bytes()).is_none());
        // Another secret's sealer has its own cache: what this one opened does not open there.
        assert!(Sealer::new(&secret('b'), None)
            .open("atl", &owner("alice"), &sealed)
            .is_none());
    }

    #[test]
    fn every_altered_byte_is_refused() {
        let sealer = Sealer::new(&secret('a'), None);
        let sealed = sealer.seal("atl", &owner("alice"), b"upstream-1");
        let text = sealed.to_str().unwrap();
        for i in 0..text.len() {
            let mut bytes = text.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            let altered = HeaderValue::from_bytes(&bytes).unwrap();
            // Base64's last character may carry unused bits: such a change decodes to the same bytes.
            if URL_SAFE_NO_PAD.decode(&bytes).ok() == URL_SAFE_NO_PAD.decode(text).ok() {
                continue;
            }
            assert!(
                sealer.open("atl", &owner("alice"), &altered).is_none(),
                "byte {i}"
            );
        }
    }

    #[test]
    fn the_previous_secret_opens_during_a_rotation() {
        let old = Sealer::new(&secret('a'), None);
        let sealed = old.seal("atl", &owner("alice"), b"upstream-1");
        let rotated = Sealer::new(&secret('b'), Some(&secret('a')));
        assert_eq!(
            rotated.open("atl", &owner("alice"), &sealed).unwrap(),
            "upstream-1"
        );
        // New ids are sealed with the new secret only.
        let new = rotated.seal("atl", &owner("alice"), b"upstream-2");
        assert!(old.open("atl", &owner("alice"), &new).is_none());
        assert!(Sealer::new(&secret('b'), None)
            .open("atl", &owner("alice"), &new)
            .is_some());
    }

    #[test]
    fn owners_of_different_kinds_or_fields_differ() {
        assert_ne!(
            Owner::new(b'u', &[b"https://idp", b"alice"]),
            Owner::new(b'c', &[b"https://idp", b"alice"])
        );
        assert_ne!(
            Owner::new(b'u', &[b"https://idp:a", b"b"]),
            Owner::new(b'u', &[b"https://idp", b"a:b"])
        );
        assert_ne!(Owner::new(b'k', &[b"alice"]), Owner::new(b'u', &[b"alice"]));
    }

    #[test]
    fn short_secrets_are_refused_without_repeating_them() {
        let error = SessionSecret::new("sk-too-short", SECRET_VAR).unwrap_err();
        assert!(error.starts_with(SECRET_VAR) && !error.contains("sk-too-short"));
        assert_eq!(format!("{:?}", secret('a')), "SessionSecret([redacted])");
    }

    #[test]
    fn session_headers_must_be_one_visible_ascii_value() {
        let mut headers = HeaderMap::new();
        assert!(presented(&headers).unwrap().is_none());
        headers.insert(SESSION_HEADER, HeaderValue::from_static("abc"));
        assert_eq!(presented(&headers).unwrap().unwrap(), "abc");
        headers.append(SESSION_HEADER, HeaderValue::from_static("def"));
        assert!(presented(&headers).is_err());
        for bad in [&b"a b"[..], b"a\tb", b"caf\xc3\xa9", b""] {
            let mut headers = HeaderMap::new();
            headers.insert(SESSION_HEADER, HeaderValue::from_bytes(bad).unwrap());
            assert!(presented(&headers).is_err(), "{bad:?}");
        }
    }
}
