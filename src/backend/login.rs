//! Logging a server connection in: the startup packet (with the login's `role`), and answering the server's
//! password request — cleartext (only to a verified server), md5, or SCRAM-SHA-256 from the password or, for a
//! client's own login, from the keys of its proof (pass-through, `auth::passthrough`).

use bytes::BytesMut;
use postgres_protocol::authentication::md5_hash;
use postgres_protocol::authentication::sasl::{ChannelBinding, ScramSha256};
use postgres_protocol::message::backend::Message;
use postgres_protocol::message::frontend;
use tokio::io::AsyncWriteExt;

use super::conn::{server_error, TargetSpec};
use super::{BackendError, ServerConn};
use crate::auth::passthrough::{md5_answer, KeyClient};
use crate::auth::Passthrough;

/// Most bytes of notices a login keeps for the connection's first client.
const LOGIN_NOTICES_MAX: usize = 16 * 1024;

/// The client side of a server's SCRAM-SHA-256 exchange: from the login's password, or from the keys of the
/// client's own proof (pass-through, `auth::passthrough`).
enum Sasl {
    /// postgres-protocol's client, from the password.
    Password(ScramSha256),
    /// pgsplit's, from a client's keys.
    Keys(KeyClient),
}

impl Sasl {
    /// Starts the exchange; returns the client-first-message.
    fn start(login: &super::Login, password: &str) -> (Sasl, Vec<u8>) {
        match &login.passthrough {
            Some(Passthrough::Scram(keys)) => {
                let (c, first) = KeyClient::new(keys.clone());
                (Sasl::Keys(c), first)
            }
            _ => {
                let s = ScramSha256::new(password.as_bytes(), ChannelBinding::unsupported());
                let first = s.message().to_vec();
                (Sasl::Password(s), first)
            }
        }
    }

    /// Takes the server-first-message; returns the client-final-message.
    fn update(&mut self, data: &[u8]) -> Result<Vec<u8>, BackendError> {
        match self {
            Sasl::Password(s) => {
                s.update(data)?;
                Ok(s.message().to_vec())
            }
            Sasl::Keys(c) => c.update(data).map_err(|e| BackendError::Protocol(e.to_string())),
        }
    }

    /// Checks the server-final-message.
    fn finish(self, data: &[u8]) -> Result<(), BackendError> {
        match self {
            Sasl::Password(mut s) => Ok(s.finish(data)?),
            Sasl::Keys(c) => c.finish(data).map_err(|e| BackendError::Protocol(e.to_string())),
        }
    }
}

impl ServerConn {
    pub(super) async fn login(&mut self, spec: &TargetSpec, login: &super::Login) -> Result<(), BackendError> {
        let mut out = BytesMut::new();
        let params = [("user", login.user.as_str()), ("database", spec.dbname.as_str()), ("application_name", "pgsplit")];
        let role = login.role.as_deref().map(|r| ("role", r));
        frontend::startup_message(params.iter().copied().chain(role), &mut out)?;
        self.stream.write_all(&out).await?;
        let password = login.password.as_deref().unwrap_or("");
        let mut scram: Option<Sasl> = None;
        loop {
            let msg = self.read_message().await?;
            out.clear();
            match msg {
                Message::AuthenticationOk => {}
                Message::AuthenticationCleartextPassword if !spec.verified => {
                    return Err(BackendError::Protocol(
                        "the server asked for a cleartext password, which pgsplit sends only to a server whose certificate \
                         it verified (tls mode verify-ca or verify-full)"
                            .into(),
                    ));
                }
                Message::AuthenticationCleartextPassword => {
                    frontend::password_message(password.as_bytes(), &mut out)?;
                }
                Message::AuthenticationMd5Password(body) => {
                    let hash = match &login.passthrough {
                        Some(Passthrough::Md5(verifier)) => md5_answer(verifier, body.salt()).unwrap_or_default(),
                        _ => md5_hash(login.user.as_bytes(), password.as_bytes(), body.salt()),
                    };
                    frontend::password_message(hash.as_bytes(), &mut out)?;
                }
                Message::AuthenticationSasl(body) => {
                    let mut mechs = body.mechanisms();
                    let mut offered = false;
                    while let Some(m) = fallible_iterator::FallibleIterator::next(&mut mechs)? {
                        offered |= m == "SCRAM-SHA-256";
                    }
                    if !offered {
                        return Err(BackendError::Protocol("server offers no SCRAM-SHA-256".into()));
                    }
                    let (s, first) = Sasl::start(login, password);
                    frontend::sasl_initial_response("SCRAM-SHA-256", &first, &mut out)?;
                    scram = Some(s);
                }
                Message::AuthenticationSaslContinue(body) => {
                    let s = scram.as_mut().ok_or_else(|| BackendError::Protocol("unexpected SASL continue".into()))?;
                    frontend::sasl_response(&s.update(body.data())?, &mut out)?;
                }
                Message::AuthenticationSaslFinal(body) => {
                    let s = scram.take().ok_or_else(|| BackendError::Protocol("unexpected SASL final".into()))?;
                    s.finish(body.data())?;
                }
                Message::ParameterStatus(body) => {
                    self.params.push((body.name()?.to_owned(), body.value()?.to_owned()));
                }
                Message::BackendKeyData(body) => self.key = Some((body.process_id(), body.secret_key())),
                Message::ReadyForQuery(body) => {
                    self.status = body.status();
                    return Ok(());
                }
                Message::ErrorResponse(body) => return Err(server_error(body.fields())?),
                Message::NoticeResponse(body) => self.keep_login_notice(body.fields()),
                _ => return Err(BackendError::Protocol("unexpected message during login".into())),
            }
            if !out.is_empty() {
                self.stream.write_all(&out).await?;
            }
        }
    }

    /// Keeps a notice of the login for the connection's first client (beyond `LOGIN_NOTICES_MAX`, it is dropped).
    fn keep_login_notice(&mut self, mut fields: postgres_protocol::message::backend::ErrorFields<'_>) {
        let mut body = BytesMut::new();
        while let Ok(Some(f)) = fallible_iterator::FallibleIterator::next(&mut fields) {
            body.extend_from_slice(&[f.type_()]);
            body.extend_from_slice(f.value_bytes());
            body.extend_from_slice(&[0]);
        }
        if self.login_notices.len() + body.len() + 6 <= LOGIN_NOTICES_MAX {
            crate::protocol::encode::message(&mut self.login_notices, b'N', |b| {
                b.extend_from_slice(&body);
                b.extend_from_slice(&[0]);
            });
        }
    }

    async fn read_message(&mut self) -> Result<Message, BackendError> {
        loop {
            if let Some(m) = Message::parse(&mut self.rbuf)? {
                return Ok(m);
            }
            self.fill().await?;
        }
    }
}
