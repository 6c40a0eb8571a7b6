{{/* Names and labels, as `helm create` makes them. */}}
{{- define "moorage.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "moorage.fullname" -}}
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

{{- define "moorage.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{ include "moorage.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end }}

{{- define "moorage.selectorLabels" -}}
app.kubernetes.io/name: {{ include "moorage.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "moorage.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "moorage.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{- define "moorage.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{/* The Secret the pods read: the operator's, or the chart's own. */}}
{{- define "moorage.secretName" -}}
{{- default (printf "%s-secret" (include "moorage.fullname" .)) .Values.existingSecret }}
{{- end }}

{{- define "moorage.tlsSecretName" -}}
{{- default (printf "%s-tls" (include "moorage.fullname" .)) .Values.tls.existingSecret }}
{{- end }}

{{- define "moorage.scheme" -}}
{{- if .Values.tls.enabled }}HTTPS{{ else }}HTTP{{ end }}
{{- end }}

{{/* An external database is configured (in values or in the operator's Secret). */}}
{{- define "moorage.externalDatabase" -}}
{{- if or .Values.database.url .Values.existingSecret }}true{{ end }}
{{- end }}

{{/*
moorage.yml: what the values imply, then .Values.config over it. No secret goes in here: those
are MOORAGE_… variables from the Secret (see secret.yaml), which override the file.
*/}}
{{- define "moorage.config" -}}
{{- $http := dict "listen" (printf "0.0.0.0:%d" (int .Values.service.port)) "workers" (int .Values.workers) }}
{{- if .Values.trustedProxies }}
{{- $_ := set $http "trusted_proxies" .Values.trustedProxies }}
{{- end }}
{{- if .Values.ingress.enabled }}
{{- $_ := set $http "host" (printf "%s://%s" (ternary "https" "http" .Values.ingress.tls.enabled) .Values.ingress.host) }}
{{- end }}
{{- if .Values.tls.enabled }}
{{- $_ := set $http "tls" (dict "certificate" "/etc/moorage/tls/tls.crt" "key" "/etc/moorage/tls/tls.key") }}
{{- end }}
{{- $cfg := dict "http" $http "auth" (dict "mode" .Values.auth.mode) "metrics" (dict "enabled" .Values.metrics.enabled) "log" (dict "format" "json") }}
{{- if .Values.storage.s3.enabled }}
{{- $s3 := dict "bucket" (required "storage.s3.bucket is required with storage.s3.enabled" .Values.storage.s3.bucket) "region" .Values.storage.s3.region }}
{{- if .Values.storage.s3.regionendpoint }}
{{- $_ := set $s3 "regionendpoint" .Values.storage.s3.regionendpoint }}
{{- end }}
{{- if .Values.storage.s3.rootdirectory }}
{{- $_ := set $s3 "rootdirectory" .Values.storage.s3.rootdirectory }}
{{- end }}
{{- $_ := set $cfg "storage" (dict "s3" $s3) }}
{{- end }}
{{- toYaml (mergeOverwrite $cfg (deepCopy .Values.config)) }}
{{- end }}

{{/* The environment of the init and server containers: the config file, then secrets. */}}
{{- define "moorage.env" -}}
- name: MOORAGE_CONFIG
  value: /etc/moorage/moorage.yml
{{- $secret := include "moorage.secretName" . }}
{{- range $var, $key := dict "MOORAGE_SECRET_KEY" "secret-key" "MOORAGE_ADMIN_PASSWORD" "admin-password" "MOORAGE_DATABASE_URL" "database-url" "MOORAGE_REDIS_URL" "redis-url" "MOORAGE_STORAGE__S3__ACCESSKEY" "s3-accesskey" "MOORAGE_STORAGE__S3__SECRETKEY" "s3-secretkey" }}
- name: {{ $var }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $key }}
      optional: true
{{- end }}
{{- if not .Values.existingSecret }}
{{- range $name, $_ := .Values.secretEnv }}
- name: {{ $name }}
  valueFrom:
    secretKeyRef:
      name: {{ $secret }}
      key: {{ $name }}
{{- end }}
{{- end }}
{{- with .Values.extraEnv }}
{{ toYaml . }}
{{- end }}
{{- end }}

{{- define "moorage.volumeMounts" -}}
- name: config
  mountPath: /etc/moorage/moorage.yml
  subPath: moorage.yml
  readOnly: true
- name: data
  mountPath: /var/lib/moorage
- name: tmp
  mountPath: /tmp
{{- if .Values.tls.enabled }}
- name: tls
  mountPath: /etc/moorage/tls
  readOnly: true
{{- end }}
{{- with .Values.extraVolumeMounts }}
{{ toYaml . }}
{{- end }}
{{- end }}
