{{- define "magent2.fullname" -}}
{{- if contains .Chart.Name .Release.Name }}{{ .Release.Name | trunc 50 | trimSuffix "-" }}{{ else }}{{ printf "%s-%s" .Release.Name .Chart.Name | trunc 50 | trimSuffix "-" }}{{ end }}
{{- end }}

{{- define "magent2.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: magent2
{{- end }}

{{- define "magent2.selector" -}}
app.kubernetes.io/name: {{ .root.Chart.Name }}
app.kubernetes.io/instance: {{ .root.Release.Name }}
app.kubernetes.io/component: {{ .component }}
{{- end }}

{{/* image: (dict "root" $ "name" "magent2-gateway" "override" .Values.gateway.image) */}}
{{- define "magent2.image" -}}
{{- $repo := default (printf "%s/%s" .root.Values.image.repository .name) .override.repository -}}
{{- $tag := default (default .root.Chart.AppVersion .root.Values.image.tag) .override.tag -}}
{{- printf "%s:%s" $repo $tag -}}
{{- end }}

{{- define "magent2.redisHost" -}}{{ include "magent2.fullname" . }}-redis{{- end }}
{{- define "magent2.redisSecret" -}}{{ default (printf "%s-redis" (include "magent2.fullname" .)) .Values.redis.auth.existingSecret }}{{- end }}

{{/* The Secret and key holding the full Redis URL the gateway and workers use. */}}
{{- define "magent2.redisUrlSecretName" -}}
{{- if and .Values.redis.enabled .Values.redis.auth.existingSecret }}{{ .Values.redis.auth.existingSecret }}{{ else if .Values.redis.enabled }}{{ include "magent2.fullname" . }}-redis-url{{ else if .Values.redis.externalUrlSecret.name }}{{ .Values.redis.externalUrlSecret.name }}{{ else }}{{ include "magent2.fullname" . }}-redis-url{{ end }}
{{- end }}
{{- define "magent2.redisUrlSecretKey" -}}
{{- if and (not .Values.redis.enabled) .Values.redis.externalUrlSecret.name }}{{ .Values.redis.externalUrlSecret.key }}{{ else }}url{{ end }}
{{- end }}

{{- define "magent2.podSecurity" -}}
securityContext:
  {{- toYaml .Values.podSecurityContext | nindent 2 }}
{{- end }}

{{- define "magent2.validate" -}}
{{- if and (not .Values.redis.enabled) (not .Values.redis.externalUrl) (not .Values.redis.externalUrlSecret.name) }}
{{- fail "redis.enabled=false needs redis.externalUrl or redis.externalUrlSecret.name" }}
{{- end }}
{{- end }}
