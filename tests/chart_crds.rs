//! The Helm chart ships the CRDs in `charts/kmsync/crds/`; that copy must be byte for byte the
//! generated `crds/kmsync.io.yaml`, so `helm install` never creates a stale schema.

#[test]
fn chart_crds_are_an_exact_copy_of_crds() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let source = std::fs::read(root.join("crds/kmsync.io.yaml")).expect("read crds/kmsync.io.yaml");
    let chart = std::fs::read(root.join("charts/kmsync/crds/kmsync.io.yaml"))
        .expect("read charts/kmsync/crds/kmsync.io.yaml");
    assert!(
        chart == source,
        "charts/kmsync/crds/kmsync.io.yaml differs from crds/kmsync.io.yaml: run `make crds` \
         (it regenerates crds/ and copies it into the chart), or \
         `cp crds/kmsync.io.yaml charts/kmsync/crds/kmsync.io.yaml`"
    );
}

#[test]
fn chart_crds_directory_holds_only_the_copy() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("charts/kmsync/crds");
    let mut names: Vec<String> = std::fs::read_dir(&dir)
        .expect("read charts/kmsync/crds")
        .map(|e| e.expect("entry").file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    assert_eq!(
        names,
        ["kmsync.io.yaml"],
        "helm would install every file in {dir:?}"
    );
}
