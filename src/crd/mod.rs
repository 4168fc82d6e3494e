//! Custom resource types (`kmsync.io/v1alpha1`): what users write and what status we report.
