//! The push providers of the configured credentials, built at start and by a reload, each
//! wrapped to count its pushes.

use std::collections::HashMap;
use std::sync::Arc;

use super::DaemonError;
use crate::apns::ApnsProvider;
use crate::config::CredentialSettings;
use crate::dispatch::providers::{ProbeMap, ProviderMap};
use crate::fcm::FcmProvider;
use crate::metrics::{MeteredProvider, Metrics, ProviderProbe};
use crate::providers::Provider;

/// Each credential's provider, plus the same provider as the sampler reads it.
pub(super) type Probed = HashMap<String, (Arc<dyn Provider>, Arc<dyn ProviderProbe>)>;

pub(super) fn probed_providers(credentials: &[CredentialSettings]) -> Result<Probed, DaemonError> {
    let mut providers = Probed::new();
    for cred in credentials {
        let provider = match cred {
            CredentialSettings::Apns(c) => {
                let p = Arc::new(ApnsProvider::new(c).map_err(|source| DaemonError::Apns {
                    sid: c.sid.clone(),
                    source,
                })?);
                (p.clone() as Arc<dyn Provider>, p as Arc<dyn ProviderProbe>)
            }
            CredentialSettings::Fcm(c) => {
                let p = Arc::new(FcmProvider::new(c).map_err(|source| DaemonError::Fcm {
                    sid: c.sid.clone(),
                    source,
                })?);
                (p.clone() as Arc<dyn Provider>, p as Arc<dyn ProviderProbe>)
            }
        };
        providers.insert(cred.sid().to_string(), provider);
    }
    Ok(providers)
}

/// How a reload builds a credential's provider: as at start, metered, with its metric series.
pub(super) fn provider_builder(metrics: Arc<Metrics>) -> crate::reload::BuildProvider {
    Arc::new(move |credential: &CredentialSettings| {
        let probed =
            probed_providers(std::slice::from_ref(credential)).map_err(|e| e.to_string())?;
        metrics.add_credential(credential.platform(), credential.sid());
        let (providers, probes) = meter(probed, &metrics);
        let provider = providers.into_values().next();
        let probe = probes.into_values().next();
        provider
            .zip(probe)
            .ok_or_else(|| format!("credential {}: no provider built", credential.sid()))
    })
}

/// Wrap each provider in a [`MeteredProvider`]; keep what the metrics sampler reads from them.
pub(super) fn meter(probed: Probed, metrics: &Metrics) -> (ProviderMap, ProbeMap) {
    let mut providers = ProviderMap::new();
    let mut probes = ProbeMap::new();
    for (sid, (provider, probe)) in probed {
        providers.insert(
            sid.clone(),
            Arc::new(MeteredProvider::new(provider, metrics)),
        );
        probes.insert(sid, probe);
    }
    (providers, probes)
}
