{{- define "soc-warden.fullname" -}}
{{- if contains .Chart.Name .Release.Name -}}
{{- .Release.Name | trunc 63 | trimSuffix "-" -}}
{{- else -}}
{{- printf "%s-%s" .Release.Name .Chart.Name | trunc 63 | trimSuffix "-" -}}
{{- end -}}
{{- end -}}

{{- define "soc-warden.selectorLabels" -}}
app.kubernetes.io/name: {{ .Chart.Name }}
app.kubernetes.io/instance: {{ .Release.Name }}
{{- end -}}

{{- define "soc-warden.labels" -}}
{{ include "soc-warden.selectorLabels" . }}
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: soc-warden
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- /* The `helm test` pod: not the operator's selector (it is no endpoint of the Service and
no pod of the PodDisruptionBudget), and what the NetworkPolicy admits to the probed ports. */ -}}
{{- define "soc-warden.testSelectorLabels" -}}
app.kubernetes.io/instance: {{ .Release.Name }}
app.kubernetes.io/component: helm-test
{{- end -}}

{{- define "soc-warden.testLabels" -}}
{{ include "soc-warden.testSelectorLabels" . }}
app.kubernetes.io/name: {{ .Chart.Name }}-test
app.kubernetes.io/version: {{ .Chart.AppVersion | quote }}
app.kubernetes.io/part-of: soc-warden
helm.sh/chart: {{ printf "%s-%s" .Chart.Name .Chart.Version }}
{{- end -}}

{{- /* The webhook signs stamps (who filed, who approved): it must answer only the API server.
Refuse to render unless one of the two ways says so, or the user opts out by a value named
after what it costs. */ -}}
{{- define "soc-warden.webhookCallers" -}}
{{- $byCA := .Values.webhook.clientCAConfigMap -}}
{{- $byNetwork := and .Values.networkPolicy.enabled .Values.networkPolicy.webhookFrom -}}
{{- if not (or $byCA $byNetwork .Values.webhook.insecureAnyCallerGetsSignedStamps) -}}
{{- fail "the webhook would answer any caller, and it signs stamps (who filed, who approved): set webhook.clientCAConfigMap (a ConfigMap, key ca.crt, with the CA of your API server's webhook client certificate; see docs/getting-started/existing-cluster.md, \"Only the API server may call the webhook\"), or networkPolicy.webhookFrom (NetworkPolicy peers, e.g. an ipBlock of your API server; needs networkPolicy.enabled and a CNI that enforces it), or, knowing that any pod reaching port 9443 can then get approvals signed, webhook.insecureAnyCallerGetsSignedStamps=true" -}}
{{- end -}}
{{- end -}}
