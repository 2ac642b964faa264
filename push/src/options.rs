//! The provider options of `pocketkey-relay` and `pocketkey-org serve` (one set, flattened into
//! each program's arguments), and the [`Providers`] they configure.

use std::path::PathBuf;
use std::sync::Arc;

use crate::{
    fcm, ApnsConfig, ApnsProvider, FcmAuth, FcmConfig, FcmCredentials, FcmProvider, Providers,
    PushProvider, WebhookProvider,
};

/// Push providers: webhook allow-list, FCM, APNs.
#[derive(Debug, Clone, clap::Args)]
pub struct ProviderOptions {
    /// Accept webhook push targets this URL admits (repeatable): the same scheme, host and
    /// port (the scheme's default if none is written) and a path at or below its path, e.g.
    /// `https://wake.example.org` or `http://127.0.0.1:8080/wake`. An entry that is not such
    /// a URL stops the program. Without any, webhook targets are refused.
    #[arg(long, value_name = "URL", help_heading = "Push")]
    pub webhook_allow: Vec<String>,
    /// FCM: the Firebase project id (enables FCM targets; needs --fcm-credentials or
    /// --fcm-access-token-file).
    #[arg(long, value_name = "ID", help_heading = "Push")]
    pub fcm_project: Option<String>,
    /// FCM: the HTTP v1 endpoint.
    #[arg(long, value_name = "URL", default_value = fcm::ENDPOINT, help_heading = "Push")]
    pub fcm_endpoint: String,
    /// FCM: a service-account JSON key file (its key signs the OAuth assertion).
    #[arg(
        long,
        value_name = "FILE",
        help_heading = "Push",
        conflicts_with = "fcm_access_token_file"
    )]
    pub fcm_credentials: Option<PathBuf>,
    /// FCM: the OAuth token endpoint (default: the credentials' token_uri).
    #[arg(long, value_name = "URL", help_heading = "Push")]
    pub fcm_token_endpoint: Option<String>,
    /// FCM: a file holding an OAuth access token to use as is (it expires; for tests).
    #[arg(long, value_name = "FILE", help_heading = "Push")]
    pub fcm_access_token_file: Option<PathBuf>,
    /// APNs: the token-signing key, PKCS#8 PEM (`AuthKey_<KEYID>.p8`); enables APNs targets
    /// with --apns-key-id, --apns-team-id and --apns-topic.
    #[arg(long, value_name = "FILE", help_heading = "Push", requires_all = ["apns_key_id", "apns_team_id", "apns_topic"])]
    pub apns_key: Option<PathBuf>,
    /// APNs: the key's id.
    #[arg(long, value_name = "ID", help_heading = "Push", requires = "apns_key")]
    pub apns_key_id: Option<String>,
    /// APNs: the developer team id.
    #[arg(long, value_name = "ID", help_heading = "Push", requires = "apns_key")]
    pub apns_team_id: Option<String>,
    /// APNs: the app's bundle id (apns-topic).
    #[arg(
        long,
        value_name = "TOPIC",
        help_heading = "Push",
        requires = "apns_key"
    )]
    pub apns_topic: Option<String>,
    /// APNs: replaces Apple's production and sandbox endpoints (an http:// URL speaks HTTP/2
    /// without TLS).
    #[arg(long, value_name = "URL", help_heading = "Push", requires = "apns_key")]
    pub apns_endpoint: Option<String>,
    /// APNs: send visible alert pushes (priority 10) instead of silent background pushes.
    /// Background pushes show nothing unless the app finds a real request, but iOS throttles
    /// them and does not deliver them to an app the user force-quit; alerts always show.
    #[arg(long, help_heading = "Push", requires = "apns_key")]
    pub apns_alert: bool,
}

fn read(path: &PathBuf) -> Result<String, String> {
    std::fs::read_to_string(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
}

impl ProviderOptions {
    /// The providers these options configure; `Err` says which option is wrong (never a key).
    pub fn providers(&self) -> Result<Providers, String> {
        let webhook = if self.webhook_allow.is_empty() {
            None
        } else {
            let provider = WebhookProvider::new(self.webhook_allow.clone())
                .map_err(|e| format!("--webhook-allow: {e}"))?;
            Some(Arc::new(provider) as Arc<dyn PushProvider>)
        };
        let fcm = match &self.fcm_project {
            None => {
                if self.fcm_credentials.is_some() || self.fcm_access_token_file.is_some() {
                    return Err(
                        "--fcm-credentials and --fcm-access-token-file need --fcm-project".into(),
                    );
                }
                None
            }
            Some(project) => {
                let auth = match (&self.fcm_credentials, &self.fcm_access_token_file) {
                    (Some(file), None) => FcmAuth::ServiceAccount {
                        credentials: FcmCredentials::from_json(&read(file)?)
                            .map_err(|e| e.to_string())?,
                        token_endpoint: self.fcm_token_endpoint.clone(),
                    },
                    (None, Some(file)) => FcmAuth::AccessToken(read(file)?.trim().to_string()),
                    _ => {
                        return Err(
                            "--fcm-project needs --fcm-credentials or --fcm-access-token-file"
                                .into(),
                        )
                    }
                };
                Some(Arc::new(
                    FcmProvider::new(FcmConfig {
                        project: project.clone(),
                        endpoint: self.fcm_endpoint.clone(),
                        auth,
                    })
                    .map_err(|e| e.to_string())?,
                ) as Arc<dyn PushProvider>)
            }
        };
        let apns = match &self.apns_key {
            None => None,
            Some(file) => Some(Arc::new(
                ApnsProvider::new(ApnsConfig {
                    key_pem: read(file)?,
                    key_id: self.apns_key_id.clone().unwrap_or_default(),
                    team_id: self.apns_team_id.clone().unwrap_or_default(),
                    topic: self.apns_topic.clone().unwrap_or_default(),
                    endpoint: self.apns_endpoint.clone(),
                    alert: self.apns_alert,
                })
                .map_err(|e| e.to_string())?,
            ) as Arc<dyn PushProvider>),
        };
        Ok(Providers::new(webhook, fcm, apns))
    }
}
