{{/* Objects keep the names the kustomize manifests use, so both installs look the same. */}}
{{- define "kli.name" -}}kafka-listener-injector{{- end }}

{{- define "kli.labels" -}}
app.kubernetes.io/name: {{ include "kli.name" . }}
app.kubernetes.io/part-of: kafka-listener-injector
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
{{- end }}

{{- define "kli.image" -}}
{{- if .Values.image.digest -}}
{{ .Values.image.repository }}@{{ .Values.image.digest }}
{{- else -}}
{{ .Values.image.repository }}:{{ .Values.image.tag | default .Chart.AppVersion }}
{{- end }}
{{- end }}

{{/* The TLS Secret the webhook serves from. */}}
{{- define "kli.tlsSecret" -}}
{{- if eq .Values.certificates.mode "secret" -}}
{{ .Values.certificates.existingSecret }}
{{- else -}}
kafka-listener-injector-tls
{{- end }}
{{- end }}

{{/* The injection settings as flags, shared by `serve` and `reconcile`. */}}
{{- define "kli.injectionArgs" -}}
{{- with .Values.injection }}
{{- if .domain }}
- --domain={{ .domain }}
{{- end }}
{{- if .listeners }}
- --listeners={{ .listeners }}
{{- end }}
{{- if ne .envName "auto" }}
- --env-name={{ .envName }}
{{- end }}
{{- range $name, $template := .env }}
- --env={{ $name }}={{ $template }}
{{- end }}
{{- range .containers }}
- --container={{ . }}
{{- end }}
{{- if .nodeIdEnv }}
- --node-id-env={{ .nodeIdEnv }}
- --node-id-offset={{ .nodeIdOffset }}
{{- end }}
{{- if .strict }}
- --strict
{{- end }}
{{- range .ignoreNamespaces }}
- --ignore-namespace={{ . }}
{{- end }}
{{- end }}
{{- end }}

{{- define "kli.podSecurityContext" -}}
runAsNonRoot: true
runAsUser: 65532
runAsGroup: 65532
fsGroup: 65532
seccompProfile: {type: RuntimeDefault}
{{- end }}

{{- define "kli.containerSecurityContext" -}}
allowPrivilegeEscalation: false
readOnlyRootFilesystem: true
capabilities: {drop: [ALL]}
{{- end }}
