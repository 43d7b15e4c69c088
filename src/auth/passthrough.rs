//! Logging in to a server as a client without its password (pass-through, as PgBouncer's with `auth_query`): the
//! client's SCRAM-SHA-256 proof gives pgsplit its ClientKey, which answers a server holding the same verifier; an
//! md5 verifier answers a server's md5 challenge as it is. Nothing here ever needs or sees a cleartext password.

use base64::engine::general_purpose::STANDARD as B64;
use base64::Engine;
use rand::RngCore;
use sha2::{Digest, Sha256};

use super::scram::{hmac, ScramError};

/// What a client's successful SCRAM exchange leaves: enough to prove the same identity to a server whose verifier
/// has this salt and iteration count.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ScramKeys {
    /// The client's ClientKey (its proof XOR ClientSignature).
    pub client_key: [u8; 32],
    /// The verifier's ServerKey: checks the server's signature.
    pub server_key: [u8; 32],
    /// The verifier's salt.
    pub salt: Vec<u8>,
    /// The verifier's iteration count.
    pub iterations: u32,
}

impl std::fmt::Debug for ScramKeys {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("ScramKeys(**redacted**)")
    }
}

/// A client's secret pgsplit may log in with in its name: SCRAM keys, or an md5 verifier (`md5` + 32 hex digits).
#[derive(Clone, PartialEq, Eq, Hash)]
pub enum Passthrough {
    /// From the client's SCRAM exchange.
    Scram(ScramKeys),
    /// The stored md5 verifier, `md5...`.
    Md5(String),
}

impl std::fmt::Debug for Passthrough {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Passthrough::Scram(_) => "Passthrough(SCRAM)",
            Passthrough::Md5(_) => "Passthrough(md5)",
        })
    }
}

/// The client side of a SCRAM-SHA-256 exchange with a server, proving `keys` instead of deriving them from a password.
pub struct KeyClient {
    keys: ScramKeys,
    nonce: String,
    /// The AuthMessage once the server's first message came (checks its signature).
    auth_message: Option<String>,
}

impl KeyClient {
    /// Starts the exchange: the client-first-message to send (no channel binding; the user name is in the startup
    /// packet, as PostgreSQL's clients leave `n=` empty).
    pub fn new(keys: ScramKeys) -> (KeyClient, Vec<u8>) {
        let mut raw = [0u8; 18];
        rand::rng().fill_bytes(&mut raw);
        let nonce = B64.encode(raw);
        let first = format!("n,,n=,r={nonce}").into_bytes();
        (KeyClient { keys, nonce, auth_message: None }, first)
    }

    /// Takes the server-first-message; returns the client-final-message. A server whose salt or iteration count is
    /// not the verifier's holds another verifier: the keys cannot answer it.
    pub fn update(&mut self, server_first: &[u8]) -> Result<Vec<u8>, ScramError> {
        let text = std::str::from_utf8(server_first).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let attr = |k: &str| text.split(',').find_map(|a| a.strip_prefix(k));
        let nonce = attr("r=").filter(|n| n.starts_with(&self.nonce) && n.len() > self.nonce.len());
        let nonce = nonce.ok_or(ScramError::Malformed("server nonce"))?;
        let salt = attr("s=").and_then(|s| B64.decode(s).ok()).ok_or(ScramError::Malformed("salt"))?;
        let iterations: u32 = attr("i=").and_then(|i| i.parse().ok()).ok_or(ScramError::Malformed("iterations"))?;
        if salt != self.keys.salt || iterations != self.keys.iterations {
            return Err(ScramError::OtherVerifier);
        }
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("n=,r={},{text},{without_proof}", self.nonce);
        let stored_key: [u8; 32] = Sha256::digest(self.keys.client_key).into();
        let signature = hmac(&stored_key, auth_message.as_bytes());
        let proof: Vec<u8> = self.keys.client_key.iter().zip(signature.iter()).map(|(k, s)| k ^ s).collect();
        self.auth_message = Some(auth_message);
        Ok(format!("{without_proof},p={}", B64.encode(proof)).into_bytes())
    }

    /// Checks the server-final-message: the server proves it holds the verifier too.
    pub fn finish(&self, server_final: &[u8]) -> Result<(), ScramError> {
        let text = std::str::from_utf8(server_final).map_err(|_| ScramError::Malformed("not UTF-8"))?;
        let auth_message = self.auth_message.as_deref().ok_or(ScramError::Malformed("server-final before server-first"))?;
        let signature = text.strip_prefix("v=").and_then(|v| B64.decode(v).ok()).ok_or(ScramError::Malformed("v="))?;
        let expected = hmac(&self.keys.server_key, auth_message.as_bytes());
        let diff = expected.iter().zip(signature.iter()).fold(0u8, |acc, (a, b)| acc | (a ^ b));
        if signature.len() != expected.len() || diff != 0 {
            return Err(ScramError::BadProof);
        }
        Ok(())
    }
}

/// The answer to a server's md5 challenge (`salt`) from a stored md5 verifier (`md5` + hex of md5(password user)).
pub fn md5_answer(verifier: &str, salt: [u8; 4]) -> Option<String> {
    let hex = verifier.strip_prefix("md5").filter(|h| h.len() == 32)?;
    Some(format!("md5{}", md5_hex(&[hex.as_bytes(), &salt])))
}

/// The md5 verifier of a cleartext password, as PostgreSQL stores it.
pub fn md5_verifier(user: &str, password: &str) -> String {
    format!("md5{}", md5_hex(&[password.as_bytes(), user.as_bytes()]))
}

/// The lower-case hex md5 of the parts, one after the other.
fn md5_hex(parts: &[&[u8]]) -> String {
    use md5::Digest;
    let mut h = md5::Md5::new();
    for p in parts {
        h.update(p);
    }
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::{ScramExchange, Verifier};
    use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};

    /// The keys a client's real SCRAM exchange (postgres-protocol's client, with the password) leaves.
    fn keys_of(v: &Verifier, password: &str) -> ScramKeys {
        let mut client = ScramSha256::new(password.as_bytes(), ChannelBinding::unrequested());
        let (ex, server_first) = ScramExchange::start(v, client.message()).unwrap();
        client.update(server_first.as_bytes()).unwrap();
        let (server_final, keys) = ex.finish_with_keys(client.message()).unwrap();
        client.finish(server_final.as_bytes()).unwrap();
        keys
    }

    #[test]
    fn keys_from_a_clients_proof_log_in_to_a_server_with_the_same_verifier_and_no_other() {
        let v = Verifier::from_password("s3cret");
        let keys = keys_of(&v, "s3cret");
        // A server holding the same verifier: the keys answer its exchange, and its signature checks out.
        let (mut c, first) = KeyClient::new(keys.clone());
        let (server, server_first) = ScramExchange::start(&v, &first).unwrap();
        let fin = c.update(server_first.as_bytes()).unwrap();
        let server_final = server.finish(&fin).expect("the server accepts the pass-through proof");
        c.finish(server_final.as_bytes()).expect("the server's signature");
        // Another verifier of the same password (another salt): refused before any proof is sent.
        let other = Verifier::from_password("s3cret");
        let (mut c, first) = KeyClient::new(keys);
        let (_, server_first) = ScramExchange::start(&other, &first).unwrap();
        assert_eq!(c.update(server_first.as_bytes()).unwrap_err(), ScramError::OtherVerifier);
        // A forged server-final is refused.
        let (mut c, first) = KeyClient::new(keys_of(&v, "s3cret"));
        let (_, server_first) = ScramExchange::start(&v, &first).unwrap();
        c.update(server_first.as_bytes()).unwrap();
        assert!(c.finish(b"v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA=").is_err());
    }

    #[test]
    fn md5_answers_from_the_verifier_equal_those_from_the_password() {
        let verifier = md5_verifier("erin", "erin-pw");
        let salt = [1, 2, 3, 4];
        let from_password = postgres_protocol::authentication::md5_hash(b"erin", b"erin-pw", salt);
        assert_eq!(md5_answer(&verifier, salt).as_deref(), Some(from_password.as_str()));
        assert_eq!(md5_answer("md5short", salt), None);
    }
}
