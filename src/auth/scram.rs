//! SCRAM-SHA-256 (RFC 5802 / 7677) from the server's side, as PostgreSQL speaks it to clients.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use hmac::{Hmac, Mac};
use rand::RngCore;
use sha2::{Digest, Sha256};

type HmacSha256 = Hmac<Sha256>;

/// Iterations used for verifiers computed from plaintext passwords (PostgreSQL's default).
const ITERATIONS: u32 = 4096;

/// Why a SCRAM exchange or verifier failed.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ScramError {
    /// The client's message did not follow RFC 5802's grammar.
    #[error("malformed SCRAM message: {0}")]
    Malformed(&'static str),
    /// The client asked for channel binding, which pgsplit does not offer.
    #[error("channel binding is not supported")]
    ChannelBinding,
    /// The client named an authorization identity (`a=`), which PostgreSQL does not support either (0A000).
    #[error("client uses authorization identity, but it is not supported")]
    AuthorizationIdentity,
    /// The proof did not match: wrong password.
    #[error("password authentication failed")]
    BadProof,
    /// A configured verifier string is not in PostgreSQL's format.
    #[error("invalid SCRAM verifier")]
    BadVerifier,
    /// A server's verifier is not the one the client's keys were proven against (another salt or iteration count).
    #[error("the server holds another verifier for this role than the one the client proved its password against")]
    OtherVerifier,
}

/// What the server stores for a user: salt, iterations, StoredKey and ServerKey.
#[derive(Clone)]
pub struct Verifier {
    /// Random salt for Hi().
    salt: Vec<u8>,
    /// PBKDF2 iteration count.
    iterations: u32,
    /// H(ClientKey): checks the client's proof.
    stored_key: [u8; 32],
    /// Signs the server's final message so the client knows we hold the verifier.
    server_key: [u8; 32],
}

impl std::fmt::Debug for Verifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Verifier(**redacted**)")
    }
}

impl Verifier {
    /// Computes a verifier for a plaintext password with a fresh random salt.
    pub fn from_password(password: &str) -> Self {
        let mut salt = vec![0u8; 16];
        rand::rng().fill_bytes(&mut salt);
        Self::with_salt(password, salt, ITERATIONS)
    }

    /// Computes a verifier with a given salt and iteration count.
    pub fn with_salt(password: &str, salt: Vec<u8>, iterations: u32) -> Self {
        let salted = hi(normalize(password).as_bytes(), &salt, iterations);
        let client_key = hmac(&salted, b"Client Key");
        let stored_key: [u8; 32] = Sha256::digest(client_key).into();
        let server_key = hmac(&salted, b"Server Key");
        Verifier { salt, iterations, stored_key, server_key }
    }

    /// A verifier no password matches, with the given salt: what an unknown user is challenged with, at the cost
    /// of a known one (no key derivation per attempt).
    pub fn mock(salt: Vec<u8>, keys: &[u8; 64]) -> Self {
        let mut stored_key = [0u8; 32];
        let mut server_key = [0u8; 32];
        stored_key.copy_from_slice(&keys[..32]);
        server_key.copy_from_slice(&keys[32..]);
        Verifier { salt, iterations: ITERATIONS, stored_key, server_key }
    }

    /// Parses PostgreSQL's `SCRAM-SHA-256$<iter>:<salt>$<StoredKey>:<ServerKey>`.
    pub fn parse(s: &str) -> Result<Self, ScramError> {
        let rest = s.strip_prefix("SCRAM-SHA-256$").ok_or(ScramError::BadVerifier)?;
        let (iter_salt, keys) = rest.split_once('$').ok_or(ScramError::BadVerifier)?;
        let (iter, salt) = iter_salt.split_once(':').ok_or(ScramError::BadVerifier)?;
        let (stored, server) = keys.split_once(':').ok_or(ScramError::BadVerifier)?;
        let key = |k: &str| -> Result<[u8; 32], ScramError> {
            B64.decode(k).ok().and_then(|v| v.try_into().ok()).ok_or(ScramError::BadVerifier)
        };
        Ok(Verifier {
            iterations: iter.parse().map_err(|_| ScramError::BadVerifier)?,
            salt: B64.decode(salt).map_err(|_| ScramError::BadVerifier)?,
            stored_key: key(stored)?,
            server_key: key(server)?,
        })
    }
}

/// Applies SASLprep as PostgreSQL does (`pg_saslprep`): the prepared form when SASLprep accepts the password,
/// else the raw password.
fn normalize(password: &str) -> String {
    stringprep::saslprep(password).map(|p| p.into_owned()).unwrap_or_else(|_| password.to_owned())
}

pub(crate) fn hmac(key: &[u8], data: &[u8]) -> [u8; 32] {
    // HMAC accepts keys of any length, so new_from_slice cannot fail here.
    let mut mac = match HmacSha256::new_from_slice(key) {
        Ok(m) => m,
        Err(_) => return [0; 32],
    };
    mac.update(data);
    mac.finalize().into_bytes().into()
}

fn hi(password: &[u8], salt: &[u8], iterations: u32) -> [u8; 32] {
    let mut block = salt.to_vec();
    block.extend_from_slice(&1u32.to_be_bytes());
    let mut u = hmac(password, &block);
    let mut out = u;
    for _ in 1..iterations {
        u = hmac(password, &u);
        for (o, x) in out.iter_mut().zip(u.iter()) {
            *o ^= x;
        }
    }
    out
}

/// One server-side SCRAM exchange, driven by the session's startup code.
pub struct ScramExchange<'v> {
    /// The user's verifier.
    verifier: &'v Verifier,
    /// client-first-message-bare, part of the AuthMessage.
    client_first_bare: String,
    /// server-first-message, part of the AuthMessage.
    server_first: String,
    /// Client nonce + server nonce; the client must echo it.
    nonce: String,
    /// The GS2 header the client sent, echoed base64-encoded in `c=`.
    gs2_header: String,
}

impl<'v> ScramExchange<'v> {
    /// Handles client-first-message; returns the exchange and the server-first-message to send.
    pub fn start(verifier: &'v Verifier, client_first: &[u8]) -> Result<(Self, String), ScramError> {
        let mut nonce = [0u8; 18];
        rand::rng().fill_bytes(&mut nonce);
        Self::start_with_nonce(verifier, client_first, &B64.encode(nonce))
    }

    /// `start` with a given server nonce (tests and the fuzz target, which need a reproducible exchange).
    pub(crate) fn start_with_nonce(
        verifier: &'v Verifier,
        client_first: &[u8],
        server_nonce: &str,
    ) -> Result<(Self, String), ScramError> {
        let text = std::str::from_utf8(client_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        // gs2-header = gs2-cbind-flag "," [authzid] ","
        let (flag, rest) = text.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        match flag {
            "n" | "y" => {}
            f if f.starts_with("p=") => return Err(ScramError::ChannelBinding),
            _ => return Err(ScramError::Malformed("bad channel binding flag")),
        }
        let (authzid, bare) = rest.split_once(',').ok_or(ScramError::Malformed("no GS2 header"))?;
        if authzid.starts_with('a') {
            return Err(ScramError::AuthorizationIdentity);
        } else if !authzid.is_empty() {
            return Err(ScramError::Malformed("unexpected attribute in client-first-message"));
        }
        let gs2_header = format!("{flag},{authzid},");
        let client_nonce = bare
            .split(',')
            .find_map(|a| a.strip_prefix("r="))
            .filter(|n| !n.is_empty() && n.bytes().all(|b| (0x21..=0x7e).contains(&b) && b != b','))
            .ok_or(ScramError::Malformed("no client nonce"))?;
        let nonce = format!("{client_nonce}{server_nonce}");
        let server_first = format!("r={nonce},s={},i={}", B64.encode(&verifier.salt), verifier.iterations);
        let ex =
            ScramExchange { verifier, client_first_bare: bare.to_owned(), server_first: server_first.clone(), nonce, gs2_header };
        Ok((ex, server_first))
    }

    /// Checks client-final-message; returns the server-final-message (`v=...`) on success.
    pub fn finish(self, client_final: &[u8]) -> Result<String, ScramError> {
        self.finish_with_keys(client_final).map(|(server_final, _)| server_final)
    }

    /// `finish`, and the keys the client's proof gave: what pgsplit logs in with in the client's name
    /// (`passthrough`).
    pub fn finish_with_keys(self, client_final: &[u8]) -> Result<(String, super::ScramKeys), ScramError> {
        let text = std::str::from_utf8(client_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let (without_proof, proof) = text.rsplit_once(",p=").ok_or(ScramError::Malformed("no proof"))?;
        let mut channel = None;
        let mut nonce = None;
        for attr in without_proof.split(',') {
            if let Some(c) = attr.strip_prefix("c=") {
                channel = Some(c);
            } else if let Some(r) = attr.strip_prefix("r=") {
                nonce = Some(r);
            }
        }
        if channel != Some(B64.encode(&self.gs2_header).as_str()) {
            return Err(ScramError::Malformed("channel binding data does not match"));
        }
        if nonce != Some(self.nonce.as_str()) {
            return Err(ScramError::Malformed("nonce does not match"));
        }
        let proof: [u8; 32] = B64.decode(proof).ok().and_then(|p| p.try_into().ok()).ok_or(ScramError::Malformed("bad proof"))?;
        let auth_message = format!("{},{},{}", self.client_first_bare, self.server_first, without_proof);
        let client_signature = hmac(&self.verifier.stored_key, auth_message.as_bytes());
        let mut client_key = [0u8; 32];
        for i in 0..32 {
            client_key[i] = proof[i] ^ client_signature[i];
        }
        let computed: [u8; 32] = Sha256::digest(client_key).into();
        // Constant-time comparison: the result must not leak how many bytes matched.
        let diff = computed.iter().zip(self.verifier.stored_key.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if diff != 0 {
            return Err(ScramError::BadProof);
        }
        let server_signature = hmac(&self.verifier.server_key, auth_message.as_bytes());
        let keys = super::ScramKeys {
            client_key,
            server_key: self.verifier.server_key,
            salt: self.verifier.salt.clone(),
            iterations: self.verifier.iterations,
        };
        Ok((format!("v={}", B64.encode(server_signature)), keys))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// RFC 7677 §3 test vector.
    #[test]
    fn matches_rfc7677_vector() {
        let salt = B64.decode("W22ZaJ0SNY7soEsUEjb6gQ==").unwrap();
        let v = Verifier::with_salt("pencil", salt, 4096);
        let (ex, server_first) =
            ScramExchange::start_with_nonce(&v, b"n,,n=user,r=rOprNGfwEbeRWgbNEkqO", "%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0").unwrap();
        assert_eq!(server_first, "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096");
        let final_msg = ex
            .finish(b"c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ=")
            .unwrap();
        assert_eq!(final_msg, "v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4=");
    }

    fn run_client(v: &Verifier, password: &str) -> Result<(), ScramError> {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unrequested());
        let (ex, server_first) = ScramExchange::start(v, client.message())?;
        client.update(server_first.as_bytes()).map_err(|_| ScramError::Malformed("client rejected server-first"))?;
        let server_final = ex.finish(client.message())?;
        client.finish(server_final.as_bytes()).map_err(|_| ScramError::Malformed("client rejected server signature"))
    }

    #[test]
    fn postgres_protocol_client_authenticates_with_the_right_password() {
        let v = Verifier::from_password("s3cret");
        assert_eq!(run_client(&v, "s3cret"), Ok(()));
    }

    #[test]
    fn wrong_password_is_a_bad_proof() {
        let v = Verifier::from_password("s3cret");
        assert_eq!(run_client(&v, "guess"), Err(ScramError::BadProof));
    }

    #[test]
    fn parses_postgres_verifier_strings() {
        let stored = postgres_protocol::password::scram_sha_256(b"pw");
        let v = Verifier::parse(&stored).unwrap();
        assert_eq!(run_client(&v, "pw"), Ok(()));
        assert_eq!(Verifier::parse("SCRAM-SHA-256$x").unwrap_err(), ScramError::BadVerifier);
    }

    #[test]
    fn passwords_are_saslprepped_as_postgresql_does() {
        let salt = b"0123456789abcdef".to_vec();
        // A soft hyphen maps to nothing and a no-break space to a space (RFC 4013).
        let plain = Verifier::with_salt("IX y", salt.clone(), 4096);
        let prepped = Verifier::with_salt("I\u{00AD}X\u{00A0}y", salt.clone(), 4096);
        assert_eq!(plain.stored_key, prepped.stored_key);
        // A password SASLprep refuses (a prohibited character) is used as it is.
        let raw = Verifier::with_salt("a\u{0007}b", salt, 4096);
        assert_ne!(raw.stored_key, plain.stored_key);
    }

    #[test]
    fn malformed_client_messages_are_errors_not_panics() {
        let v = Verifier::from_password("pw");
        for junk in [&b""[..], b"n", b"n,,", b"x,,r=abc", b"p=tls-server-end-point,,n=,r=a", &[0xff, 0xfe]] {
            assert!(ScramExchange::start(&v, junk).is_err());
        }
        let (ex, _) = ScramExchange::start(&v, b"n,,n=,r=abc").unwrap();
        assert!(ex.finish(b"c=biws,r=abc,p=###").is_err());
    }
}
