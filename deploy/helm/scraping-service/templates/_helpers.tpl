{{/* Chart name, truncated to the 63 characters a label value allows. */}}
{{- define "scraping-service.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/* Release-qualified name; kept short enough for "-etcd-headless" and pod ordinals to fit in 63. */}}
{{- define "scraping-service.fullname" -}}
{{- if .Values.fullnameOverride }}
{{- .Values.fullnameOverride | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- $name := default .Chart.Name .Values.nameOverride }}
{{- if contains $name .Release.Name }}
{{- .Release.Name | trunc 40 | trimSuffix "-" }}
{{- else }}
{{- printf "%s-%s" .Release.Name $name | trunc 40 | trimSuffix "-" }}
{{- end }}
{{- end }}
{{- end }}

{{- define "scraping-service.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "scraping-service.labels" -}}
helm.sh/chart: {{ include "scraping-service.chart" . }}
{{ include "scraping-service.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "scraping-service.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scraping-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: node
{{- end }}

{{- define "scraping-service.etcd.fullname" -}}
{{- printf "%s-etcd" (include "scraping-service.fullname" .) }}
{{- end }}

{{- define "scraping-service.etcd.labels" -}}
helm.sh/chart: {{ include "scraping-service.chart" . }}
{{ include "scraping-service.etcd.selectorLabels" . }}
app.kubernetes.io/version: {{ .Values.etcd.image.tag | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "scraping-service.etcd.selectorLabels" -}}
app.kubernetes.io/name: {{ include "scraping-service.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: etcd
{{- end }}

{{- define "scraping-service.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* DNS name of bundled etcd member $i (needs the root context as .ctx). */}}
{{- define "scraping-service.etcd.memberHost" -}}
{{- $etcd := include "scraping-service.etcd.fullname" .ctx -}}
{{- printf "%s-%d.%s-headless.%s.svc" $etcd (int .i) $etcd .ctx.Release.Namespace }}
{{- end }}

{{/* etcd endpoints (host:port) the nodes use, as a JSON list: bundled members or etcd.external.endpoints. */}}
{{- define "scraping-service.etcd.endpoints" -}}
{{- $out := list }}
{{- if .Values.etcd.enabled }}
{{- range $i := until (int .Values.etcd.replicas) }}
{{- $out = append $out (printf "%s:%d" (include "scraping-service.etcd.memberHost" (dict "ctx" $ "i" $i)) (int $.Values.etcd.clientPort)) }}
{{- end }}
{{- else }}
{{- $out = .Values.etcd.external.endpoints }}
{{- end }}
{{- toJson $out }}
{{- end }}

{{/* etcd --initial-cluster for the bundled cluster, computed from etcd.replicas. */}}
{{- define "scraping-service.etcd.initialCluster" -}}
{{- $etcd := include "scraping-service.etcd.fullname" . -}}
{{- $members := list }}
{{- range $i := until (int .Values.etcd.replicas) }}
{{- $members = append $members (printf "%s-%d=%s://%s:%d" $etcd $i (include "scraping-service.etcd.scheme" $) (include "scraping-service.etcd.memberHost" (dict "ctx" $ "i" $i)) (int $.Values.etcd.peerPort)) }}
{{- end }}
{{- join "," $members }}
{{- end }}

{{- define "scraping-service.etcd.authSecret" -}}
{{- default (printf "%s-etcd-auth" (include "scraping-service.fullname" .)) .Values.etcd.auth.existingSecret }}
{{- end }}

{{- define "scraping-service.etcd.tlsSecret" -}}
{{- default (printf "%s-etcd-tls" (include "scraping-service.fullname" .)) .Values.etcd.tls.existingSecret }}
{{- end }}

{{/* "http" or "https": the scheme of the bundled etcd's client and peer URLs. */}}
{{- define "scraping-service.etcd.scheme" -}}
{{- if .Values.etcd.tls.enabled }}https{{ else }}http{{ end }}
{{- end }}

{{/* "true" when a file of a TLS Secret will exist: (dict "tls" <tls values> "file" "cert"|"key"|"ca").
     From an existing Secret, every key named; from values, only the PEM texts given (no empty files). */}}
{{- define "scraping-service.tls.has" -}}
{{- $keyName := get .tls (printf "%sKey" .file) }}
{{- if and $keyName (or .tls.existingSecret (get .tls .file)) }}true{{ end }}
{{- end }}

{{/* The etcd client block of agent.yaml (used for both the configs store and the ring). */}}
{{- define "scraping-service.etcd.clientConfig" -}}
{{- $tls := .Values.etcd.tls }}
endpoints: {{ include "scraping-service.etcd.endpoints" . }}
dial_timeout: {{ .Values.etcd.dialTimeout }}
{{- if .Values.etcd.auth.enabled }}
username: ${ETCD_USERNAME}
password: ${ETCD_PASSWORD}
{{- end }}
{{- if $tls.enabled }}
tls_enabled: true
{{- if include "scraping-service.tls.has" (dict "tls" $tls "file" "cert") }}
tls_cert_path: /etc/agent/etcd-tls/{{ $tls.certKey }}
{{- end }}
{{- if include "scraping-service.tls.has" (dict "tls" $tls "file" "key") }}
tls_key_path: /etc/agent/etcd-tls/{{ $tls.keyKey }}
{{- end }}
{{- if include "scraping-service.tls.has" (dict "tls" $tls "file" "ca") }}
tls_ca_path: /etc/agent/etcd-tls/{{ $tls.caKey }}
{{- end }}
{{- with $tls.serverName }}
tls_server_name: {{ . | quote }}
{{- end }}
{{- end }}
{{- end }}

{{- define "scraping-service.etcd.serverTLSSecret" -}}
{{- default (printf "%s-etcd-server-tls" (include "scraping-service.fullname" .)) .Values.etcd.tls.server.existingSecret }}
{{- end }}

{{- define "scraping-service.remoteWriteSecret" -}}
{{- default (printf "%s-remote-write" (include "scraping-service.fullname" .)) .Values.config.remoteWriteSecret.existingSecret }}
{{- end }}

{{/* Whether metrics.global.remote_write is set: it then comes from a Secret (GLOBAL_REMOTE_WRITE). */}}
{{- define "scraping-service.hasRemoteWrite" -}}
{{- if or .Values.config.remoteWriteSecret.existingSecret (get (.Values.config.global | default dict) "remote_write") }}true{{ end }}
{{- end }}

{{/* The etcd key range [prefix, end) of a prefix ending in "/", base64 for etcd's JSON API. */}}
{{- define "scraping-service.etcd.prefixPerm" -}}
{"name":"scraping-service","perm":{"permType":"READWRITE","key":"{{ b64enc . }}","range_end":"{{ printf "%s0" (trimSuffix "/" .) | b64enc }}"}}
{{- end }}

{{/* Stops rendering on combinations the schema cannot express. */}}
{{- define "scraping-service.validate" -}}
{{- if and (not .Values.etcd.enabled) (empty .Values.etcd.external.endpoints) }}
{{- fail "etcd.enabled is false: set etcd.external.endpoints (host:port of each member)" }}
{{- end }}
{{- if and .Values.etcd.enabled .Values.etcd.tls.enabled (not .Values.etcd.tls.server.existingSecret) (not (and .Values.etcd.tls.server.cert .Values.etcd.tls.server.key)) }}
{{- fail "etcd.tls.enabled with the bundled etcd: set etcd.tls.server.existingSecret or etcd.tls.server.cert/key (the members' certificate)" }}
{{- end }}
{{- if and .Values.etcd.enabled .Values.etcd.auth.enabled (not .Values.etcd.auth.existingSecret) (not .Values.etcd.auth.rootPassword) }}
{{- fail "etcd.auth.enabled with the bundled etcd: set etcd.auth.rootPassword (or etcd.auth.existingSecret with etcd.auth.rootPasswordKey)" }}
{{- end }}
{{- if and .Values.etcd.enabled .Values.etcd.auth.enabled (eq .Values.etcd.auth.username "root") }}
{{- fail "etcd.auth.username: the nodes' user of the bundled etcd must not be root" }}
{{- end }}
{{- if and .Values.etcd.tls.enabled (not .Values.etcd.tls.existingSecret) (and .Values.etcd.tls.cert (not .Values.etcd.tls.key)) }}
{{- fail "etcd.tls.cert is set: set etcd.tls.key too" }}
{{- end }}
{{- if and .Values.etcd.auth.enabled (not .Values.etcd.auth.existingSecret) (not .Values.etcd.auth.password) }}
{{- fail "etcd.auth.enabled: set etcd.auth.existingSecret or etcd.auth.username/password" }}
{{- end }}
{{- if and .Values.etcd.tls.enabled (not .Values.etcd.tls.existingSecret) (not (or .Values.etcd.tls.ca .Values.etcd.tls.cert)) }}
{{- fail "etcd.tls.enabled: set etcd.tls.existingSecret or etcd.tls.cert/key/ca" }}
{{- end }}
{{- end }}

{{/* The ServiceAccount the nodes run as: the chart's own, or serviceAccount.name (default when not created). */}}
{{- define "scraping-service.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "scraping-service.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}
