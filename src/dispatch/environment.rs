//! APNs environments, learned on the way (SPEC §6). A device token belongs to one of Apple's
//! two environments (a debug build's to the sandbox), and each host answers a token of the
//! other with `400 BadDeviceToken` — the answer it gives a dead token too. So a binding that
//! knows its environment (registered, or learned before) is pushed there and nowhere else; one
//! that knows none is pushed to the credential's default environment, and when that refuses
//! the token as another environment's (`BadDeviceToken`, or `BadEnvironmentKeyInToken` for a
//! key Apple scoped to the other one) and the credential may use the other environment, the
//! push goes there at once, in the same attempt. The environment that accepts is stored on the
//! binding, so the next call goes straight there; a token both refuse is dead and pruned.
//!
//! Every request goes through the provider on its own, so metrics count both (labelled with
//! their environment), and only the final answer reaches the retry loop.

use tracing::{debug, info};

use super::Shared;
use crate::apns::wrong_environment;
use crate::domain::{mask_device_token, ApnsEnvironment, Push};
use crate::providers::{Outcome, Provider};

/// Send `push` through `provider`, trying the other APNs environment once when the default one
/// refuses a device of unknown environment, and storing the environment that accepted.
pub(super) async fn send(shared: &Shared, provider: &dyn Provider, push: &Push) -> Outcome {
    let Some(environments) = provider.environments() else {
        return provider.send(push).await;
    };
    if push.environment.is_some() {
        return provider.send(push).await;
    }
    let mut environment = environments.default;
    let mut outcome = provider.send(&push.in_environment(environment)).await;
    if let (true, Some(other)) = (wrong_environment(&outcome), environments.other) {
        debug!(device = %mask_device_token(&push.device_token), from = %environment, to = %other,
            "APNs refused the token as another environment's: trying the other");
        environment = other;
        outcome = provider.send(&push.in_environment(other)).await;
    }
    if outcome == Outcome::Delivered && environments.other.is_some() {
        learn(shared, provider, push, environment).await;
    }
    outcome
}

/// Store `environment` on the binding `push` went to (best effort: when the store fails, the
/// next call learns it again).
async fn learn(
    shared: &Shared,
    provider: &dyn Provider,
    push: &Push,
    environment: ApnsEnvironment,
) {
    let device = mask_device_token(&push.device_token);
    match shared
        .store
        .learn_environment(
            &push.call.callee,
            provider.credential(),
            &push.device_token,
            environment,
        )
        .await
    {
        Ok(true) => {
            info!(credential = provider.credential(), %device, %environment,
                "APNs environment of the device learned");
        }
        Ok(false) => {}
        Err(err) => {
            shared.outage.failed(
                "learn_environment",
                "storing a learned APNs environment",
                &err,
            );
        }
    }
}
