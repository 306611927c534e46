//! One ACME order, start to finish, through instant-acme (which does the
//! JWS, nonces and HTTP): the account, the authorizations answered by our
//! own challenge listener, a fresh key and CSR from rcgen, the chain.
//! Also the renewal window the CA suggests, where it offers ARI.
#![forbid(unsafe_code)]

use std::time::{Duration, SystemTime};

use instant_acme::{
    Account, AccountBuilder, AuthorizationStatus, CertificateIdentifier, ChallengeType as Kind,
    Identifier, NewAccount, NewOrder, OrderStatus, RetryPolicy,
};
use rustls::pki_types::Der;
use x509_parser::prelude::{FromDer, ParsedExtension, X509Certificate};

use super::challenge::Challenges;
use super::store::{Store, StoreError};
use crate::config::{AcmeConfig, ChallengeType};

/// A new certificate chain (leaf first) and its private key, both PEM.
pub struct Issued {
    pub chain_pem: String,
    pub key_pem: String,
}

impl std::fmt::Debug for Issued {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Issued").finish_non_exhaustive()
    }
}

/// Why an order did not end in a certificate.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OrderError {
    #[error("ACME: {0}")]
    Acme(#[from] instant_acme::Error),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("the CA offers no {0} challenge for {1}")]
    NoChallenge(&'static str, String),
    #[error("the CA left the authorization for {0} {1:?}")]
    Authorization(String, AuthorizationStatus),
    #[error("the order ended {0:?} instead of ready")]
    Order(OrderStatus),
    #[error("key or CSR: {0}")]
    Key(#[from] rcgen::Error),
}

impl OrderError {
    /// The CA does not know the account (RFC 8555 7.3.1).
    #[must_use]
    pub fn account_unknown(&self) -> bool {
        self.problem_type()
            .is_some_and(|t| t.ends_with(":accountDoesNotExist"))
    }

    fn problem_type(&self) -> Option<&str> {
        match self {
            Self::Acme(instant_acme::Error::Api(problem)) => problem.r#type.as_deref(),
            _ => None,
        }
    }

    /// The CA said we asked too often (RFC 8555 6.7 `rateLimited`).
    #[must_use]
    pub fn rate_limited(&self) -> bool {
        self.problem_type()
            .is_some_and(|t| t.ends_with(":rateLimited"))
    }
}

fn builder(config: &AcmeConfig) -> Result<AccountBuilder, instant_acme::Error> {
    match &config.ca_certificate {
        Some(path) => Account::builder_with_root(path),
        None => Account::builder(),
    }
}

/// The stored account, or a new one (stored at once, so a failed order
/// does not create another account next time).
pub async fn account(config: &AcmeConfig, store: &Store) -> Result<Account, OrderError> {
    let directory = config.directory_url();
    if let Some(credentials) = store.account(directory)? {
        return Ok(builder(config)?.from_credentials(credentials).await?);
    }
    let contact = config
        .contact
        .as_ref()
        .map(|c| match c.strip_prefix("mailto:") {
            Some(_) => c.clone(),
            None => format!("mailto:{c}"),
        });
    let contacts: Vec<&str> = contact.iter().map(String::as_str).collect();
    let (account, credentials) = builder(config)?
        .create(
            &NewAccount {
                contact: &contacts,
                terms_of_service_agreed: true,
                only_return_existing: false,
            },
            directory.to_owned(),
            None,
        )
        .await?;
    store.save_account(directory, credentials)?;
    tracing::info!(directory, "ACME account created");
    Ok(account)
}

/// Forgets the pending answers however the order ends.
struct ClearOnDrop<'a>(&'a Challenges);

impl Drop for ClearOnDrop<'_> {
    fn drop(&mut self) {
        self.0.clear();
    }
}

/// Places an order for `config.domains`, answers its challenges through
/// `challenges`, and returns the chain and a fresh key. `replaces` names
/// the certificate this one renews, for a CA with ARI.
pub async fn obtain(
    account: &Account,
    config: &AcmeConfig,
    challenges: &Challenges,
    replaces: Option<CertificateIdentifier<'static>>,
) -> Result<Issued, OrderError> {
    let identifiers: Vec<Identifier> = config
        .domains
        .iter()
        .map(|d| Identifier::Dns(d.strip_suffix('.').unwrap_or(d).to_owned()))
        .collect();
    let mut new_order = NewOrder::new(&identifiers);
    if let Some(id) = replaces {
        new_order = new_order.replaces(id);
    }
    let mut order = account.new_order(&new_order).await?;
    let _clear = ClearOnDrop(challenges);

    let mut authorizations = order.authorizations();
    while let Some(authorization) = authorizations.next().await {
        let mut authorization = authorization?;
        let name = authorization.identifier().to_string();
        match authorization.status {
            AuthorizationStatus::Pending => {}
            AuthorizationStatus::Valid => continue,
            other => return Err(OrderError::Authorization(name, other)),
        }
        let kind = match config.challenge {
            ChallengeType::Http01 => Kind::Http01,
            ChallengeType::TlsAlpn01 => Kind::TlsAlpn01,
        };
        let mut challenge = authorization
            .challenge(kind)
            .ok_or_else(|| OrderError::NoChallenge(config.challenge.as_str(), name.clone()))?;
        let key_authorization = challenge.key_authorization();
        match config.challenge {
            ChallengeType::Http01 => {
                challenges.add_http(&challenge.token, key_authorization.as_str());
            }
            ChallengeType::TlsAlpn01 => {
                challenges.add_tls(&name, key_authorization.digest().as_ref())?;
            }
        }
        tracing::debug!(%name, challenge = config.challenge.as_str(), "answering the CA's challenge");
        challenge.set_ready().await?;
    }

    let patience = RetryPolicy::new()
        .initial_delay(Duration::from_millis(250))
        .timeout(Duration::from_secs(90));
    let status = order.poll_ready(&patience).await?;
    if status != OrderStatus::Ready {
        return Err(OrderError::Order(status));
    }

    let key = rcgen::KeyPair::generate()?;
    let mut params = rcgen::CertificateParams::new(
        identifiers
            .iter()
            .filter_map(|i| match i {
                Identifier::Dns(name) => Some(name.clone()),
                _ => None,
            })
            .collect::<Vec<_>>(),
    )?;
    params.distinguished_name = rcgen::DistinguishedName::new();
    if let Some(first) = config.domains.first() {
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, first.as_str());
    }
    let csr = params.serialize_request(&key)?;
    order.finalize_csr(csr.der()).await?;
    let chain_pem = order.poll_certificate(&patience).await?;
    Ok(Issued {
        chain_pem,
        key_pem: key.serialize_pem(),
    })
}

/// RFC 9773 4.1: the leaf's authority key identifier and serial number,
/// which name it to the CA's renewal-information endpoint. `None` for a
/// certificate without an AKI.
#[must_use]
pub fn certificate_id(leaf_der: &[u8]) -> Option<CertificateIdentifier<'static>> {
    let (_, cert) = X509Certificate::from_der(leaf_der).ok()?;
    let aki = cert
        .iter_extensions()
        .find_map(|ext| match ext.parsed_extension() {
            ParsedExtension::AuthorityKeyIdentifier(aki) => aki.key_identifier.as_ref(),
            _ => None,
        })?;
    let id = CertificateIdentifier::new(
        Der::from_slice(aki.0),
        Der::from_slice(cert.tbs_certificate.raw_serial()),
    );
    Some(id.into_owned())
}

/// The CA's suggested renewal window for a certificate, if it offers ARI;
/// `Ok(None)` if it does not.
pub async fn renewal_window(
    account: &Account,
    id: &CertificateIdentifier<'_>,
) -> Result<Option<(SystemTime, SystemTime)>, OrderError> {
    match account.renewal_info(id).await {
        Ok((info, _)) => Ok(Some((
            SystemTime::from(info.suggested_window.start),
            SystemTime::from(info.suggested_window.end),
        ))),
        Err(instant_acme::Error::Unsupported(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// RFC 9773 4.1: the id is base64url(AKI keyIdentifier) "."
    /// base64url(serial DER content), both without padding.
    #[test]
    fn the_ari_id_is_the_authority_key_id_and_serial() {
        let ca_key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut ca =
            rcgen::CertificateParams::new(Vec::<String>::new()).unwrap_or_else(|e| panic!("{e}"));
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap_or_else(|e| panic!("{e}"));
        let mut leaf = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"));
        leaf.use_authority_key_identifier_extension = true;
        leaf.serial_number = Some(rcgen::SerialNumber::from_slice(&[0x01, 0x02, 0x03]));
        let cert = leaf
            .signed_by(&key, &issuer)
            .unwrap_or_else(|e| panic!("{e}"));
        let id = certificate_id(cert.der()).unwrap_or_else(|| panic!("no id"));
        assert_eq!(id.serial, "AQID");
        assert!(!id.authority_key_identifier.is_empty());
        assert!(!id.to_string().contains('='));
        // Without an AKI there is nothing to ask the CA about.
        let plain = rcgen::CertificateParams::new(vec!["a.example".to_owned()])
            .unwrap_or_else(|e| panic!("{e}"))
            .self_signed(&key)
            .unwrap_or_else(|e| panic!("{e}"));
        assert!(certificate_id(plain.der()).is_none());
    }
}
