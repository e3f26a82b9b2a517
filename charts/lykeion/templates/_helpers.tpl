{{/*
The chart's name, bounded to the 63-character label limit.
*/}}
{{- define "lykeion.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The release's full name: the prefix of every object of this chart.
*/}}
{{- define "lykeion.fullname" -}}
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

{{- define "lykeion.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
Labels of every object, without a component.
*/}}
{{- define "lykeion.commonLabels" -}}
helm.sh/chart: {{ include "lykeion.chart" . }}
app.kubernetes.io/name: {{ include "lykeion.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: lykeion
{{- end }}

{{/*
Labels of the operator's objects.
*/}}
{{- define "lykeion.labels" -}}
{{ include "lykeion.commonLabels" . }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
Labels that select the operator's pod; never change them after a release (immutable selector).
*/}}
{{- define "lykeion.selectorLabels" -}}
app.kubernetes.io/name: {{ include "lykeion.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: operator
{{- end }}

{{/*
The operator's ServiceAccount.
*/}}
{{- define "lykeion.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "lykeion.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/*
The ServiceAccount of the Jobs; fixed, because the operator names it in every Job it creates.
*/}}
{{- define "lykeion.workloadServiceAccountName" -}}
lykeion-workload
{{- end }}

{{/*
Namespaces that get the workload ServiceAccount: the release's, the watched ones and any
extra ones, once each, sorted.
*/}}
{{- define "lykeion.workloadNamespaces" -}}
{{- $all := concat (list .Release.Namespace) .Values.watchNamespaces .Values.workload.extraNamespaces }}
{{- toJson (sortAlpha (uniq $all)) }}
{{- end }}

{{- define "lykeion.image" -}}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}

{{- define "lykeion.configName" -}}
{{- printf "%s-config" (include "lykeion.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{/*
The MLflow server of the chart (mlflow.server.enabled): its name, and the tracking URI
everyone uses (mlflow.trackingUri wins when set).
*/}}
{{- define "lykeion.mlflowName" -}}
{{- printf "%s-mlflow" (include "lykeion.fullname" .) | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "lykeion.trackingUri" -}}
{{- if .Values.mlflow.trackingUri }}
{{- .Values.mlflow.trackingUri }}
{{- else if .Values.mlflow.server.enabled }}
{{- printf "http://%s.%s.svc:5000" (include "lykeion.mlflowName" .) .Release.Namespace }}
{{- end }}
{{- end }}

{{/*
The data volume of the operator and of the chart's servers: stores.volume, else an emptyDir.
*/}}
{{- define "lykeion.dataVolume" -}}
- name: data
{{- if .Values.stores.volume }}
{{ toYaml .Values.stores.volume | indent 2 }}
{{- else }}
  emptyDir: {}
{{- end }}
{{- end }}
