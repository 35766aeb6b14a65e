{{- define "ab.name" -}}
{{- .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}

{{- define "ab.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "ab.selectorLabels" -}}
app.kubernetes.io/name: {{ include "ab.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "ab.labels" -}}
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" }}
{{ include "ab.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
{{- end -}}

{{- define "ab.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) -}}
{{- end -}}

{{- define "ab.serviceAccountName" -}}
{{- if .Values.serviceAccount.create -}}
{{- default (include "ab.fullname" .) .Values.serviceAccount.name -}}
{{- else -}}
{{- default "default" .Values.serviceAccount.name -}}
{{- end -}}
{{- end -}}

{{- define "ab.secretName" -}}
{{- default (include "ab.fullname" .) .Values.existingSecret -}}
{{- end -}}

{{/* The environment of the service and of the migration Job: settings, then secrets by reference.
     Called with (dict "root" $ "secret" NAME): the Job reads a hook Secret of its own (a pre-install
     hook runs before the release's Secret exists). */}}
{{- define "ab.env" -}}
{{- $root := .root -}}
- name: AGENTIC_MIGRATE_ON_START  # the release's Job migrates a shared database; SQLite, each pod
  value: {{ ternary "false" "true" (eq (include "ab.jobMigrates" $root) "true") | quote }}
{{- if gt (int $root.Values.workers) 1 }}
- name: AGENTIC_METRICS_MULTIPROCESS_DIR  # the workers' metric files, summed at each scrape
  value: /run/agentic/metrics
{{- end }}
- name: AGENTIC_DATA_DIR
  value: /data
{{- range $name, $value := $root.Values.env }}
- name: {{ $name }}
  value: {{ $value | toString | quote }}
{{- end }}
{{- $own := not $root.Values.existingSecret }}
{{- range $setting, $key := $root.Values.secretKeys }}
{{- if or (not $own) (index $root.Values $setting) }}
- name: {{ include "ab.envName" $setting }}
  valueFrom:
    secretKeyRef:
      name: {{ $.secret }}
      key: {{ $key }}
      optional: {{ not $own }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "ab.envName" -}}
{{- get (dict "adminApiKey" "AGENTIC_ADMIN_API_KEY" "metricsToken" "AGENTIC_METRICS_TOKEN" "databaseUrl" "AGENTIC_DATABASE_URL" "redisUrl" "AGENTIC_REDIS_URL") . -}}
{{- end -}}

{{/* The Secret's data from the values (without existingSecret). */}}
{{- define "ab.secretData" -}}
{{- range $setting, $key := .Values.secretKeys }}
{{- with index $.Values $setting }}
{{ $key }}: {{ . | quote }}
{{- end }}
{{- end }}
{{- end -}}

{{- define "ab.hasSecretData" -}}
{{- if or .Values.adminApiKey .Values.metricsToken .Values.databaseUrl .Values.redisUrl -}}true{{- end -}}
{{- end -}}

{{- define "ab.checks" -}}
{{- if and (gt (int .Values.replicaCount) 1) (not .Values.databaseUrl) (not .Values.existingSecret) -}}
{{- fail "replicaCount > 1 needs a shared database: set databaseUrl (PostgreSQL) or existingSecret; SQLite in an emptyDir is one pod's own" -}}
{{- end -}}
{{- if le (int .Values.terminationGracePeriodSeconds) (int .Values.preStopSeconds) -}}
{{- fail "terminationGracePeriodSeconds must be longer than preStopSeconds: the grace period counts the preStop drain, and what is left of it is the time to finish requests and streams" -}}
{{- end -}}
{{- if and .Values.autoscaling.enabled .Values.keda.enabled -}}
{{- fail "autoscaling (HPA) and keda both scale the Deployment: enable one" -}}
{{- end -}}
{{- if and (or .Values.autoscaling.enabled .Values.keda.enabled) (not .Values.databaseUrl) (not .Values.existingSecret) -}}
{{- fail "autoscaling needs a shared database: set databaseUrl (PostgreSQL) or existingSecret" -}}
{{- end -}}
{{- end -}}

{{/* A shared database (PostgreSQL: databaseUrl, or an existing Secret's) that the release's Job migrates. */}}
{{- define "ab.jobMigrates" -}}
{{- if and .Values.migrations.enabled (or .Values.databaseUrl .Values.existingSecret) -}}true{{- end -}}
{{- end -}}
