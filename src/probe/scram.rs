//! The client side of SCRAM-SHA-256 and SCRAM-SHA-512 (RFC 5802, RFC 7677), as Kafka's SASL
//! uses them, on `ring`'s PBKDF2 and HMAC. Used by `probe`.

use base64::engine::general_purpose::STANDARD as BASE64;
use base64::Engine;
use ring::{digest, hmac, pbkdf2};
use thiserror::Error;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Hash {
    Sha256,
    Sha512,
}

impl Hash {
    fn hmac(self) -> hmac::Algorithm {
        match self {
            Self::Sha256 => hmac::HMAC_SHA256,
            Self::Sha512 => hmac::HMAC_SHA512,
        }
    }

    fn pbkdf2(self) -> pbkdf2::Algorithm {
        match self {
            Self::Sha256 => pbkdf2::PBKDF2_HMAC_SHA256,
            Self::Sha512 => pbkdf2::PBKDF2_HMAC_SHA512,
        }
    }

    fn digest(self) -> &'static digest::Algorithm {
        match self {
            Self::Sha256 => &digest::SHA256,
            Self::Sha512 => &digest::SHA512,
        }
    }

    fn len(self) -> usize {
        self.digest().output_len()
    }
}

#[derive(Debug, Error, PartialEq, Eq)]
pub enum ScramError {
    #[error("the server's first message is malformed")]
    MalformedServerFirst,
    #[error("the server's nonce does not extend ours")]
    NonceMismatch,
    #[error("the server rejected the credentials: {0}")]
    Rejected(String),
    #[error("the server's signature is wrong: it does not know the password")]
    BadServerSignature,
    #[error("the server asks for {0} PBKDF2 iterations; Kafka uses at most {MAX_ITERATIONS}, so this is no Kafka broker (or a hostile one) and the probe stops")]
    TooManyIterations(u32),
}

/// Kafka's own bound on SCRAM iterations (`ScramMechanism`: 4096 to 16384). A server that asks
/// for more would make the probe hash for minutes or hours.
pub const MAX_ITERATIONS: u32 = 16_384;

/// One SCRAM exchange, client side.
pub struct Client {
    hash: Hash,
    password: String,
    client_first_bare: String,
    nonce: String,
    /// Set once the final message is built: the signature the server must send back.
    expected_server_signature: Option<Vec<u8>>,
}

impl Client {
    /// `nonce` must be fresh and printable (no commas).
    pub fn new(hash: Hash, username: &str, password: &str, nonce: &str) -> Self {
        let username = username.replace('=', "=3D").replace(',', "=2C");
        Self {
            hash,
            password: password.to_owned(),
            client_first_bare: format!("n={username},r={nonce}"),
            nonce: nonce.to_owned(),
            expected_server_signature: None,
        }
    }

    pub fn client_first(&self) -> String {
        format!("n,,{}", self.client_first_bare)
    }

    /// The final message, from the server's first.
    pub fn client_final(&mut self, server_first: &str) -> Result<String, ScramError> {
        let mut nonce = None;
        let mut salt = None;
        let mut iterations = None;
        for field in server_first.split(',') {
            match field.split_once('=') {
                Some(("r", value)) => nonce = Some(value),
                Some(("s", value)) => salt = BASE64.decode(value).ok(),
                Some(("i", value)) => iterations = value.parse::<u32>().ok(),
                Some(("e", value)) => return Err(ScramError::Rejected(value.to_owned())),
                _ => {}
            }
        }
        let (Some(nonce), Some(salt), Some(iterations)) = (nonce, salt, iterations) else {
            return Err(ScramError::MalformedServerFirst);
        };
        if iterations > MAX_ITERATIONS {
            return Err(ScramError::TooManyIterations(iterations));
        }
        let iterations =
            std::num::NonZeroU32::new(iterations).ok_or(ScramError::MalformedServerFirst)?;
        if !nonce.starts_with(&self.nonce) || nonce.len() == self.nonce.len() {
            return Err(ScramError::NonceMismatch);
        }
        let mut salted = vec![0u8; self.hash.len()];
        pbkdf2::derive(
            self.hash.pbkdf2(),
            iterations,
            &salt,
            self.password.as_bytes(),
            &mut salted,
        );
        let salted = hmac::Key::new(self.hash.hmac(), &salted);
        let client_key = hmac::sign(&salted, b"Client Key");
        let stored_key = digest::digest(self.hash.digest(), client_key.as_ref());
        let without_proof = format!("c=biws,r={nonce}");
        let auth_message = format!("{},{server_first},{without_proof}", self.client_first_bare);
        let stored = hmac::Key::new(self.hash.hmac(), stored_key.as_ref());
        let client_signature = hmac::sign(&stored, auth_message.as_bytes());
        let proof: Vec<u8> = client_key
            .as_ref()
            .iter()
            .zip(client_signature.as_ref())
            .map(|(k, s)| k ^ s)
            .collect();
        let server_key = hmac::sign(&salted, b"Server Key");
        let server_key = hmac::Key::new(self.hash.hmac(), server_key.as_ref());
        self.expected_server_signature = Some(
            hmac::sign(&server_key, auth_message.as_bytes())
                .as_ref()
                .to_vec(),
        );
        Ok(format!("{without_proof},p={}", BASE64.encode(proof)))
    }

    /// Checks the server's final message.
    pub fn verify(&self, server_final: &str) -> Result<(), ScramError> {
        if let Some(error) = server_final.strip_prefix("e=") {
            return Err(ScramError::Rejected(error.to_owned()));
        }
        let signature = server_final
            .strip_prefix("v=")
            .and_then(|v| BASE64.decode(v).ok());
        match (signature, &self.expected_server_signature) {
            (Some(got), Some(expected)) if &got == expected => Ok(()),
            _ => Err(ScramError::BadServerSignature),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_huge_iteration_count_is_refused_before_any_hashing() {
        let mut client = Client::new(Hash::Sha512, "user", "secret", "abc");
        let started = std::time::Instant::now();
        let error = client
            .client_final("r=abcdef,s=c2FsdA==,i=4294967295")
            .unwrap_err();
        assert_eq!(error, ScramError::TooManyIterations(4_294_967_295));
        assert!(error.to_string().contains("Kafka uses at most 16384"));
        assert!(started.elapsed() < std::time::Duration::from_secs(1));
        assert!(client.client_final("r=abcdef,s=c2FsdA==,i=16384").is_ok());
    }

    /// The SCRAM-SHA-256 exchange of RFC 7677, section 3.
    #[test]
    fn rfc_7677_exchange() {
        let mut client = Client::new(Hash::Sha256, "user", "pencil", "rOprNGfwEbeRWgbNEkqO");
        assert_eq!(client.client_first(), "n,,n=user,r=rOprNGfwEbeRWgbNEkqO");
        let server_first = "r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,s=W22ZaJ0SNY7soEsUEjb6gQ==,i=4096";
        assert_eq!(
            client.client_final(server_first).unwrap(),
            "c=biws,r=rOprNGfwEbeRWgbNEkqO%hvYDpWUa2RaTCAfuxFIlj)hNlF$k0,p=dHzbZapWIk4jUhN+Ute9ytag9zjfMHgsqmmiz7AndVQ="
        );
        assert_eq!(
            client.verify("v=6rriTRBi23WpRR/wtup+mMhUZUn/dB5nLTJRsjl95G4="),
            Ok(())
        );
        assert_eq!(
            client.verify("v=AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA="),
            Err(ScramError::BadServerSignature)
        );
    }

    #[test]
    fn a_server_that_does_not_extend_our_nonce_is_refused() {
        let mut client = Client::new(Hash::Sha512, "user", "pencil", "abc");
        assert_eq!(
            client.client_final("r=xyz,s=AAAA,i=4096"),
            Err(ScramError::NonceMismatch)
        );
        assert_eq!(
            client.client_final("r=abcdef,s=AAAA"),
            Err(ScramError::MalformedServerFirst)
        );
    }
}
