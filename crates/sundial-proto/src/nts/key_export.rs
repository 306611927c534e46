//! The C2S and S2C keys of an NTS association, drawn from the TLS 1.3
//! exporter of the NTS-KE session (RFC 8915 section 5.1).
//!
//! The exporter is a closure, so this module (and the KE state machines)
//! never depend on a TLS library: the daemon passes
//! `|label, context, out| conn.export_keying_material(out, label.as_bytes(), Some(context))`.

use zeroize::Zeroizing;

use crate::nts::aead::{AeadAlgorithm, AeadError, AeadKey, NtsKeys};

/// The TLS exporter label RFC 8915 section 5.1 registers.
pub const EXPORTER_LABEL: &str = "EXPORTER-network-time-security";

/// The last context byte, naming the direction the key protects.
const C2S: u8 = 0x00;
const S2C: u8 = 0x01;

/// Why keys could not be derived.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyExportError<E> {
    /// The negotiated algorithm has no key length we know.
    #[error("AEAD algorithm {0} is not supported")]
    UnsupportedAlgorithm(u16),
    /// The TLS exporter failed (e.g. the handshake is not complete).
    #[error("TLS key exporter failed")]
    Exporter(#[source] E),
    #[error(transparent)]
    Key(AeadError),
}

/// Which AEAD id goes into the exporter context.
///
/// RFC 8915 5.1 says the negotiated one. chrony 4.4 to 4.6.0 put 15
/// (AES-SIV-CMAC-256) there when they negotiated AES-128-GCM-SIV (30), and
/// chrony 4.6.1+ still does so with a peer that does not send record 1024
/// (see `ke_client`), so both sides of an exchange must agree on which
/// context they use. For every other algorithm the two are the same.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum KeyContext {
    /// RFC 8915: the negotiated algorithm's own id.
    #[default]
    Compliant,
    /// chrony's legacy context: id 15 in place of 30 for AES-128-GCM-SIV.
    LegacyGcmSiv,
}

impl KeyContext {
    /// The AEAD id the exporter context carries for `algorithm`.
    pub const fn context_algorithm(self, algorithm: AeadAlgorithm) -> AeadAlgorithm {
        match (self, algorithm) {
            (Self::LegacyGcmSiv, AeadAlgorithm::Aes128GcmSiv) => AeadAlgorithm::AesSivCmac256,
            _ => algorithm,
        }
    }
}

/// Derives both keys with the RFC 8915 context. The exporter context is
/// the Next Protocol id, the AEAD id (both big-endian u16) and 0x00 for C2S
/// or 0x01 for S2C; the output length is the algorithm's key length.
pub fn derive_keys<E>(
    protocol: u16,
    algorithm: AeadAlgorithm,
    exporter: impl FnMut(&str, &[u8], &mut [u8]) -> Result<(), E>,
) -> Result<NtsKeys, KeyExportError<E>> {
    derive_keys_with(protocol, algorithm, KeyContext::Compliant, exporter)
}

/// As [`derive_keys`], with the AEAD id of the context chosen by
/// `key_context`. The keys are for `algorithm` whatever the context says.
pub fn derive_keys_with<E>(
    protocol: u16,
    algorithm: AeadAlgorithm,
    key_context: KeyContext,
    mut exporter: impl FnMut(&str, &[u8], &mut [u8]) -> Result<(), E>,
) -> Result<NtsKeys, KeyExportError<E>> {
    let key_len = algorithm
        .key_len()
        .ok_or(KeyExportError::UnsupportedAlgorithm(algorithm.to_u16()))?;
    let context_algorithm = key_context.context_algorithm(algorithm);
    let mut one = |direction: u8| -> Result<AeadKey, KeyExportError<E>> {
        let context = context(protocol, context_algorithm, direction);
        // Zeroizing: the raw key material must not outlive the AeadKey copy.
        let mut out = Zeroizing::new(vec![0u8; key_len]);
        exporter(EXPORTER_LABEL, &context, &mut out).map_err(KeyExportError::Exporter)?;
        AeadKey::new(algorithm, &out).map_err(KeyExportError::Key)
    };
    let c2s = one(C2S)?;
    let s2c = one(S2C)?;
    Ok(NtsKeys { c2s, s2c })
}

fn context(protocol: u16, algorithm: AeadAlgorithm, direction: u8) -> [u8; 5] {
    let [p0, p1] = protocol.to_be_bytes();
    let [a0, a1] = algorithm.to_u16().to_be_bytes();
    [p0, p1, a0, a1, direction]
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn context_layout_and_lengths() {
        let mut seen = Vec::new();
        let keys = derive_keys::<()>(0, AeadAlgorithm::AesSivCmac512, |label, ctx, out| {
            assert_eq!(label, EXPORTER_LABEL);
            seen.push((ctx.to_vec(), out.len()));
            out.fill(ctx[4] + 1);
            Ok(())
        })
        .unwrap();
        assert_eq!(
            seen,
            vec![(vec![0, 0, 0, 17, 0], 64), (vec![0, 0, 0, 17, 1], 64)]
        );
        assert_eq!(keys.c2s.as_bytes(), &[1u8; 64][..]);
        assert_eq!(keys.s2c.as_bytes(), &[2u8; 64][..]);
    }

    fn contexts_seen(alg: AeadAlgorithm, key_context: KeyContext) -> Vec<Vec<u8>> {
        let mut seen = Vec::new();
        let keys = derive_keys_with::<()>(0, alg, key_context, |_, ctx, out| {
            seen.push(ctx.to_vec());
            out.fill(7);
            Ok(())
        })
        .unwrap();
        assert_eq!(keys.algorithm(), alg);
        seen
    }

    #[test]
    fn legacy_context_names_aes_siv_cmac_256_for_gcm_siv_only() {
        let gcm = AeadAlgorithm::Aes128GcmSiv;
        assert_eq!(
            contexts_seen(gcm, KeyContext::Compliant),
            vec![vec![0, 0, 0, 30, 0], vec![0, 0, 0, 30, 1]]
        );
        assert_eq!(
            contexts_seen(gcm, KeyContext::LegacyGcmSiv),
            vec![vec![0, 0, 0, 15, 0], vec![0, 0, 0, 15, 1]]
        );
        // Other algorithms ignore the choice.
        for alg in [AeadAlgorithm::AesSivCmac256, AeadAlgorithm::AesSivCmac512] {
            assert_eq!(
                contexts_seen(alg, KeyContext::LegacyGcmSiv),
                contexts_seen(alg, KeyContext::Compliant)
            );
        }
    }

    #[test]
    fn unknown_algorithm_is_refused_before_exporting() {
        let result = derive_keys::<()>(0, AeadAlgorithm::Unknown(99), |_, _, _| {
            panic!("exporter must not be called")
        });
        assert!(matches!(
            result,
            Err(KeyExportError::UnsupportedAlgorithm(99))
        ));
    }

    #[test]
    fn exporter_failure_is_passed_through() {
        let result = derive_keys(0, AeadAlgorithm::AesSivCmac256, |_, _, _| Err("no"));
        assert!(matches!(result, Err(KeyExportError::Exporter("no"))));
    }
}
