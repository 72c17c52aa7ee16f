{{/*
zyra-k8s.name: the chart name, or nameOverride.
*/}}
{{- define "zyra-k8s.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
zyra-k8s.fullname: the prefix of every resource name (63 characters at most, as DNS labels allow).
*/}}
{{- define "zyra-k8s.fullname" -}}
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

{{/*
zyra-k8s.api.fullname / zyra-k8s.operator.fullname / zyra-k8s.runner.fullname: per-component names.
*/}}
{{- define "zyra-k8s.api.fullname" -}}
{{- printf "%s-api" (include "zyra-k8s.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "zyra-k8s.operator.fullname" -}}
{{- printf "%s-operator" (include "zyra-k8s.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}
{{- define "zyra-k8s.runner.fullname" -}}
{{- printf "%s-runner" (include "zyra-k8s.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
zyra-k8s.namespace: the release namespace (every resource of the chart lives there; so do the ZyraRuns).
*/}}
{{- define "zyra-k8s.namespace" -}}
{{- .Release.Namespace }}
{{- end }}

{{/*
zyra-k8s.chart: chart name and version, for the helm.sh/chart label.
*/}}
{{- define "zyra-k8s.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
zyra-k8s.selectorLabels: labels that select one component's pods. Call with
(dict "context" $ "component" "api").
*/}}
{{- define "zyra-k8s.selectorLabels" -}}
app.kubernetes.io/name: {{ include "zyra-k8s.name" .context }}
app.kubernetes.io/instance: {{ .context.Release.Name }}
{{- if .component }}
app.kubernetes.io/component: {{ .component }}
{{- end }}
{{- end }}

{{/*
zyra-k8s.labels: the labels of every resource. Call with (dict "context" $ "component" "api"); the
component may be empty for resources shared by all.
*/}}
{{- define "zyra-k8s.labels" -}}
helm.sh/chart: {{ include "zyra-k8s.chart" .context }}
{{ include "zyra-k8s.selectorLabels" . }}
app.kubernetes.io/version: {{ .context.Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .context.Release.Service }}
app.kubernetes.io/part-of: zyra-k8s
{{- with .context.Values.commonLabels }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{/*
zyra-k8s.image: the full image reference of a component. Call with (dict "context" $ "image" .Values.api.image).
The tag defaults to the chart's appVersion.
*/}}
{{- define "zyra-k8s.image" -}}
{{- $registry := .context.Values.image.registry -}}
{{- $tag := default .context.Chart.AppVersion .context.Values.image.tag -}}
{{- if $registry -}}
{{- printf "%s/%s:%s" (trimSuffix "/" $registry) .image.repository $tag -}}
{{- else -}}
{{- printf "%s:%s" .image.repository $tag -}}
{{- end -}}
{{- end }}

{{/*
zyra-k8s.api.serviceAccountName / zyra-k8s.operator.serviceAccountName / zyra-k8s.runner.serviceAccountName
*/}}
{{- define "zyra-k8s.api.serviceAccountName" -}}
{{- default (include "zyra-k8s.api.fullname" .) .Values.api.serviceAccount.name }}
{{- end }}
{{- define "zyra-k8s.operator.serviceAccountName" -}}
{{- default (include "zyra-k8s.operator.fullname" .) .Values.operator.serviceAccount.name }}
{{- end }}
{{- define "zyra-k8s.runner.serviceAccountName" -}}
{{- default (include "zyra-k8s.runner.fullname" .) .Values.runner.serviceAccount.name }}
{{- end }}

{{/*
zyra-k8s.apiKeys.secretName / .secretKey: the Secret holding the API keys (existing or created).
*/}}
{{- define "zyra-k8s.apiKeys.secretName" -}}
{{- default (printf "%s-api-keys" (include "zyra-k8s.fullname" .)) .Values.apiKeys.existingSecret }}
{{- end }}
{{- define "zyra-k8s.apiKeys.secretKey" -}}
{{- if .Values.apiKeys.existingSecret }}{{ .Values.apiKeys.existingSecretKey }}{{ else }}api-keys{{ end }}
{{- end }}

{{/*
zyra-k8s.storage.secretName: the Secret with ZYRA_S3_* and ZYRA_REDIS_URL (existing or created); the API and
the operator take it as environment, and the operator names it to every run's pod (ZYRA_RUNNER_SECRET).
*/}}
{{- define "zyra-k8s.storage.secretName" -}}
{{- default (printf "%s-storage" (include "zyra-k8s.fullname" .)) .Values.storage.existingSecret }}
{{- end }}

{{/*
zyra-k8s.env: the settings the API and the operator share.
*/}}
{{- define "zyra-k8s.env" -}}
- name: ZYRA_BACKEND
  value: kubernetes
- name: ZYRA_NAMESPACE
  valueFrom:
    fieldRef:
      fieldPath: metadata.namespace
- name: ZYRA_RUNNER_SECRET
  value: {{ include "zyra-k8s.storage.secretName" . | quote }}
- name: ZYRA_RUNNER_SERVICE_ACCOUNT
  value: {{ include "zyra-k8s.runner.serviceAccountName" . | quote }}
- name: ZYRA_DEFAULT_TIMEOUT_SECONDS
  value: {{ .Values.api.defaultTimeoutSeconds | quote }}
{{- range $name, $value := .Values.extraEnv }}
- name: {{ $name }}
  value: {{ $value | quote }}
{{- end }}
{{- end }}

{{/*
zyra-k8s.containerSecurityContext: non-root, read-only root filesystem, nothing to escalate.
*/}}
{{- define "zyra-k8s.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
capabilities:
  drop: [ALL]
{{- end }}

{{/*
zyra-k8s.podSecurityContext
*/}}
{{- define "zyra-k8s.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 10001
runAsGroup: 10001
fsGroup: 10001
seccompProfile:
  type: RuntimeDefault
{{- end }}

{{/*
zyra-k8s.pdbApiVersion: policy/v1 where the cluster serves it (1.21+), else policy/v1beta1 (1.20).
*/}}
{{- define "zyra-k8s.pdbApiVersion" -}}
{{- if .Capabilities.APIVersions.Has "policy/v1" -}}
policy/v1
{{- else -}}
policy/v1beta1
{{- end -}}
{{- end }}
