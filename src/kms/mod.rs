//! Alibaba Cloud KMS client: request signing, credentials, transport and typed errors.
//! Knows nothing of Kubernetes.

pub mod sign;
