{{/*
RBAC rules, derived from the API calls in src/controller and src/lease.rs. Each rule says which
call needs it. "Namespaced rules" are what the operator needs inside every namespace it serves:
in a ClusterRole for rbac.scope=cluster, in one Role per watched namespace for namespaced.
*/}}
{{- define "kmsync.rules.namespaced" -}}
# ManagedSecrets: watched (list/watch), read (get), finalizer added/removed (patch).
- apiGroups: [kmsync.io]
  resources: [managedsecrets]
  verbs: [get, list, watch, patch]
# ManagedSecret conditions, source version, last sync (status patch).
- apiGroups: [kmsync.io]
  resources: [managedsecrets/status]
  verbs: [patch]
# SecretStores: watched (list/watch) and looked up (get) by the ManagedSecrets that use them.
- apiGroups: [kmsync.io]
  resources: [secretstores]
  verbs: [get, list, watch]
# SecretStore Ready condition (status patch).
- apiGroups: [kmsync.io]
  resources: [secretstores/status]
  verbs: [patch]
# Target Secrets: metadata watch by label kmsync.io/managed=true (list/watch; RBAC cannot narrow
# by label), read before writing and store credentials (get), server-side apply (patch, plus
# create when the Secret does not exist yet), deletionPolicy Delete (delete).
- apiGroups: [""]
  resources: [secrets]
  verbs: [get, list, watch, create, patch, delete]
# Events about ManagedSecrets (kube-runtime Recorder: create, then patch for repeats).
- apiGroups: [events.k8s.io]
  resources: [events]
  verbs: [create, patch]
{{- if .Values.rolloutRestart.enabled }}
# spec.rolloutRestart: a pod-template annotation patch (what `kubectl rollout restart` does).
- apiGroups: [apps]
  resources: [deployments, statefulsets, daemonsets]
  verbs: [patch]
{{- end }}
{{- if .Values.rrsa.perTenant }}
# Per-tenant RRSA: a short-lived token for the tenant's ServiceAccount (TokenRequest API).
- apiGroups: [""]
  resources: [serviceaccounts/token]
  verbs: [create]
{{- end }}
{{- end }}

{{- define "kmsync.rules.clusterStores" -}}
# ClusterSecretStores: always watched (list/watch), looked up by ManagedSecrets (get).
- apiGroups: [kmsync.io]
  resources: [clustersecretstores]
  verbs: [get, list, watch]
# ClusterSecretStore Ready condition (status patch).
- apiGroups: [kmsync.io]
  resources: [clustersecretstores/status]
  verbs: [patch]
# Namespace labels, to evaluate a ClusterSecretStore's conditions.namespaceSelector (get only).
- apiGroups: [""]
  resources: [namespaces]
  verbs: [get]
{{- end }}
