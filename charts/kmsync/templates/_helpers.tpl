{{/* Chart name. */}}
{{- define "kmsync.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Full name of the release's objects. */}}
{{- define "kmsync.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 63 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{/* Name of cluster-scoped objects: carries the release namespace so that two releases of the
same name in different namespaces do not collide. */}}
{{- define "kmsync.clusterName" -}}
{{- printf "%s-%s" (include "kmsync.fullname" .) .Release.Namespace | trunc 253 | trimSuffix "-" }}
{{- end }}

{{- define "kmsync.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "kmsync.labels" -}}
helm.sh/chart: {{ include "kmsync.chart" . }}
{{ include "kmsync.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: kmsync
{{- end }}

{{- define "kmsync.selectorLabels" -}}
app.kubernetes.io/name: {{ include "kmsync.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "kmsync.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "kmsync.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- required "serviceAccount.name is required when serviceAccount.create is false" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "kmsync.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* Namespace of the demo SecretStore: explicit, else the first watched namespace in namespaced
scope, else the release namespace. */}}
{{- define "kmsync.demoNamespace" -}}
{{- if .Values.emulator.demoStore.namespace }}
{{- .Values.emulator.demoStore.namespace }}
{{- else if and (eq .Values.rbac.scope "namespaced") .Values.watchNamespaces }}
{{- first .Values.watchNamespaces }}
{{- else }}
{{- .Release.Namespace }}
{{- end }}
{{- end }}

{{/* Refuses value combinations that cannot work. */}}
{{- define "kmsync.validate" -}}
{{- if not (has .Values.rbac.scope (list "cluster" "namespaced")) }}
{{- fail (printf "rbac.scope must be cluster or namespaced, not %q" .Values.rbac.scope) }}
{{- end }}
{{- if and (eq .Values.rbac.scope "namespaced") (not .Values.watchNamespaces) }}
{{- fail "rbac.scope=namespaced needs watchNamespaces: the operator may only read Secrets in the namespaces it is given" }}
{{- end }}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.leaderElection.enabled) }}
{{- fail "replicaCount > 1 needs leaderElection.enabled: two replicas must never write at once" }}
{{- end }}
{{- if and .Values.emulator.enabled (gt (int .Values.replicaCount) 1) }}
{{- fail "emulator.enabled needs replicaCount: 1 (each pod would have its own emulator state)" }}
{{- end }}
{{- if and .Values.emulator.enabled .Values.emulator.demoStore.enabled (eq .Values.rbac.scope "namespaced") (not (has (include "kmsync.demoNamespace" .) .Values.watchNamespaces)) }}
{{- fail "emulator.demoStore.namespace must be one of watchNamespaces" }}
{{- end }}
{{- end }}
