//! `kmsync kms`: the `aliyun kms` command line.
