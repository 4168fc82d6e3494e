//! Alibaba Cloud KMS client: request signing, credentials, transport and typed errors.
//! Knows nothing of Kubernetes.
//!
//! Flow of a call: [`client::KmsClient`] turns a typed request ([`actions`]) into [`request::Params`],
//! [`transport`] asks the [`credentials`] provider for keys, [`request`] builds and signs the HTTP
//! request (with [`sign`]), sends it to the [`endpoint`], retries per [`retry`], and maps failures
//! into [`error::KmsError`].

pub mod actions;
pub mod cli;
pub mod client;
pub mod credentials;
pub mod endpoint;
pub mod error;
pub mod request;
pub mod retry;
pub mod secret;
pub mod sign;
pub mod transport;

pub use client::{KmsClient, KmsClientConfig};
pub use credentials::{CredentialProvider, Credentials};
pub use endpoint::{Endpoint, Network};
pub use error::{ApiError, KmsError};
pub use request::SignatureStyle;
pub use retry::{RetryBudget, RetryPolicy};
pub use secret::{SecretBytes, SecretString};
