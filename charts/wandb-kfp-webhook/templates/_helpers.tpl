{{/* Names, labels and derived values shared by the templates. */}}

{{- define "wkw.name" -}}
{{- default .Chart.Name .Values.nameOverride | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wkw.fullname" -}}
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

{{- define "wkw.chart" -}}
{{- printf "%s-%s" .Chart.Name .Chart.Version | replace "+" "_" | trunc 63 | trimSuffix "-" }}
{{- end }}

{{- define "wkw.selectorLabels" -}}
app.kubernetes.io/name: {{ include "wkw.name" . }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end }}

{{- define "wkw.labels" -}}
helm.sh/chart: {{ include "wkw.chart" . }}
{{ include "wkw.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/managed-by: {{ .Release.Service }}
app.kubernetes.io/part-of: wandb-kfp-webhook
{{- end }}

{{- define "wkw.serviceAccountName" -}}
{{- if .Values.serviceAccount.create }}
{{- default (include "wkw.fullname" .) .Values.serviceAccount.name }}
{{- else }}
{{- default "default" .Values.serviceAccount.name }}
{{- end }}
{{- end }}

{{/* The chart's image: repository@digest when a digest is given, else repository:tag. */}}
{{- define "wkw.image" -}}
{{- if .Values.image.digest }}
{{- printf "%s@%s" .Values.image.repository .Values.image.digest }}
{{- else }}
{{- printf "%s:%s" .Values.image.repository (default .Chart.AppVersion .Values.image.tag) }}
{{- end }}
{{- end }}

{{- define "wkw.shimImage" -}}
{{- default (include "wkw.image" .) .Values.injection.shim.image }}
{{- end }}

{{- define "wkw.webhookConfigurationName" -}}
{{- default (include "wkw.fullname" .) .Values.webhook.configurationName }}
{{- end }}

{{/* The Secret the server reads tls.crt/tls.key from, per certificate mode. */}}
{{- define "wkw.tlsSecretName" -}}
{{- $mode := .Values.certificates.mode }}
{{- if eq $mode "selfManaged" }}
{{- default (printf "%s-tls" (include "wkw.fullname" .)) .Values.certificates.selfManaged.secretName }}
{{- else if eq $mode "certManager" }}
{{- printf "%s-serving" (include "wkw.fullname" .) }}
{{- else }}
{{- required "certificates.provided.secretName is required when certificates.mode is provided" .Values.certificates.provided.secretName }}
{{- end }}
{{- end }}

{{- define "wkw.serviceDNS" -}}
{{- printf "%s.%s.svc" (include "wkw.fullname" .) .Release.Namespace }}
{{- end }}

{{/* Namespaces the webhook configuration never selects: system ones, the excluded list, its own. */}}
{{- define "wkw.excludedNamespaces" -}}
{{- $all := concat (list "kube-system" "kube-public" "kube-node-lease") .Values.injection.excludedNamespaces (list .Release.Namespace) }}
{{- toJson (uniq $all) }}
{{- end }}

{{/* Whether the pipeline-pattern webhook is rendered (null means: when patterns are configured). */}}
{{- define "wkw.pipelineWebhookEnabled" -}}
{{- $setting := .Values.webhook.pipelineOptIn.enabled }}
{{- if kindIs "invalid" $setting }}
{{- if .Values.injection.pipelines }}true{{ end }}
{{- else if $setting }}true{{ end }}
{{- end }}

{{/* objectSelector expressions every webhook shares: opted-out pods (and the webhook's own pods,
     labelled wandb.ai/inject=false) are never sent; optionally only Argo workflow pods are. */}}
{{- define "wkw.commonObjectExpressions" -}}
- key: wandb.ai/inject
  operator: NotIn
  values: ["false"]
{{- if .Values.webhook.argoPodsOnly }}
- key: workflows.argoproj.io/workflow
  operator: Exists
{{- end }}
{{- end }}

{{/* The server settings file: keys are exactly webhook.config.Settings fields. */}}
{{- define "wkw.settings" -}}
{{- $w := .Values.wandb }}
{{- $i := .Values.injection }}
{{- $s := .Values.server }}
{{- $settings := dict
  "api_key_secret_name" $w.apiKeySecret.name
  "api_key_secret_key" $w.apiKeySecret.key
  "base_url" $w.baseUrl
  "tags" $w.tags
  "init_timeout_seconds" (int $w.initTimeoutSeconds)
  "max_upload_bytes" (int64 $w.maxUploadBytes)
  "shim_enabled" $i.shimEnabled
  "run_link_in_logs" $i.runLinkInLogs
  "pipelines" $i.pipelines
  "shim_image" (include "wkw.shimImage" .)
  "shim_image_pull_policy" $i.shim.pullPolicy
  "shim_delivery" $i.shim.delivery
  "shim_image_layout_path" $i.shim.imageLayoutPath
  "shim_size_limit" $i.shim.sizeLimit
  "shim_resources" (dict
      "cpu_request" (toString $i.shim.resources.cpuRequest)
      "cpu_limit" (toString $i.shim.resources.cpuLimit)
      "memory_request" (toString $i.shim.resources.memoryRequest)
      "memory_limit" (toString $i.shim.resources.memoryLimit))
  "offline_dir" $i.offline.dir
  "excluded_namespaces" (uniq (concat (list "kube-system" "kube-public" "kube-node-lease") $i.excludedNamespaces))
  "port" (int $s.port)
  "workers" (int $s.workers)
  "request_timeout_seconds" $s.requestTimeoutSeconds
  "max_connections" (int $s.maxConnections)
  "shutdown_drain_seconds" (int $s.shutdownDrainSeconds)
  "locked_annotations" $w.lockedAnnotations
  "pod_locked_annotations" $w.podLockedAnnotations
  "watch_namespaces" $s.watchNamespaces
}}
{{- with $w.project }}{{ $_ := set $settings "project" . }}{{ end }}
{{- with $w.entity }}{{ $_ := set $settings "entity" . }}{{ end }}
{{- with $w.kubeflowUrl }}{{ $_ := set $settings "kubeflow_url" . }}{{ end }}
{{- with $i.offline.pvc }}{{ $_ := set $settings "offline_pvc" . }}{{ end }}
{{- toYaml $settings }}
{{- end }}

{{/* Fields every webhook of the configuration shares (called with root, fullname, caBundle). */}}
{{- define "wkw.webhookCommon" }}
    clientConfig:
      service:
        name: {{ .fullname }}
        namespace: {{ .root.Release.Namespace }}
        path: /mutate
        port: {{ .root.Values.service.port }}
      {{- with .caBundle }}
      caBundle: {{ . }}
      {{- end }}
    rules:
      - operations: ["CREATE"]
        apiGroups: [""]
        apiVersions: ["v1"]
        resources: ["pods"]
        scope: Namespaced
    matchPolicy: Equivalent
    failurePolicy: Ignore
    sideEffects: None
    timeoutSeconds: {{ .root.Values.webhook.timeoutSeconds }}
    reinvocationPolicy: {{ .root.Values.webhook.reinvocationPolicy }}
    admissionReviewVersions: ["v1"]
{{- end }}
