//! `crds/` must be exactly what `kmsync crd` prints, so users never apply a stale schema.

#[test]
fn crds_directory_matches_generated_crds() {
    let expected = kmsync::crd::render_yaml().expect("render CRDs");
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("crds/kmsync.io.yaml");
    let actual = std::fs::read_to_string(&path).expect("read crds/kmsync.io.yaml");
    assert!(
        actual == expected,
        "crds/kmsync.io.yaml is stale: regenerate it with `make crds` (cargo run -- crd > crds/kmsync.io.yaml)"
    );
}

#[test]
fn generated_crds_carry_status_subresource_and_printer_columns() {
    for crd in kmsync::crd::all() {
        let version = &crd.spec.versions[0];
        assert_eq!(version.name, "v1alpha1");
        assert!(
            version
                .subresources
                .as_ref()
                .and_then(|s| s.status.as_ref())
                .is_some(),
            "{} has no status subresource",
            crd.spec.names.kind
        );
        let columns: Vec<_> = version
            .additional_printer_columns
            .iter()
            .flatten()
            .map(|c| c.name.as_str())
            .collect();
        assert!(
            columns.contains(&"Ready") && columns.contains(&"Age"),
            "{columns:?}"
        );
        assert!(
            crd.spec
                .names
                .short_names
                .as_ref()
                .is_some_and(|s| !s.is_empty())
        );
    }
    let managed = kmsync::crd::all().remove(0);
    let columns: Vec<_> = managed.spec.versions[0]
        .additional_printer_columns
        .iter()
        .flatten()
        .map(|c| c.name.clone())
        .collect();
    assert_eq!(
        columns,
        ["Ready", "Reason", "Version", "Stage", "Last Sync", "Age"]
    );
}

#[test]
fn docs_reference_matches_generated_reference() {
    let expected = kmsync::crd::reference::markdown(&kmsync::crd::all());
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("docs/reference.md");
    let actual = std::fs::read_to_string(&path).unwrap_or_default();
    assert!(
        actual == expected,
        "docs/reference.md is stale: regenerate it with `make crds`"
    );
}
